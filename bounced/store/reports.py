"""The aggregate reads behind ``bounced report``: counts over a time window.

Only indexed, windowed reads: bounces by ``at``, history by ``at`` (schema step 2), so a
report over the last day stays fast on a database of millions of rows. Rates,
provider grouping and rendering are :mod:`bounced.ops.report`'s business.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from bounced.core.times import format_time
from bounced.model import Reason
from bounced.store.engine import Dialect

if TYPE_CHECKING:
    from bounced.store import Store

#: What a breakdown can group by (:meth:`ReportQueries.groups`).
GROUP_KEYS = ("type", "reason", "day", "domain", "channel")


def _group_key(by: str, dialect: Dialect) -> str:
    """The SQL expression of a breakdown's key."""
    return {
        "type": "coalesce(b.failure_type, '(' || b.kind || ')')",
        "reason": "coalesce(r.label, '(' || b.kind || ')')",
        "day": dialect.day("b.at"),
        # an SMS is grouped as "sms", a push token by its application ("push:APP")
        "domain": _domain_by_channel(dialect),
        "channel": "b.channel",
    }[by]


def _domain_by_channel(dialect: Dialect) -> str:
    """The "domain" of a recipient of any channel."""
    colon = dialect.find("substr(b.recipient, 6)", "':'")  # after "push:"
    return (
        "CASE b.channel WHEN 'sms' THEN 'sms' "
        f"WHEN 'push' THEN 'push:' || substr(b.recipient, 6, {colon} - 1) "
        f"ELSE {dialect.domain('b.recipient')} END"
    )


def _count_if(condition: str) -> str:
    return f"count(CASE WHEN {condition} THEN 1 END)"


_STATE_CHANGES = ", ".join(_count_if(condition) for condition in (
    "new_state = 'quarantine'", "new_state = 'denylisted'",
    "old_state = 'quarantine' AND new_state <> 'quarantine'"))


@dataclass(frozen=True, slots=True)
class WindowTotals:
    bounces: int
    addresses: int
    messages: int
    by_kind: dict[str, int]
    by_type: dict[str, int]
    quarantined: int
    denylisted: int
    released: int
    #: Bounces per channel (``email``, ``sms``, ``push``).
    by_channel: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class GroupCounts:
    """One group of a breakdown: bounces, distinct addresses, and bounces per type."""

    key: str
    bounces: int
    addresses: int
    hard: int
    soft: int
    ignored: int
    undefined: int


@dataclass(frozen=True, slots=True)
class WaitingInWindow:
    """A ``to_qualify`` text and how many of the window's bounces carry it."""

    id: int
    text: str
    in_window: int
    occurrences: int
    last_seen: str | None
    failure_type: str | None
    reason_code: int | None
    qualified_by: str | None


@dataclass(frozen=True, slots=True)
class DayChanges:
    day: str
    quarantined: int
    denylisted: int
    released: int


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A message that reads as a failure or a delay but names no recipient."""

    message_id: int
    received_at: str | None
    mail_from: str | None
    kind: str


class ReportQueries:
    """Counts of the delivery log and the history over ``[since, until)``."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def totals(self, since: datetime, until: datetime) -> WindowTotals:
        conn, window = self._store.conn, (format_time(since), format_time(until))
        row = conn.execute(
            "SELECT count(*), count(DISTINCT recipient), count(DISTINCT message_id) "
            "FROM bounces WHERE at >= ? AND at < ?", window).fetchone()
        kinds = dict(conn.execute(
            "SELECT kind, count(*) FROM bounces WHERE at >= ? AND at < ? GROUP BY kind",
            window).fetchall())
        types = dict(conn.execute(
            "SELECT failure_type, count(*) FROM bounces WHERE at >= ? AND at < ? "
            "AND failure_type IS NOT NULL GROUP BY failure_type", window).fetchall())
        events = conn.execute(
            f"SELECT {_STATE_CHANGES} FROM address_events WHERE at >= ? AND at < ?",
            window).fetchone()
        channels = dict(conn.execute(
            "SELECT channel, count(*) FROM bounces WHERE at >= ? AND at < ? GROUP BY channel",
            window).fetchall())
        return WindowTotals(int(row[0]), int(row[1]), int(row[2]), kinds, types,
                            int(events[0]), int(events[1]), int(events[2]), channels)

    def groups(self, by: str, since: datetime, until: datetime) -> list[GroupCounts]:
        """The window's bounces grouped by ``by`` (one of :data:`GROUP_KEYS`)."""
        key = _group_key(by, self._store.dialect)
        types = ", ".join(_count_if(f"b.failure_type = '{kind}'")
                          for kind in ("hard", "soft", "ignored", "undefined"))
        rows = self._store.conn.execute(
            f"SELECT {key} AS key, count(*), count(DISTINCT b.recipient), {types} "
            "FROM bounces b LEFT JOIN reasons r ON r.code = b.reason_code "
            "WHERE b.at >= ? AND b.at < ? GROUP BY key",
            (format_time(since), format_time(until))).fetchall()
        return [GroupCounts(str(r[0]), *(int(v) for v in r[1:])) for r in rows]

    def waiting(self, since: datetime, until: datetime, limit: int) -> list[WaitingInWindow]:
        """The window's texts still ``to_qualify``, by how often they came in it."""
        rows = self._store.conn.execute(
            "SELECT q.id, q.text, w.n, q.occurrences, q.last_seen, q.failure_type, "
            "q.reason_code, q.qualified_by FROM (SELECT qualification_id AS id, count(*) AS n "
            "FROM bounces WHERE at >= ? AND at < ? AND qualification_id IS NOT NULL "
            "GROUP BY qualification_id) w JOIN qualification q ON q.id = w.id "
            "WHERE q.status = 'to_qualify' ORDER BY w.n DESC, q.occurrences DESC, q.id LIMIT ?",
            (format_time(since), format_time(until), limit)).fetchall()
        return [WaitingInWindow(int(r[0]), r[1], int(r[2]), int(r[3]), r[4], r[5], r[6], r[7])
                for r in rows]

    def days(self, since: datetime, until: datetime) -> list[DayChanges]:
        rows = self._store.conn.execute(
            f"SELECT {self._store.dialect.day('at')} AS day, {_STATE_CHANGES} "
            "FROM address_events "
            "WHERE at >= ? AND at < ? GROUP BY day ORDER BY day",
            (format_time(since), format_time(until))).fetchall()
        return [DayChanges(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows]

    def invalid_domains(self, since: datetime, until: datetime
                        ) -> list[tuple[str, str | None, int]]:
        """``(domain, recorded DNS status, bounces)`` of the window's Invalid-domain
        bounces, most bounced first."""
        rows = self._store.conn.execute(
            f"SELECT {self._store.dialect.domain('b.recipient')} AS domain, b.dns_status, "
            "count(*) FROM bounces b "
            "WHERE b.at >= ? AND b.at < ? AND b.reason_code = ? GROUP BY domain, b.dns_status "
            "ORDER BY count(*) DESC",
            (format_time(since), format_time(until), int(Reason.INVALID_DOMAIN))).fetchall()
        return [(r[0], r[1], int(r[2])) for r in rows]

    def unreadable(self, since: datetime, until: datetime, limit: int
                   ) -> tuple[int, list[Unreadable]]:
        """The window's failures and delays with no recipient: how many, and the newest
        ``limit`` of them (a layout the parser does not read, for an operator to see)."""
        window = (format_time(since), format_time(until))
        where = ("FROM bounces b JOIN messages m ON m.id = b.message_id WHERE b.at >= ? "
                 "AND b.at < ? AND b.recipient IS NULL AND b.kind IN ('failure', 'delay')")
        total = int(self._store.conn.execute(f"SELECT count(*) {where}", window).fetchone()[0])
        rows = self._store.conn.execute(
            f"SELECT m.id, m.received_at, m.mail_from, b.kind {where} "
            "ORDER BY m.id DESC LIMIT ?", (*window, limit)).fetchall()
        return total, [Unreadable(int(r[0]), r[1], r[2], r[3]) for r in rows]
