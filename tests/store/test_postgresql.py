"""What only the PostgreSQL engine has: its schema versions, the explicit migration,
and several writers at once (README "Several hosts")."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from bounced.model import Channel, IncomingMessage
from bounced.store import SCHEMA_VERSION, Store, StoreError
from bounced.store.engine import PgConnection, pg_connect
from bounced.store.schema import MIGRATIONS, POSTGRESQL_STEPS, migrate_postgresql
from bounced.store.sent import SentMessage
from tests.harness.database import query
from tests.harness.postgres import PostgresServer

T0 = datetime(2026, 11, 22, 13, 5, tzinfo=UTC)


@pytest.fixture
def empty_url(postgres_server: PostgresServer):
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


def test_every_schema_step_has_a_postgresql_body() -> None:
    assert sorted(POSTGRESQL_STEPS) == [step.version for step in MIGRATIONS]


def test_a_database_without_the_schema_is_refused_with_the_command_that_fixes_it(
        empty_url: str, bounced) -> None:
    with pytest.raises(StoreError, match=r"schema version 0, this bounced needs "
                                         rf"{SCHEMA_VERSION} \(run `bounced db migrate"):
        Store.open(empty_url)
    check = bounced(["check", "--db", empty_url, "a@example.org"])
    assert check.status == 2 and "bounced db migrate" in check.err
    migrated = bounced(["db", "migrate", "--db", empty_url])
    assert migrated.status == 0, migrated.err
    assert f"schema version 0 -> {SCHEMA_VERSION}" in migrated.out
    again = bounced(["db", "migrate", "--db", empty_url])
    assert "nothing to migrate" in again.out
    assert query(empty_url, "SELECT count(*) FROM schema_migrations") == [(SCHEMA_VERSION,)]
    assert bounced(["db", "check", "--db", empty_url]).status == 0


def test_a_database_newer_than_the_code_is_refused(empty_url: str) -> None:
    Store.open(empty_url, migrate=True).close()
    query(empty_url, "INSERT INTO schema_migrations (version, name) VALUES (?, 'future')",
          (SCHEMA_VERSION + 1,))
    with pytest.raises(StoreError, match="newer"):
        Store.open(empty_url)


def test_times_read_back_as_the_strings_sqlite_holds(pg_url: str) -> None:
    with Store.open(pg_url) as store:
        [stored] = store.messages.insert([IncomingMessage(T0, "", ("b@x",), b"raw")])
        message = store.messages.get(stored.id)
    assert message is not None and message.received_at == T0
    assert query(pg_url, "SELECT received_at FROM messages") == [("2026-11-22T13:05:00Z",)]
    assert query(pg_url, "SELECT pg_typeof(received_at)::text FROM messages") == [
        ("timestamp with time zone",)]


def test_the_same_bytes_sent_to_two_hosts_at_once_are_stored_once(pg_url: str) -> None:
    raws = [f"bounce {i}".encode() for i in range(200)]
    results: list[list[tuple[int, bool]]] = [[], []]

    def host(index: int) -> None:
        with Store.open(pg_url) as store:
            for raw in raws:
                [accepted] = store.messages.insert([IncomingMessage(T0, "", ("b@x",), raw)])
                results[index].append((accepted.id, accepted.duplicate))

    threads = [threading.Thread(target=host, args=(index,)) for index in (0, 1)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert query(pg_url, "SELECT count(*) FROM messages") == [(200,)]
    for first, second in zip(*results, strict=True):
        assert first[0] == second[0]           # the same message id on both hosts
        assert first[1] != second[1]           # stored by one, a duplicate for the other


def database_at_version(url: str, version: int) -> None:
    """The PostgreSQL database as release ``version`` of the schema left it."""
    conn = PgConnection(lambda: pg_connect(url))
    try:
        migrate_postgresql(conn, target=version)
    finally:
        conn.close()


def test_a_version_10_database_migrates_to_the_channels_keeping_its_rows(
        empty_url: str, bounced) -> None:
    database_at_version(empty_url, 10)
    assert query(empty_url, "SELECT max(version) FROM schema_migrations") == [(10,)]
    query(empty_url, "INSERT INTO messages (received_at, mail_from, rcpt_to, size, sha256, raw) "
                     "VALUES ('2026-11-01T00:00:00Z', '', '[]', 3, 'old', ?)", (b"old",))
    query(empty_url, "INSERT INTO bounces (message_id, recipient, kind, failure_type, "
                     "reason_code, received_at, at) VALUES (1, 'a@b.example', 'failure', "
                     "'hard', 1, '2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')")
    query(empty_url, "INSERT INTO addresses (address, state, error_count, reason_code, "
                     "quarantined_at, updated_at) VALUES ('a@b.example', 'quarantine', 1, 1, "
                     "'2026-11-01T00:00:00Z', '2026-11-01T00:00:00Z')")
    with pytest.raises(StoreError, match=rf"schema version 10, this bounced needs "
                                         rf"{SCHEMA_VERSION} \(run `bounced db migrate"):
        Store.open(empty_url)
    migrated = bounced(["db", "migrate", "--db", empty_url])
    assert migrated.status == 0, migrated.err
    assert f"schema version 10 -> {SCHEMA_VERSION}" in migrated.out
    assert query(empty_url, "SELECT name FROM schema_migrations WHERE version = 11") == [
        ("channels: sms and push",)]
    # Rows written before the channels are e-mail; the views carry the channel.
    for table in ("messages", "bounces", "addresses"):
        assert query(empty_url, f"SELECT channel FROM {table}") == [("email",)], table
    assert query(empty_url, "SELECT address, reason, since, channel FROM suppression_list") == [
        ("a@b.example", "User unknown", "2026-11-01T00:00:00Z", "email")]
    assert query(empty_url, "SELECT day, domain, channel, bounces FROM daily_summary") == [
        ("2026-11-01", "b.example", "email", 1)]
    assert query(empty_url, "SELECT pg_typeof(day)::text FROM daily_summary") == [("date",)]
    with Store.open(empty_url) as store:
        store.sent.register([SentMessage(Channel.SMS, "m1", "tel:+33612345678")], T0)
        assert store.sent.recipient(Channel.SMS, "m1") == "tel:+33612345678"
    assert query(empty_url, "SELECT pg_typeof(registered_at)::text FROM sent_messages") == [
        ("timestamp with time zone",)]
    assert bounced(["db", "check", "--db", empty_url]).status == 0


def test_the_daily_summary_names_the_domain_of_each_channel(pg_url: str) -> None:
    query(pg_url, "INSERT INTO messages (received_at, mail_from, rcpt_to, size, sha256, raw) "
                  "VALUES ('2026-11-22T13:05:00Z', '', '[]', 1, 'x', ?)", (b"x",))
    for recipient, channel in (("Jane@Example.ORG", "email"), ("tel:+33612345678", "sms"),
                               ("push:com.example.app:TOKEN", "push")):
        query(pg_url, "INSERT INTO bounces (message_id, recipient, kind, failure_type, "
                      "received_at, at, channel) VALUES (1, ?, 'failure', 'hard', "
                      "'2026-11-22T23:59:59Z', '2026-11-22T23:59:59Z', ?)", (recipient, channel))
    assert sorted(query(pg_url, "SELECT day, domain, channel FROM daily_summary")) == [
        ("2026-11-22", "example.org", "email"), ("2026-11-22", "push:com.example.app", "push"),
        ("2026-11-22", "sms", "sms")]


def test_no_wal_bounds_nor_checkpointer_on_postgresql(pg_url: str) -> None:
    with Store.open(pg_url) as store:
        store.configure_writer(busy_timeout_ms=0, autocheckpoint_pages=0, wal_limit_mb=1)
        with store.checkpoint_in_background(wal_limit_mb=1, wal_warn_mb=1) as checkpointer:
            assert checkpointer is None  # the server checkpoints and bounds its own WAL
            store.messages.insert([IncomingMessage(T0, "", ("b@x",), b"raw")])
    assert query(pg_url, "SELECT count(*) FROM messages") == [(1,)]
