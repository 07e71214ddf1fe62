"""End to end with a real Postfix: its DSNs reach the daemon and become verdicts."""

from __future__ import annotations

import smtplib
from collections.abc import Callable, Iterator
from email.utils import formatdate, make_msgid
from pathlib import Path

import pytest

from bounced.config import VerpConfig
from bounced.core.verp import encode_address
from tests.harness.daemon import RunningDaemon, daemon_config
from tests.harness.postfix_lab import (
    BOUNCE_DOMAIN,
    MTA_HOSTNAME,
    PostfixLab,
    start_lab,
    unavailable_reason,
)
from tests.harness.services import require
from tests.harness.waiting import eventually

pytestmark = pytest.mark.postfix

SECRET = "e2e-secret"
RETURN_PATH = f"bounces@{BOUNCE_DOMAIN}"


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    from dataclasses import replace

    config = daemon_config(tmp_path, bounce_domains=(BOUNCE_DOMAIN,), hostname="bounced.e2e.test")
    config = replace(config, verp=VerpConfig(secret=SECRET))
    running = RunningDaemon(config).start()
    yield running
    running.stop()


@pytest.fixture
def lab(daemon: RunningDaemon) -> Iterator[PostfixLab]:
    require(unavailable_reason())
    lab = start_lab(daemon.smtp_port)
    yield lab
    lab.stop()


def send_through_postfix(lab: PostfixLab, recipient: str) -> str:
    """One message to ``recipient`` with its signed VERP return path; returns the latter."""
    mail_from = encode_address(recipient, RETURN_PATH, secret=SECRET)
    body = (
        f"From: Sender <sender@sender.e2e.test>\r\nTo: {recipient}\r\nSubject: e2e\r\n"
        f"Date: {formatdate()}\r\nMessage-ID: {make_msgid(domain='sender.e2e.test')}\r\n"
        "\r\nhello\r\n"
    )
    with smtplib.SMTP(
        "127.0.0.1", lab.smtp_port, local_hostname="sender.e2e.test", timeout=30
    ) as client:
        client.sendmail(
            mail_from, [recipient], body.encode(), rcpt_options=["NOTIFY=FAILURE,DELAY"]
        )
    return mail_from


def wait_for(
    condition: Callable[[], bool], lab: PostfixLab, what: str, deadline_s: float = 120.0
) -> None:
    if eventually(condition, seconds=deadline_s, every=0.25):
        return
    pytest.fail(f"timed out waiting for {what}; Postfix log:\n{lab.maillog()[-4000:]}")


def test_postfix_bounces_become_verdicts_in_the_database(
    daemon: RunningDaemon, lab: PostfixLab
) -> None:
    assert daemon.config.smtp.hostname != MTA_HOSTNAME  # else Postfix says "loops back to myself"
    scenarios = {
        "unknown-user@rcpt.test": ("failure", "5.1.1", "hard", 1),
        "full@rcpt.test": ("failure", "5.2.2", "soft", 5),
        "blocked@rcpt.test": ("failure", "5.7.1", "soft", 20),
        "later@rcpt.test": ("delay", "4.3.0", "ignored", None),
    }
    for recipient in scenarios:
        send_through_postfix(lab, recipient)

    def verdicts() -> dict[str, tuple[object, ...]]:
        rows = daemon.query(
            "SELECT b.recipient, b.kind, b.status, b.failure_type, b.reason_code FROM bounces b "
            "JOIN messages m ON m.id = b.message_id WHERE m.state = 'processed'"
        )
        return {row[0]: row[1:] for row in rows}

    wait_for(lambda: set(scenarios) <= set(verdicts()), lab, "a verdict for every scenario")
    found = verdicts()
    for recipient, (kind, status, failure_type, reason) in scenarios.items():
        got = found[recipient]
        assert got[:2] == (kind, status), recipient
        assert got[2] == failure_type, recipient
        if reason is not None:
            assert got[3] == reason, recipient

    # The DSNs came from Postfix's bounce daemon with the null sender to the signed
    # VERP address: they are trusted, so the hard bounce quarantined its address.
    senders = daemon.query("SELECT DISTINCT mail_from FROM messages")
    assert senders == [("",)]
    assert daemon.query("SELECT count(*) FROM messages WHERE trusted = 0") == [(0,)]
    assert daemon.query("SELECT state FROM addresses WHERE address = 'unknown-user@rcpt.test'") == [
        ("quarantine",)
    ]
