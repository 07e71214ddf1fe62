"""Evidence step "receiving provider": when the mail went to a known provider (by the
remote MTA's host name, the reporting MTA's when no remote one is named, or the
recipient's domain), the provider's own error codes and sentences decide first. Texts
follow the providers' tables in the reference data."""

from __future__ import annotations

import pytest

from bounced.core.evidence import provider_of
from bounced.core.normalize import normalize
from bounced.core.qualify import load_default_rules, qualify
from bounced.model import Action, FailureType, Kind, Reason, RecipientReport
from tests.core.qualify.evidence_helpers import judged, verdict

HARD, SOFT = FailureType.HARD, FailureType.SOFT


@pytest.mark.parametrize(
    ("remote", "address", "reporting", "expected"),
    [
        ("gmail-smtp-in.l.google.com", "jane@example.org", None, "google"),
        (None, "jane@gmail.com", None, "google"),
        ("example-org.mail.protection.outlook.com", "jane@example.org", None, "microsoft"),
        (None, "jane@example.org", "BN8PR01MB1234.namprd01.prod.outlook.com", "microsoft"),
        ("mta7.am0.yahoodns.net", "jane@example.org", None, "yahooinc"),
        (None, "jane@nc.rr.com", None, "spectrum"),  # a subdomain of a provider's domain
        ("mx.example.org", "jane@example.org", None, None),
        (None, None, None, None),
    ],
)
def test_the_provider_is_known_by_host_reporter_or_domain(
    remote: str | None, address: str | None, reporting: str | None, expected: str | None
) -> None:
    assert provider_of(remote, address, reporting_mta=reporting) == expected


def test_a_named_remote_host_wins_over_the_reporting_one() -> None:
    # the reporter only refused the mail itself when it names no remote host
    assert provider_of("mx.example.org", "jane@example.org",
                       reporting_mta="mail-sor-f41.google.com") is None


def test_a_provider_s_own_code_decides_over_a_user_unknown_status() -> None:
    # GoDaddy's IB607 is a rate limit, written under 5.1.1
    text = ("550 5.1.1 <jane@example.org> - 192.0.2.1 has sent to too many recipients "
            "this hour. IB607 <http://x.co/rlbounce>")
    found = judged(text, status="5.1.1", stage="RCPT", provider="godaddy")
    assert verdict(found) == (SOFT, Reason.REFUSED, "provider:godaddy:IB607")


@pytest.mark.parametrize(
    ("provider", "text", "reason", "ref"),
    [
        ("franceptt", "550 5.5.0 Adresse destinataire invalide. Invalid recipient. "
         "LPN007_416", Reason.USER_UNKNOWN, "franceptt:416"),
        ("franceptt", "550 mwinf5c04 ME Adresse IP source bloquee pour incident de spam. "
         "OFR006_102", Reason.REFUSED, "franceptt:102"),
        ("cox", "550 5.1.0 <sender@example.org> sender rejected. AUP#CXBL",
         Reason.REFUSED, "cox:CXBL"),
        ("spectrum", "550 5.1.0 <sender@example.org> sender rejected. AUP#In-1310",
         Reason.REFUSED, "spectrum:1310"),  # in the 1300-1340 range: too many connections
        ("iua", "550 Mailbox is frozen. See http://mail.i.ua/err/3/",
         Reason.ACCOUNT_DISABLED, "iua:3"),
    ],
)
def test_providers_error_codes_found_in_the_text(
    provider: str, text: str, reason: Reason, ref: str
) -> None:
    found = judged(text, provider=provider)
    assert (found.reason, str(found.qualified_by)) == (reason, f"provider:{ref}")


def test_a_provider_s_no_such_user_sentence_is_strong_evidence() -> None:
    text = ("554 delivery error: dd This user doesn't have a yahoo.com account "
            "(jane@yahoo.com) [0] - mta1.mail.example.yahoo.com")
    assert verdict(judged(text, provider="yahooinc")) == (
        HARD, Reason.USER_UNKNOWN, "provider:yahooinc:userunknown")
    # the same words from an unknown receiver, with no stage and no code: a filter
    assert judged(text).failure_type is SOFT


def test_a_provider_sentence_must_come_with_its_own_status_code() -> None:
    # Microsoft's "5.7.504 Recipient address rejected: Access denied" is a suspended
    # recipient; the same words under 5.4.1 are Directory Based Edge Blocking
    text = "550 {} Recipient address rejected: Access denied"
    assert judged(text.format("5.7.504"), status="5.7.504",
                  provider="microsoft").reason is Reason.ACCOUNT_DISABLED
    assert judged(text.format("5.4.1"), status="5.4.1",
                  provider="microsoft").reason is Reason.USER_UNKNOWN


def test_a_provider_code_range_bounds_the_status_detail() -> None:
    text = "550 {} Access denied, banned sending IP [192.0.2.1]"
    inside = judged(text.format("5.7.606"), status="5.7.606", provider="microsoft")
    assert str(inside.qualified_by) == "provider:microsoft:blocked"
    outside = judged(text.format("5.7.650"), status="5.7.650", provider="microsoft")
    assert not str(outside.qualified_by).startswith("provider:")


def test_google_groups_refusals_in_any_language_are_refusals() -> None:
    text = ("Hallo sender@example.org, die Gruppe team ist nicht vorhanden ... "
            "https://groups.google.com/support/")
    assert verdict(judged(text, provider="googlegroups")) == (
        SOFT, Reason.REFUSED, "provider:googlegroups:rejected")


def test_qualify_finds_the_provider_from_the_report() -> None:
    text = "550 5.1.1 The email account that you tried to reach does not exist."
    recipient = RecipientReport("jane@gmail.com", Kind.FAILURE, Action.FAILED,
                                status="5.1.1", reply_code="550", diagnostic=text)
    found = qualify(recipient, normalize(text), rules=load_default_rules())
    assert found is not None
    assert str(found.qualified_by) == "provider:google:userunknown"
