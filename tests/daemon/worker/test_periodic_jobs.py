"""The worker's periodic jobs run the policy's cleanup and the retention purge on the
real database, each on its schedule, and a job that fails is shunted, not fatal."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bounced.config import Config, DatabaseConfig
from bounced.daemon.runner import Runner
from bounced.daemon.worker import CleanupJob, RetentionJob, Worker
from bounced.model import AddressState, IncomingMessage, Kind, QuarantineState, Reason
from bounced.store import Store
from bounced.store.messages import ProcessedMark

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def worker_on(db: Path, **database: object) -> Worker:
    config = Config(database=replace(DatabaseConfig(path=str(db)), **database))
    return Worker(config, clock=lambda: NOW)


def test_cleanup_releases_a_mailbox_full_quarantine_that_is_due(tmp_path: Path) -> None:
    db = tmp_path / "m.db"
    with Store.open(db) as store, store.atomic():
        store.addresses.put(
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
    worker = worker_on(db)
    try:
        assert CleanupJob(worker).run_once() == 1
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


def test_retention_purges_processed_messages_older_than_the_retention(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    with Store.open(db) as store:
        old, recent = store.messages.insert([
            IncomingMessage(NOW - timedelta(days=200), "", ("b@x.example",), b"Subject: old\r\n"),
            IncomingMessage(NOW - timedelta(days=2), "", ("b@x.example",), b"Subject: new\r\n"),
        ])
        with store.atomic():
            store.messages.mark_processed([
                ProcessedMark(accepted.id, Kind.NOT_BOUNCE, None, True, NOW)
                for accepted in (old, recent)])
    worker = worker_on(db, retention=timedelta(days=180))
    try:
        assert RetentionJob(worker).run_once() == 1
    finally:
        worker.close()
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("SELECT id FROM messages ORDER BY id").fetchall() == [(recent.id,)]
    finally:
        conn.close()


def test_a_job_runs_once_per_interval(tmp_path: Path) -> None:
    clock = [1000.0]
    worker = worker_on(tmp_path / "s.db")
    try:
        job = CleanupJob(worker)
        job._monotonic = lambda: clock[0]  # type: ignore[method-assign]
        job.next_run = clock[0]
        assert job.run_once() == 1
        assert job.run_once() == 0
        clock[0] += worker.config.maintenance.interval.total_seconds()
        assert job.run_once() == 1
    finally:
        worker.close()


class _Failing(Runner[int]):
    name = "test"

    def __init__(self, log: object) -> None:
        super().__init__(log)
        self.disposed: list[int] = []
        self.shunted: list[tuple[int, str]] = []

    def _work(self) -> list[int]:
        return [1, 2, 3]

    def _dispose(self, item: int) -> None:
        if item == 2:
            raise RuntimeError("poison")
        self.disposed.append(item)

    def _shunt(self, item: int, error: Exception) -> None:
        self.shunted.append((item, str(error)))


def test_a_failing_item_is_shunted_and_the_others_go_on() -> None:
    runner = _Failing(log=None)
    assert runner.run_once() == 3
    assert runner.disposed == [1, 3]
    assert runner.shunted == [(2, "poison")]
