"""The test database of either engine, read the way an operator does: plain SQL on the
public schema (``sqlite3`` for a file, ``psql``'s SQL for PostgreSQL).

A test names its database ``db``: a :class:`~pathlib.Path` for SQLite, a
:class:`PostgresUrl` (a ``str``) for PostgreSQL; both go to ``--db`` and
``Store.open`` as they are. :func:`query` reads either with the same SQL (``?``
placeholders), and gives back the values SQLite would: times as
``2026-11-22T13:05:00Z``, days as ``2026-11-22``, whole sums as ``int``, bytes as
``bytes``, so one expectation holds on both engines.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg

from bounced.core.times import format_time
from bounced.store.engine import to_pyformat


class PostgresUrl(str):
    """The URL of a test's PostgreSQL database (``postgresql://...``)."""

    __slots__ = ()


Database = Path | str


def is_postgresql(db: Database) -> bool:
    return isinstance(db, str) and db.startswith("postgresql://")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, memoryview):
        return bytes(value)
    return value


def query(db: Database, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Run ``sql`` on the test database and return its rows."""
    if is_postgresql(db):
        with psycopg.connect(str(db), autocommit=True, options="-c TimeZone=UTC") as conn:
            cursor = conn.execute(to_pyformat(sql), tuple(params))
            rows = cursor.fetchall() if cursor.description is not None else []
        return [tuple(_plain(value) for value in row) for row in rows]
    conn = sqlite3.connect(db, timeout=30)
    try:
        rows = conn.execute(sql, params).fetchall()
        conn.commit()
        return rows
    finally:
        conn.close()
