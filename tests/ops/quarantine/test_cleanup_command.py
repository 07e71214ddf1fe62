"""``bounced cleanup``: releases, counter resets, and the retention purge."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bounced.model import IncomingMessage
from bounced.store import Store
from tests.harness.database import is_postgresql
from tests.ops.quarantine.conftest import Ops, day, iso


def test_cleanup_releases_mailbox_full_after_30_days_and_resets_stale_counters(
        ops: Ops) -> None:
    for number in range(5):
        ops.ingest(day(number), ("mailbox-full", "full@example.org"))
    ops.ingest(day(20), ("mailbox-full", "stale@example.org"))
    ops.ingest(day(30), ("mailbox-full", "recent@example.org"))
    ops.ingest(day(0), ("user-unknown", "gone@example.org"))
    early = ops.cmd("cleanup", "--at", iso(day(4 + 29)))
    assert "full@example.org" not in early.out
    assert "stale@example.org: erroneous -> valid" in early.out  # last error 13 days old
    assert ops.state("full@example.org")[0] == "quarantine"

    result = ops.cmd("cleanup", "--at", iso(day(4 + 31)))
    assert "full@example.org: quarantine -> valid" in result.out
    assert ops.state("full@example.org")[:2] == ("valid", 0)
    assert ops.state("stale@example.org")[:2] == ("valid", 0)
    assert ops.state("recent@example.org")[:2] == ("erroneous", 1)  # 5 days old: kept
    assert ops.state("gone@example.org")[0] == "quarantine"


def test_purge_past_retention_keeps_the_evidence_of_state_changes(ops: Ops) -> None:
    ops.ingest(day(0), ("user-unknown", "gone@example.org"))          # event -> kept
    ops.ingest(day(0), ("mailbox-full", "soft@example.org"))          # 1st error: event
    ops.ingest(day(0.5), ("mailbox-full", "soft@example.org"))        # not counted: no event
    with Store.open(ops.db) as store:                                  # never processed
        store.messages.insert([IncomingMessage(datetime.now(UTC), "x@example.org",
                                               ("bounces@example.org",), b"Subject: x\n\nx")])
    assert ops.sql("SELECT count(*) FROM messages") == [(4,)]

    nothing = ops.cmd("cleanup")
    assert "0 message(s) and 0 bounce(s) deleted" in nothing.out

    later = datetime.now(UTC) + timedelta(days=181)
    result = ops.cmd("cleanup", "--at", iso(later), "--batch", "1")
    assert "1 message(s) and 1 bounce(s) deleted, raw bytes dropped from 2 message(s)" \
        in result.out
    assert ops.sql("SELECT count(*), count(CASE WHEN length(raw) = 0 THEN 1 END) FROM messages "
                   "WHERE state = 'processed'") == [(2, 2)]
    assert ops.sql("SELECT state, length(raw) > 0 FROM messages WHERE state != 'processed'") \
        == [("pending", 1)]
    assert ops.sql("SELECT count(*) FROM address_events e JOIN bounces b ON b.id = e.bounce_id") \
        == [(2,)]
    if not is_postgresql(ops.db):  # PostgreSQL enforces foreign keys on every write
        assert ops.sql("PRAGMA foreign_key_check") == []
    again = ops.cmd("cleanup", "--at", iso(later))
    assert "0 message(s) and 0 bounce(s) deleted, raw bytes dropped from 0" in again.out
