"""Keeping a large database fast: background checkpoints and page-cache prewarming.

Two measured costs of a database of millions of rows (``bench/large_db.py``):

- SQLite's automatic checkpoint runs inside the COMMIT that crosses 1,000 WAL pages,
  so the writer itself copies every page back and waits for the fsync; the
  :class:`Checkpointer` does it from a thread of its own;
- every bounce reaches a few b-trees at a random place; when the OS has dropped those
  pages from its cache each one is a disk read, unless the connection's own page cache
  holds the b-tree (:meth:`bounced.store.Store.prewarm`, like PostgreSQL's
  ``pg_prewarm``).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bounced.store.engine import connect

# --------------------------------------------------------------------------- checkpoints

#: WAL size (pages) at which a writer checkpoints by itself while a :class:`Checkpointer`
#: runs: only reached if the checkpointer falls far behind or has died (80 MB of WAL).
WAL_SAFETY_NET_PAGES = 20_000


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
    """

    def __init__(self, path: Path, *, interval: float = 0.25,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.path = path
        self.interval = interval
        self.on_error = on_error
        #: Checkpoints run and WAL frames they copied (for logs and tests).
        self.checkpoints = 0
        self.frames = 0
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
                    if version == seen:
                        continue
                    seen = version
                    _busy, _log, copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    self.frames += max(0, int(copied))
                except sqlite3.Error as error:  # a checkpoint is an optimisation: go on
                    self._report(error)
        finally:
            conn.close()

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
