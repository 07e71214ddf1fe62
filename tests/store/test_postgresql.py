"""What only the PostgreSQL engine has: its schema versions, the explicit migration,
and several writers at once (README "Several hosts")."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import pytest

from bounced.model import IncomingMessage
from bounced.store import SCHEMA_VERSION, Store, StoreError
from bounced.store.schema import MIGRATIONS, POSTGRESQL_STEPS
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
