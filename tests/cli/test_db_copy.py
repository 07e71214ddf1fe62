"""``bounced db copy``: a host's SQLite file into the PostgreSQL database several hosts
will share; resumable, verified by counts."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bounced.model import Channel
from bounced.store import Store
from bounced.store.copy import copy_database
from bounced.store.sent import SentMessage
from tests.harness.database import query
from tests.harness.postgres import PostgresServer

#: Tables numbered by the database: a second run goes on after their largest id.
TABLES = ("messages", "bounces", "qualification", "address_events")


@pytest.fixture
def empty_pg(postgres_server: PostgresServer) -> Iterator[str]:
    url = postgres_server.create_database()
    yield url
    postgres_server.drop_database(url)


def snapshot(db: Path | str) -> dict[str, list[tuple]]:
    return {
        "messages": query(db, "SELECT id, received_at, sha256, raw, state, channel "
                              "FROM messages ORDER BY id"),
        "bounces": query(db, "SELECT id, message_id, recipient, failure_type, reason_code, "
                             "qualification_id, at FROM bounces ORDER BY id"),
        "addresses": query(db, "SELECT address, state, error_count, last_counted_error_at, "
                               "release_at, channel FROM addresses ORDER BY address"),
        "history": query(db, "SELECT id, address, at, new_state, cause, bounce_id "
                             "FROM address_events ORDER BY id"),
        "rules": query(db, "SELECT id, pattern, enabled, origin FROM rules ORDER BY id"),
        "sent": query(db, "SELECT channel, id, recipient, registered_at FROM sent_messages "
                          "ORDER BY channel, id"),
    }


def test_a_sqlite_database_copied_to_postgresql_has_the_same_rows_and_resumes(
        tmp_path: Path, empty_pg: str, bounced, mail_file) -> None:
    source = tmp_path / "bounced.db"
    for day in range(1, 4):
        at = f"2026-11-0{day}T09:00:00Z"
        for template, address in (("soft-mailbox-full", "full@example.org"),
                                  ("hard-user-unknown", f"gone{day}@example.org")):
            assert bounced(["ingest", "--db", str(source), "--at", at,
                            str(mail_file(template, address=address))]).status == 0
    assert bounced(["rules", "add", "--db", str(source), "frobnicator", "--type", "hard",
                    "--reason", "1"]).status == 0
    copied = bounced(["db", "copy", "--from", f"sqlite:///{source}", "--to", empty_pg])
    assert copied.status == 0, copied.out + copied.err
    assert "verified" in copied.out and "MISMATCH" not in copied.out
    assert snapshot(empty_pg) == snapshot(source)
    # Resumable: a second run copies nothing more, and new ids continue after the copy.
    again = bounced(["db", "copy", "--from", str(source), "--to", empty_pg])
    assert again.status == 0
    assert all(" copied         0 " in line for line in again.out.splitlines()
               if line.startswith(TABLES))
    assert bounced(["ingest", "--db", empty_pg, "--at", "2026-11-04T09:00:00Z",
                    str(mail_file("soft-mailbox-full", address="full@example.org"))]
                   ).status == 0
    assert query(empty_pg, "SELECT max(id) FROM messages") == [(7,)]
    check = bounced(["check", "--db", empty_pg, "full@example.org"])
    assert "erroneous" in check.out and " 4 " in check.out  # 3 copied + 1 counted here


def test_sent_messages_are_copied_page_by_page_by_their_two_column_key(
        tmp_path: Path, empty_pg: str, bounced) -> None:
    source = tmp_path / "bounced.db"
    sent = [SentMessage(channel, f"m-{n}", f"tel:+3361234567{n}")
            for channel in (Channel.PUSH, Channel.SMS) for n in range(3)]
    with Store.open(source) as store:
        store.sent.register(sent, datetime(2026, 11, 22, 13, 5, tzinfo=UTC))
    assert bounced(["db", "migrate", "--db", empty_pg]).status == 0
    with Store.open_readonly(source) as reader, Store.open(empty_pg) as target:
        # Two rows a batch: pages end inside one channel and between the two.
        results = {r.table: r for r in copy_database(reader, target, batch=2)}
        assert (results["sent_messages"].copied, results["sent_messages"].verified) == (6, True)
        # Again: what the target has already is left as it is (ON CONFLICT DO NOTHING).
        again = {r.table: r for r in copy_database(reader, target, batch=2)}
        assert (again["sent_messages"].target_rows, again["sent_messages"].verified) == (
            6, True)
    assert snapshot(empty_pg)["sent"] == snapshot(source)["sent"]
