"""Report layouts recognised by their structure, with the recipient read from the
report (never invented), and what comes out when no recipient can be read.

The samples (tests/data/layouts/) are written from each mail system's report template."""

from __future__ import annotations

import pytest

from bounced.core.judge import judge
from bounced.core.parse import parse_message
from bounced.core.parse.commands import find_transcript_command, sent_command
from bounced.core.parse.vendors import scan_recipients
from bounced.core.qualify import load_default_rules
from bounced.model import BounceReport, FailureType, Kind, Reason
from tests.paths import DATA

LAYOUTS = DATA / "layouts"


def parsed(name: str) -> BounceReport:
    return parse_message((LAYOUTS / name).read_bytes())


@pytest.mark.parametrize(
    ("name", "recipient"),
    [
        ("sendmail-plain.eml", "jane@rcpt.example"),
        ("qmail-odd-sender.eml", "jane@rcpt.example"),
        ("exim-odd-sender.eml", "jane@rcpt.example"),
        ("exim-pipe.eml", "support@rcpt.example"),
        ("exim-file.eml", "jane@rcpt.example"),
        ("office365-351.eml", "jane@rcpt.example"),
        ("domino.eml", "jane@rcpt.example"),
        ("mimecast.eml", "jane@rcpt.example"),
        ("xfailed-only.eml", "jane@rcpt.example"),
        ("mailman.eml", "team@lists.example.org"),
        ("fml-notmember.eml", "nyaa@example.jp"),
    ],
)
def test_each_layout_gives_the_recipient_it_names(name: str, recipient: str) -> None:
    report = parsed(name)
    assert report.kind is Kind.FAILURE
    assert [each.address for each in report.recipients] == [recipient]
    assert report.problems == ()


def test_a_sendmail_transcript_gives_the_command_the_refusal_answered() -> None:
    (recipient,) = parsed("sendmail-plain.eml").recipients
    assert recipient.smtp_command == "RCPT"
    (verdict,) = judge(parsed("sendmail-plain.eml"), load_default_rules())
    assert verdict.qualification is not None
    assert str(verdict.qualification.qualified_by).startswith("status:5.1.1+stage:RCPT")


@pytest.mark.parametrize(
    ("name", "item", "reason"),
    [("exim-pipe.eml", "pipe to |/usr/local/bin/ticket-import", Reason.UNREACHABLE),
     ("exim-file.eml", "save to /var/mail/jane", Reason.MAILBOX_FULL)],
)
def test_an_exim_local_delivery_item_is_read_with_the_address_that_generated_it(
    name: str, item: str, reason: Reason
) -> None:
    (recipient,) = parsed(name).recipients
    assert recipient.diagnostic.startswith(item)
    (verdict,) = judge(parsed(name), load_default_rules())
    assert verdict.reason is reason


def test_transcript_commands_are_read_per_recipient() -> None:
    transcript = (
        "... while talking to mx.a.example.:\n"
        ">>> MAIL From:<sender@example.org>\n"
        "<<< 250 ok\n"
        ">>> RCPT To:<jane@a.example>\n"
        "<<< 550 5.1.1 <jane@a.example>... User unknown\n"
        ">>> RCPT To:<joe@a.example>\n"
        "<<< 452 4.2.2 <joe@a.example>... Over quota\n"
        ">>> DATA\n"
        "<<< 554 5.7.1 Message refused\n"
    )
    assert find_transcript_command(transcript, "joe@a.example") == "RCPT"
    assert find_transcript_command(transcript, "nobody@a.example") == "RCPT"  # the first
    assert find_transcript_command(transcript.split(">>> RCPT")[0], None) is None
    assert sent_command(">>> DATA") == "DATA"
    assert sent_command("<<< 554 no") is None


def test_a_summary_line_takes_the_command_of_the_replies_above_it() -> None:
    text = (
        "   ----- Transcript of session follows -----\n"
        "While talking to mail.rcpt.example:\n"
        ">>> MAIL From:<sender@example.org>\n"
        "<<< 501 <sender@example.org>... no access from mail server\n"
        "554 <jane@rcpt.example>... Remote protocol error\n"
    )
    (found,) = [each for each in scan_recipients(text) if each.address == "jane@rcpt.example"]
    assert found.command == "MAIL"


def test_a_mailing_list_refusal_is_about_the_list_and_refused() -> None:
    (verdict,) = judge(parsed("mailman.eml"), load_default_rules())
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.REFUSED)


def test_ordinary_list_traffic_is_no_bounce() -> None:
    raw = (LAYOUTS / "mailman.eml").read_bytes().replace(
        b"From: team-owner@lists.example.org", b"From: Jane <jane@example.org>"
    ).replace(b"You are not allowed to post to this mailing list, and your message has\n"
              b"been automatically rejected.", b"Minutes of Monday's meeting attached.")
    assert parse_message(raw).kind is Kind.NOT_BOUNCE


def test_a_report_without_a_readable_recipient_is_a_failure_with_a_problem() -> None:
    report = parsed("no-recipient-transcript.eml")
    assert report.kind is Kind.FAILURE
    assert report.recipients == ()
    assert report.problems == ("looks like a bounce but no recipient could be read",)
    # it is still judged once, address-less, so that it is stored for an operator
    (verdict,) = judge(report, load_default_rules())
    assert verdict.recipient.address is None
    assert verdict.recipient.kind is Kind.FAILURE


def test_a_person_writing_from_a_postmaster_address_is_no_bounce() -> None:
    raw = (b"From: postmaster@example.org\nTo: sender@example.org\n"
           b"Subject: TEST FOR DMARC\n\nPlease ignore this test.\n")
    assert parse_message(raw).kind is Kind.NOT_BOUNCE
