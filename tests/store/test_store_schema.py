"""The SQLite store: public schema names (docs/schema.md), migrations, seeding, durability."""

from __future__ import annotations

import hashlib
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlite_utils

from bounced.core.qualify import load_default_rules
from bounced.core.times import format_time
from bounced.model import IncomingMessage, MessageState, Reason
from bounced.store import (
    PROCESSING_BTREES,
    SCHEMA_VERSION,
    STORING_BTREES,
    WAL_SAFETY_NET_PAGES,
    Checkpointer,
    DatabaseError,
    Store,
    StoreError,
)
from bounced.store.schema import DIGEST_PREFIX, DUPLICATE_LOOKUP, MIGRATIONS
from tests.harness.database import Database, is_postgresql, query

PUBLIC_COLUMNS = {
    "messages": {"id", "received_at", "mail_from", "rcpt_to", "size", "sha256", "raw", "state",
                 "error", "channel"},
    "bounces": {"id", "message_id", "recipient", "kind", "action", "status", "reply_code",
                "diagnostic", "qualification_id", "failure_type", "reason_code",
                "qualified_by", "original_message_id", "received_at", "channel"},
    "qualification": {"id", "text", "first_text", "failure_type", "reason_code", "status",
                      "occurrences", "first_seen", "last_seen"},
    "rules": {"id", "pattern", "failure_type", "reason_code", "priority", "origin", "enabled"},
    "reasons": {"code", "label", "default_type"},
    "addresses": {"address", "state", "error_count", "last_error_at", "last_counted_error_at",
                  "reason_code", "quarantined_at", "release_at", "updated_at", "channel"},
    "address_events": {"id", "address", "at", "old_state", "new_state", "cause", "bounce_id"},
    "suppression_list": {"address", "state", "reason", "since", "channel"},
    "daily_summary": {"day", "failure_type", "reason", "domain", "channel", "bounces",
                      "addresses"},
    "sent_messages": {"channel", "id", "recipient", "registered_at"},
    "to_qualify": {"id", "text", "first_text", "occurrences", "last_seen"},
}
T0 = datetime(2026, 11, 22, 13, 5, tzinfo=UTC)


def message(raw: bytes, rcpt: tuple[str, ...] = ("bounces@bounce.example",),
            verp_token: str | None = None) -> IncomingMessage:
    return IncomingMessage(received_at=T0, mail_from="", rcpt_to=rcpt, raw=raw, peer="192.0.2.1",
                           verp_token=verp_token)


@pytest.fixture
def store(db: Path):
    with Store.open(db) as opened:
        yield opened


def columns(db: Database, name: str) -> set[str]:
    if is_postgresql(db):
        return {row[0] for row in query(db, "SELECT column_name FROM information_schema.columns "
                                            "WHERE table_name = ?", (name,))}
    return {row[1] for row in query(db, f"PRAGMA table_info({name})")}


def test_public_tables_and_views_have_the_spec_names_and_columns(store: Store, db: Database):
    for name, expected in PUBLIC_COLUMNS.items():
        assert expected <= columns(db, name), name
    views = {row[0] for row in query(db, "SELECT table_name FROM information_schema.views")
             } if is_postgresql(db) else {
        row[0] for row in query(db, "SELECT name FROM sqlite_master WHERE type = 'view'")}
    assert {"suppression_list", "daily_summary", "to_qualify"} <= views


@pytest.mark.sqlite_only  # WAL and PRAGMAs
def test_database_is_in_wal_mode_with_the_current_schema_version(db: Path, store: Store):
    conn = sqlite3.connect(db)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 1000


@pytest.mark.sqlite_only  # PRAGMAs
def test_savepoint_journals_stay_in_memory_and_the_page_cache_is_as_configured(db: Path):
    with Store.open(db, cache_mb=64) as store:
        assert store.conn.execute("PRAGMA temp_store").fetchone()[0] == 2  # MEMORY
        assert store.conn.execute("PRAGMA cache_size").fetchone()[0] == -64 * 1024
    with Store.open(db) as store:
        assert store.conn.execute("PRAGMA cache_size").fetchone()[0] == -2000  # SQLite's


def test_reasons_are_seeded_from_the_enum(store: Store):
    rows = store.conn.execute("SELECT code, label, default_type FROM reasons").fetchall()
    assert sorted(rows) == sorted((int(r), r.label, r.default_type.value) for r in Reason)


def test_default_rules_are_seeded_and_reseeding_keeps_user_rules_and_choices(db: Path):
    """Every open seeds on SQLite; on PostgreSQL the daemon's start does (``seed``)."""
    shipped = load_default_rules()
    assert shipped, "the shipped default rules are missing"
    first = int(shipped[0].id)
    with Store.open(db, seed=True) as store:
        rows = store.conn.execute("SELECT id, origin FROM rules ORDER BY id").fetchall()
        assert rows == sorted((int(rule.id), "default") for rule in shipped)
        store.conn.execute(
            "INSERT INTO rules (id, pattern, failure_type, reason_code, priority, origin) "
            "VALUES (10000, 'my pattern', 'hard', 1, 5, 'user')"
        )
        store.conn.execute("UPDATE rules SET enabled = 0 WHERE id = ?", (first,))
        store.conn.execute("UPDATE rules SET pattern = 'tampered' WHERE id = ?", (first,))
        store.conn.execute("INSERT INTO rules (id, pattern, failure_type, reason_code, origin) "
                           "VALUES (9999, 'withdrawn default', 'soft', 20, 'default')")
    with Store.open(db, seed=True) as store:
        assert store.conn.execute(
            "SELECT pattern, origin FROM rules WHERE id = 10000").fetchall() == [
            ("my pattern", "user")]
        # The shipped definition comes back, the operator's choice to disable it stays.
        assert store.conn.execute("SELECT pattern, enabled FROM rules WHERE id = ?",
                                  (first,)).fetchone() == (shipped[0].pattern, 0)
        # A default no longer shipped is removed.
        assert store.conn.execute("SELECT count(*) FROM rules WHERE id = 9999"
                                  ).fetchone() == (0,)
        assert store.conn.execute(
            "SELECT count(*) FROM rules WHERE origin = 'default'").fetchone()[0] == len(shipped)
        assert any(rule.id == 10000 for rule in store.rules.enabled())
        assert all(rule.id != first for rule in store.rules.enabled())


def test_reopening_is_idempotent(db: Path):
    Store.open(db, seed=True).close()
    Store.open(db, seed=True).close()
    assert query(db, "SELECT count(*) FROM reasons") == [(len(Reason),)]


@pytest.mark.sqlite_only  # PRAGMA user_version (PostgreSQL: test_postgresql.py)
def test_a_database_newer_than_the_code_is_refused(db: Path):
    Store.open(db).close()
    conn = sqlite3.connect(db)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(StoreError, match="newer"):
        Store.open(db)


def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path):
    path = tmp_path / "garbage.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError):
        Store.open(path)


def test_inserted_messages_are_committed_and_visible_to_another_connection(db: Path, store):
    stored = store.messages.insert([message(b"one"), message(b"two")])
    assert [s.duplicate for s in stored] == [False, False]
    rows = query(db, "SELECT id, state, size, rcpt_to, received_at, peer FROM messages "
                     "ORDER BY id")
    assert rows == [
        (stored[0].id, "pending", 3, '["bounces@bounce.example"]', "2026-11-22T13:05:00Z",
         "192.0.2.1"),
        (stored[1].id, "pending", 3, '["bounces@bounce.example"]', "2026-11-22T13:05:00Z",
         "192.0.2.1"),
    ]
    assert store.messages.count(MessageState.PENDING) == 2
    assert store.messages.ids(MessageState.PENDING, 10) == [stored[0].id, stored[1].id]
    assert store.messages.ids(MessageState.PENDING, 1) == [stored[0].id]


def test_identical_bytes_are_stored_once_and_reported_as_duplicate(store: Store):
    first = store.messages.insert([message(b"same"), message(b"same")])
    again = store.messages.insert([message(b"same", rcpt=("other@bounce.example",))])
    assert first[0].duplicate is False
    assert first[1].duplicate is True and first[1].id == first[0].id
    assert again[0].duplicate is True and again[0].id == first[0].id
    assert store.conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 1


def test_the_schema_itself_refuses_a_second_row_with_the_same_digest(store: Store):
    digest = hashlib.sha256(b"same").hexdigest()
    insert = ("INSERT INTO messages (received_at, mail_from, rcpt_to, size, sha256, raw) "
              "VALUES ('2026-11-22T13:05:00Z', '', '[]', 4, ?, ?)")
    store.conn.execute(insert, (digest, b"\x00"))
    with pytest.raises(DatabaseError, match=r"UNIQUE constraint failed: messages\.sha256|"
                                            r"unique constraint \"idx_messages_sha256\""):
        store.conn.execute(insert, (digest, b"\x00"))


@pytest.mark.sqlite_only  # SQLite's prefix index
def test_a_digest_sharing_only_the_indexed_prefix_is_not_a_duplicate(store: Store):
    digest = hashlib.sha256(b"same").hexdigest()
    impostor = digest[:DIGEST_PREFIX] + "0" * (64 - DIGEST_PREFIX)
    store.conn.execute(
        "INSERT INTO messages (received_at, mail_from, rcpt_to, size, sha256, raw) "
        "VALUES ('2026-11-22T13:05:00Z', '', '[]', 1, ?, x'00')", (impostor,))
    stored = store.messages.insert([message(b"same")])
    assert stored[0].duplicate is False
    assert store.conn.execute(
        "SELECT count(*) FROM messages WHERE substr(sha256, 1, ?) = ?",
        (DIGEST_PREFIX, digest[:DIGEST_PREFIX])).fetchone()[0] == 2


@pytest.mark.sqlite_only  # SQLite's plan
def test_the_duplicate_lookup_searches_the_prefix_index_instead_of_scanning(store: Store):
    plan = store.conn.execute(f"EXPLAIN QUERY PLAN {DUPLICATE_LOOKUP}", ("a", "b")).fetchall()
    assert "USING INDEX idx_messages_sha256_prefix" in plan[0][3]


def database_at_version(db: Path, version: int) -> sqlite3.Connection:
    """A database as release ``version`` of the schema left it (open, for setting up)."""
    conn = sqlite3.connect(db, isolation_level=None)
    old = sqlite_utils.Database(conn)
    for step in MIGRATIONS[:version]:
        step.apply(old)
    conn.execute(f"PRAGMA user_version = {version}")
    return conn


def test_migrations_are_registered_in_order_under_distinct_names() -> None:
    assert [step.version for step in MIGRATIONS] == list(range(1, SCHEMA_VERSION + 1))
    names = [step.name for step in MIGRATIONS]
    assert all(names) and len(set(names)) == len(names)


def index_names(conn: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in conn.execute(f"PRAGMA index_list({table})")}


@pytest.mark.sqlite_only  # SQLite steps
def test_a_version_5_database_keeps_its_messages_and_addresses_after_migrating(db: Path):
    conn = database_at_version(db, 5)
    conn.execute(
        "INSERT INTO messages (received_at, mail_from, rcpt_to, size, sha256, raw) "
        "VALUES ('2026-11-01T00:00:00Z', '', '[]', 3, ?, 'old')",
        (hashlib.sha256(b"old").hexdigest(),))
    conn.execute("INSERT INTO reasons (code, label, default_type) "
                 "VALUES (1, 'User unknown', 'hard')")  # seeded in every real database
    conn.execute(
        "INSERT INTO addresses (address, state, error_count, last_error_at, reason_code, "
        "quarantined_at, updated_at, undefined_count) VALUES ('a@b.example', 'quarantine', "
        "1, '2026-11-01T00:00:00Z', 1, '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z', 2)")
    conn.close()
    with Store.open(db) as store:
        indexes = index_names(store.conn, "messages")
        assert "idx_messages_sha256_prefix" in indexes and "idx_messages_sha256" not in indexes
        assert "idx_addresses_state" not in index_names(store.conn, "addresses")
        assert "idx_bounces_original_message_id" not in index_names(store.conn, "bounces")
        again = store.messages.insert([message(b"old"), message(b"new")])
        assert [(m.id, m.duplicate) for m in again] == [(1, True), (2, False)]
        # addresses: clustered by the address now (migration 7), rows and view intact
        table_sql = store.conn.execute(
            "SELECT sql FROM sqlite_master WHERE name = 'addresses'").fetchone()[0]
        assert table_sql.endswith("WITHOUT ROWID")
        assert store.conn.execute(
            "SELECT address, state, error_count, reason_code, undefined_count "
            "FROM addresses").fetchall() == [("a@b.example", "quarantine", 1, 1, 2)]
        assert store.conn.execute("SELECT address, reason FROM suppression_list").fetchall() == [
            ("a@b.example", "User unknown")]


@pytest.mark.sqlite_only  # SQLite steps
def test_migrations_leave_an_operators_own_index_alone(db: Path):
    conn = database_at_version(db, 7)
    conn.execute("CREATE INDEX my_bounces_by_original ON bounces (original_message_id)")
    conn.close()
    with Store.open(db) as store:
        indexes = index_names(store.conn, "bounces")
    assert "my_bounces_by_original" in indexes
    assert "idx_bounces_original_message_id" not in indexes


@pytest.mark.sqlite_only  # SQLite's page cache
@pytest.mark.parametrize("name", [*PROCESSING_BTREES, *STORING_BTREES])
def test_each_prewarm_query_reads_its_own_btree_alone(store: Store, name: str):
    query = {**PROCESSING_BTREES, **STORING_BTREES}[name]
    (plan,) = store.conn.execute(f"EXPLAIN QUERY PLAN {query}").fetchall()
    if name.startswith("idx_"):
        assert plan[3].endswith(f"USING COVERING INDEX {name}")
    else:
        assert plan[3] == f"SCAN {name}"


def _fill_addresses(db: Path, count: int) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO addresses (address, state, error_count, updated_at, undefined_count) "
        "VALUES (?, 'erroneous', 1, '2026-11-22T13:05:00Z', 0)",
        ((f"someone.with.a.long.name.{i}@example.org",) for i in range(count)))
    conn.execute("COMMIT")
    conn.close()


@pytest.mark.sqlite_only  # SQLite's page cache
def test_prewarm_loads_the_btrees_a_bounce_reaches_when_they_fit(db: Path):
    Store.open(db).close()
    _fill_addresses(db, 5_000)
    with Store.open(db, cache_mb=16) as store:
        prewarmed = store.prewarm(PROCESSING_BTREES)
    assert prewarmed.loaded
    assert prewarmed.btrees == tuple(PROCESSING_BTREES)
    assert prewarmed.mib is not None and 0.1 < prewarmed.mib < 16
    assert prewarmed.cache_mib == 16
    assert "advice" not in prewarmed.log_fields()


@pytest.mark.sqlite_only  # SQLite's page cache
def test_prewarm_skips_btrees_larger_than_the_cache_and_says_what_would_fit(db: Path):
    Store.open(db).close()
    _fill_addresses(db, 30_000)  # ~2.5 MiB of addresses
    with Store.open(db, cache_mb=1) as store:
        prewarmed = store.prewarm(PROCESSING_BTREES)
    assert not prewarmed.loaded
    assert prewarmed.mib is not None and prewarmed.mib > 1
    fields = prewarmed.log_fields()
    assert fields["loaded"] is False
    assert fields["advice"] == f"database.cache_mb >= {int(prewarmed.mib) + 1} to prewarm them"


def test_raw_bytes_are_kept_untouched(store: Store):
    raw = b"\x00\xff binary \r\n\r\n garbage \x1b"
    stored = store.messages.insert([message(raw)])
    row = store.messages.get(stored[0].id)
    assert row is not None and row.raw == raw


def test_the_envelope_verp_token_is_recorded_at_insert(store: Store):
    stored = store.messages.insert([
        message(b"x", rcpt=("bounces+abc123@bounce.example",), verp_token="abc123")])
    assert store.conn.execute("SELECT verp_token FROM messages WHERE id = ?",
                              (stored[0].id,)).fetchone() == ("abc123",)


def test_times_are_utc_iso_with_z():
    from datetime import timedelta, timezone

    paris = timezone(timedelta(hours=1))
    assert format_time(datetime(2026, 11, 22, 14, 5, tzinfo=paris)) == "2026-11-22T13:05:00Z"
    assert format_time(datetime(2026, 11, 22, 13, 5)) == "2026-11-22T13:05:00Z"


def test_address_events_are_append_only(store: Store):
    store.conn.execute("INSERT INTO address_events (address, at, new_state, cause) "
                       "VALUES ('a@b.example', '2026-11-22T13:05:00Z', 'quarantine', 'test')")
    with pytest.raises(DatabaseError, match="append-only"):
        store.conn.execute("UPDATE address_events SET cause = 'edited'")
    with pytest.raises(DatabaseError, match="append-only"):
        store.conn.execute("DELETE FROM address_events")


_WRITER = """
import sys
from datetime import datetime, UTC
from bounced.model import IncomingMessage
from bounced.store import Store
store = Store.open(sys.argv[1])
for i in range(40):
    store.messages.insert([IncomingMessage(datetime.now(UTC), "", ("b@x",),
                                           f"{sys.argv[2]}-{i}".encode())])
store.close()
"""


def test_two_processes_can_write_at_the_same_time(db: Path):
    Store.open(db).close()
    writers = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(db), name],
                         stderr=subprocess.PIPE)
        for name in ("a", "b")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=120)
        assert writer.returncode == 0, err.decode()
    assert query(db, "SELECT count(*) FROM messages") == [(80,)]


def test_rules_read_back_from_the_table_are_the_shipped_rules_exactly(store: Store):
    """The table is what qualifies ingested mail: a rule losing a condition on the way
    (status, command) would match more than it ships for."""
    shipped = {rule for rule in load_default_rules() if rule.enabled}
    assert set(store.rules.enabled()) == shipped


def _rows_in_database_file_alone(db: Path, copy: Path) -> int:
    """Rows of ``messages`` in the main database file, ignoring its WAL: what a
    checkpoint has copied there."""
    copy.write_bytes(db.read_bytes())
    conn = sqlite3.connect(copy)
    try:
        return int(conn.execute("SELECT count(*) FROM messages").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.sqlite_only  # WAL
def test_the_background_checkpointer_copies_committed_pages_into_the_database_file(
    db: Path, tmp_path: Path
):
    with Store.open(db) as store:
        store.conn.execute("PRAGMA wal_autocheckpoint = 0")  # nobody else checkpoints
        with Checkpointer(db, interval=0.01) as checkpointer:
            store.messages.insert([message(f"m{i}".encode()) for i in range(50)])
            deadline = time.monotonic() + 10
            while checkpointer.frames == 0 and time.monotonic() < deadline:
                time.sleep(0.01)
        assert checkpointer.checkpoints >= 1 and checkpointer.frames > 0
        assert _rows_in_database_file_alone(db, tmp_path / "copy.db") == 50


@pytest.mark.sqlite_only  # WAL
def test_without_a_checkpointer_the_rows_stay_in_the_wal(db: Path, tmp_path: Path):
    """The control for the test above: the copy does not see uncheckpointed rows."""
    with Store.open(db) as store:
        store.conn.execute("PRAGMA wal_autocheckpoint = 0")
        store.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")  # the schema, not the rows
        store.messages.insert([message(f"m{i}".encode()) for i in range(50)])
        assert _rows_in_database_file_alone(db, tmp_path / "copy.db") == 0


@pytest.mark.sqlite_only  # WAL
def test_background_checkpoints_move_the_writers_own_checkpoint_out_of_the_way(db: Path):
    with Store.open(db) as store:
        with store.checkpoint_in_background():
            assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == (
                WAL_SAFETY_NET_PAGES)
        assert store.conn.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 1000


def test_a_checkpointer_that_cannot_open_the_database_reports_and_stops(tmp_path: Path):
    errors: list[BaseException] = []
    with Checkpointer(tmp_path / "missing" / "x.db", interval=0.01, on_error=errors.append):
        pass
    assert errors and isinstance(errors[0], sqlite3.Error)
