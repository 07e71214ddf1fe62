"""Every real Postfix and Exim DSN of the MTA lab, checked against its INDEX.txt.

INDEX.txt has one line per recipient: ``file | subject | action | status |
final-recipient | diagnostic`` (the diagnostic cut to ~110 characters). It is parsed
here, not copied into the test, so a regenerated sample set is checked as it is.

The status expectation follows the parser's documented rule: the code inside the
diagnostic wins over the DSN ``Status`` summary (Exim always writes ``5.0.0`` /
``4.0.0`` there); without one, the ``Status`` field is the answer.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass

import pytest

from bounced.core.parse import parse_message
from bounced.model import Action, Kind, RecipientReport
from tests.paths import DATA

LAB = DATA / "mta-lab"
STATUS_IN_TEXT = re.compile(r"(?<![\d.])([245]\.\d{1,3}\.\d{1,3})(?![\d.]*\d)")
TYPE_PREFIX = re.compile(r"^\s*[A-Za-z][A-Za-z0-9-]*\s*;\s*")


@dataclass(frozen=True)
class IndexRow:
    file: str
    subject: str
    action: str
    status: str
    recipient: str
    diagnostic: str

    @property
    def expected_status(self) -> str:
        found = STATUS_IN_TEXT.search(self.diagnostic)
        return found.group(1) if found else self.status


def read_index() -> dict[str, list[IndexRow]]:
    rows: dict[str, list[IndexRow]] = defaultdict(list)
    for line in (LAB / "INDEX.txt").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        file, subject, action, status, recipient, diagnostic = (
            cell.strip() for cell in line.split(" | ", 5)
        )
        address = TYPE_PREFIX.sub("", recipient)
        rows[file].append(
            IndexRow(file, subject, action, status, address, TYPE_PREFIX.sub("", diagnostic))
        )
    return dict(rows)


INDEX = read_index()


def test_index_covers_every_sample() -> None:
    samples = {path.name for path in LAB.glob("*.eml")}
    assert len(samples) == 50
    assert set(INDEX) == samples


@pytest.mark.parametrize("name", sorted(INDEX))
def test_lab_dsn_matches_index(name: str) -> None:
    report = parse_message((LAB / name).read_bytes())
    rows = INDEX[name]
    by_address = {r.address: r for r in report.recipients}
    assert set(by_address) == {row.recipient for row in rows}
    assert report.subject == rows[0].subject
    for row in rows:
        got = by_address[row.recipient]
        assert got.action is Action(row.action)
        assert got.kind is Action(row.action).kind
        assert got.status == row.expected_status
        assert_diagnostic(got, row)
    assert report.kind is overall(rows)
    assert report.verp_token, "the lab sends every DSN to bounces+TOKEN@"
    assert report.problems == ()


def assert_diagnostic(got: RecipientReport, row: IndexRow) -> None:
    expected = " ".join(row.diagnostic.split())
    if expected:
        assert got.diagnostic.startswith(expected) or expected.startswith(got.diagnostic)
        assert got.diagnostic
    if expected[:3].isdigit():
        assert got.reply_code == expected[:3]


def overall(rows: list[IndexRow]) -> Kind:
    kinds = {Action(row.action).kind for row in rows}
    for kind in (Kind.FAILURE, Kind.DELAY, Kind.DELIVERED):
        if kind in kinds:
            return kind
    raise AssertionError(kinds)


def test_exim_generic_status_gives_way_to_the_diagnostic_code() -> None:
    report = parse_message((LAB / "exim-01-user-unknown-failed.eml").read_bytes())
    (recipient,) = report.recipients
    assert recipient.status == "5.1.1"
    assert recipient.reply_code == "550"


def test_expired_message_is_a_failure_with_its_temporary_code() -> None:
    report = parse_message((LAB / "postfix-14-conn-refused-expired.eml").read_bytes())
    (recipient,) = report.recipients
    assert recipient.kind is Kind.FAILURE
    assert recipient.status == "4.4.1"
    assert recipient.diagnostic.startswith("connect to 127.0.0.1[127.0.0.1]:2727")


def test_multiline_reply_is_joined_on_one_line() -> None:
    report = parse_message((LAB / "postfix-05-gmail-multiline-failed.eml").read_bytes())
    (recipient,) = report.recipients
    assert "\n" not in recipient.diagnostic
    assert recipient.diagnostic.count("550-5.1.1") >= 2


def test_global_dsn_reads_utf8_recipient() -> None:
    report = parse_message((LAB / "postfix-11-smtputf8-global-failed.eml").read_bytes())
    (recipient,) = report.recipients
    assert recipient.address == "unknown-user-müller@rcpt.test"
    assert recipient.status == "5.1.1"
    assert report.original_message_id is not None
    assert report.original_message_id.endswith("11-smtputf8-global@sender.lab.test>")


def test_exim_global_dsn_with_8bit_body() -> None:
    report = parse_message((LAB / "exim-11-smtputf8-global-failed.eml").read_bytes())
    (recipient,) = report.recipients
    assert recipient.address == "unknown-user-müller@rcpt.test"
    assert recipient.kind is Kind.FAILURE


def test_local_failure_without_diagnostic_code_takes_the_prose() -> None:
    report = parse_message((LAB / "exim-09-nodomain-failed.eml").read_bytes())
    (recipient,) = report.recipients
    assert recipient.diagnostic, "Exim writes no Diagnostic-Code for local failures"
    assert recipient.status == "5.0.0"


def test_headers_only_return_still_correlates() -> None:
    report = parse_message((LAB / "postfix-13-large-80k-failed.eml").read_bytes())
    assert report.original_message_id is not None
    names = {name.lower() for name, _ in report.original_headers}
    assert {"message-id", "subject", "to"} <= names
    assert "x-lab-token" in names


DSN_PART = re.compile(rb"(?i)(content-type:\s*)message/(global-)?delivery-status")


@pytest.mark.parametrize("name", sorted(INDEX))
def test_prose_alone_names_the_same_recipients(name: str) -> None:
    """Without its delivery-status part and X-Failed-Recipients, each lab bounce still
    gives its recipients from the human-readable text (how non-DSN vendors are read)."""
    raw = DSN_PART.sub(rb"\1application/x-removed", (LAB / name).read_bytes())
    raw = re.sub(rb"(?im)^X-Failed-Recipients:", b"X-Removed:", raw)
    report = parse_message(raw)
    assert {r.address for r in report.recipients} == {row.recipient for row in INDEX[name]}
    assert all(r.diagnostic for r in report.recipients)
