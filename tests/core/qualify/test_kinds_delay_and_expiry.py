"""What the kind of a report does to its qualification, delays, and expired failures
(docs/kinds.md, docs/policy.md)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from bounced.core.normalize import normalize
from bounced.core.qualify import load_default_rules, qualify
from bounced.model import (
    Action,
    FailureType,
    Kind,
    Qualification,
    QualificationStatus,
    QualifiedBy,
    QualifiedBySource,
    Reason,
    RecipientReport,
    TableEntry,
)

DEFAULTS = load_default_rules()


def report(kind: Kind, action: Action | None = None, status: str | None = None,
           reply_code: str | None = None) -> RecipientReport:
    return RecipientReport(address="jane@example.org", kind=kind, action=action,
                           status=status, reply_code=reply_code)


@pytest.mark.parametrize("kind", [Kind.DELIVERED, Kind.NOT_BOUNCE])
def test_no_failure_no_verdict(kind: Kind) -> None:
    assert qualify(report(kind, status="5.1.1"), "550 5.1.1 User unknown", rules=DEFAULTS) is None


def test_a_spam_complaint_denylists_whatever_the_text_or_the_table_say() -> None:
    keep = TableEntry(3, QualificationStatus.KEEP, FailureType.SOFT, Reason.MAILBOX_FULL)
    verdict = qualify(report(Kind.FEEDBACK), "This is an email abuse report", entry=keep,
                      rules=DEFAULTS)
    assert verdict == Qualification(
        FailureType.HARD, Reason.DENYLISTED, QualifiedBy(QualifiedBySource.KIND)
    )


def test_an_autoreply_is_ignored_not_defined_by_kind() -> None:
    verdict = qualify(report(Kind.AUTOREPLY), "I am out of the office, user unknown",
                      rules=DEFAULTS)
    assert verdict == Qualification(
        FailureType.IGNORED, Reason.NOT_DEFINED, QualifiedBy(QualifiedBySource.KIND)
    )
    assert str(verdict.qualified_by) == "kind"


def test_a_delay_keeps_its_reason_but_is_ignored() -> None:
    text = normalize("452 4.2.2 <jane@example.org>: Mailbox full")
    verdict = qualify(report(Kind.DELAY, Action.DELAYED, "4.2.2", "452"), text, rules=DEFAULTS)
    assert verdict is not None
    assert verdict.failure_type is FailureType.IGNORED
    assert verdict.reason is Reason.MAILBOX_FULL
    assert str(verdict.qualified_by) == "status:4.2.2+phrase:mailboxfull"


def test_a_delay_is_ignored_even_when_the_table_keeps_a_hard_verdict() -> None:
    keep = TableEntry(4, QualificationStatus.KEEP, FailureType.HARD, Reason.USER_UNKNOWN)
    verdict = qualify(report(Kind.DELAY, Action.DELAYED, "4.1.1"), "450 4.1.1 User unknown",
                      entry=keep, rules=DEFAULTS)
    assert verdict == Qualification(
        FailureType.IGNORED, Reason.USER_UNKNOWN, QualifiedBy(QualifiedBySource.TABLE, "4")
    )


def test_a_delay_with_a_transient_code_is_not_an_expiry() -> None:
    verdict = qualify(report(Kind.DELAY, Action.DELAYED, "4.4.1"), "", rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (FailureType.IGNORED, Reason.UNREACHABLE)
    assert str(verdict.qualified_by) == "status:4.4.1"


def test_a_failure_with_a_transient_code_and_nothing_else_is_an_expiry() -> None:
    # The MTA gave up (docs/qualification.md): with no cause named, soft/Unreachable.
    verdict = qualify(report(Kind.FAILURE, Action.FAILED, "4.0.0"), "", rules=DEFAULTS)
    assert verdict == Qualification(
        FailureType.SOFT, Reason.UNREACHABLE, QualifiedBy(QualifiedBySource.CLASS, "4")
    )


def test_a_failure_with_a_transient_code_naming_a_cause_keeps_the_cause() -> None:
    # 4.7.1 names a block of our IP on the last attempt: the cause outlives the give-up
    verdict = qualify(report(Kind.FAILURE, Action.FAILED, "4.7.1"), "", rules=DEFAULTS)
    assert verdict == Qualification(
        FailureType.SOFT, Reason.REFUSED, QualifiedBy(QualifiedBySource.STATUS, "4.7.1")
    )


def test_a_vendor_bounce_without_action_with_a_transient_reply_is_an_expiry() -> None:
    verdict = qualify(report(Kind.FAILURE, None, None, "421"), "421", rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.UNREACHABLE)


def test_a_permanent_code_is_no_expiry() -> None:
    verdict = qualify(report(Kind.FAILURE, Action.FAILED, "5.7.1"), "", rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.REFUSED)


def test_a_table_keep_entry_wins_over_an_expiry() -> None:
    keep = TableEntry(9, QualificationStatus.KEEP, FailureType.HARD, Reason.USER_UNKNOWN)
    verdict = qualify(report(Kind.FAILURE, Action.FAILED, "4.4.7"), "retry timeout exceeded",
                      entry=keep, rules=DEFAULTS)
    assert verdict == Qualification(
        FailureType.HARD, Reason.USER_UNKNOWN, QualifiedBy(QualifiedBySource.TABLE, "9")
    )


def test_a_known_cause_wins_over_the_expiry_wording() -> None:
    verdict = qualify(report(Kind.FAILURE, Action.FAILED, "4.2.2"),
                      "mailbox is full: retry timeout exceeded", rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.MAILBOX_FULL)


@pytest.mark.parametrize(
    "raw",
    [
        "retry timeout exceeded",
        "554 4.4.7 Message expired: unable to deliver in 840 minutes.",
        "Message could not be delivered for 5 days Message will be deleted from queue",
        "Could not deliver for the last 432000 seconds. Giving up.",
        "Envelope expired",
        "Unable to deliver message after multiple retries, giving up.",
    ],
)
def test_expiry_wordings_are_soft_unreachable_even_without_a_code(raw: str) -> None:
    # the wordings are read in the diagnostic as the MTA wrote it ("for 5 days")
    failed = replace(report(Kind.FAILURE, Action.FAILED, "5.0.0"), diagnostic=raw)
    verdict = qualify(failed, normalize(raw), rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.UNREACHABLE)
    assert str(verdict.qualified_by) == "phrase:expired"
