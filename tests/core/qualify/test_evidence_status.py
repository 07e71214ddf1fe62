"""Evidence step "status code specificity": a specific enhanced code names a class by
itself; a generic one sends the decision to the words; a code yields only to the wording
of a more specific class. Texts are written from the reference data (the class each
code names, the classes' wordings) and RFC 3463."""

from __future__ import annotations

import pytest

from bounced.core.evidence import Facts, weigh
from bounced.model import FailureType, Reason
from tests.core.qualify.evidence_helpers import judged, verdict

HARD, SOFT = FailureType.HARD, FailureType.SOFT


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("5.1.1", (HARD, Reason.USER_UNKNOWN, "status:5.1.1")),  # bad destination mailbox
        ("5.1.6", (HARD, Reason.USER_UNKNOWN, "status:5.1.6")),  # moved, no forwarding
        ("5.1.2", (SOFT, Reason.INVALID_DOMAIN, "status:5.1.2")),  # bad destination system
        ("5.2.2", (SOFT, Reason.MAILBOX_FULL, "status:5.2.2")),
        ("4.2.2", (SOFT, Reason.MAILBOX_FULL, "status:4.2.2")),
        ("5.3.4", (SOFT, Reason.REFUSED, "status:5.3.4")),  # message too big
        ("5.4.4", (SOFT, Reason.INVALID_DOMAIN, "status:5.4.4")),  # unable to route
        ("4.4.7", (SOFT, Reason.UNREACHABLE, "status:4.4.7")),  # delivery time expired
        ("5.7.13", (SOFT, Reason.ACCOUNT_DISABLED, "status:5.7.13")),  # account disabled
        ("5.7.26", (SOFT, Reason.REFUSED, "status:5.7.26")),  # authentication failure
    ],
)
def test_a_specific_code_names_its_class_by_itself(
    status: str, expected: tuple[FailureType, Reason, str]
) -> None:
    assert verdict(judged("550 Requested action not taken", status=status)) == expected


@pytest.mark.parametrize("status", ["5.0.0", "5.1.0", "5.5.0", "4.0.0"])
def test_a_generic_code_says_nothing_and_the_words_decide(status: str) -> None:
    found = judged("552 Mailbox is full", status=status)
    assert verdict(found) == (SOFT, Reason.MAILBOX_FULL, "phrase:mailboxfull")


def test_a_code_yields_to_the_wording_of_a_more_specific_class() -> None:
    # "mailbox full" comes before "user unknown" in the order: a full mailbox it is
    found = judged("550 5.1.1 Mailbox full", status="5.1.1")
    assert verdict(found) == (SOFT, Reason.MAILBOX_FULL, "phrase:mailboxfull")


def test_a_code_does_not_yield_to_the_wording_of_a_less_specific_class() -> None:
    # 5.2.2 names the first class of the order: no wording can overrule it
    found = judged("552 5.2.2 Message rejected as spam", status="5.2.2")
    assert verdict(found) == (SOFT, Reason.MAILBOX_FULL, "status:5.2.2")


@pytest.mark.parametrize(
    "text",
    [
        "550 5.1.1 <jane@example.org>: Relay access denied",
        "550 5.1.1 Client host [192.0.2.1] blocked using zen.spamhaus.org",
        "550 5.1.1 Sender address rejected: domain of sender address does not exist",
    ],
)
def test_a_user_unknown_code_yields_to_relaying_block_or_refusal_wordings(text: str) -> None:
    found = judged(text, status="5.1.1")
    assert found.failure_type is SOFT
    assert found.reason is Reason.REFUSED


def test_code_and_wording_that_agree_are_both_named() -> None:
    found = judged("550 5.1.1 <jane@example.org>: Recipient address rejected: User unknown "
                   "in local recipient table", status="5.1.1")
    assert verdict(found) == (HARD, Reason.USER_UNKNOWN, "status:5.1.1+phrase:userunknown")


def test_the_prefix_of_a_recipient_restriction_is_no_refusal_of_the_sender() -> None:
    # Postfix writes "Recipient address rejected:" before every recipient restriction's
    # reason: those words must not veto the code
    found = judged("550 5.1.1 <jane@example.org>: Recipient address rejected: "
                   "undeliverable address", status="5.1.1")
    assert found.reason is Reason.USER_UNKNOWN


@pytest.mark.parametrize("status", ["5.2.1", "5.2.0"])
def test_a_code_naming_a_filter_turns_a_user_unknown_wording_into_a_refusal(
    status: str,
) -> None:
    found = judged(f"550 {status} <jane@example.org>... User Unknown", status=status)
    assert verdict(found) == (SOFT, Reason.REFUSED, f"status:{status}+phrase:userunknown")


def test_a_transient_code_keeps_the_class_it_names() -> None:
    found = judged("450 4.1.1 <jane@example.org>: Recipient address rejected: User unknown",
                   status="4.1.1", stage="RCPT")
    assert found.klass == "userunknown"


def test_nothing_at_all_decides_nothing() -> None:
    assert weigh(Facts("the frobnicator is sad")) is None
