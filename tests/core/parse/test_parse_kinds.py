"""What a message is: failure, delay, delivered, feedback, autoreply or not_bounce.

Real mails from the corpus (tests/data/corpus/sisimai/eml) and the MTA lab are used as
they are; the few not-bounces are small files in tests/data/bad.
"""

from __future__ import annotations

import pytest

from bounced.core.parse import parse_message
from bounced.core.parse.mime import load
from bounced.model import Action, BounceReport, Kind
from tests.paths import DATA

DATA = DATA
CORPUS = DATA / "corpus" / "sisimai" / "eml"
LAB = DATA / "mta-lab"
BAD = DATA / "bad"


def corpus(name: str) -> BounceReport:
    return parse_message((CORPUS / name).read_bytes())


# --- ARF (RFC 5965) and other complaints ---------------------------------------------

def test_arf_report_names_each_original_rcpt_to() -> None:
    report = corpus("arf-16.eml")
    assert report.kind is Kind.FEEDBACK
    assert len(report.recipients) == 7
    assert {r.kind for r in report.recipients} == {Kind.FEEDBACK}
    assert {r.feedback_type for r in report.recipients} == {"abuse"}
    assert "kijitora@example.com" in {r.address for r in report.recipients}


def test_arf_without_original_rcpt_to_uses_the_returned_message() -> None:
    report = corpus("arf-01.eml")
    (recipient,) = report.recipients
    assert (recipient.address, recipient.feedback_type) == ("redacted@example.net", "abuse")


def test_arf_auth_failure_report_with_returned_headers_only() -> None:
    report = corpus("arf-19.eml")
    (recipient,) = report.recipients
    assert (recipient.address, recipient.feedback_type) == ("kijitora@example.org",
                                                           "auth-failure")


def test_opt_out_report_names_its_removal_recipient() -> None:
    report = corpus("arf-12.eml")
    (recipient,) = report.recipients
    assert report.kind is Kind.FEEDBACK
    assert (recipient.address, recipient.feedback_type) == ("user@example.com", "opt-out")


def test_complaint_forward_without_arf_part_is_feedback() -> None:
    report = corpus("arf-22.eml")
    (recipient,) = report.recipients
    assert report.kind is Kind.FEEDBACK
    assert recipient.address == "kijitora@example.com"


def test_one_click_unsubscribe_is_an_opt_out_complaint_from_its_sender() -> None:
    report = corpus("arf-26.eml")
    (recipient,) = report.recipients
    assert report.kind is Kind.FEEDBACK
    assert (recipient.address, recipient.feedback_type) == ("example@icloud.com", "opt-out")


# --- RFC 3834 auto-replies ------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "who"),
    [
        ("rfc3834-01.eml", "kijitora@example.net"),  # Auto-Submitted: auto-replied
        ("rfc3834-04.eml", "kijitora@example.org"),  # "Automatic reply:" subject
        ("rfc3834-05.eml", "foo@bar.net"),  # null sender, mbox From MAILER-DAEMON line
    ],
)
def test_auto_reply_names_who_replied(name: str, who: str) -> None:
    report = corpus(name)
    assert report.kind is Kind.AUTOREPLY
    (recipient,) = report.recipients
    assert (recipient.address, recipient.kind) == (who, Kind.AUTOREPLY)


def test_dsn_with_auto_submitted_header_stays_a_failure() -> None:
    raw = (LAB / "postfix-01-user-unknown-failed.eml").read_bytes()
    assert b"Auto-Submitted: auto-replied" in raw
    assert parse_message(raw).kind is Kind.FAILURE


# --- DSN actions -----------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "kind", "action"),
    [
        ("postfix-15-greylist-delayed.eml", Kind.DELAY, Action.DELAYED),
        ("postfix-12-multi-hdrs-envid-relayed.eml", Kind.DELIVERED, Action.RELAYED),
        ("exim-12-multi-hdrs-envid-delivered.eml", Kind.DELIVERED, Action.DELIVERED),
        ("postfix-15-greylist-expired.eml", Kind.FAILURE, Action.FAILED),
    ],
)
def test_dsn_action_gives_the_kind(name: str, kind: Kind, action: Action) -> None:
    report = parse_message((LAB / name).read_bytes())
    assert report.kind is kind
    assert {r.action for r in report.recipients} == {action}


# --- vendor formats ---------------------------------------------------------------------

@pytest.mark.parametrize(
    ("name", "addresses", "status"),
    [
        ("lhost-qmail-02.eml", {"userunknown@example.jp", "filtered@example.jp"}, "5.1.1"),
        ("lhost-exim-01.eml", {"kijitora@example.ed.jp"}, "5.7.0"),
        ("lhost-gmail-01.eml", {"userunknown@example.jp"}, "5.1.1"),
        ("lhost-yahoo-03.eml", {"kijitora@example.jp"}, "5.1.1"),
        ("lhost-dragonfly-02.eml", {"pseudo-local-part@outlook.example.com"}, "5.7.509"),
        ("lhost-exchange2003-01.eml", {"kijitora@example.jp"}, None),
        ("lhost-gmx-03.eml", {"mikeneko@example.co.jp", "sabineko@example.co.jp"}, "5.2.1"),
        ("lhost-imailserver-01.eml", {"kijitora@example.com"}, None),  # "Unknown user: a"
        ("lhost-imailserver-06.eml", {"kijitora@example.jp"}, "5.0.0"),  # "undeliverable to a"
        ("lhost-notes-02.eml", {"kijitora@u1.example.co.jp"}, None),
    ],
)
def test_human_readable_bounce(name: str, addresses: set[str], status: str | None) -> None:
    report = corpus(name)
    assert report.kind is Kind.FAILURE
    assert {r.address for r in report.recipients} == addresses
    first = report.recipients[0]
    assert first.status == status
    assert first.diagnostic


def test_qmail_block_diagnostic_joins_its_lines() -> None:
    report = corpus("lhost-qmail-01.eml")
    (recipient,) = report.recipients
    assert recipient.status == "5.5.0"
    assert recipient.reply_code == "550"
    assert recipient.diagnostic.startswith("Sorry, no SMTP connection got far enough")
    assert "\n" not in recipient.diagnostic


def test_exim_prose_recipient_wins_over_a_wrong_failed_recipients_header() -> None:
    report = corpus("lhost-exim-03.eml")
    assert [r.address for r in report.recipients] == ["kijitora@example.or.jp"]
    assert report.recipients[0].smtp_command == "DATA"


def test_amazon_ses_json_notifications() -> None:
    bounce, complaint, delivery = (
        corpus("lhost-amazonses-10.eml"),
        corpus("lhost-amazonses-11.eml"),
        corpus("lhost-amazonses-12.eml"),
    )
    assert (bounce.kind, bounce.recipients[0].status) == (Kind.FAILURE, "5.1.1")
    assert complaint.kind is Kind.FEEDBACK
    assert (delivery.kind, delivery.recipients[0].status) == (Kind.DELIVERED, "2.6.0")


def test_bounce_forwarded_inside_a_bounce_reads_the_inner_dsn() -> None:
    report = corpus("lhost-x5-01.eml")
    assert [r.address for r in report.recipients] == ["kijitora@neko.example.org"]
    assert report.recipients[0].status == "5.1.1"


# --- not bounces ------------------------------------------------------------------------

@pytest.mark.parametrize(
    "name",
    [
        "not-a-bounce-human-reply.eml",
        "not-a-bounce-spam.eml",
        "not-a-bounce-cron-output.eml",
        "not-a-bounce-forwarded-bounce.eml",
    ],
)
def test_anything_else_is_not_a_bounce(name: str) -> None:
    report = parse_message((BAD / name).read_bytes())
    assert report.kind is Kind.NOT_BOUNCE
    assert report.recipients == ()
    assert report.problems == ()


def returned_originals() -> list[tuple[str, bytes, str]]:
    """The original messages corpus bounces return: ordinary mail, written by people."""
    found = []
    for path in sorted(CORPUS.glob("*.eml")):
        for part in load(path.read_bytes()).root.walk():
            if part.content_type in ("message/rfc822", "message/global") and part.children:
                inner = part.children[0]
                found.append((path.name, inner.body, inner.headers.get("from") or ""))
    return found


def test_returned_originals_are_not_bounces() -> None:
    originals = returned_originals()
    assert len(originals) > 150
    wrong = []
    for name, raw, sender in originals:
        if "mailer-daemon" in sender.lower():
            continue  # a bounce returned inside a bounce is a bounce
        if b"----- Transcript of the session follows -----" in raw:
            continue  # so is an original that is itself a Sendmail report, whoever sent it
        report = parse_message(raw)
        if report.kind is not Kind.NOT_BOUNCE:
            wrong.append((name, report.kind, [r.address for r in report.recipients]))
    assert wrong == []
