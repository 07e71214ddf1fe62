"""What an attacker on the network sends to the real daemon over SMTP: intake goes on,
nothing proves a stranger's address bad, and every message ends processed or set aside."""

from __future__ import annotations

import re
import smtplib
from collections.abc import Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from bounced.core.verp import encode_address
from tests.harness.daemon import BOUNCE_ADDRESS, RunningDaemon, daemon_config
from tests.harness.waiting import eventually
from tests.paths import DATA

SECRET = "s3cret-for-tests"
#: The three shapes that made normalization quadratic, at 1 MB each.
SHAPES = {
    "dots-then-at": "a." * 500_000 + " @",
    "letters-then-at": "a" * 1_000_000 + " @",
    "digit-letter-dots": "1a." * 333_333 + "1",
}
_DIAGNOSTIC = re.compile(rb"^Diagnostic-Code: .*?(?=^\S)", re.MULTILINE | re.DOTALL)


def dsn_with_diagnostic(text: str, address: str) -> bytes:
    """The Postfix DSN template for ``address`` with ``text`` as its Diagnostic-Code."""
    raw = (DATA / "policy" / "hard-user-unknown.eml").read_bytes()
    raw = raw.replace(b"rcpt@example.org", address.encode())
    return _DIAGNOSTIC.sub(b"Diagnostic-Code: smtp; " + text.encode() + b"\n", raw, count=1)


@pytest.fixture
def daemon(tmp_path: Path) -> Iterator[RunningDaemon]:
    config = daemon_config(tmp_path, max_message_size=4 * 1024 * 1024,
                           timeout=timedelta(seconds=30))
    config = replace(
        config,
        verp=replace(config.verp, secret=SECRET),
        processing=replace(config.processing, message_budget=timedelta(seconds=3)),
    )
    running = RunningDaemon(config).start()
    yield running
    running.stop()


def send(daemon: RunningDaemon, raw: bytes, rcpt: str) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=120) as client:
        client.ehlo("attacker.test")
        client.mail("")
        code, _ = client.rcpt(rcpt)
        assert code == 250
        return client.data(raw)


def wait_settled(daemon: RunningDaemon, count: int, deadline_s: float = 120.0) -> None:
    if eventually(lambda: daemon.query(
            "SELECT count(*) FROM messages WHERE state <> 'pending'")[0][0] >= count,
            seconds=deadline_s, every=0.1):
        return
    raise AssertionError(f"not all {count} messages settled: "
                         f"{daemon.query('SELECT id, state, error FROM messages')}")


def token_address(recipient: str) -> str:
    local, _, domain = BOUNCE_ADDRESS.partition("@")
    return encode_address(recipient, f"{local}@{domain}", secret=SECRET)


def test_poison_diagnostics_do_not_stop_intake_and_end_processed_or_set_aside(
        daemon: RunningDaemon) -> None:
    for name, text in SHAPES.items():
        address = f"{name}@example.org"
        code, _ = send(daemon, dsn_with_diagnostic(text, address), token_address(address))
        assert code == 250, name
    ordinary = [f"ordinary{n}@example.org" for n in range(3)]
    for address in ordinary:
        raw = dsn_with_diagnostic("550 5.1.1 <x>: Recipient address rejected: User unknown",
                                  address)
        code, reply = send(daemon, raw, token_address(address))
        assert code == 250, reply
    wait_settled(daemon, len(SHAPES) + len(ordinary))
    states = daemon.query("SELECT state, error FROM messages ORDER BY id")
    for state, error in states[: len(SHAPES)]:
        assert state == "processed" or (state == "failed" and "budget" in error)
    assert [state for state, _ in states[len(SHAPES):]] == ["processed"] * 3
    quarantined = {row[0] for row in daemon.query(
        "SELECT address FROM addresses WHERE state = 'quarantine'")}
    assert set(ordinary) <= quarantined


def test_a_valid_token_beside_a_victim_changes_no_state(daemon: RunningDaemon) -> None:
    """The forger's own signed token, its address as Original-Recipient, a victim as
    Final-Recipient (also with the token only in the DSN's To:)."""
    trick = (DATA / "hostile" / "verp-original-recipient-trick.eml").read_bytes()
    forger = token_address("attacker@evil.example")
    assert send(daemon, trick.replace(b"TOKEN_ADDRESS", forger.encode()), forger)[0] == 250
    in_to_only = trick.replace(b"TOKEN_ADDRESS", forger.encode()).replace(
        b"Message-Id: <20261122132914.trick", b"Message-Id: <20261122132914.trick2")
    assert send(daemon, in_to_only, BOUNCE_ADDRESS)[0] == 250
    wait_settled(daemon, 2)
    assert daemon.query("SELECT count(*) FROM addresses") == [(0,)]
    assert daemon.query("SELECT recipient, trusted FROM bounces ORDER BY id") == [
        ("victim@example.org", 0), ("victim@example.org", 0)]
