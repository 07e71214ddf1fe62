"""Processing stored messages: atomic per message, failures kept, never counted twice."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from bounced.config import Config
from bounced.core.verp import Trust, VerpProblem
from bounced.model import FailureType, IncomingMessage, MessageState, Reason, Rule
from bounced.ops.processing import process_messages
from bounced.store import Store

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
CONFIG = Config()


def variant(make, template: str, address: str, **kwargs) -> bytes:
    return make(template, address=address, **kwargs).read_bytes()


def incoming(raw: bytes, rcpt: str = "bounces@bounce.example") -> IncomingMessage:
    return IncomingMessage(received_at=T0, mail_from="", rcpt_to=(rcpt,), raw=raw)


@pytest.fixture
def store(db: Path):
    with Store.open(db) as opened:
        yield opened


def refuse_inserts(store: Store, recipient: str, message: str) -> None:
    """A trigger (as an operator could add) that refuses bounces about ``recipient``."""
    if store.is_postgresql:
        store.conn.execute(
            "CREATE FUNCTION refuse_boom() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.recipient = '{recipient}' THEN RAISE EXCEPTION '{message}'; END IF; "
            "RETURN NEW; END $$")
        store.conn.execute("CREATE TRIGGER refuse_boom BEFORE INSERT ON bounces "
                           "FOR EACH ROW EXECUTE FUNCTION refuse_boom()")
        return
    store.conn.execute(
        f"CREATE TRIGGER refuse_boom BEFORE INSERT ON bounces WHEN NEW.recipient = "
        f"'{recipient}' BEGIN SELECT RAISE(ABORT, '{message}'); END")


def counts(conn: sqlite3.Connection) -> tuple[int, int, int, int]:
    return tuple(  # type: ignore[return-value]
        conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
        for table in ("bounces", "addresses", "address_events", "qualification")
    )


def test_a_processed_message_records_verdicts_and_correlation(store: Store, mail_file):
    raw = variant(mail_file, "hard-user-unknown", "jane@example.org")
    stored = store.messages.insert([incoming(raw, "bounces+tok42@bounce.example")])
    [result] = process_messages(store, [stored[0].id], config=CONFIG, rules=store.rules.enabled())
    assert result.state is MessageState.PROCESSED
    row = store.conn.execute(
        "SELECT recipient, kind, action, status, reply_code, original_message_id, verp_token, "
        "original_recipient, remote_mta, received_at, at FROM bounces").fetchone()
    assert row[:5] == ("jane@example.org", "failure", "failed", "5.1.1", "550")
    assert row[5] and "01-user-unknown@sender.lab.test" in row[5]
    assert row[6] == "tok42"
    assert row[7] and "jane@example.org" in row[7]
    assert row[8] and "127.0.0.1" in row[8]
    assert row[9] == row[10] == "2026-11-02T08:00:00Z"
    assert store.conn.execute("SELECT state, kind, verp_token, trusted, error FROM messages"
                              ).fetchone() == ("processed", "failure", "tok42", 1, None)


def test_a_message_processed_twice_is_counted_once(store: Store, mail_file):
    raw = variant(mail_file, "soft-mailbox-full", "once@example.org")
    [stored] = store.messages.insert([incoming(raw)])
    process_messages(store, [stored.id], config=CONFIG, rules=())
    before = counts(store.conn)
    [again] = process_messages(store, [stored.id], config=CONFIG, rules=())
    assert again.skipped
    assert counts(store.conn) == before
    assert store.conn.execute("SELECT occurrences FROM qualification").fetchone() == (1,)


def test_a_database_error_fails_only_that_message_and_undoes_its_work(store: Store, mail_file):
    """A real constraint (a trigger, as an operator could add) aborts one message's
    bounce insert: its earlier writes (qualification count, address state) are undone,
    it is marked failed with the error, the raw stays, and the others are processed."""
    refuse_inserts(store, "boom@example.org", "boom refused by trigger")
    raws = [
        variant(mail_file, "hard-user-unknown", "first@example.org"),
        variant(mail_file, "hard-user-unknown", "boom@example.org"),
        variant(mail_file, "hard-user-unknown", "last@example.org"),
    ]
    stored = store.messages.insert([incoming(raw) for raw in raws])
    results = process_messages(store, [s.id for s in stored], config=CONFIG, rules=())
    assert [r.state for r in results] == [
        MessageState.PROCESSED, MessageState.FAILED, MessageState.PROCESSED]
    assert "boom refused by trigger" in (results[1].error or "")
    assert store.conn.execute("SELECT state, error IS NOT NULL, raw FROM messages WHERE id = ?",
                              (stored[1].id,)).fetchone() == ("failed", 1, raws[1])
    assert store.conn.execute("SELECT recipient FROM bounces ORDER BY id").fetchall() == [
        ("first@example.org",), ("last@example.org",)]
    assert store.conn.execute("SELECT address FROM addresses ORDER BY address").fetchall() == [
        ("first@example.org",), ("last@example.org",)]
    assert store.conn.execute("SELECT sum(occurrences) FROM qualification").fetchone() == (2,)
    assert store.messages.count(MessageState.FAILED) == 1

    # Fixed: the failed message is processed again, once.
    store.conn.execute("DROP TRIGGER refuse_boom" + (" ON bounces" if store.is_postgresql
                                                     else ""))
    [retried] = process_messages(store, [stored[1].id], config=CONFIG, rules=())
    assert retried.state is MessageState.PROCESSED
    assert store.conn.execute("SELECT sum(occurrences) FROM qualification").fetchone() == (3,)
    assert store.messages.count(MessageState.FAILED) == 0


def test_a_rule_that_cannot_run_fails_the_message_not_the_batch(store: Store, mail_file):
    broken = Rule(id=10001, pattern="(unclosed", failure_type=FailureType.HARD,
                  reason=Reason.USER_UNKNOWN)
    raw = variant(mail_file, "undefined", "someone@example.org")
    [stored] = store.messages.insert([incoming(raw)])
    [result] = process_messages(store, [stored.id], config=CONFIG, rules=(broken,))
    assert result.state is MessageState.FAILED
    assert result.error
    assert store.conn.execute("SELECT state FROM messages").fetchone() == ("failed",)
    assert counts(store.conn) == (0, 0, 0, 0)


def test_an_untrusted_message_keeps_its_verdicts_but_changes_no_address(store: Store, mail_file):
    raw = variant(mail_file, "hard-user-unknown", "innocent@example.org")
    [stored] = store.messages.insert([incoming(raw, "bounces+forged@bounce.example")])
    seen = []

    def refuse(message, report, token):
        seen.append(token)
        return Trust(problem=VerpProblem.BAD_SIGNATURE)

    [result] = process_messages(store, [stored.id], config=CONFIG, rules=(), trust=refuse)
    assert seen == ["forged"]
    assert result.trusted is False
    assert store.conn.execute("SELECT recipient FROM bounces").fetchall() == [
        ("innocent@example.org",)]
    assert store.conn.execute("SELECT count(*) FROM addresses").fetchone() == (0,)
    assert store.conn.execute("SELECT trusted FROM messages").fetchone() == (0,)


def test_at_overrides_the_receipt_time_and_header_date_is_used_on_request(store, mail_file):
    raws = [
        variant(mail_file, "soft-mailbox-full", "a@example.org"),
        variant(mail_file, "soft-mailbox-full", "b@example.org",
                date="Tue, 03 Nov 2026 10:00:00 +0100"),
    ]
    first, second = store.messages.insert([incoming(raw) for raw in raws])
    later = T0 + timedelta(days=3)
    process_messages(store, [first.id], config=CONFIG, rules=(), at=later)
    process_messages(store, [second.id], config=CONFIG, rules=(), at_from_header=True)
    assert store.conn.execute("SELECT recipient, at FROM bounces ORDER BY id").fetchall() == [
        ("a@example.org", "2026-11-05T08:00:00Z"), ("b@example.org", "2026-11-03T09:00:00Z")]


def test_batches_commit_separately(store: Store, mail_file):
    from dataclasses import replace

    config = replace(CONFIG, processing=replace(CONFIG.processing, batch_size=2))
    raws = [variant(mail_file, "hard-user-unknown", f"u{i}@example.org") for i in range(5)]
    stored = store.messages.insert([incoming(raw) for raw in raws])
    results = process_messages(store, [s.id for s in stored], config=config, rules=())
    assert [r.message_id for r in results] == [s.id for s in stored]
    assert store.messages.count(MessageState.PENDING) == 0
    assert store.conn.execute("SELECT count(*) FROM bounces").fetchone() == (5,)


def test_an_unknown_message_id_is_reported_not_raised(store: Store):
    [result] = process_messages(store, [999], config=CONFIG, rules=())
    assert result.skipped and result.error == "no such message"


_CRASHING_WORKER = """
import os, sys
from bounced.config import Config
from bounced.core.verp import TAKEN_AT_ITS_WORD
from bounced.model import MessageState
from bounced.ops.processing import process_messages
from bounced.store import Store

store = Store.open(sys.argv[1])
ids = store.messages.ids(MessageState.PENDING, 100)
seen = []

def crash_on_third(message, report, token):
    seen.append(message.id)
    if len(seen) == 3:
        os._exit(9)  # a kill -9 in the middle of a batch: no cleanup, no rollback
    return TAKEN_AT_ITS_WORD

process_messages(store, ids, config=Config(), rules=store.rules.enabled(), trust=crash_on_third)
"""


def test_a_crash_in_the_middle_of_a_batch_leaves_no_half_work_and_nothing_counted_twice(
        db: Path, mail_file):
    with Store.open(db) as store:
        raws = [variant(mail_file, "soft-mailbox-full", f"c{i}@example.org") for i in range(5)]
        stored = store.messages.insert([incoming(raw) for raw in raws])
    crashed = subprocess.run([sys.executable, "-c", _CRASHING_WORKER, str(db)],
                             capture_output=True, timeout=120, check=False)
    assert crashed.returncode == 9, crashed.stderr.decode()
    with Store.open(db) as store:
        assert store.messages.ids(MessageState.PENDING, 10) == [s.id for s in stored]
        assert counts(store.conn) == (0, 0, 0, 0)
        process_messages(store, [s.id for s in stored], config=CONFIG, rules=())
        assert counts(store.conn) == (5, 5, 5, 1)
        assert store.conn.execute("SELECT sum(error_count) FROM addresses").fetchone() == (5,)
        assert store.conn.execute("SELECT occurrences FROM qualification").fetchone() == (5,)


_INSERTING_DAEMON = """
import sys
from datetime import datetime, UTC
from pathlib import Path
from bounced.model import IncomingMessage
from bounced.store import Store

store = Store.open(sys.argv[1])
raws = [path.read_bytes() for path in sorted(Path(sys.argv[2]).iterdir())]
for start in range(0, len(raws), 5):
    store.messages.insert([IncomingMessage(datetime.now(UTC), "", ("b@bounce.example",), raw)
                           for raw in raws[start:start + 5]])
store.close()
"""


def test_a_writer_process_and_a_processing_process_work_at_the_same_time(
        db: Path, mail_file, tmp_path: Path):
    for index in range(60):
        mail_file("hard-user-unknown", address=f"w{index}@example.org")
    with Store.open(db) as store:
        writer = subprocess.Popen(
            [sys.executable, "-c", _INSERTING_DAEMON, str(db), str(tmp_path / "mails")],
            stderr=subprocess.PIPE)
        # An operator's sqlite3 (psql) reading all along:
        reader = (psycopg.connect(str(db), autocommit=True) if store.is_postgresql
                  else sqlite3.connect(db))
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchone()
        processed = 0
        deadline = time.monotonic() + 120
        while writer.poll() is None or store.messages.count(MessageState.PENDING):
            assert time.monotonic() < deadline, "writer or processing stuck"
            pending = store.messages.ids(MessageState.PENDING, CONFIG.processing.batch_size)
            processed += sum(not r.skipped for r in
                             process_messages(store, pending, config=CONFIG, rules=()))
        reader.execute("COMMIT")
        assert writer.returncode == 0, writer.stderr.read().decode() if writer.stderr else ""
        assert processed == 60
        assert store.conn.execute("SELECT count(*), count(DISTINCT message_id) FROM bounces"
                                  ).fetchone() == (60, 60)
        assert store.conn.execute("SELECT count(*) FROM addresses WHERE state = 'quarantine'"
                                  ).fetchone() == (60,)
