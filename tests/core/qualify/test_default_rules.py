"""The shipped default rules (bounced/data/rules.toml) on the wordings they come from,
and the literal prefilter that makes rules fast without changing what they match.

Everything else the shipped knowledge decides is the evidence procedure's, tested step
by step in test_evidence_*.py."""

from __future__ import annotations

import json
import re

import pytest

from bounced.core.normalize import normalize, normalize_sms
from bounced.core.qualify import (
    _matcher,
    load_default_rules,
    match_rule,
    qualify,
    required_literals,
)
from bounced.model import Action, FailureType, Kind, Reason, RecipientReport, Rule
from tests.paths import DATA

DEFAULTS = load_default_rules()
HARD, SOFT = FailureType.HARD, FailureType.SOFT

WORDINGS = [
    # a sending service's own statement that it suppressed the address (docs/accuracy.md:
    # Sisimai's suppressed is hard / Address in quarantine)
    ("Amazon SES has suppressed sending to this address because it has a recent history "
     "of bouncing as an invalid address.", HARD, Reason.QUARANTINED, 21),
    ("Not delivering to previously bounced address", HARD, Reason.QUARANTINED, 21),
    # a recipient that exists and refuses this sender: not an unknown address, whatever
    # code comes with it (Facebook's RCP-P2)
    ("550 5.1.1 RCP-P2 Refused due to recipient preferences", SOFT, Reason.REFUSED, 22),
    # a mail system's own, definite statement about its own directory
    ("User jane (jane@example.org) not listed in public Name & Address Book",
     HARD, Reason.USER_UNKNOWN, 23),
    ("jane@example.org is not listed in Domino Directory", HARD, Reason.USER_UNKNOWN, 23),
    ("The recipient name is not recognized MSEXCH:IMS:EXAMPLE:ORG:MAIL1 0 (000C05A6) "
     "Unknown Recipient", HARD, Reason.USER_UNKNOWN, 24),
    ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     HARD, Reason.USER_UNKNOWN, 25),
    ("550 5.1.351 Remote server returned unknown recipient or mailbox unavailable -> 550 "
     "mailbox unavailable", HARD, Reason.USER_UNKNOWN, 26),
    ("Unknown user: jane@example.org", HARD, Reason.USER_UNKNOWN, 27),
    ("Unable to deliver message to <jane@example.org> (and other recipients in the same "
     "domain). Please check if address is correct.", HARD, Reason.USER_UNKNOWN, 28),
]


@pytest.mark.parametrize(("raw", "failure_type", "reason", "rule_id"), WORDINGS)
def test_shipped_rules_on_the_wordings_they_come_from(
    raw: str, failure_type: FailureType, reason: Reason, rule_id: int
) -> None:
    recipient = RecipientReport("jane@example.org", Kind.FAILURE, Action.FAILED,
                                diagnostic=raw)
    verdict = qualify(recipient, normalize(raw), rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (failure_type, reason), raw
    assert str(verdict.qualified_by) == f"rule:{rule_id}"


def test_a_relayed_unknown_user_is_not_the_receiving_systems_own_statement() -> None:
    # IMail's notice is its own statement only when it is the whole text; a remote "550
    # Unknown user" with no stage and no code is left to the evidence procedure (soft)
    text = normalize("550 Unknown user: jane@example.org")
    assert match_rule(text, DEFAULTS) is None


def _corpus_texts() -> list[str]:
    path = DATA / "corpus" / "sisimai" / "expected.json"
    rows = (row for email in json.loads(path.read_text("utf-8")) for row in email["expected"])
    texts = {normalize(row["diagnosticcode"]) for row in rows}
    texts.update(normalize(raw) for raw, _, _, _ in WORDINGS)
    return sorted(texts)


def test_the_literal_prefilter_never_changes_the_first_matching_rule() -> None:
    plain = [(rule, re.compile(rule.pattern, re.IGNORECASE)) for rule in DEFAULTS]

    def holds(rule: Rule, status: str) -> bool:
        return rule.command is None and (
            rule.status is None or re.fullmatch(rule.status, status, re.IGNORECASE) is not None
        )

    for text in _corpus_texts():
        for status in ("", "5.0.0", "5.1.1"):
            expected = next(
                (rule for rule, pattern in plain if holds(rule, status) and pattern.search(text)),
                None,
            )
            assert match_rule(text, DEFAULTS, status=status or None) is expected, text


@pytest.mark.parametrize(
    ("pattern", "literals"),
    [
        (r"mailbox full|over quota", {"mailbox full", "over quota"}),
        (r"\bSPF\b", {"spf"}),
        (r"e-?mail (?:box )?full", {"mail "}),
        (r"(?:ab|cd)x", None),  # nothing of 3 characters is required
        (r"user (?:unknown)?", {"user "}),
        (r"[a-z]+ unknown", {" unknown"}),
    ],
)
def test_required_literals(pattern: str, literals: set[str] | None) -> None:
    found = required_literals(pattern)
    assert (set(found) if found is not None else None) == literals


def test_the_rule_search_is_cached_per_text() -> None:
    matcher = _matcher(DEFAULTS)
    text = normalize("550 5.1.1 <cache-test@example.org>: User unknown")
    first = match_rule(text, DEFAULTS)
    assert (text, None, None) in matcher.cache
    assert match_rule(text, DEFAULTS) is first


@pytest.mark.parametrize(
    ("text", "failure_type", "reason"),
    [
        ("Unregistered", HARD, Reason.USER_UNKNOWN),  # APNs
        ("UNREGISTERED", HARD, Reason.USER_UNKNOWN),  # FCM v1
        ("SENDER_ID_MISMATCH", SOFT, Reason.USER_UNKNOWN),
        ("INVALID_ARGUMENT", FailureType.IGNORED, Reason.NOT_DEFINED),
        ("THIRD_PARTY_AUTH_ERROR", FailureType.IGNORED, Reason.REFUSED),
        ("UNAVAILABLE", FailureType.IGNORED, Reason.REFUSED),
        ("Payload too long", SOFT, Reason.REFUSED),
    ],
)
def test_push_error_names_map_as_the_reference_tables_say(
    text: str, failure_type: FailureType, reason: Reason
) -> None:
    verdict = qualify(RecipientReport("token", Kind.FAILURE), text, rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (failure_type, reason)


def test_an_undelivered_sms_status_report_is_hard_refused() -> None:
    text, _first = normalize_sms("id:42 sub:001 dlvrd:000 submit date:2611221305 "
                                 "done date:2611221306 stat:UNDELIV err:001 text:Hello")
    verdict = qualify(RecipientReport("+33600000000", Kind.FAILURE), text, rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (HARD, Reason.REFUSED)
    delivered, _first = normalize_sms("id:42 stat:DELIVRD err:000 text:Hello")
    success = match_rule(delivered, DEFAULTS)  # rule 8: a DELIV... status is a success
    assert success is not None and success.id == 8
    assert (success.failure_type, success.reason) == (FailureType.IGNORED, Reason.NOT_DEFINED)
