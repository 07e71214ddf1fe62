"""The database: the only package that writes SQL or imports ``sqlite3``.

A :class:`Store` is one connection to the SQLite file and one attribute per table or
concern, each asked in domain terms (``store.addresses.get(address)``,
``store.messages.ids(MessageState.PENDING, 100)``), never in SQL, so a second storage
engine can implement the same interface:

==================  =============================================================
``messages``        received messages, raw (:mod:`bounced.store.messages`)
``bounces``         the delivery log and its later changes (:mod:`.bounces`)
``addresses``       address states and their history (:mod:`.addresses`)
``qualification``   the qualification table (:mod:`.qualification`)
``rules``           processing rules (:mod:`.rules`)
``dns_cache``       DNS answers per domain (:mod:`.dns_cache`)
``retention``       the purge past ``database.retention`` (:mod:`.retention`)
``reports``         counts over a time window (:mod:`.reports`)
``health``          integrity, schema version, sizing (:mod:`.health`)
``outbox``          webhook events and their deliveries (:mod:`.outbox`)
``sent``            messages a sending platform registered (:mod:`.sent`)
==================  =============================================================

Work that must happen together runs in :meth:`Store.atomic`, the one way to run a
transaction; it nests, inner blocks becoming savepoints. The schema and its named
migrations are :mod:`bounced.store.schema`; ``docs/schema.md`` documents every table
and column operators query.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from bounced.store.addresses import AddressBook
from bounced.store.bounces import BounceLog
from bounced.store.dns_cache import DnsCacheTable
from bounced.store.engine import (
    BUSY_TIMEOUT_MS,
    DatabaseError,
    Rollback,
    StoreError,
    connect,
    free_mib,
    is_busy,
    wal_mib,
)
from bounced.store.health import Health
from bounced.store.messages import MessageTable
from bounced.store.outbox import WebhookOutbox
from bounced.store.qualification import QualificationTable
from bounced.store.reports import ReportQueries
from bounced.store.retention import Retention
from bounced.store.rules import FIRST_USER_RULE_ID, RuleTable
from bounced.store.schema import SCHEMA_VERSION, migrate
from bounced.store.sent import SentMessages
from bounced.store.tuning import (
    PROCESSING_BTREES,
    STORING_BTREES,
    WAL_LIMIT_MB,
    WAL_SAFETY_NET_PAGES,
    WAL_WARN_MB,
    Checkpointer,
    EventSink,
    Prewarm,
    btree_mib,
)

__all__ = [
    "BUSY_TIMEOUT_MS",
    "FIRST_USER_RULE_ID",
    "PROCESSING_BTREES",
    "SCHEMA_VERSION",
    "STORING_BTREES",
    "Checkpointer",
    "DatabaseError",
    "Prewarm",
    "Rollback",
    "Store",
    "StoreError",
    "free_mib",
    "is_busy",
    "wal_mib",
]


class Store:
    """A bounced database. Open with :meth:`open`; one instance per thread or process.

    ``conn`` is the connection the table modules of this package use; code outside
    :mod:`bounced.store` asks the tables instead (tests and operators may read it).
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path
        self._depth = 0
        self.messages = MessageTable(self)
        self.bounces = BounceLog(self)
        self.addresses = AddressBook(self)
        self.qualification = QualificationTable(self)
        self.rules = RuleTable(self)
        self.dns_cache = DnsCacheTable(self)
        self.retention = Retention(self)
        self.reports = ReportQueries(self)
        self.health = Health(self)
        self.outbox = WebhookOutbox(self)
        self.sent = SentMessages(self)

    # ---- opening

    @classmethod
    def open(cls, path: str | Path, *, cache_mb: int | None = None) -> Store:
        """Open (creating if needed) and migrate the database at ``path``, in WAL mode,
        with reasons and default rules seeded.

        ``cache_mb``: the connection's page cache (SQLite's default is 2 MB). Processes
        that live long and write a lot (the daemon, ``bounced ingest``) pass
        ``database.cache_mb``: the upper levels and hot leaves of a large database's
        indexes then stay in the process, whatever the OS does with its page cache.
        """
        target = Path(path)
        try:
            conn = connect(target)
            if cache_mb is not None:
                conn.execute(f"PRAGMA cache_size = {-1024 * int(cache_mb)}")
        except sqlite3.Error as error:
            raise StoreError(f"{target}: cannot open database: {error}") from None
        try:
            migrate(conn)
        except sqlite3.DatabaseError as error:
            conn.close()
            raise StoreError(f"{target}: not a usable bounced database: {error}") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, target)

    @classmethod
    def open_readonly(cls, path: str | Path, *, require_schema: bool = True) -> Store:
        """Open an existing database for reading only: no write lock, no migration, no
        seeding, so a sender's ``check`` never waits behind the daemon's writer nor slows
        it down. A missing file is an error (a typo must not create an empty database
        that says every address is fine), and so is, with ``require_schema``, a schema
        this code does not know (``bounced db init`` migrates it)."""
        target = Path(path)
        if not target.is_file():
            raise StoreError(f"{target}: no such database file")
        try:
            conn = connect(target, readonly=True)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as error:
            raise StoreError(f"{target}: not a usable bounced database: {error}") from None
        if require_schema and version != SCHEMA_VERSION:
            conn.close()
            raise StoreError(f"{target}: schema version {version}, this bounced needs "
                             f"{SCHEMA_VERSION} (run `bounced db init --db {target}`)")
        return cls(conn, target)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- transactions

    @contextmanager
    def atomic(self) -> Iterator[None]:
        """Everything inside commits together or not at all.

        The outermost block is a ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction (the
        write lock is taken at once, see :mod:`bounced.store.engine`); a block inside
        another is a savepoint, undone alone when it raises while the outer work goes
        on. Raising :class:`Rollback` undoes the block and is swallowed (dry runs).
        """
        outermost = self._depth == 0
        name = f"atomic_{self._depth}"
        self.conn.execute("BEGIN IMMEDIATE" if outermost else f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException as error:
            self._depth -= 1
            if self.conn.in_transaction:
                if outermost:
                    self.conn.execute("ROLLBACK")
                else:
                    self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                    self.conn.execute(f"RELEASE SAVEPOINT {name}")
            if isinstance(error, Rollback):
                return
            raise
        self._depth -= 1
        self.conn.execute("COMMIT" if outermost else f"RELEASE SAVEPOINT {name}")

    @contextmanager
    def relaxed_sync(self) -> Iterator[None]:
        """``synchronous = NORMAL`` for work that may be lost on power failure without
        harm: processing. A lost processing commit leaves its messages ``pending``, and
        they are processed again from scratch; the raw messages themselves were committed
        with ``FULL``. WAL with NORMAL never corrupts."""
        self.conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA synchronous = FULL")

    # ---- how this connection works

    def configure_writer(self, *, busy_timeout_ms: int, autocheckpoint_pages: int,
                         wal_limit_mb: int | None = None) -> None:
        """How long this connection waits for the write lock, after how many WAL pages
        its commits copy the WAL back themselves (0: never, another connection
        checkpoints), and the size its WAL file is cut back to when it restarts
        (``journal_size_limit``; None: SQLite's default, never)."""
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint_pages)}")
        if wal_limit_mb is not None:
            self.conn.execute(f"PRAGMA journal_size_limit = {int(wal_limit_mb) * 1024 * 1024}")

    def cache_mib(self) -> float:
        """The connection's page cache limit, in MiB."""
        size = int(self.conn.execute("PRAGMA cache_size").fetchone()[0])
        if size < 0:  # negative: KiB
            return -size / 1024
        page = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
        return size * page / (1024 * 1024)

    def prewarm(self, btrees: dict[str, str]) -> Prewarm:
        """Read ``btrees`` (name -> a query that scans exactly that b-tree) into this
        connection's page cache, if they fit in it, as ``pg_prewarm`` does for
        PostgreSQL (:data:`PROCESSING_BTREES`, :data:`STORING_BTREES`).

        Sequential reads at start-up instead of a random read per bounce later: a
        long-lived process (the daemon) then finds those pages in its own memory, where
        neither a cold start nor a host that reclaims idle page cache takes them away.
        """
        started = time.monotonic()
        names = tuple(btrees)
        mib = btree_mib(self.conn, names)
        cache = self.cache_mib()
        fits = mib is not None and mib <= cache
        if fits:
            for query in btrees.values():
                self.conn.execute(query).fetchall()
        return Prewarm(names, mib, cache, fits, time.monotonic() - started)

    @contextmanager
    def checkpoint_in_background(
        self,
        on_error: Callable[[BaseException], None] | None = None,
        *,
        wal_limit_mb: int = WAL_LIMIT_MB,
        wal_warn_mb: int = WAL_WARN_MB,
        on_event: EventSink | None = None,
    ) -> Iterator[Checkpointer]:
        """Run a :class:`Checkpointer` while this connection writes; its own automatic
        checkpoint moves to :data:`WAL_SAFETY_NET_PAGES` meanwhile, and its WAL is cut
        back to ``wal_limit_mb`` when it restarts."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_SAFETY_NET_PAGES}")
        self.conn.execute(f"PRAGMA journal_size_limit = {int(wal_limit_mb) * 1024 * 1024}")
        try:
            with Checkpointer(self.path, on_error=on_error, wal_limit_mb=wal_limit_mb,
                              wal_warn_mb=wal_warn_mb, on_event=on_event) as checkpointer:
                yield checkpointer
        finally:
            self.conn.execute("PRAGMA wal_autocheckpoint = 1000")
