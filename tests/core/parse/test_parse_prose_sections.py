"""Prose bounces whose error text is not on the recipient's own line: a notice split
into titled sections (m-FILTER style: the address, then "-------server message", then
"-------SMTP command"), and Sendmail transcripts, where the remote reply ("<<< 553 ...")
or the local mailer's complaint comes *before* the per-recipient summary line
("554 <a>... Remote protocol error", "554 <a>... Service unavailable").

The samples in tests/data/prose are synthetic, written in the layout those MTAs use.
"""

from __future__ import annotations

import pytest

from bounced.core.judge import judge
from bounced.core.parse import commands, parse_message, vendors
from bounced.core.qualify import load_default_rules
from bounced.model import FailureType, Kind, Reason, Verdict
from tests.paths import DATA

PROSE = DATA / "prose"


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
    assert commands.find_section_command(text) == command


# --- Sendmail transcripts ------------------------------------------------------------


def test_remote_reply_before_the_summary_line_is_part_of_the_error() -> None:
    found = verdicts("sendmail-transcript-mail-from.eml")
    assert set(found) == {"bob@example.net", "carol@example.net", "dave@example.com"}
    reply = "553 <alice@example.org>... Sender domain must resolve"
    # MAIL FROM was refused: every recipient of that session fails the same way
    for address in ("bob@example.net", "carol@example.net"):
        verdict = found[address]
        assert verdict.recipient.diagnostic == f"554 Remote protocol error: {reply}"
        assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.REFUSED)
    # the next session's reply belongs to its own recipient only
    dave = found["dave@example.com"]
    assert "Sender domain" not in dave.recipient.diagnostic
    assert (dave.failure_type, dave.reason) == (FailureType.HARD, Reason.USER_UNKNOWN)


def test_local_mailer_complaint_before_the_summary_line_is_part_of_the_error() -> None:
    (verdict,) = verdicts("sendmail-local-mailer.eml").values()
    assert verdict.recipient.diagnostic == (
        '554 Service unavailable: procmail: Quota exceeded while writing "/var/mail/bob"'
    )
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.MAILBOX_FULL)


def test_summary_lines_outside_a_transcript_take_nothing_from_the_lines_above() -> None:
    text = (
        "The following recipients could not be reached\n"
        "554 <bob@example.net>... Service unavailable\n"
    )
    (found,) = vendors.scan_recipients(text)
    assert found.diagnostic == "554 Service unavailable"


# --- a refusal in the server's greeting --------------------------------------------------


def test_greeting_refusal_named_only_in_the_prose_is_a_block_of_our_ip() -> None:
    # the DSN's Diagnostic-Code lacks Postfix's "refused to talk to me", the prose has it
    (verdict,) = verdicts("postfix-greeting-refused.eml").values()
    assert verdict.recipient.smtp_command == "CONN"
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.REFUSED)
    assert verdict.qualification is not None
    assert str(verdict.qualification.qualified_by) == "stage:CONN"


def test_refused_to_talk_to_me_names_the_connection_stage() -> None:
    text = "host mx.example.net[198.51.100.25] refused to talk to me: 421 try later"
    assert commands.find_command(text) == "CONN"
