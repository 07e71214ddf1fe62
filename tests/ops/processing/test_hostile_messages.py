"""Messages that try to stop processing or to quarantine a stranger: each is set aside or
recorded without effect, and the others flow on."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bounced.config import Config
from bounced.core.verp import encode_address
from bounced.model import FailureType, IncomingMessage, MessageState, Reason, Rule
from bounced.ops.processing import process_messages, trust_policy
from bounced.store import Store
from tests.conftest import query
from tests.paths import DATA

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
SECRET = "s3cret-for-tests"


def incoming(raw: bytes, rcpt: str = "bounces@bounce.example") -> IncomingMessage:
    return IncomingMessage(received_at=T0, mail_from="", rcpt_to=(rcpt,), raw=raw)


# A worker that dies (kill -9, a segfault in a C library) on one message, every time.
_DYING_WORKER = """
import os, sys
from bounced.config import Config
from bounced.core.verp import TAKEN_AT_ITS_WORD
from bounced.model import MessageState
from bounced.ops.processing import process_messages
from bounced.store import Store

store = Store.open(sys.argv[1])
poison = int(sys.argv[2])

def die_on_poison(message, report, token):
    if message.id == poison:
        os._exit(9)
    return TAKEN_AT_ITS_WORD

process_messages(store, store.messages.ids(MessageState.PENDING, 100), config=Config(),
                 rules=store.rules.enabled(), trust=die_on_poison)
"""


def test_a_message_the_worker_dies_on_is_isolated_then_set_aside(db: Path, mail_file) -> None:
    with Store.open(db) as store:
        stored = store.messages.insert([
            incoming(mail_file("soft-mailbox-full", address=f"m{n}@example.org").read_bytes())
            for n in range(5)])
    poison = stored[2].id
    for _ in range(3):  # the first run takes the chunk down; later ones isolate the poison
        died = subprocess.run([sys.executable, "-c", _DYING_WORKER, str(db), str(poison)],
                              capture_output=True, timeout=120, check=False)
        assert died.returncode == 9, died.stderr.decode()
    with Store.open(db) as store:
        results = process_messages(store, store.messages.ids(MessageState.PENDING, 100),
                                   config=Config(), rules=store.rules.enabled())
    by_id = {result.message_id: result for result in results}
    assert by_id[poison].state is MessageState.FAILED
    assert "3 processing attempts" in (by_id[poison].error or "")
    assert query(db, "SELECT state, count(*) FROM messages GROUP BY state ORDER BY state") == [
        ("failed", 1), ("processed", 4)]
    assert query(db, "SELECT count(*) FROM bounces") == [(4,)]


def test_db_retry_processes_a_set_aside_message_past_the_attempt_limit(
        db: Path, mail_file, bounced) -> None:
    with Store.open(db) as store:
        [stored] = store.messages.insert([incoming(
            mail_file("hard-user-unknown", address="back@example.org").read_bytes())])
        store.conn.execute("UPDATE messages SET attempts = 7 WHERE id = ?", (stored.id,))
        [result] = process_messages(store, [stored.id], config=Config(), rules=())
        assert result.state is MessageState.FAILED
    run = bounced(["db", "retry", "--db", str(db)])
    assert run.status == 0, run.out + run.err
    assert query(db, "SELECT state FROM messages") == [("processed",)]


def test_a_message_past_its_time_budget_is_set_aside_and_the_others_go_on(
        db: Path, mail_file) -> None:
    """An operator's rule with a pattern that backtracks, and a diagnostic built for it:
    the budget interrupts the work of that message only."""
    rules = (Rule(10_000, r"(a+)+$", FailureType.SOFT, Reason.REFUSED),)
    fine = mail_file("soft-mailbox-full", address="fine@example.org").read_bytes()
    slow = mail_file("soft-mailbox-full", address="slow@example.org").read_bytes().replace(
        b"Mailbox full", b"a" * 40 + b"b")
    config = Config()
    config = replace(config, processing=replace(config.processing,
                                                message_budget=timedelta(seconds=0.5)))
    with Store.open(db) as store:
        stored = store.messages.insert([incoming(slow), incoming(fine)])
        results = process_messages(store, [s.id for s in stored], config=config, rules=rules)
    assert [r.state for r in results] == [MessageState.FAILED, MessageState.PROCESSED]
    assert "budget" in (results[0].error or "")
    assert query(db, "SELECT recipient FROM bounces") == [("fine@example.org",)]


def test_a_valid_token_beside_a_victim_s_address_changes_only_the_token_s_address(
        db: Path) -> None:
    """The forger's own signed token, its address as Original-Recipient, a victim as
    Final-Recipient: the verdict about the victim is recorded, never applied."""
    token_address = encode_address("attacker@evil.example", "bounces@bounce.example",
                                   secret=SECRET)
    raw = (DATA / "hostile" / "verp-original-recipient-trick.eml").read_bytes().replace(
        b"TOKEN_ADDRESS", token_address.encode())
    config = replace(Config(), verp=replace(Config().verp, secret=SECRET))
    with Store.open(db) as store:
        [stored] = store.messages.insert([incoming(raw, token_address)])
        [result] = process_messages(store, [stored.id], config=config,
                                    rules=store.rules.enabled(), trust=trust_policy(config))
    assert [(r.recipient, r.untrusted) for r in result.recipients] == [
        ("victim@example.org", "recipient_mismatch")]
    assert query(db, "SELECT count(*) FROM addresses") == [(0,)]
    assert query(db, "SELECT recipient, failure_type, trusted FROM bounces") == [
        ("victim@example.org", "hard", 0)]
