"""The retention purge: raw messages and bounce rows older than ``database.retention``.

What it keeps, on purpose (``docs/schema.md``):

- messages still ``pending`` or ``failed``: nothing accepted is lost before it was
  processed;
- bounce rows that caused a state change: ``address_events`` is the append-only history
  and its ``bounce_id`` must keep pointing at the evidence. Their message row stays
  too (the bounce references it) but its raw bytes are dropped (``raw`` emptied,
  ``size`` and ``sha256`` kept), which is where the space is;
- webhook events still owed to an endpoint (a ``pending`` delivery): they are deleted
  once delivered or given up (``docs/webhooks.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bounced.core.times import format_time

if TYPE_CHECKING:
    from bounced.store import Store

#: Messages handled per purge transaction: the daemon's writer never waits long.
DEFAULT_BATCH = 500


@dataclass(frozen=True, slots=True)
class PurgeResult:
    messages_deleted: int
    raw_dropped: int
    bounces_deleted: int
    batches: int
    webhook_events_deleted: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.messages_deleted or self.raw_dropped or self.bounces_deleted
                    or self.webhook_events_deleted)


class Retention:
    """Deletes what is past retention, in short transactions."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def purge(self, cutoff: datetime, batch: int = DEFAULT_BATCH) -> PurgeResult:
        """Delete processed messages received before ``cutoff`` and their bounce rows,
        keeping the bounces the history points at. One transaction per ``batch``
        messages; walks by id so every message is looked at once."""
        deleted = dropped = bounces = batches = 0
        last_id = 0
        limit = format_time(cutoff)
        while True:
            with self._store.atomic():
                conn = self._store.conn
                ids = [int(row[0]) for row in conn.execute(
                    "SELECT id FROM messages WHERE id > ? AND received_at < ? "
                    "AND state = 'processed' ORDER BY id LIMIT ?",
                    (last_id, limit, max(1, batch)),
                )]
                if not ids:
                    break
                batches += 1
                last_id = ids[-1]
                marks = ",".join("?" * len(ids))
                bounces += conn.execute(
                    f"DELETE FROM bounces WHERE message_id IN ({marks}) AND NOT EXISTS "
                    "(SELECT 1 FROM address_events e WHERE e.bounce_id = bounces.id)",
                    ids,
                ).rowcount
                deleted += conn.execute(
                    f"DELETE FROM messages WHERE id IN ({marks}) AND NOT EXISTS "
                    "(SELECT 1 FROM bounces b WHERE b.message_id = messages.id)",
                    ids,
                ).rowcount
                dropped += conn.execute(
                    f"UPDATE messages SET raw = ? WHERE id IN ({marks}) AND length(raw) > 0",
                    (b"", *ids),
                ).rowcount
        events = self._purge_webhook_events(limit, max(1, batch))
        return PurgeResult(deleted, dropped, bounces, batches, events)

    def _purge_webhook_events(self, limit: str, batch: int) -> int:
        """Events created before ``limit`` with no delivery still pending."""
        deleted = 0
        while True:
            with self._store.atomic():
                conn = self._store.conn
                ids = [row[0] for row in conn.execute(
                    "SELECT id FROM webhook_events e WHERE created_at < ? AND NOT EXISTS "
                    "(SELECT 1 FROM webhook_deliveries d WHERE d.event_id = e.id "
                    "AND d.state = 'pending') ORDER BY created_at LIMIT ?",
                    (limit, batch),
                )]
                if not ids:
                    return deleted
                marks = ",".join("?" * len(ids))
                conn.execute(f"DELETE FROM webhook_deliveries WHERE event_id IN ({marks})", ids)
                deleted += conn.execute(
                    f"DELETE FROM webhook_events WHERE id IN ({marks})", ids).rowcount
