"""Prose bounces whose error text is not on the recipient's own line: a notice split
into titled sections (m-FILTER style: the address, then "-------server message", then
"-------SMTP command").

The samples in tests/data/prose are synthetic, written in the layout those MTAs use.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bounced.analyse import judge
from bounced.model import FailureType, Kind, Reason, Verdict
from bounced.parse import codes, parse_message, vendors
from bounced.qualify import load_default_rules

PROSE = Path(__file__).parents[1] / "data" / "prose"


def verdicts(name: str) -> dict[str, Verdict]:
    report = parse_message((PROSE / name).read_bytes())
    assert report.kind is Kind.FAILURE, report.problems
    return {v.recipient.address or "": v for v in judge(report, load_default_rules())}


# --- titled sections ---------------------------------------------------------------------


def test_server_message_section_is_the_error_and_smtp_command_section_the_command() -> None:
    (verdict,) = verdicts("sectioned-server-message.eml").values()
    assert verdict.recipient.address == "bob@example.net"
    assert verdict.recipient.diagnostic == "550 Unknown recipient <bob@example.net>"
    assert verdict.recipient.smtp_command == "DATA"
    # an unknown-user answer to DATA is a content filter (rule 19), not a missing mailbox
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.REFUSED)


def test_server_message_written_as_an_address_line_keeps_its_reply_code() -> None:
    (verdict,) = verdicts("sectioned-address-line.eml").values()
    assert verdict.recipient.diagnostic == "550 No such user"
    assert verdict.recipient.reply_code == "550"
    assert verdict.recipient.smtp_command == "DATA"
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.REFUSED)


@pytest.mark.parametrize(
    "title", ["-------server message", "----- Error message -----", "=== SMTP message ==="]
)
def test_a_section_titled_as_the_error_is_not_the_returned_message(title: str) -> None:
    text = f"Delivery failed.\nbob@example.net\n\n{title}\n550 No such user\n"
    assert vendors.human_text(text) == text


@pytest.mark.parametrize(
    "title", ["----- Original message -----", "------- Returned Message --------",
              "   ----- Unsent message follows -----"]
)
def test_the_returned_message_separators_still_cut(title: str) -> None:
    text = f"Delivery failed.\nbob@example.net\n\n{title}\nFrom: alice@example.org\n"
    assert vendors.human_text(text) == "Delivery failed.\nbob@example.net\n"


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("-------SMTP command\nDATA\n", "DATA"),
        ("SMTP command: RCPT TO:<bob@example.net>\n", "RCPT"),
        ("Failed command: MAIL FROM:<alice@example.org>\n", "MAIL"),
        ("  Last command: ehlo\n", "EHLO"),
        # not a label of its own: prose that merely mentions a command
        ("Please check the command DATA in your client.\n", None),
        ("The SMTP command was accepted.\n", None),
    ],
)
def test_smtp_command_under_its_own_label(text: str, command: str | None) -> None:
    assert codes.find_section_command(text) == command
