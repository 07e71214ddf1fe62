"""What ties a bounce to the message that caused it (docs/correlation.md), and report metadata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bounced.core.parse import parse_message
from bounced.core.parse.message import parse_date
from tests.paths import DATA

DATA = DATA
LAB = DATA / "mta-lab"
CORPUS = DATA / "corpus" / "sisimai" / "eml"


def test_verp_token_from_the_bounce_address() -> None:
    report = parse_message((LAB / "postfix-01-user-unknown-failed.eml").read_bytes())
    assert report.verp_token == "01-user-unknown"


def test_verp_token_is_what_follows_the_first_plus() -> None:
    raw = (DATA / "bad" / "not-a-bounce-human-reply.eml").read_bytes()
    assert parse_message(raw.replace(b"bounces+abc123@", b"bounces+a+b@")).verp_token == "a+b"


def test_no_verp_token_without_plus() -> None:
    assert parse_message((DATA / "bad" / "not-a-bounce-spam.eml").read_bytes()).verp_token is None


def test_original_message_id_and_custom_headers_from_the_returned_message() -> None:
    report = parse_message((LAB / "postfix-12-multi-hdrs-envid-failed.eml").read_bytes())
    assert report.original_message_id is not None
    assert report.original_message_id.startswith("<")
    names = [name.lower() for name, _ in report.original_headers]
    assert "x-lab-token" in names
    assert "received" not in names
    assert len(report.original_headers) <= 20


def test_original_message_id_from_headers_quoted_in_prose() -> None:
    report = parse_message((CORPUS / "lhost-qmail-01.eml").read_bytes())
    assert report.original_message_id == (
        "<000000000.9999999999999.JavaMail.postmaster@mailhub>")


def test_subject_sender_and_date() -> None:
    report = parse_message((LAB / "postfix-01-user-unknown-failed.eml").read_bytes())
    assert report.subject == "Undelivered Mail Returned to Sender"
    assert report.sender == "MAILER-DAEMON@mta.lab.test"
    assert report.date == datetime(2026, 11, 22, 13, 29, 14, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("Thu, 29 Apr 2010 23:45:40 +0900",
         datetime(2010, 4, 29, 23, 45, 40, tzinfo=UTC) - timedelta(hours=9)),
        ("24 Jun 2024 08:48:01 -0000", datetime(2024, 6, 24, 8, 48, 1, tzinfo=UTC)),
        ("not a date", None),
        ("", None),
    ],
)
def test_dates_are_tz_aware_or_none(value: str, expected: datetime | None) -> None:
    assert parse_date(value) == expected
