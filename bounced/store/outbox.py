"""The webhook outbox: ``webhook_events`` and their ``webhook_deliveries``.

An event is written in the same transaction as the change it describes (a verdict, a
change of an address's state), with one delivery row per endpoint that subscribed to
its type; the daemon then delivers it (``bounced.daemon.webhooks``): at least once,
since a crash between the endpoint's ``2xx`` and the row's update sends it again with
the same id (``docs/webhooks.md``).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bounced.core.times import format_time, parse_time
from bounced.model import EventType

if TYPE_CHECKING:
    from bounced.store import Store


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event owed to one endpoint."""

    id: int
    event_id: str
    event_type: str
    body: str
    endpoint: str
    state: str
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime | None
    last_status: int | None
    last_error: str | None


@dataclass(frozen=True, slots=True)
class OutboxStats:
    """What ``/metrics`` says of the outbox."""

    pending: int
    dead: int
    oldest_pending_at: datetime | None


_DELIVERY = (
    "SELECT d.id, d.event_id, e.type, e.body, d.endpoint, d.state, d.attempts, "
    "d.next_attempt_at, e.created_at, d.last_status, d.last_error "
    "FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
)


def _delivery(row: tuple) -> Delivery:
    return Delivery(int(row[0]), row[1], row[2], row[3], row[4], row[5], int(row[6]),
                    parse_time(row[7]), parse_time(row[8]), row[9], row[10])


class WebhookOutbox:
    """Events owed to webhook endpoints, and what became of their deliveries."""

    def __init__(self, store: Store) -> None:
        self._store = store
        #: Event type -> the endpoints (URLs) that want it; empty: nobody, nothing
        #: is written.
        self.routes: Mapping[str, tuple[str, ...]] = {}

    def subscribe(self, routes: Mapping[str, Sequence[str]]) -> None:
        """Which endpoints want which event types (from the ``[[webhooks]]`` tables)."""
        self.routes = {kind: tuple(endpoints) for kind, endpoints in routes.items() if endpoints}

    def wants(self, event_type: EventType) -> bool:
        return bool(self.routes.get(event_type.value))

    def publish(self, event_type: EventType, body: Mapping[str, Any], at: datetime) -> str | None:
        """Write an event and its deliveries (inside the caller's transaction); returns
        its id, or None when no endpoint wants this type."""
        endpoints = self.routes.get(event_type.value, ())
        if not endpoints:
            return None
        event_id = f"evt_{uuid.uuid4().hex}"
        conn, stamp = self._store.conn, format_time(at)
        conn.execute(
            "INSERT INTO webhook_events (id, type, created_at, body) VALUES (?, ?, ?, ?)",
            (event_id, event_type.value, stamp,
             json.dumps({"id": event_id, **body}, ensure_ascii=False, separators=(",", ":"))),
        )
        conn.executemany(
            "INSERT INTO webhook_deliveries (event_id, endpoint, next_attempt_at) "
            "VALUES (?, ?, ?)",
            [(event_id, endpoint, stamp) for endpoint in endpoints],
        )
        return event_id

    # ---- delivering

    def due(self, now: datetime, limit: int, *, resting: Sequence[str] = ()) -> list[Delivery]:
        """Pending deliveries whose time has come, in the order of their events (a
        retried one before the newer ones), but for the endpoints that are ``resting``
        (they failed just now: their turn comes with their retry)."""
        marks = ", ".join("?" * len(resting))
        skip = f"AND d.endpoint NOT IN ({marks}) " if resting else ""
        rows = self._store.conn.execute(
            f"{_DELIVERY} WHERE d.state = 'pending' AND d.next_attempt_at <= ? "
            f"{skip}ORDER BY d.id LIMIT ?",
            (format_time(now), *resting, limit),
        ).fetchall()
        return [_delivery(row) for row in rows]

    def delivered(self, delivery_id: int, status: int, at: datetime) -> None:
        self._store.conn.execute(
            "UPDATE webhook_deliveries SET state = 'delivered', attempts = attempts + 1, "
            "last_status = ?, last_error = NULL, delivered_at = ? WHERE id = ?",
            (status, format_time(at), delivery_id),
        )

    def failed(self, delivery_id: int, *, status: int | None, error: str,
               retry_at: datetime | None) -> None:
        """A failed attempt: tried again at ``retry_at``, or given up (``dead``)."""
        self._store.conn.execute(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_status = ?, "
            "last_error = ?, state = ?, next_attempt_at = COALESCE(?, next_attempt_at) "
            "WHERE id = ?",
            (status, error[:500], "pending" if retry_at is not None else "dead",
             format_time(retry_at) if retry_at is not None else None, delivery_id),
        )

    # ---- operators

    def listing(self, *, state: str | None, since: datetime | None,
                limit: int) -> list[Delivery]:
        """Deliveries, newest event first, by state and event time."""
        where, params = ["1 = 1"], []
        if state is not None:
            where.append("d.state = ?")
            params.append(state)
        if since is not None:
            where.append("e.created_at >= ?")
            params.append(format_time(since))
        rows = self._store.conn.execute(
            f"{_DELIVERY} WHERE {' AND '.join(where)} ORDER BY e.created_at DESC, d.id DESC "
            "LIMIT ?", (*params, limit),
        ).fetchall()
        return [_delivery(row) for row in rows]

    def retry_dead(self, now: datetime) -> int:
        """Every given-up delivery pending again, due now; returns how many."""
        return int(self._store.conn.execute(
            "UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ? "
            "WHERE state = 'dead'", (format_time(now),)).rowcount)

    def replay(self, since: datetime, now: datetime, endpoint: str | None = None) -> int:
        """Deliver again every event since ``since`` (delivered or not), with the same
        ids: a receiver that lost its data gets it back, and drops what it kept."""
        sql = ("UPDATE webhook_deliveries SET state = 'pending', next_attempt_at = ? "
               "WHERE event_id IN (SELECT id FROM webhook_events WHERE created_at >= ?)")
        params: list[Any] = [format_time(now), format_time(since)]
        if endpoint is not None:
            sql += " AND endpoint = ?"
            params.append(endpoint)
        return int(self._store.conn.execute(sql, params).rowcount)

    def stats(self) -> OutboxStats:
        row = self._store.conn.execute(
            "SELECT count(CASE WHEN state = 'pending' THEN 1 END), "
            "count(CASE WHEN state = 'dead' THEN 1 END), "
            "min(CASE WHEN state = 'pending' THEN e.created_at END) "
            "FROM webhook_deliveries d JOIN webhook_events e ON e.id = d.event_id"
        ).fetchone()
        return OutboxStats(int(row[0]), int(row[1]), parse_time(row[2]))
