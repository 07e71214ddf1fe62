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
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from bounced.store.addresses import AddressBook
from bounced.store.bounces import BounceLog
from bounced.store.dns_cache import DnsCacheTable
from bounced.store.engine import (
    BUSY_TIMEOUT_MS,
    POSTGRESQL,
    SQLITE,
    Connection,
    DatabaseError,
    Dialect,
    Location,
    PgConnection,
    Rollback,
    StoreError,
    connect,
    free_mib,
    is_busy,
    is_disconnect,
    lock_key,
    pg_connect,
    wal_mib,
)
from bounced.store.health import Health
from bounced.store.messages import MessageTable
from bounced.store.outbox import WebhookOutbox
from bounced.store.qualification import QualificationTable
from bounced.store.reports import ReportQueries
from bounced.store.retention import Retention
from bounced.store.rules import FIRST_USER_RULE_ID, RuleTable
from bounced.store.schema import (
    SCHEMA_VERSION,
    migrate_postgresql,
    postgresql_version,
    seed_postgresql,
)
from bounced.store.schema import migrate as migrate_sqlite
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
    "Location",
    "Prewarm",
    "Rollback",
    "Store",
    "StoreError",
    "free_mib",
    "is_busy",
    "is_disconnect",
    "wal_mib",
]


class Store:
    """A bounced database. Open with :meth:`open`; one instance per thread or process.

    ``conn`` is the connection the table modules of this package use (a
    ``sqlite3.Connection``, or a :class:`~bounced.store.engine.PgConnection` with the
    same surface); code outside :mod:`bounced.store` asks the tables instead (tests and
    operators may read it). ``dialect`` says how the engine writes what the two
    write differently.
    """

    def __init__(self, conn: Any, path: Path | None, *, dialect: Dialect = SQLITE,
                 location: Location | None = None) -> None:
        self.conn: Connection = conn
        self.path = path
        self.dialect = dialect
        self.location = location or Location("sqlite", path=path)
        self._depth = 0
        #: Advisory-lock keys this transaction holds (:meth:`lock_keys`).
        self._held: set[int] = set()
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

    @property
    def is_postgresql(self) -> bool:
        return self.dialect is POSTGRESQL

    # ---- opening

    @classmethod
    def open(cls, target: str | Path, *, cache_mb: int | None = None,
             migrate: bool | None = None, seed: bool = False) -> Store:
        """Open the database at ``target`` (a path, ``sqlite:///PATH`` or
        ``postgresql://...``; see :class:`~bounced.store.engine.Location`).

        SQLite: created if needed, migrated, reasons and default rules seeded, in WAL
        mode. ``cache_mb``: the connection's page cache (SQLite's default is 2 MB).
        Processes that live long and write a lot (the daemon, ``bounced ingest``) pass
        ``database.cache_mb``: the upper levels and hot leaves of a large database's
        indexes then stay in the process, whatever the OS does with its page cache.

        PostgreSQL: the schema is migrated only with ``migrate=True`` (``bounced db
        init|migrate``): several hosts share the database, and upgrading it is an
        operator's explicit step; a schema of another version is refused with the
        command that fixes it. ``seed``: re-seed reasons and default rules (the
        daemon's start does, so a release's new rules arrive).
        """
        location = Location.parse(target)
        if location.is_postgresql:
            return cls._open_postgresql(location, migrate=migrate, seed=seed)
        assert location.path is not None
        path = location.path
        try:
            conn = connect(path)
            if cache_mb is not None:
                conn.execute(f"PRAGMA cache_size = {-1024 * int(cache_mb)}")
        except sqlite3.Error as error:
            raise StoreError(f"{path}: cannot open database: {error}") from None
        try:
            if migrate is not False:
                migrate_sqlite(conn)
        except sqlite3.DatabaseError as error:
            conn.close()
            raise StoreError(f"{path}: not a usable bounced database: {error}") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, path, location=location)

    @classmethod
    def _open_postgresql(cls, location: Location, *, migrate: bool | None, seed: bool,
                         readonly: bool = False, require_schema: bool = True) -> Store:
        url = location.url
        assert url is not None
        try:
            conn = PgConnection(lambda: pg_connect(url, readonly=readonly))
        except DatabaseError as error:
            raise StoreError(f"{location}: cannot connect: {_first_line(error)}") from None
        try:
            if migrate:
                migrate_postgresql(conn)
            version = postgresql_version(conn)
            if require_schema and version != SCHEMA_VERSION:
                raise StoreError(_version_problem(location, version))
            if seed and not migrate:
                seed_postgresql(conn)
        except DatabaseError as error:
            conn.close()
            raise StoreError(f"{location}: not a usable bounced database: "
                             f"{_first_line(error)}") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, None, dialect=POSTGRESQL, location=location)

    @classmethod
    def open_readonly(cls, target: str | Path, *, require_schema: bool = True) -> Store:
        """Open an existing database for reading only: no write lock, no migration, no
        seeding, so a sender's ``check`` never waits behind the daemon's writer nor slows
        it down. A missing file is an error (a typo must not create an empty database
        that says every address is fine), and so is, with ``require_schema``, a schema
        this code does not know (``bounced db init`` migrates it). On PostgreSQL the
        session is read-only (``default_transaction_read_only``)."""
        location = Location.parse(target)
        if location.is_postgresql:
            return cls._open_postgresql(location, migrate=False, seed=False, readonly=True,
                                        require_schema=require_schema)
        assert location.path is not None
        path = location.path
        if not path.is_file():
            raise StoreError(f"{path}: no such database file")
        try:
            conn = connect(path, readonly=True)
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as error:
            raise StoreError(f"{path}: not a usable bounced database: {error}") from None
        if require_schema and version != SCHEMA_VERSION:
            conn.close()
            raise StoreError(_version_problem(location, version))
        return cls(conn, path, location=location)

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

        The outermost block is a ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction on
        SQLite (the write lock is taken at once, see :mod:`bounced.store.engine`), a
        ``BEGIN`` ... ``COMMIT`` on PostgreSQL (READ COMMITTED; what must not be written
        by two hosts at once is locked explicitly); a block inside
        another is a savepoint, undone alone when it raises while the outer work goes
        on. Raising :class:`Rollback` undoes the block and is swallowed (dry runs).
        """
        outermost = self._depth == 0
        name = f"atomic_{self._depth}"
        if outermost:
            self._held.clear()
        self.conn.execute(self.dialect.begin if outermost else f"SAVEPOINT {name}")
        self._depth += 1
        try:
            yield
        except BaseException as error:
            self._depth -= 1
            if self.conn.in_transaction:
                try:
                    if outermost:
                        self.conn.execute("ROLLBACK")
                    else:
                        self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                        self.conn.execute(f"RELEASE SAVEPOINT {name}")
                except DatabaseError:
                    if self.conn.in_transaction:
                        raise
                    # The server went away: nothing left to undo, the error that did
                    # it is the one to report.
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
        with ``FULL``. WAL with NORMAL never corrupts. On PostgreSQL the same bargain is
        ``synchronous_commit = off`` (a crash of the server may lose the last processing
        commits, never corrupts, and the messages are ``pending`` again)."""
        if self.is_postgresql:
            self.conn.execute("SET synchronous_commit = off")
            try:
                yield
            finally:
                if not self.conn.in_transaction:
                    with suppress(*DatabaseError):  # a new connection starts "on"
                        self.conn.execute("SET synchronous_commit = on")
            return
        self.conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA synchronous = FULL")

    def lock_keys(self, keys: Iterable[int]) -> None:
        """Inside a transaction, take the advisory locks ``keys`` not held yet (see
        :meth:`~bounced.store.engine.Dialect.lock_keys`); a lock taken once is held
        until the transaction ends, so asking again costs no round trip."""
        if not self.dialect.concurrent_writers:
            return
        wanted = set(keys) - self._held
        self.dialect.lock_keys(self.conn, wanted)
        self._held |= wanted

    @contextmanager
    def exclusive(self, job: str) -> Iterator[bool]:
        """Whether this process may run ``job`` now, held until the block ends.

        A periodic job (cleanup, retention purge, DNS evidence, webhook delivery) runs
        on one host at a time: on PostgreSQL this is a session advisory lock, tried
        without waiting (another host that holds it is doing the job; this one skips
        the round). On SQLite one daemon owns the file: always True.
        """
        acquired = self.try_lock_job(job)
        try:
            yield acquired
        finally:
            if acquired:
                self.unlock_job(job)

    def try_lock_job(self, job: str) -> bool:
        """:meth:`exclusive` in two halves, for a job whose round spans several calls
        (webhook delivery awaits HTTP answers between its reads and writes)."""
        if not self.is_postgresql:
            return True
        (acquired,) = self.conn.execute("SELECT pg_try_advisory_lock(?)",
                                        (lock_key("job", job),)).fetchone()
        return bool(acquired)

    def unlock_job(self, job: str) -> None:
        if self.is_postgresql:
            with suppress(*DatabaseError):  # the connection is gone, and the lock with it
                self.conn.execute("SELECT pg_advisory_unlock(?)", (lock_key("job", job),))

    # ---- how this connection works

    def configure_writer(self, *, busy_timeout_ms: int, autocheckpoint_pages: int,
                         wal_limit_mb: int | None = None) -> None:
        """How long this connection waits for the write lock, after how many WAL pages
        its commits copy the WAL back themselves (0: never, another connection
        checkpoints), and the size its WAL file is cut back to when it restarts
        (``journal_size_limit``; None: SQLite's default, never). Nothing on
        PostgreSQL: no file lock, no WAL file of the client's to copy back or bound."""
        if self.is_postgresql:
            return
        self.conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint_pages)}")
        if wal_limit_mb is not None:
            self.conn.execute(f"PRAGMA journal_size_limit = {int(wal_limit_mb) * 1024 * 1024}")

    def cache_mib(self) -> float:
        """The connection's page cache limit, in MiB (0 on PostgreSQL, whose cache is
        the server's ``shared_buffers``)."""
        if self.is_postgresql:
            return 0.0
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
        On PostgreSQL the cache is the server's: nothing is loaded here.
        """
        started = time.monotonic()
        names = tuple(btrees)
        if self.is_postgresql:
            return Prewarm(names, None, 0.0, False, 0.0)
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
    ) -> Iterator[Checkpointer | None]:
        """Run a :class:`Checkpointer` while this connection writes; its own automatic
        checkpoint moves to :data:`WAL_SAFETY_NET_PAGES` meanwhile, and its WAL is cut
        back to ``wal_limit_mb`` when it restarts. PostgreSQL checkpoints and bounds
        its own WAL (``max_wal_size``): nothing to run."""
        if self.is_postgresql or self.path is None:
            yield None
            return
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_SAFETY_NET_PAGES}")
        self.conn.execute(f"PRAGMA journal_size_limit = {int(wal_limit_mb) * 1024 * 1024}")
        try:
            with Checkpointer(self.path, on_error=on_error, wal_limit_mb=wal_limit_mb,
                              wal_warn_mb=wal_warn_mb, on_event=on_event) as checkpointer:
                yield checkpointer
        finally:
            self.conn.execute("PRAGMA wal_autocheckpoint = 1000")


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _version_problem(location: Location, version: int) -> str:
    """Why a database of another schema version is refused, and the command that fixes it."""
    if version > SCHEMA_VERSION:
        return (f"{location}: schema version {version} is newer than this bounced "
                f"(knows up to {SCHEMA_VERSION}): upgrade bounced")
    command = "migrate" if location.is_postgresql else "init"
    return (f"{location}: schema version {version}, this bounced needs {SCHEMA_VERSION} "
            f"(run `bounced db {command} --db {location}`)")
