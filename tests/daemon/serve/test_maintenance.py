"""The daemon's periodic maintenance runs the policy's cleanup on the real database."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bounced.config import Config, DatabaseConfig
from bounced.daemon.serve import ProcessingWorker
from bounced.model import AddressState, QuarantineState, Reason
from bounced.store import Store, write_state

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_maintenance_releases_a_mailbox_full_quarantine_that_is_due(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Store.open(db) as store, store.transaction() as conn:
        write_state(
            conn,
            AddressState(
                address="full@example.org",
                state=QuarantineState.QUARANTINE,
                reason=Reason.MAILBOX_FULL,
                quarantined_at=NOW - timedelta(days=31),
                release_at=NOW - timedelta(days=1),
                updated_at=NOW - timedelta(days=31),
            ),
            NOW - timedelta(days=31),
        )
    worker = ProcessingWorker(Config(database=DatabaseConfig(path=str(db))), clock=lambda: NOW)
    try:
        worker.maintenance()
    finally:
        worker.close()
    conn = sqlite3.connect(db)
    try:
        state = conn.execute("SELECT state FROM addresses WHERE address = 'full@example.org'")
        assert state.fetchall() == [("valid",)]
        events = conn.execute("SELECT old_state, new_state FROM address_events").fetchall()
        assert events == [("quarantine", "valid")]
    finally:
        conn.close()


def test_maintenance_schedules_its_next_run_one_interval_later(tmp_path: Path) -> None:
    worker = ProcessingWorker(
        Config(database=DatabaseConfig(path=str(tmp_path / "s.db"))), clock=lambda: NOW
    )
    try:
        before = worker.next_maintenance
        worker.maintenance()
        assert worker.next_maintenance - before >= Config().maintenance.interval.total_seconds()
    finally:
        worker.close()
