"""The WAL file stays bounded: a reader that pins it is reported, and once it goes the
checkpointer brings the file back under ``database.wal_limit_mb``."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bounced.model import IncomingMessage
from bounced.store import Checkpointer, Store
from tests.harness.waiting import eventually

#: The SQLite WAL file (a PostgreSQL server bounds its own: tests/store/test_postgresql.py).
pytestmark = pytest.mark.sqlite_only

MIB = 1024 * 1024


def messages(first: int, count: int, size: int = 64 * 1024) -> list[IncomingMessage]:
    return [IncomingMessage(datetime.now(UTC), "", ("bounces@bounce.example",),
                            f"X-N: {n}\r\n\r\n".encode() + bytes([n % 256]) * size)
            for n in range(first, first + count)]


def wait_for(condition: Any, seconds: float = 20.0) -> bool:
    return eventually(condition, seconds=seconds, every=0.02)


def test_a_pinned_wal_is_reported_then_truncated_once_the_reader_goes(db: Path) -> None:
    wal = Path(f"{db}-wal")
    events: list[tuple[str, dict[str, Any]]] = []
    with Store.open(db) as store:
        store.conn.execute("PRAGMA wal_autocheckpoint = 0")  # only the checkpointer
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchone()  # a snapshot, held
        with Checkpointer(db, interval=0.01, wal_limit_mb=1, wal_warn_mb=2,
                          on_event=lambda name, fields: events.append((name, fields))) as ckpt:
            for start in range(0, 80, 10):  # ~5 MB, in eight commits
                store.messages.insert(messages(start, 10))
            assert wait_for(lambda: any(name == "database.wal_pinned" for name, _ in events))
            pinned_size = wal.stat().st_size
            reader.close()
            assert wait_for(lambda: wal.stat().st_size <= MIB)
            assert wait_for(lambda: any(name == "database.wal_released" for name, _ in events))
        assert ckpt.truncations >= 1
    assert pinned_size > 4 * MIB
    names = [name for name, _ in events]
    assert names == ["database.wal_pinned", "database.wal_released"]  # once a minute at most
    pinned = events[0][1]
    assert pinned["wal_mib"] >= 2 and pinned["wal_warn_mb"] == 2
    assert events[1][1]["pinned_seconds"] >= pinned["pinned_seconds"]


def test_a_wal_under_the_warning_size_is_not_reported(db: Path) -> None:
    events: list[str] = []
    with Store.open(db) as store:
        reader = sqlite3.connect(db, isolation_level=None)
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM messages").fetchone()
        with Checkpointer(db, interval=0.01, wal_limit_mb=1, wal_warn_mb=64,
                          on_event=lambda name, _fields: events.append(name)) as ckpt:
            store.messages.insert(messages(0, 10))
            assert wait_for(lambda: ckpt.checkpoints >= 3)
        reader.close()
    assert events == []


def test_the_writers_wal_is_cut_back_to_the_limit_when_it_restarts(db: Path) -> None:
    """journal_size_limit on the writing connection: after a complete checkpoint the
    next transaction starts the WAL over and the file is cut back to the limit."""
    wal = Path(f"{db}-wal")
    with Store.open(db) as store:
        store.configure_writer(busy_timeout_ms=1000, autocheckpoint_pages=0, wal_limit_mb=1)
        store.messages.insert(messages(0, 80))
        grown = wal.stat().st_size
        store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)")  # copies all, resets nothing
        assert wal.stat().st_size == grown
        store.messages.insert(messages(100, 1, size=10))
        assert grown > 4 * MIB and wal.stat().st_size <= MIB
