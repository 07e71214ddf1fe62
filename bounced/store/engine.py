"""Connections to the SQLite file, and the errors the rest of bounced may see.

One file in WAL mode, so that ``sqlite3 bounced.db`` (an operator) and the daemon's
two processes read and write at once (``docs/schema.md``). ``busy_timeout`` makes a
writer wait for another one's lock instead of failing at once.

Transactions are explicit (``isolation_level=None``, then ``BEGIN IMMEDIATE`` in
:meth:`bounced.store.Store.atomic`): Python's implicit transactions open late, at the
first write, and two writers that both read first could deadlock; ``IMMEDIATE`` takes
the write lock up front.

Nothing outside :mod:`bounced.store` imports ``sqlite3``: callers catch
:data:`DatabaseError` and ask :func:`is_busy`, so a second storage engine can raise its
own errors behind the same names.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

#: How long a writer waits for another one's lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 30_000

#: Any failure of the database itself (locked, full disk, I/O error, corruption).
DatabaseError = sqlite3.Error


class StoreError(Exception):
    """The database cannot be used (unreadable, not a bounced database, too new, a
    read-only open of a file that does not exist); the message names the path."""


class Rollback(Exception):  # noqa: N818 - a control-flow signal, not an error
    """Raise inside :meth:`bounced.store.Store.atomic` to undo its work quietly (the
    dry runs of operator commands compute everything, then roll back)."""


def is_busy(error: BaseException) -> bool:
    """True when ``error`` says another connection holds the lock we need."""
    if not isinstance(error, sqlite3.OperationalError):
        return False
    text = str(error)
    return "locked" in text or "busy" in text


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
