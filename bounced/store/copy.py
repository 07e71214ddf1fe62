"""``bounced db copy``: every row of one bounced database into another, e.g. the SQLite
file of one host into the PostgreSQL database several hosts will share.

Both must have the current schema (``bounced db migrate`` each first). Rows are copied
table by table in the order their foreign keys need, in batches of one transaction
each, under the ids they have (the history's ``bounce_id``, the verdicts'
``message_id`` keep pointing at the same rows); PostgreSQL's id sequences are then
moved past the copied ids. The copy is **resumable**: a table with an ``id`` goes on
after the largest id the target already has, the others insert what the target lacks
(``ON CONFLICT DO NOTHING``; ``reasons`` and ``rules`` take the source's version, so an
operator's disabled default rule stays disabled). It is **verified** by counting every
table on both sides. Copy with the daemons stopped (their last writes must be in the
source); run it again after an interruption.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bounced.store import Store

#: The tables, parents before children, with their key (columns, comma-separated).
TABLES: tuple[tuple[str, str], ...] = (
    ("reasons", "code"),
    ("rules", "id"),
    ("messages", "id"),
    ("qualification", "id"),
    ("bounces", "id"),
    ("verdict_changes", "id"),
    ("addresses", "address"),
    ("address_events", "id"),
    ("dns_cache", "domain"),
    ("webhook_events", "id"),
    ("webhook_deliveries", "id"),
    ("sent_messages", "channel, id"),
)
#: Numbered by the database (identity columns on PostgreSQL): copied id by id, after
#: the largest id already there, and the sequence moved past them at the end.
_NUMBERED = frozenset({"messages", "qualification", "bounces", "verdict_changes",
                       "address_events", "webhook_deliveries"})
#: Reference tables seeded on both sides: the source's rows win.
_REPLACED = frozenset({"reasons", "rules"})
#: Rows per transaction in the target.
BATCH = 1_000


@dataclass(frozen=True, slots=True)
class TableCopy:
    """One table: rows copied now, and the counts compared afterwards."""

    table: str
    copied: int
    source_rows: int
    target_rows: int

    @property
    def verified(self) -> bool:
        return self.source_rows == self.target_rows


def copy_database(source: Store, target: Store, *, batch: int = BATCH,
                  progress: Callable[[str, int], None] = lambda _table, _rows: None
                  ) -> list[TableCopy]:
    """Copy every table of ``source`` into ``target``; see the module's docstring."""
    results = []
    for table, key in TABLES:
        columns = _columns(source, table)
        copied = _copy_table(source, target, table, key, columns, batch, progress)
        if table in _NUMBERED and target.is_postgresql:
            target.conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                f"(SELECT COALESCE(max(id), 0) + 1 FROM {table}), false)")
        results.append(TableCopy(table, copied, _count(source, table), _count(target, table)))
    return results


def _columns(store: Store, table: str) -> list[str]:
    cursor = store.conn.execute(f"SELECT * FROM {table} LIMIT 0")
    return [str(column[0]) for column in cursor.description]


def _count(store: Store, table: str) -> int:
    return int(store.conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def _copy_table(source: Store, target: Store, table: str, key: str, columns: Sequence[str],
                batch: int, progress: Callable[[str, int], None]) -> int:
    names = ", ".join(columns)
    marks = ", ".join("?" for _ in columns)
    if table in _REPLACED:
        updates = ", ".join(f"{name} = excluded.{name}" for name in columns if name != key)
        conflict = f"ON CONFLICT ({key}) DO UPDATE SET {updates}"
    else:
        conflict = "ON CONFLICT DO NOTHING"
    insert = f"INSERT INTO {table} ({names}) VALUES ({marks}) {conflict}"
    after: tuple[Any, ...] | None = None
    if table in _NUMBERED:
        after = (int(target.conn.execute(f"SELECT COALESCE(max(id), 0) FROM {table}"
                                         ).fetchone()[0]),)
    copied = 0
    keys = [part.strip() for part in key.split(",")]
    positions = [columns.index(part) for part in keys]
    # A key of several columns is compared as a row value: (channel, id) > (?, ?).
    past = f"({key}) > ({', '.join('?' for _ in keys)})" if len(keys) > 1 else f"{key} > ?"
    while True:
        where, params = (f"WHERE {past} ", after) if after is not None else ("", ())
        rows = source.conn.execute(
            f"SELECT {names} FROM {table} {where}ORDER BY {key} LIMIT ?", (*params, batch)
        ).fetchall()
        if not rows:
            return copied
        values = [tuple(_value(value) for value in row) for row in rows]
        with target.atomic():
            target.conn.executemany(insert, values)
        copied += len(rows)
        after = tuple(rows[-1][position] for position in positions)
        progress(table, copied)


def _value(value: Any) -> Any:
    return bytes(value) if isinstance(value, memoryview) else value
