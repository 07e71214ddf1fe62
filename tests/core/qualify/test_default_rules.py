"""The shipped default rules on the standard wordings of real MTAs and providers, and
the literal prefilter that makes them fast without changing what they match."""

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
    # unknown users
    ("550 5.1.1 <jane@example.org>: Recipient address rejected: User unknown in local "
     "recipient table", HARD, Reason.USER_UNKNOWN),
    ("550-5.1.1 The email account that you tried to reach does not exist. Please try "
     "double-checking the recipient's email address for typos", HARD, Reason.USER_UNKNOWN),
    ("554 delivery error: dd This user doesn't have a yahoo.com account "
     "(jane@yahoo.com) [0]", HARD, Reason.USER_UNKNOWN),
    ("550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient not found by SMTP address lookup",
     HARD, Reason.USER_UNKNOWN),
    ("550 sorry, no mailbox here by that name (#5.1.1)", HARD, Reason.USER_UNKNOWN),
    ("550 Requested action not taken: mailbox unavailable", HARD, Reason.USER_UNKNOWN),
    ("550 User <jane@example.org> unknown", HARD, Reason.USER_UNKNOWN),
    # the sending service's own suppression list (docs/accuracy.md: suppressed)
    ("Amazon SES has suppressed sending to this address because it has a recent history "
     "of bouncing as an invalid address.", HARD, Reason.QUARANTINED),
    # full mailboxes and disabled accounts
    ("552 5.2.2 <jane@example.org>: Recipient address rejected: Mailbox full",
     SOFT, Reason.MAILBOX_FULL),
    ("452 4.2.2 The email account that you tried to reach is over quota",
     SOFT, Reason.MAILBOX_FULL),
    ("/home/jane/Maildir/tmp/123: Disk quota exceeded", SOFT, Reason.MAILBOX_FULL),
    ("552 User has too many messages on the server", SOFT, Reason.MAILBOX_FULL),
    ("550 5.2.1 The email account that you tried to reach is disabled.",
     SOFT, Reason.ACCOUNT_DISABLED),
    ("550 Mailbox is frozen.", SOFT, Reason.ACCOUNT_DISABLED),
    ("550 5.2.1 This account has been permanently disabled", HARD, Reason.ACCOUNT_DISABLED),
    ("550 This mailbox has been deleted", HARD, Reason.USER_UNKNOWN),
    # domains
    ("Host or domain name not found. Name service error for name=example.invalid type=A: "
     "Host not found", SOFT, Reason.INVALID_DOMAIN),
    ("Sorry, I couldn't find any host named example.invalid. (#5.1.2)",
     SOFT, Reason.INVALID_DOMAIN),
    ("550 Unrouteable address", SOFT, Reason.INVALID_DOMAIN),
    # refusals of the sender or the message
    ("554 5.7.1 Service unavailable; Client host [192.0.2.1] blocked using zen.spamhaus.org",
     SOFT, Reason.REFUSED),
    ("550 5.7.26 Unauthenticated email from example.com is not accepted due to domain's "
     "DMARC policy", SOFT, Reason.REFUSED),
    ("550 5.7.25 The IP address sending this message does not have a PTR record setup",
     SOFT, Reason.REFUSED),
    ("554 5.7.1 <jane@example.org>: Relay access denied", SOFT, Reason.REFUSED),
    ("552 5.3.4 Message size exceeds fixed maximum message size", SOFT, Reason.REFUSED),
    ("421 4.7.0 Too many connections from your IP, try again later", SOFT, Reason.REFUSED),
    ("450 4.7.1 Too many messages from 192.0.2.1 in the last hour", SOFT, Reason.REFUSED),
    ("421 Deferred: Connection refused by mx.example.org", SOFT, Reason.REFUSED),
    ("554 5.7.0 Reject, id=12345 - SPAM", SOFT, Reason.REFUSED),
    ("550 Virus Detected; Content Rejected", SOFT, Reason.REFUSED),
    ("554 5.7.9 Message not accepted for policy reasons.", SOFT, Reason.REFUSED),
    # a block that mentions a user is still a block: never quarantine on it
    ("550 5.7.1 User unknown or IP 192.0.2.1 listed in Spamhaus", SOFT, Reason.REFUSED),
    # unknown user after DATA: a content filter, not a missing mailbox
    ("host mx.example.org[192.0.2.1] said: 550 Unknown user jane@example.org (in reply to "
     "end of DATA command)", SOFT, Reason.REFUSED),
    # ... unless an X.1.Z code in the text says the address itself is bad
    ("host mx.example.org[192.0.2.1] said: 550 5.1.1 <jane@example.org>: User unknown (in "
     "reply to end of DATA command)", HARD, Reason.USER_UNKNOWN),
    # network, system, TLS, greylisting
    ("450 4.7.1 <jane@example.org>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/example.org.html", SOFT, Reason.UNREACHABLE),
    ("Host or domain name not found. Name service error for name=example.org type=MX: "
     "Host not found, try again", SOFT, Reason.UNREACHABLE),
    ("connect to mx.example.org[192.0.2.1]:25: Connection timed out", SOFT, Reason.UNREACHABLE),
    ("connect to mx.example.org[192.0.2.1]:25: Connection refused", SOFT, Reason.UNREACHABLE),
    ("554 5.4.6 Too many hops", SOFT, Reason.UNREACHABLE),
    ("451 4.3.0 Error: queue file write error", SOFT, Reason.UNREACHABLE),
    ("530 5.7.0 Must issue a STARTTLS command first", SOFT, Reason.UNREACHABLE),
    # the MTA gave up after its attempts (docs/policy.md): normalization makes the count with
    # its unit ("20 attempts") variable, the rule must still see the wording
    ("Delivery failed 20 attempts: jane@example.org", SOFT, Reason.UNREACHABLE),
    ("Message delivery to jane@example.org failed after 5 attempts.", SOFT, Reason.UNREACHABLE),
    # permanent unreachability is hard (docs/reasons.md)
    ("Destination host is permanently unreachable", HARD, Reason.UNREACHABLE),
]


@pytest.mark.parametrize(("raw", "failure_type", "reason"), WORDINGS)
def test_standard_wordings(raw: str, failure_type: FailureType, reason: Reason) -> None:
    recipient = RecipientReport("jane@example.org", Kind.FAILURE, Action.FAILED)
    verdict = qualify(recipient, normalize(raw), rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (failure_type, reason), (
        f"{raw!r} -> {verdict.qualified_by}"
    )
    assert verdict.qualified_by.source.value == "rule"


def _corpus_texts() -> list[str]:
    path = DATA / "corpus" / "sisimai" / "expected.json"
    rows = (row for email in json.loads(path.read_text("utf-8")) for row in email["expected"])
    texts = {normalize(row["diagnosticcode"]) for row in rows}
    texts.update(normalize(raw) for raw, _, _ in WORDINGS)
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
    assert match_rule(delivered, DEFAULTS) is None


@pytest.mark.parametrize(
    ("status", "command", "failure_type", "reason"),
    [
        # RCPT TO accepted the address, DATA was refused: a content filter (rule 19)...
        ("5.0.0", "DATA", SOFT, Reason.REFUSED),
        # ... also when the notice carries no code at all, only the command it names
        (None, "DATA", SOFT, Reason.REFUSED),
        # an X.1.Z code says the address itself is bad, whatever the command
        ("5.1.1", "DATA", HARD, Reason.USER_UNKNOWN),
        # answered to RCPT TO, or no command known: an unknown address
        (None, "RCPT", HARD, Reason.USER_UNKNOWN),
        (None, None, HARD, Reason.USER_UNKNOWN),
    ],
)
def test_unknown_user_answered_to_data_is_a_filter(
    status: str | None, command: str | None, failure_type: FailureType, reason: Reason
) -> None:
    recipient = RecipientReport(
        "jane@example.org", Kind.FAILURE, Action.FAILED, status=status, smtp_command=command
    )
    verdict = qualify(recipient, normalize("550 unknown user <jane@example.org>"), rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (failure_type, reason)


@pytest.mark.parametrize(
    ("raw", "failure_type", "reason"),
    [
        # the server's greeting refused us: a block of our IP (rule 102)
        ("554 mx.example.org ESMTP Service refused, please contact your provider",
         SOFT, Reason.REFUSED),
        ("421 Service refuse. Veuillez essayer plus tard. Service refused, please try later.",
         SOFT, Reason.REFUSED),
        # no server answered at all: the network, not a refusal
        ("connect to mx.example.org[192.0.2.1]:25: Connection refused", SOFT, Reason.UNREACHABLE),
    ],
)
def test_refusals_at_the_connection_stage(
    raw: str, failure_type: FailureType, reason: Reason
) -> None:
    recipient = RecipientReport(
        "jane@example.org", Kind.FAILURE, Action.FAILED, smtp_command="CONN"
    )
    verdict = qualify(recipient, normalize(raw), rules=DEFAULTS)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (failure_type, reason)
