"""The ``addresses`` table and its append-only history ``address_events``.

The one place that maps the policy's :class:`~bounced.model.AddressState` and
:class:`~bounced.model.AddressEvent` to rows: the pipeline, the cleanup job and
operator actions all go through it, so a state written by one is read identically by
the others (``docs/policy.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bounced.core.addresses import channel_of
from bounced.core.events import address_data, address_event_type, envelope
from bounced.core.times import format_optional, format_time, parse_time
from bounced.model import AddressEvent, AddressState, QuarantineState, Reason
from bounced.store.engine import lock_key

if TYPE_CHECKING:
    from bounced.store import Store

_STATE_COLUMNS = (
    "state, error_count, last_error_at, last_counted_error_at, reason_code, "
    "quarantined_at, release_at, undefined_count, updated_at"
)


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One row of ``address_events``, with its number, the bounce that caused it and
    the operator who did (``actor``)."""

    id: int
    at: datetime | None
    old_state: QuarantineState | None
    new_state: QuarantineState
    cause: str
    bounce_id: int | None
    actor: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": format_optional(self.at),
            "old_state": self.old_state.value if self.old_state else None,
            "new_state": self.new_state.value,
            "cause": self.cause,
            "bounce_id": self.bounce_id,
            "actor": self.actor,
        }


@dataclass(frozen=True, slots=True)
class Suppressed:
    """A row of the ``suppression_list`` view: an address not to send to."""

    address: str
    state: str
    reason: str
    since: str | None


@dataclass(frozen=True, slots=True)
class Listed:
    """An address as ``quarantine list`` shows it."""

    address: str
    state: str
    reason: str | None
    since: str | None
    error_count: int
    release_at: str | None


def address_lock(address: str) -> int:
    """The advisory-lock key of an address (:meth:`AddressBook.lock`)."""
    return lock_key("address", address)


class AddressBook:
    """Address states and their history."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def lock(self, addresses: Iterable[str]) -> None:
        """Inside a transaction, make the other hosts wait for ``addresses`` until it
        ends (nothing on SQLite, where one writer is in at a time).

        What a bounce does to an address depends on the address's state (the policy
        reads it, then writes the next one), so two hosts must not apply bounces for
        one address at once, or one update would be lost. The lock is an advisory lock
        keyed by the address, since the row may not exist yet; a transaction that
        touches several addresses takes all their locks first, in one fixed order
        (:meth:`~bounced.store.engine.Dialect.lock_keys`), so none waits in a circle.
        """
        self._store.lock_keys(address_lock(address) for address in addresses)

    def get(self, address: str) -> AddressState | None:
        """The row of ``address`` as the policy's :class:`AddressState`; inside a
        transaction on PostgreSQL, the address stays locked until it ends (see
        :meth:`lock`): whoever reads a state to write the next one holds it."""
        if self._store.conn.in_transaction:
            self.lock((address,))
        row = self._store.conn.execute(
            f"SELECT {_STATE_COLUMNS} FROM addresses WHERE address = ?", (address,)
        ).fetchone()
        if row is None:
            return None
        return AddressState(
            address=address,
            state=QuarantineState(row[0]),
            error_count=int(row[1]),
            last_error_at=parse_time(row[2]),
            last_counted_error_at=parse_time(row[3]),
            reason=Reason(row[4]) if row[4] is not None else None,
            quarantined_at=parse_time(row[5]),
            release_at=parse_time(row[6]),
            undefined_count=int(row[7]),
            updated_at=parse_time(row[8]),
        )

    def put(self, state: AddressState, now: datetime) -> None:
        """Insert or update the row of ``state.address``."""
        self._store.conn.execute(
            "INSERT INTO addresses (address, state, error_count, last_error_at, "
            "last_counted_error_at, reason_code, quarantined_at, release_at, updated_at, "
            "undefined_count, channel) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(address) DO UPDATE SET state = excluded.state, "
            "error_count = excluded.error_count, last_error_at = excluded.last_error_at, "
            "last_counted_error_at = excluded.last_counted_error_at, "
            "reason_code = excluded.reason_code, quarantined_at = excluded.quarantined_at, "
            "release_at = excluded.release_at, updated_at = excluded.updated_at, "
            "undefined_count = excluded.undefined_count",
            (
                state.address,
                state.state.value,
                state.error_count,
                format_optional(state.last_error_at),
                format_optional(state.last_counted_error_at),
                int(state.reason) if state.reason is not None else None,
                format_optional(state.quarantined_at),
                format_optional(state.release_at),
                format_time(state.updated_at or now),
                state.undefined_count,
                channel_of(state.address).value,
            ),
        )

    def record(self, event: AddressEvent, bounce_id: int | None = None, *,
               reason: Reason | None = None, actor: str | None = None) -> None:
        """Append one change of state to the history (``bounce_id``: its cause, if a
        bounce; ``actor``: the operator, ``cli:USER`` or ``api:TOKEN``), and the
        webhook event it is, if an endpoint wants it (same transaction)."""
        self._store.conn.execute(
            "INSERT INTO address_events (address, at, old_state, new_state, cause, bounce_id, "
            "actor) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                event.address,
                format_time(event.at),
                event.old_state.value if event.old_state is not None else None,
                event.new_state.value,
                event.cause,
                bounce_id,
                actor,
            ),
        )
        kind = address_event_type(event.old_state, event.new_state)
        if kind is not None and self._store.outbox.wants(kind):
            data = address_data(event, reason=reason, bounce_id=bounce_id, actor=actor)
            self._store.outbox.publish(kind, envelope(kind, event.at, data), event.at)

    def change(self, state: AddressState, event: AddressEvent | None, now: datetime,
               bounce_id: int | None = None, *, actor: str | None = None) -> None:
        """Write a new state and, when the state changed, its history row."""
        self.put(state, now)
        if event is not None:
            self.record(event, bounce_id, reason=state.reason, actor=actor)

    def history(self, address: str) -> tuple[HistoryEvent, ...]:
        """The address's history, oldest first."""
        rows = self._store.conn.execute(
            "SELECT id, at, old_state, new_state, cause, bounce_id, actor FROM address_events "
            "WHERE address = ? ORDER BY at, id",
            (address,),
        ).fetchall()
        return tuple(
            HistoryEvent(int(r[0]), parse_time(r[1]), QuarantineState(r[2]) if r[2] else None,
                         QuarantineState(r[3]), r[4], int(r[5]) if r[5] is not None else None,
                         r[6])
            for r in rows
        )

    def last_event_caused_by(self, address: str, causes: Sequence[str]
                             ) -> tuple[datetime, QuarantineState] | None:
        """When and to what state the last event whose cause starts with one of
        ``causes`` took the address (operator decisions, for a replay to build on)."""
        row = self._store.conn.execute(
            "SELECT at, new_state FROM address_events WHERE address = ? AND ("
            + " OR ".join("cause LIKE ?" for _ in causes)
            + ") ORDER BY at DESC, id DESC LIMIT 1",
            (address, *(f"{cause}%" for cause in causes)),
        ).fetchone()
        if row is None:
            return None
        at = parse_time(row[0])
        assert at is not None
        return at, QuarantineState(row[1])

    def due_for_cleanup(self, at: datetime, stale_before: datetime) -> list[str]:
        """Addresses the cleanup job may change: quarantines due for release, and
        erroneous ones whose last counted error is older than ``stale_before``."""
        rows = self._store.conn.execute(
            "SELECT address FROM addresses WHERE (state = 'quarantine' AND release_at <= ?) "
            "OR (state = 'erroneous' AND last_counted_error_at < ?)",
            (format_time(at), format_time(stale_before)),
        ).fetchall()
        return [row[0] for row in rows]

    def listing(self, states: Sequence[QuarantineState], limit: int) -> list[Listed]:
        """Addresses in ``states``, most recently changed first."""
        marks = ",".join("?" * len(states))
        rows = self._store.conn.execute(
            "SELECT a.address, a.state, r.label, COALESCE(a.quarantined_at, a.updated_at), "
            "a.error_count, a.release_at FROM addresses a "
            "LEFT JOIN reasons r ON r.code = a.reason_code "
            f"WHERE a.state IN ({marks}) "
            "ORDER BY COALESCE(a.quarantined_at, a.updated_at) DESC, a.address LIMIT ?",
            (*(state.value for state in states), limit),
        ).fetchall()
        return [Listed(r[0], r[1], r[2], r[3], int(r[4]), r[5]) for r in rows]

    def suppression_list(self) -> list[Suppressed]:
        """The ``suppression_list`` view, by address: what a sending platform honours."""
        rows = self._store.conn.execute(
            "SELECT address, state, reason, since FROM suppression_list ORDER BY address"
        ).fetchall()
        return [Suppressed(*row) for row in rows]

    def suppressions(self, *, states: Sequence[QuarantineState] = (), reason: str | None = None,
                     since: datetime | None = None, after: str | None = None,
                     limit: int = 100) -> list[Suppressed]:
        """A page of the suppression list, by address: those in ``states`` (all
        suppressed states when empty), with the ``reason`` label, suppressed since
        ``since``, after the address ``after`` (the cursor of the previous page)."""
        where: list[str] = ["1 = 1"]
        params: list[object] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            params.extend(state.value for state in states)
        if reason is not None:
            where.append("reason = ?")
            params.append(reason)
        if since is not None:
            where.append("since >= ?")
            params.append(format_time(since))
        if after is not None:
            where.append("address > ?")
            params.append(after)
        rows = self._store.conn.execute(
            "SELECT address, state, reason, since FROM suppression_list "
            f"WHERE {' AND '.join(where)} ORDER BY address LIMIT ?", (*params, limit),
        ).fetchall()
        return [Suppressed(*row) for row in rows]
