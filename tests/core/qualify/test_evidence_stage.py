"""Evidence step "SMTP stage": where in the dialogue a failure was said changes what its
words mean. A user-unknown wording is strong evidence only as the answer to RCPT TO;
after DATA, or with neither a stage nor a code, it is a filter's refusal (soft). Texts
are written from the reference data's wordings."""

from __future__ import annotations

import pytest

from bounced.core.normalize import normalize
from bounced.core.qualify import load_default_rules, qualify
from bounced.model import Action, FailureType, Kind, Reason, RecipientReport
from tests.core.qualify.evidence_helpers import judged, verdict

HARD, SOFT = FailureType.HARD, FailureType.SOFT
UNKNOWN = "550 <jane@example.org>: User unknown"


def test_a_user_unknown_answer_to_rcpt_to_is_hard() -> None:
    assert verdict(judged(UNKNOWN, stage="RCPT")) == (
        HARD, Reason.USER_UNKNOWN, "phrase:userunknown+stage:RCPT")


@pytest.mark.parametrize("stage", ["DATA", None])
def test_the_same_wording_after_data_or_with_no_stage_is_a_filter(stage: str | None) -> None:
    assert verdict(judged(UNKNOWN, stage=stage)) == (
        SOFT, Reason.REFUSED, f"phrase:userunknown+stage:{stage or 'none'}")


def test_an_x_1_1_code_is_strong_evidence_whatever_the_stage() -> None:
    # Sendmail reports RCPT refusals after DATA ("no valid recipients")
    found = judged("550 5.1.1 <jane@example.org>... User unknown", status="5.1.1",
                   stage="DATA")
    assert (found.failure_type, found.reason) == (HARD, Reason.USER_UNKNOWN)


def test_the_stage_is_named_beside_the_code_when_known() -> None:
    found = judged("550 5.1.1 <jane@example.org>: no mailbox here", status="5.1.1",
                   stage="RCPT")
    assert str(found.qualified_by) == "status:5.1.1+stage:RCPT"


def test_a_refusal_wording_counts_at_mail_from() -> None:
    found = judged("550 5.7.1 Sender rejected", status="5.7.1", stage="MAIL")
    assert verdict(found) == (SOFT, Reason.REFUSED, "phrase:rejected+stage:MAIL")


def test_spam_wording_is_a_verdict_on_the_message_only_once_it_was_sent() -> None:
    text = "554 5.7.1 Message rejected as spam; client host blocked using zen.spamhaus.org"
    assert judged(text, status="5.7.1", stage="DATA").klass == "spamdetected"
    # before DATA the receiver has not seen the message: the block of our IP it is
    assert judged(text, status="5.7.1", stage="RCPT").klass == "blocked"


@pytest.mark.parametrize("stage", ["CONN", "HELO", "EHLO"])
def test_a_refusal_in_the_greeting_is_a_block_of_our_ip(stage: str) -> None:
    found = judged("554 mx.example.org ESMTP not accepting mail from you", reply="554",
                   stage=stage)
    assert verdict(found) == (SOFT, Reason.REFUSED, f"stage:{stage}")


def test_a_try_later_in_the_greeting_of_a_failed_delivery_is_still_a_block() -> None:
    text = "host mx.example.org refused to talk to me: 421 Service refused, try later"
    assert verdict(judged(text, reply="421", stage="CONN")) == (
        SOFT, Reason.REFUSED, "stage:CONN")
    # while the MTA still retries, it is a delay like any other
    assert verdict(judged(text, reply="421", stage="CONN", delayed=True)) == (
        SOFT, Reason.UNREACHABLE, "class:4")


def test_the_parser_s_command_reaches_the_procedure_through_qualify() -> None:
    def qualified(command: str | None) -> tuple[FailureType, Reason]:
        recipient = RecipientReport("jane@example.org", Kind.FAILURE, Action.FAILED,
                                    diagnostic=UNKNOWN, smtp_command=command)
        found = qualify(recipient, normalize(UNKNOWN), rules=load_default_rules())
        assert found is not None
        return found.failure_type, found.reason

    assert qualified("RCPT") == (HARD, Reason.USER_UNKNOWN)
    assert qualified("rcpt") == (HARD, Reason.USER_UNKNOWN)
    assert qualified("DATA") == (SOFT, Reason.REFUSED)
    assert qualified(None) == (SOFT, Reason.REFUSED)
