"""The group-commit writer: concurrent messages share a transaction; backlog is tracked."""

from __future__ import annotations

import asyncio
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

from bounced.daemon.writer import GroupCommitWriter, StoreClosedError
from bounced.model import IncomingMessage
from bounced.store import Store


def message(n: int) -> IncomingMessage:
    return IncomingMessage(
        received_at=datetime(2026, 11, 22, 12, 0, tzinfo=UTC),
        mail_from="",
        rcpt_to=("bounces@bounce.example",),
        raw=f"Subject: {n}\r\n\r\nbody {n}\r\n".encode(),
        peer="127.0.0.1:1",
    )


def test_messages_arriving_during_a_commit_go_into_the_next_one_together(tmp_path: Path) -> None:
    db = tmp_path / "group.db"
    Store.open(db).close()

    async def scenario() -> tuple[GroupCommitWriter, list[int]]:
        writer = GroupCommitWriter(db, max_pending=10_000)
        writer.start()
        blocker = sqlite3.connect(db, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")  # the database is busy: the first commit waits
        tasks = [asyncio.ensure_future(writer.accept(message(n))) for n in range(50)]
        while writer._queued < 50:
            await asyncio.sleep(0.01)
        blocker.execute("COMMIT")
        blocker.close()
        stored = await asyncio.gather(*tasks)
        await writer.stop()
        return writer, [s.id for s in stored]

    writer, ids = asyncio.run(scenario())
    assert sorted(ids) == list(range(1, 51))
    assert writer.committed == 50
    assert writer.commits <= 2  # whatever the first took, the rest waited and went in one


def test_the_pending_backlog_past_max_pending_means_overloaded(tmp_path: Path) -> None:
    db = tmp_path / "backlog.db"
    Store.open(db).close()

    async def scenario() -> tuple[bool, bool, int]:
        writer = GroupCommitWriter(db, max_pending=3)
        writer.start()
        before = writer.overloaded()
        for n in range(4):
            await writer.accept(message(n))
        after = writer.overloaded()
        await writer.stop()
        return before, after, writer.pending

    before, after, pending = asyncio.run(scenario())
    assert (before, after, pending) == (False, True, 4)


def test_a_duplicate_does_not_grow_the_backlog(tmp_path: Path) -> None:
    db = tmp_path / "dup.db"
    Store.open(db).close()

    async def scenario() -> tuple[list[bool], int]:
        writer = GroupCommitWriter(db, max_pending=10)
        writer.start()
        first = await writer.accept(message(1))
        again = await writer.accept(message(1))
        await writer.stop()
        return [first.duplicate, again.duplicate], writer.pending

    assert asyncio.run(scenario()) == ([False, True], 1)


def test_a_stopped_writer_refuses_rather_than_loses(tmp_path: Path) -> None:
    db = tmp_path / "stopped.db"
    Store.open(db).close()

    async def scenario() -> str:
        writer = GroupCommitWriter(db, max_pending=10)
        writer.start()
        await writer.stop()
        try:
            await writer.accept(message(1))
        except StoreClosedError as error:
            return str(error)
        return "accepted"

    assert asyncio.run(scenario()) == "the writer is stopped"
