"""Evidence step "phrase classes in a fixed order": with no decisive code, the words of
the text are matched against each class's wordings, most specific class first, then the
broader causes. Texts are written from the reference data's wordings."""

from __future__ import annotations

import pytest

from bounced.core.evidence import FIRST_PASS, SECOND_PASS, _compiled, haystack
from bounced.core.knowledge import CLASS_VERDICTS, load_knowledge
from bounced.model import FailureType, Reason
from tests.core.qualify.evidence_helpers import judged, verdict

SOFT = FailureType.SOFT


@pytest.mark.parametrize(
    ("text", "klass", "reason"),
    [
        ("552 Mailbox is full", "mailboxfull", Reason.MAILBOX_FULL),
        ("552 Message size exceeds fixed maximum message size", "mesgtoobig", Reason.REFUSED),
        ("550 This account has been temporarily suspended", "suspend",
         Reason.ACCOUNT_DISABLED),
        ("550 Relay access denied", "norelaying", Reason.REFUSED),
        ("550 Please inspect your SPF settings", "authfailure", Reason.REFUSED),
        ("550 Client host rejected: cannot find your hostname", "requireptr", Reason.REFUSED),
        ("550 Host or domain name not found", "hostunknown", Reason.INVALID_DOMAIN),
        ("550 Your IP address is listed in the RBL", "blocked", Reason.REFUSED),
        ("550 Too many connections", "toomanyconn", Reason.REFUSED),
        ("550 Virus detected", "virusdetected", Reason.REFUSED),
        ("550 Local Policy Violation", "policyviolation", Reason.REFUSED),
        ("451 Local error in processing", "systemerror", Reason.UNREACHABLE),
        ("554 Too many hops", "networkerror", Reason.UNREACHABLE),
        ("550 Host does not accept mail", "notaccept", Reason.INVALID_DOMAIN),
        ("This message has been in the queue too long", "expired", Reason.UNREACHABLE),
        ("procmail: Quota exceeded while writing", "mailboxfull", Reason.MAILBOX_FULL),
        ("Command died with status 1", "mailererror", Reason.UNREACHABLE),
    ],
)
def test_each_class_is_known_by_its_wording(text: str, klass: str, reason: Reason) -> None:
    found = judged(text)
    assert (found.klass, found.reason, str(found.qualified_by)) == (
        klass, reason, f"phrase:{klass}")


def test_fragments_in_order_with_anything_between() -> None:
    # a "pair" of the reference data: "this user doesn't have a" ... "account"
    found = judged("554 This user doesn't have a example.org account", stage="RCPT")
    assert found.klass == "userunknown"
    compiled = _compiled(load_knowledge())
    assert "userunknown" not in compiled.said("554 this account user doesn't have a")


def test_the_first_class_in_the_order_wins() -> None:
    # a full mailbox is more specific than a refusal of the message
    text = "552 Message rejected: mailbox is full"
    assert FIRST_PASS.index("mailboxfull") < FIRST_PASS.index("rejected")
    assert judged(text, stage="DATA").klass == "mailboxfull"


def test_wordings_match_the_words_not_the_addresses() -> None:
    # an address whose local part reads like a wording says nothing
    compiled = _compiled(load_knowledge())
    assert compiled.said(haystack("550 <mailbox.full@example.org> rejected")) == frozenset()
    assert haystack("550  <Jane.Doe@Example.ORG>\n  Gone") == "550 <*> gone"


def test_an_unless_fragment_cancels_the_wording_it_belongs_to() -> None:
    compiled = _compiled(load_knowledge())
    assert "rejected" in compiled.said("550 sender address rejected")
    assert "rejected" not in compiled.said("550 recipient address rejected")


def test_the_second_pass_adds_the_broader_causes() -> None:
    assert set(SECOND_PASS) - set(FIRST_PASS) >= {
        "virusdetected", "policyviolation", "systemerror", "networkerror", "expired",
        "mailererror", "contenterror", "systemfull", "notaccept", "securityerror"}
    # a spam wording before DATA does not count in the first pass, but in the second
    found = judged("550 Message detected as spam", stage="RCPT")
    assert verdict(found) == (SOFT, Reason.REFUSED, "phrase:spamdetected")


def test_every_class_of_the_order_has_a_verdict() -> None:
    assert set(FIRST_PASS) | set(SECOND_PASS) <= set(CLASS_VERDICTS)
    hard = {klass for klass, (ftype, _) in CLASS_VERDICTS.items()
            if ftype is FailureType.HARD}
    assert hard == {"userunknown", "hasmoved", "suppressed"}
