"""Keeping a large database fast: background checkpoints and page-cache prewarming.

Two measured costs of a database of millions of rows (``bench/large_db.py``):

- SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages,
  so the writer itself copies every page back and waits for the fsync; the
  :class:`Checkpointer` does it from a thread of its own, and keeps the WAL file
  bounded (it grew to 663 MB behind a reader, and stayed so after the reader left);
- every bounce reaches a few b-trees at a random place; when the OS has dropped those
  pages from its cache each one is a disk read, unless the connection's own page cache
  holds the b-tree (:meth:`bounced.store.Store.prewarm`, like PostgreSQL's
  ``pg_prewarm``).
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bounced.store.engine import connect, wal_path

# --------------------------------------------------------------------------- checkpoints

#: WAL size (pages) at which a writer checkpoints by itself while a :class:`Checkpointer`
#: runs: only reached if the checkpointer falls far behind or has died (80 MB of WAL).
WAL_SAFETY_NET_PAGES = 20_000
#: Defaults of ``database.wal_limit_mb`` and ``database.wal_warn_mb`` (bounced/config.py).
WAL_LIMIT_MB = 64
WAL_WARN_MB = 256
#: A TRUNCATE checkpoint is tried only when at most this many WAL frames are left to
#: copy (~8 MB of 4 KiB pages): it holds the write lock while it copies them.
TRUNCATE_MAX_FRAMES = 2_000
#: How long a TRUNCATE checkpoint waits for the write lock and for readers (ms): the
#: SMTP writer never waits long behind it.
TRUNCATE_BUSY_MS = 20
#: Least time between two TRUNCATE attempts that found the database busy.
TRUNCATE_RETRY_SECONDS = 1.0
#: How often ``database.wal_pinned`` is repeated while the WAL stays pinned.
WAL_WARN_EVERY_SECONDS = 60.0

#: ``on_event(name, fields)``: what the checkpointer has to say (the daemon logs it).
EventSink = Callable[[str, dict[str, Any]], None]


class Checkpointer:
    """Copies the WAL into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses 1,000 WAL
    pages: the committing writer copies every page back into the database file and
    waits for its fsync. On a large database those pages sit all over the file, and the
    writer (the daemon's worker, ``bounced ingest``) spent a tenth of its time there.
    Here a second connection runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval``
    when something was committed since the last round; SQLite releases the GIL while it
    works, so the copy and the fsync overlap the writer's parsing. PASSIVE never waits
    for a lock nor blocks a reader or a writer. The writers keep an automatic checkpoint
    at :data:`WAL_SAFETY_NET_PAGES` (:meth:`Store.checkpoint_in_background`), so a dead
    or stalled checkpointer only brings the old behaviour back.

    Keeping the WAL file bounded: PASSIVE copies frames but never resets the WAL, and a
    reader holding an old snapshot (an operator's ``sqlite3`` left in a transaction)
    keeps even those frames from being copied, so under load the file grows with every
    message. Without a size limit SQLite reuses the file at its largest, forever. So:

    - ``PRAGMA journal_size_limit`` (``wal_limit_mb``) on the writers and here: a WAL
      that restarts is truncated back to the limit;
    - when the file is over the limit and PASSIVE left at most
      :data:`TRUNCATE_MAX_FRAMES` to copy, ``wal_checkpoint(TRUNCATE)`` with a busy
      timeout of :data:`TRUNCATE_BUSY_MS`: it empties the file if the readers allow,
      and otherwise gives up at once (retried after :data:`TRUNCATE_RETRY_SECONDS`);
    - while PASSIVE cannot copy everything and the file is past ``wal_warn_mb``,
      ``on_event("database.wal_pinned", ...)`` every :data:`WAL_WARN_EVERY_SECONDS`,
      then ``database.wal_released`` once the reader has gone.

    Rounds run when something was committed, and also while the WAL is behind or over
    its limit: the last commit before a reader closes must not leave it large.
    """

    def __init__(self, path: Path, *, interval: float = 0.25,
                 on_error: Callable[[BaseException], None] | None = None,
                 wal_limit_mb: int = WAL_LIMIT_MB, wal_warn_mb: int = WAL_WARN_MB,
                 on_event: EventSink | None = None) -> None:
        self.path = path
        self.interval = interval
        self.on_error = on_error
        self.on_event = on_event
        self.limit_bytes = wal_limit_mb * 1024 * 1024
        self.warn_bytes = wal_warn_mb * 1024 * 1024
        #: Checkpoints run and WAL frames they copied (for logs and tests).
        self.checkpoints = 0
        self.frames = 0
        #: TRUNCATE checkpoints that emptied the WAL.
        self.truncations = 0
        self._behind_since: float | None = None
        self._warned = False
        self._next_warning = 0.0
        self._next_truncate = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Checkpointer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            conn = connect(self.path)
            conn.execute(f"PRAGMA busy_timeout = {TRUNCATE_BUSY_MS}")
            conn.execute(f"PRAGMA journal_size_limit = {self.limit_bytes}")
        except sqlite3.Error as error:
            self._report(error)
            return
        seen = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    # data_version changes when another connection commits: an idle
                    # daemon does not fsync its database file four times a second.
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if (version == seen and self._behind_since is None
                            and self._wal_bytes() <= self.limit_bytes):
                        continue
                    seen = version
                    self._round(conn)
                except sqlite3.Error as error:  # a checkpoint is an optimisation: go on
                    self._report(error)
        finally:
            conn.close()

    def _wal_bytes(self) -> int:
        try:
            return wal_path(self.path).stat().st_size
        except FileNotFoundError:
            return 0

    def _round(self, conn: sqlite3.Connection) -> None:
        """One PASSIVE checkpoint, a TRUNCATE when the WAL is too large and nearly all
        copied, then the pinned-WAL bookkeeping."""
        _busy, log, copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.checkpoints += 1
        self.frames += max(0, int(copied))
        left = max(0, int(log) - int(copied))
        now = time.monotonic()
        if (self._wal_bytes() > self.limit_bytes and left <= TRUNCATE_MAX_FRAMES
                and now >= self._next_truncate):
            busy, log, copied = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy:  # a writer or a reader was there: PASSIVE did what it could
                self._next_truncate = now + TRUNCATE_RETRY_SECONDS
                left = max(0, int(log) - int(copied))
            else:
                self.truncations += 1
                left = 0
        self._watch(left > 0, now)

    def _watch(self, behind: bool, now: float) -> None:
        """``database.wal_pinned`` while frames cannot be copied and the file is past
        ``wal_warn_mb``; ``database.wal_released`` when it is over."""
        if not behind:
            if self._warned and self._behind_since is not None:
                self._emit("database.wal_released", {
                    "wal_mib": round(self._wal_bytes() / (1024 * 1024), 1),
                    "pinned_seconds": round(now - self._behind_since, 1),
                })
            self._behind_since, self._warned, self._next_warning = None, False, 0.0
            return
        if self._behind_since is None:
            self._behind_since = now
        size = self._wal_bytes()
        if size >= self.warn_bytes and now >= self._next_warning:
            self._emit("database.wal_pinned", {
                "wal_mib": round(size / (1024 * 1024), 1),
                "pinned_seconds": round(now - self._behind_since, 1),
                "wal_warn_mb": self.warn_bytes // (1024 * 1024),
                "hint": "a reader holds an old snapshot (an sqlite3 session in a "
                        "transaction, a long query): the WAL grows until it ends",
            })
            self._warned = True
            self._next_warning = now + WAL_WARN_EVERY_SECONDS

    def _emit(self, name: str, fields: dict[str, Any]) -> None:
        if self.on_event is not None:
            self.on_event(name, fields)

    def _report(self, error: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(error)


# --------------------------------------------------------------------------- prewarm

#: The b-trees that processing a bounce reaches at a random place: the address's row,
#: its bounces and its history. Each is one page per bounce; on a large database (1M
#: addresses, 5M bounces: ~290 MiB together) that page comes from disk whenever the
#: OS has dropped it, unless the connection's own page cache holds the b-tree. Each
#: is read whole by a scan of that b-tree alone (the plans are checked by a test).
PROCESSING_BTREES: dict[str, str] = {
    "addresses": "SELECT count(state) FROM addresses",
    "idx_bounces_recipient":
        "SELECT count(recipient) FROM bounces INDEXED BY idx_bounces_recipient",
    "idx_address_events_address":
        "SELECT count(address) FROM address_events INDEXED BY idx_address_events_address",
}
#: The same for storing a message: the duplicate lookup (~110 MiB at 4M messages).
STORING_BTREES: dict[str, str] = {
    "idx_messages_sha256_prefix":
        "SELECT count(*) FROM messages INDEXED BY idx_messages_sha256_prefix",
}


def btree_mib(conn: Any, names: Sequence[str]) -> float | None:
    """Size of the named tables and indexes, in MiB (None without SQLite's dbstat).
    It reads every page of them: through a :class:`Store`, that also loads them."""
    marks = ", ".join("?" for _ in names)
    try:
        row = conn.execute(
            f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})", tuple(names)
        ).fetchone()
    except sqlite3.OperationalError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
        return None
    return int(row[0] or 0) / (1024 * 1024)


@dataclass(frozen=True)
class Prewarm:
    """What :meth:`Store.prewarm` did: the b-trees' size against the page cache, and
    whether they were loaded (they are not when they would not fit: loading them would
    only push each other out)."""

    btrees: tuple[str, ...]
    mib: float | None
    cache_mib: float
    loaded: bool
    seconds: float

    def log_fields(self) -> dict[str, object]:
        """The fields of the ``database.prewarm`` log event."""
        fields: dict[str, object] = {
            "btrees": ",".join(self.btrees),
            "mib": None if self.mib is None else round(self.mib, 1),
            "cache_mib": round(self.cache_mib, 1),
            "loaded": self.loaded,
            "seconds": round(self.seconds, 2),
        }
        if self.mib is not None and not self.loaded:
            fields["advice"] = f"database.cache_mb >= {int(self.mib) + 1} to prewarm them"
        return fields
