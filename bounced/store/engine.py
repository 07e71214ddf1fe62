"""Connections to the database, the two SQL dialects, and the errors the rest may see.

Two engines hold the same public schema:

- **SQLite** (the embedded default, ``sqlite:///path/bounced.db`` or a plain path): one
  file in WAL mode, so that ``sqlite3 bounced.db`` (an operator) and the daemon's two
  processes read and write at once (``docs/schema.md``). ``busy_timeout`` makes a
  writer wait for another one's lock instead of failing at once. Transactions are
  explicit (``isolation_level=None``, then ``BEGIN IMMEDIATE`` in
  :meth:`bounced.store.Store.atomic`): Python's implicit transactions open late, at the
  first write, and two writers that both read first could deadlock; ``IMMEDIATE`` takes
  the write lock up front.
- **PostgreSQL** (``postgresql://user@host/db``, psycopg 3): several daemons on several
  hosts share one database (README "Several hosts"). There is no global write lock:
  rows are claimed (``FOR UPDATE SKIP LOCKED``) and addresses locked in a fixed order
  (:meth:`Dialect.lock_keys`), so several writers never lose an update nor deadlock.

The table modules write one SQL text per statement, in the dialect both engines agree
on (``?`` placeholders, ``ON CONFLICT``, ``RETURNING``, ``COALESCE``); a
:class:`PgConnection` translates the placeholders, and the few fragments that differ
(scalar ``min``/``max``, ``IS`` against a parameter, day and domain of a column, locks)
come from the :class:`Dialect` of the store.

Nothing outside :mod:`bounced.store` imports ``sqlite3`` or ``psycopg``: callers catch
:data:`DatabaseError` and ask :func:`is_busy` (try again) and :func:`is_disconnect`
(the server went away: answer ``451`` and reconnect), so both engines' errors travel
behind the same names.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psycopg
import psycopg.adapt
import psycopg.errors
import psycopg.pq

#: How long a writer waits for another one's lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 30_000
#: How long opening a PostgreSQL connection may take before it counts as a failure
#: (seconds): the daemon's commit thread must answer ``451`` soon, not hang.
CONNECT_TIMEOUT_S = 5

#: Any failure of the database itself (locked, full disk, I/O error, corruption, a
#: PostgreSQL server that cannot be reached); catch it as ``except DatabaseError``.
DatabaseError: tuple[type[Exception], ...] = (sqlite3.Error, psycopg.Error)

#: Bounds of an open time window, as stored times (both engines compare them as times).
BEGINNING = "0001-01-01T00:00:00Z"
END_OF_TIME = "9999-12-31T23:59:59Z"

#: SQLSTATEs after which the same transaction, run again, may well succeed.
_RETRY_STATES = frozenset({"40001", "40P01", "55P03"})  # serialization, deadlock, lock


class StoreError(Exception):
    """The database cannot be used (unreadable, not a bounced database, too new, a
    read-only open of a file that does not exist); the message names the path."""


class Rollback(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raise inside :meth:`bounced.store.Store.atomic` to undo its work quietly (the
    dry runs of operator commands compute everything, then roll back)."""


def is_busy(error: BaseException) -> bool:
    """True when running the same work again shortly may succeed: another SQLite
    connection holds the lock we need, or PostgreSQL chose this transaction as the
    victim of a deadlock or a serialization failure."""
    if isinstance(error, sqlite3.OperationalError):
        text = str(error)
        return "locked" in text or "busy" in text
    if isinstance(error, psycopg.Error):
        return error.sqlstate in _RETRY_STATES
    return False


def is_disconnect(error: BaseException) -> bool:
    """True when the database server could not be reached or went away (PostgreSQL
    stopped, restarted, network down): the store reconnects on its next use."""
    if not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate or ""
    return not state or state.startswith(("08", "57P"))


# --------------------------------------------------------------------------- locations


@dataclass(frozen=True)
class Location:
    """Where a database is: a SQLite file or a PostgreSQL URL.

    ``--db`` and ``database.url`` accept ``sqlite:///path/bounced.db`` (three slashes
    and a relative path, four for an absolute one, as SQLAlchemy writes them), a plain
    path (SQLite, as before URLs), or ``postgresql://user@host:port/db`` (libpq's URL,
    every parameter it knows, ``postgres://`` too).
    """

    engine: str
    path: Path | None = None
    url: str | None = None

    @classmethod
    def parse(cls, target: str | Path) -> Location:
        text = str(target)
        if text.startswith(("postgresql://", "postgres://")):
            return cls("postgresql", url=text)
        if text.startswith("sqlite://"):
            rest = text.removeprefix("sqlite://")
            if not rest.startswith("/"):
                raise StoreError(f"{text}: expected sqlite:///PATH")
            rest = rest[1:]
            if not rest:
                raise StoreError(f"{text}: no file in the URL")
            return cls("sqlite", path=Path(rest))
        if "://" in text:
            raise StoreError(f"{text}: unknown database URL (expected sqlite:///PATH "
                             "or postgresql://USER@HOST/DB)")
        return cls("sqlite", path=Path(text))

    @property
    def is_postgresql(self) -> bool:
        return self.engine == "postgresql"

    def __str__(self) -> str:
        return _redacted(self.url) if self.url is not None else str(self.path)


def _redacted(url: str) -> str:
    """A URL fit for a log line: no password."""
    return re.sub(r"(://[^:/@]+):[^@/]*@", r"\1:***@", url)


# --------------------------------------------------------------------------- dialects


class Connection(Protocol):
    """What the table modules use of a connection: sqlite3's surface."""

    def execute(self, sql: str, parameters: Sequence[Any] = ..., /) -> Any: ...
    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> Any: ...
    def close(self) -> None: ...

    @property
    def in_transaction(self) -> bool: ...


def lock_key(space: str, value: str) -> int:
    """A signed 64-bit key for PostgreSQL's advisory locks: the same on every host for
    the same ``(space, value)``. Two values that share a key only wait for each other."""
    digest = hashlib.blake2b(f"{space}\0{value}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


@dataclass(frozen=True)
class Dialect:
    """The SQL fragments the two engines write differently, and how each engine
    shares its writes between processes."""

    name: str
    #: The outermost ``BEGIN`` of :meth:`Store.atomic`.
    begin: str
    #: Scalar minimum/maximum of two values (``min(a, b)`` is an aggregate elsewhere).
    least: str
    greatest: str
    #: ``IS`` against a parameter (``failure_type IS ?``: equal, NULL equal to NULL).
    same_as: str
    #: The conflict target of ``qualification.text``'s unique index (PostgreSQL keys it
    #: on ``md5(text)``: a b-tree entry holds ~2.7 kB at most, a diagnostic may not).
    text_key: str
    #: Several processes or hosts write at once without one write lock: rows must be
    #: claimed and addresses locked in a fixed order (PostgreSQL).
    concurrent_writers: bool

    def day(self, column: str) -> str:
        """``YYYY-MM-DD`` (UTC) of a time column, as text."""
        if self.name == "postgresql":
            return f"to_char({column} AT TIME ZONE 'UTC', 'YYYY-MM-DD')"
        return f"substr({column}, 1, 10)"

    def find(self, text: str, part: str) -> str:
        """The 1-based position of ``part`` in ``text`` (0: absent), both SQL
        expressions: ``instr`` on SQLite, ``strpos`` on PostgreSQL."""
        function = "strpos" if self.name == "postgresql" else "instr"
        return f"{function}({text}, {part})"

    def domain(self, column: str) -> str:
        """The lowercased part after the ``@`` of an address column."""
        at = self.find(column, "'@'")
        return f"lower(substr({column}, {at} + 1))"

    def lock_keys(self, conn: Connection, keys: Iterable[int]) -> None:
        """Take the advisory locks ``keys`` for the rest of the transaction, smallest
        key first: every transaction that takes several takes them in the same order,
        so two of them never wait for each other in a circle. Nothing on SQLite, whose
        ``BEGIN IMMEDIATE`` already lets one writer in at a time."""
        ordered = sorted(set(keys))
        if self.concurrent_writers and ordered:
            conn.execute("SELECT count(pg_advisory_xact_lock(k)) FROM unnest(?::bigint[]) "
                         "AS t(k)", (ordered,))


SQLITE = Dialect("sqlite", "BEGIN IMMEDIATE", "min", "max", "IS", "text",
                 concurrent_writers=False)
POSTGRESQL = Dialect("postgresql", "BEGIN", "LEAST", "GREATEST", "IS NOT DISTINCT FROM",
                     "md5(text)", concurrent_writers=True)


# --------------------------------------------------------------------------- SQLite


def connect(path: Path, *, readonly: bool = False) -> sqlite3.Connection:
    """A connection with the pragmas every bounced connection uses.

    ``readonly``: no write lock is ever taken and a missing file is an error instead
    of a new empty database (a typo in ``--db`` must not answer "every address is
    fine").
    """
    if readonly:
        conn = sqlite3.connect(
            f"{path.resolve().as_uri()}?mode=ro", uri=True, isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        return conn
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        conn.close()
        raise StoreError(f"{path}: cannot switch to WAL mode (got {mode})")
    # FULL: a commit is on disk when it returns, before the SMTP 250.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # Processing runs each message in a savepoint; SQLite copies every page a savepoint
    # first changes into a sub-journal, a temporary file by default (30 writes a message
    # measured on an empty database, more on a large one). In memory it is a copy.
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


# --------------------------------------------------------------------------- PostgreSQL


@functools.lru_cache(maxsize=2048)
def to_pyformat(sql: str) -> str:
    """The table modules' SQL for psycopg: ``?`` -> ``%s`` and ``%`` -> ``%%`` outside
    quoted strings and identifiers (``'50%'`` and ``'?'`` stay as they are)."""
    out: list[str] = []
    quote: str | None = None
    for char in sql:
        if quote is not None:
            out.append("%%" if char == "%" else char)
            if char == quote:
                quote = None
        elif char in ("'", '"'):
            quote = char
            out.append(char)
        elif char == "?":
            out.append("%s")
        elif char == "%":
            out.append("%%")
        else:
            out.append(char)
    return "".join(out)


class _TimeLoader(psycopg.adapt.Loader):
    """``timestamptz`` read back as the string SQLite holds (``2026-11-22T13:05:00Z``):
    the session runs in UTC with ISO dates, so the text form is
    ``2026-11-22 13:05:00+00``; every reader then gets the same values on both
    engines, to the second, as :func:`bounced.core.times.format_time` writes them."""

    def load(self, data: Any) -> str:
        text = bytes(data).decode("ascii")
        return f"{text[:10]}T{text[11:19]}Z"


class _DateLoader(psycopg.adapt.Loader):
    """``date`` read back as ``YYYY-MM-DD``, as SQLite's text."""

    def load(self, data: Any) -> str:
        return bytes(data).decode("ascii")


def pg_connect(url: str, *, readonly: bool = False) -> psycopg.Connection[Any]:
    """One PostgreSQL connection as bounced uses them: autocommit (transactions are
    :meth:`Store.atomic`'s explicit ``BEGIN``), UTC, ``synchronous_commit`` on (a
    commit is durable on the server, and on its synchronous standbys, when it returns:
    the raw message before the SMTP ``250``), times read back as ISO strings."""
    options = "-c TimeZone=UTC -c DateStyle=ISO -c synchronous_commit=on"
    if readonly:
        options += " -c default_transaction_read_only=on"
    conn = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S,
                           options=options, application_name="bounced")
    conn.adapters.register_loader("timestamptz", _TimeLoader)
    conn.adapters.register_loader("date", _DateLoader)
    return conn


class PgConnection:
    """A psycopg connection behind the surface of a ``sqlite3.Connection``.

    The table modules' SQL is translated (:func:`to_pyformat`); the connection is opened
    again on first use after the server went away (a restart, a failover, a network
    cut), so a long-lived store (the daemon's writer and worker) recovers by itself:
    the statement that found the connection dead fails (the daemon answers ``451``),
    the next one runs on a new connection. ``source`` makes a connection (a direct
    ``connect``, or a pool's) and ``release`` gives one back when done with it.
    """

    def __init__(self, source: Callable[[], psycopg.Connection[Any]],
                 release: Callable[[psycopg.Connection[Any]], None] | None = None) -> None:
        self._source = source
        self._release = release
        self._raw: psycopg.Connection[Any] | None = None
        self._setup: list[str] = []
        self.raw  # noqa: B018 - connect now: a bad URL or a server down fails the open

    @property
    def raw(self) -> psycopg.Connection[Any]:
        conn = self._raw
        if conn is not None and (conn.closed or conn.broken):
            self._drop()
            conn = None
        if conn is None:
            conn = self._source()
            for statement in self._setup:
                conn.execute(statement)
            self._raw = conn
        return conn

    def _drop(self) -> None:
        conn, self._raw = self._raw, None
        if conn is None:
            return
        if self._release is not None:
            self._release(conn)
        else:
            conn.close()

    def setup(self, statement: str) -> None:
        """Run ``statement`` now and on every new connection (session settings)."""
        self._setup.append(statement)
        self.raw.execute(statement)

    def execute(self, sql: str, parameters: Sequence[Any] = (), /) -> psycopg.Cursor[Any]:
        conn = self.raw
        try:
            return conn.execute(to_pyformat(sql), tuple(parameters))
        except psycopg.OperationalError:
            if conn.broken:
                self._drop()
            raise

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]], /) -> psycopg.Cursor[Any]:
        conn = self.raw
        cursor = conn.cursor()
        try:
            cursor.executemany(to_pyformat(sql), [tuple(row) for row in rows])
        except psycopg.OperationalError:
            if conn.broken:
                self._drop()
            raise
        return cursor

    @property
    def in_transaction(self) -> bool:
        conn = self._raw
        if conn is None or conn.closed or conn.broken:
            return False
        return conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def close(self) -> None:
        self._drop()
def free_mib(path: str | Path) -> float:
    """Free space (MiB) for an unprivileged process on the file system of the database
    at ``path`` (its directory: the file, its WAL and its temporary files live there).
    One ``statvfs``: cheap enough every few hundred milliseconds, not per command."""
    directory = Path(path).resolve().parent
    stats = os.statvfs(directory)
    return stats.f_bavail * stats.f_frsize / (1024 * 1024)


def wal_path(path: str | Path) -> Path:
    """The WAL file SQLite keeps next to the database at ``path``."""
    return Path(f"{path}-wal")


def wal_mib(path: str | Path) -> float:
    """Size of the database's WAL file in MiB (0 when there is none)."""
    try:
        return wal_path(path).stat().st_size / (1024 * 1024)
    except FileNotFoundError:
        return 0.0
