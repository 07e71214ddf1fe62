"""The ``messages`` table: every received message, raw, before anything is parsed.

The raw bytes are committed first, in their own transaction, and only then does the
daemon answer ``250`` (:meth:`MessageTable.insert`): nothing accepted is ever lost,
even if processing later crashes. A message whose processing fails keeps its raw bytes
and its error (state ``failed``), ready to be processed again (``docs/schema.md``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from bounced.core.times import format_time, parse_time
from bounced.model import (
    AcceptedMessage,
    Channel,
    IncomingMessage,
    Kind,
    MessageState,
    StoredMessage,
)
from bounced.store.engine import BEGINNING
from bounced.store.schema import DIGEST_PREFIX, DUPLICATE_LOOKUP

if TYPE_CHECKING:
    from bounced.store import Store

_COLUMNS = "id, received_at, mail_from, rcpt_to, raw, state, peer, error, attempts, channel"


@dataclass(frozen=True, slots=True)
class ProcessedMark:
    """What a processed message's row records: its kind, VERP token, whether its token
    vouched for anyone, and when."""

    message_id: int
    kind: Kind
    verp_token: str | None
    trusted: bool
    at: datetime


class MessageTable:
    """Received messages: store them, find the backlog, record what processing did."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def insert(self, messages: Sequence[IncomingMessage]) -> list[AcceptedMessage]:
        """Store raw messages (state ``pending``) in ONE transaction, committed and on
        disk when this returns. Identical bytes already stored (same sha256, also within
        this batch) are not stored again: their existing id comes back as a duplicate.
        On PostgreSQL the unique digest decides (``ON CONFLICT DO NOTHING``), so a
        bounce re-sent to another host at the same moment is stored once too."""
        results: list[AcceptedMessage] = []
        concurrent = self._store.dialect.concurrent_writers
        with self._store.atomic():
            conn = self._store.conn
            for message in messages:
                digest = hashlib.sha256(message.raw).hexdigest()
                if not concurrent:
                    existing = conn.execute(
                        DUPLICATE_LOOKUP, (digest[:DIGEST_PREFIX], digest)
                    ).fetchone()
                    if existing is not None:
                        results.append(AcceptedMessage(int(existing[0]), duplicate=True))
                        continue
                row = conn.execute(
                    "INSERT INTO messages (received_at, mail_from, rcpt_to, size, sha256, "
                    "raw, state, peer, verp_token, channel) "
                    "VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?) "
                    + ("ON CONFLICT (sha256) DO NOTHING " if concurrent else "")
                    + "RETURNING id",
                    (
                        format_time(message.received_at),
                        message.mail_from,
                        json.dumps(list(message.rcpt_to), ensure_ascii=False),
                        len(message.raw),
                        digest,
                        message.raw,
                        message.peer,
                        message.verp_token,
                        message.channel.value,
                    ),
                ).fetchone()
                if row is None:
                    # Another host stored these bytes first (the unique digest waited
                    # for its commit): the same message, re-sent to us.
                    (found,) = conn.execute("SELECT id FROM messages WHERE sha256 = ?",
                                            (digest,)).fetchone()
                    results.append(AcceptedMessage(int(found), duplicate=True))
                    continue
                results.append(AcceptedMessage(int(row[0]), duplicate=False))
        return results

    # ---- the backlog

    def ids(self, state: MessageState, limit: int) -> list[int]:
        """Oldest first, so the backlog is worked through in arrival order."""
        rows = self._store.conn.execute(
            "SELECT id FROM messages WHERE state = ? ORDER BY id LIMIT ?", (state.value, limit)
        ).fetchall()
        return [int(row[0]) for row in rows]

    def count(self, state: MessageState) -> int:
        row = self._store.conn.execute(
            "SELECT count(*) FROM messages WHERE state = ?", (state.value,)
        ).fetchone()
        return int(row[0])

    def counts(self) -> dict[MessageState, int]:
        """How many messages are in each state."""
        found = dict(self._store.conn.execute(
            "SELECT state, count(*) FROM messages GROUP BY state").fetchall())
        return {state: int(found.get(state.value, 0)) for state in MessageState}

    def oldest_pending_received_at(self) -> datetime | None:
        """When the oldest unprocessed message arrived (ids grow with arrival)."""
        row = self._store.conn.execute(
            "SELECT received_at FROM messages WHERE state = 'pending' ORDER BY id LIMIT 1"
        ).fetchone()
        return parse_time(row[0]) if row else None

    # ---- reading

    def get(self, message_id: int) -> StoredMessage | None:
        row = self._store.conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return _stored(row) if row is not None else None

    def iterate(self, message_ids: Sequence[int], *, max_bytes: int = 4 * 1024 * 1024
                ) -> Iterator[tuple[int, StoredMessage | None]]:
        """``(id, message or None)`` for each id in order, read a few at a time: as
        many as fit in ``max_bytes`` of raw message (one at least), so a batch of large
        messages never sits in memory whole and small ones cost one query for many (a
        round trip each is what PostgreSQL's worker waited on most)."""
        if not message_ids:
            return
        marks = ",".join("?" * len(message_ids))
        sizes = dict(self._store.conn.execute(
            f"SELECT id, length(raw) FROM messages WHERE id IN ({marks})", tuple(message_ids)
        ).fetchall())
        batch: list[int] = []
        held = 0
        for message_id in message_ids:
            size = int(sizes.get(message_id) or 0)
            if batch and held + size > max_bytes:
                yield from self._read_batch(batch)
                batch, held = [], 0
            batch.append(message_id)
            held += size
        yield from self._read_batch(batch)

    def _read_batch(self, message_ids: list[int]
                    ) -> Iterator[tuple[int, StoredMessage | None]]:
        marks = ",".join("?" * len(message_ids))
        rows = {int(row[0]): _stored(row) for row in self._store.conn.execute(
            f"SELECT {_COLUMNS} FROM messages WHERE id IN ({marks})", tuple(message_ids)
        ).fetchall()}
        for message_id in message_ids:
            yield message_id, rows.pop(message_id, None)

    def state(self, message_id: int) -> MessageState | None:
        row = self._store.conn.execute(
            "SELECT state FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return MessageState(row[0]) if row is not None else None

    def settled_state(self, message_id: int) -> MessageState | None:
        """The state of a message once nobody is processing it: on PostgreSQL, where
        another process or host may hold its row right now (its worker claimed it), this
        waits for that transaction to end (``FOR SHARE``), so what it wrote can be read;
        on SQLite the write lock already made the other writer finish."""
        if not self._store.dialect.concurrent_writers:
            return self.state(message_id)
        with self._store.atomic():
            row = self._store.conn.execute(
                "SELECT state FROM messages WHERE id = ? FOR SHARE", (message_id,)
            ).fetchone()
        return MessageState(row[0]) if row is not None else None

    def raw(self, message_id: int) -> bytes | None:
        """The stored bytes (``None``: no such message, or purged by retention)."""
        row = self._store.conn.execute(
            "SELECT raw FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return bytes(row[0]) if row is not None and row[0] else None

    def processed_with_bounces_since(self, since: datetime | None) -> list[int]:
        """Processed messages with raw bytes and a bounce counted since ``since`` (by
        ``bounces.at``, indexed, so a window of a day does not scan months)."""
        rows = self._store.conn.execute(
            "SELECT DISTINCT m.id FROM bounces b JOIN messages m ON m.id = b.message_id "
            "WHERE b.at >= ? AND m.state = 'processed' AND length(m.raw) > 0 ORDER BY m.id",
            (format_time(since) if since is not None else BEGINNING,),
        ).fetchall()
        return [int(row[0]) for row in rows]

    # ---- what processing did

    def begin_attempts(self, message_ids: Sequence[int]) -> list[int]:
        """Count one more processing attempt of each message, committed before any of
        the work: if the worker dies on a message, the count says so at the next start
        (``bounced.ops.processing`` isolates such messages, then sets them aside).
        Returns the ids counted: those not processed yet, and on PostgreSQL not held
        by another host's worker right now (``SKIP LOCKED``: that one is counting
        its own attempt)."""
        if not message_ids:
            return []
        marks = ",".join("?" * len(message_ids))
        where = f"id IN ({marks}) AND state <> 'processed'"
        if self._store.dialect.concurrent_writers:
            where = f"id IN (SELECT id FROM messages WHERE {where} FOR UPDATE SKIP LOCKED)"
        with self._store.atomic():
            rows = self._store.conn.execute(
                f"UPDATE messages SET attempts = attempts + 1 WHERE {where} RETURNING id",
                tuple(message_ids),
            ).fetchall()
        return sorted(int(row[0]) for row in rows)

    def lock_unprocessed(self, message_ids: Sequence[int]) -> list[int]:
        """Inside a transaction on PostgreSQL: lock those of ``message_ids`` that no
        other host holds and that are not processed yet, until the transaction ends;
        returns them. Whoever holds a message's row processes it: once, on one host."""
        return self._among(message_ids, "state <> 'processed' ORDER BY id "
                                        "FOR UPDATE SKIP LOCKED")

    def began_before(self, message_ids: Sequence[int]) -> set[int]:
        """Those of ``message_ids`` whose processing began before and never finished
        (still pending, with attempts)."""
        return set(self._among(message_ids, "attempts > 0 AND state = 'pending'"))

    def _among(self, message_ids: Sequence[int], condition: str) -> list[int]:
        """The ids of ``message_ids`` whose rows meet ``condition`` (SQL after WHERE)."""
        if not message_ids:
            return []
        marks = ",".join("?" * len(message_ids))
        rows = self._store.conn.execute(
            f"SELECT id FROM messages WHERE id IN ({marks}) AND {condition}",
            tuple(message_ids),
        ).fetchall()
        return [int(row[0]) for row in rows]

    def mark_processed(self, marks: Sequence[ProcessedMark]) -> None:
        """The messages of a chunk done, in one statement sent once for all (inside the
        chunk's transaction, with their verdicts)."""
        if not marks:
            return
        self._store.conn.executemany(
            "UPDATE messages SET state = 'processed', error = NULL, kind = ?, verp_token = ?, "
            "trusted = ?, processed_at = ? WHERE id = ?",
            [(mark.kind.value, mark.verp_token, int(mark.trusted), format_time(mark.at),
              mark.message_id) for mark in marks],
        )

    def mark_failed(self, message_id: int, error: str, at: datetime) -> None:
        """Record a processing failure; the raw message stays for a later retry."""
        self._store.conn.execute(
            "UPDATE messages SET state = 'failed', error = ?, processed_at = ? WHERE id = ?",
            (error, format_time(at), message_id),
        )


def _stored(row: tuple) -> StoredMessage:
    return StoredMessage(
        id=int(row[0]),
        received_at=parse_time(row[1]) or datetime.now(UTC),
        mail_from=row[2],
        rcpt_to=tuple(json.loads(row[3])),
        raw=bytes(row[4]),
        state=MessageState(row[5]),
        peer=row[6],
        error=row[7],
        attempts=int(row[8] or 0),
        channel=Channel(row[9] or Channel.EMAIL.value),
    )
