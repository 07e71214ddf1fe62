"""The daemon's commit writer: durable group commit before every ``250``.

At the end of DATA an SMTP session hands its message to the :class:`GroupCommitWriter`
and waits for the durable id. One transaction runs at a time in a dedicated thread
(``store.messages.insert``, ``synchronous=FULL``), holding every message whose DATA
ended while the previous one was committing: sixteen sessions finishing DATA together
cost one fsync, not sixteen; no timer adds latency when traffic is light; sqlite3
releases the GIL while it writes, so the sessions go on meanwhile.

Back-pressure: the writer tracks the ``pending`` backlog; beyond
``processing.max_pending`` new transactions get ``451 4.3.2`` (the receiver asks
:meth:`GroupCommitWriter.overloaded`) so the sending MTA keeps the bounces instead of
us. It also watches the free space of the database's file system: below
``storage.min_free_mb`` new mail gets ``452 4.3.1``
(:meth:`GroupCommitWriter.storage_low`), and the room left is the worker's, to process
what was accepted (it grows the database by the verdicts it writes).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import multiprocessing
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bounced.log import get_logger
from bounced.model import AcceptedMessage, IncomingMessage, MessageState
from bounced.store import STORING_BTREES, DatabaseError, Location, Store, free_mib, is_busy

log = get_logger("bounced.daemon.writer")

#: Messages (and bytes) at most in one group commit: bounds one transaction's memory.
MAX_GROUP = 512
MAX_GROUP_BYTES = 64 * 1024 * 1024
#: Longest the writer waits for the database write lock before failing the group (451).
LOCK_WAIT_SECONDS = 30.0
#: How often the writer re-reads the pending backlog from the database, and the free
#: space of its file system (one statvfs: never per command).
PENDING_REFRESH_SECONDS = 0.25


@dataclass
class SharedCounters:
    """Two numbers in shared memory between the listener and the worker process.

    ``writer_waiting`` > 0 while the listener waits for the database write lock: the
    worker lets it in before its next transaction. ``committed`` counts stored messages:
    from its rate the worker sees a burst and leaves the CPU to the listener (see
    :meth:`ProcessingWorker.defer_while_busy`).
    """

    writer_waiting: Any
    committed: Any
    #: 1 while the worker sleeps waiting for work: only then is it worth waking.
    worker_idle: Any

    @classmethod
    def create(cls, context: Any = None) -> SharedCounters:
        ctx = context if context is not None else multiprocessing.get_context("spawn")
        return cls(ctx.RawValue("i", 0), ctx.RawValue("q", 0), ctx.RawValue("i", 0))


class StoreClosedError(RuntimeError):
    """The writer no longer accepts messages (the daemon is stopping)."""


class GroupCommitWriter:
    """The :class:`~bounced.daemon.receive.MessageSink` of the daemon: durable group commit.

    ``accept`` may be awaited by any number of sessions at once. One commit runs at a
    time, in a dedicated thread (``insert_messages``, ``synchronous=FULL``): the fsync
    does not stop the sessions, and every message whose DATA ends meanwhile waits for the
    *next* commit, all of them together. Sixteen sessions finishing DATA together cost
    one fsync, not sixteen; no timer adds latency when traffic is light.

    Measured on this 2-core machine (``bench/smtp_load.py``): committing on the loop
    itself blocked it ~1 ms per fsync and reached ~60% of a bare aiosmtpd; a thread fed
    message by message lost as much in GIL hand-overs; one hand-over per group is best.
    The write lock is never waited for inside SQLite (``busy_timeout = 0``): when the
    worker holds it, the group is retried half a millisecond later, and the worker lets
    the writer in before its next transaction (:class:`SharedCounters`).
    """

    def __init__(
        self,
        db_path: str | Path,
        *,
        max_pending: int,
        on_commit: Callable[[], None] = lambda: None,
        shared: SharedCounters | None = None,
        cache_mb: int | None = None,
        prewarm: bool = False,
        min_free_mb: int = 0,
        wal_limit_mb: int | None = None,
    ) -> None:
        self.db_path = db_path
        #: The database as log lines name it (a URL without its password).
        self.where = str(Location.parse(db_path))
        #: The SQLite file whose file system the reserve watches (None on PostgreSQL,
        #: whose disk is the server's: no reserve is kept here).
        self._file = Location.parse(db_path).path
        #: The free-space reserve (``storage.min_free_mb``; 0: none). A reload may change it.
        self.min_free_mb = min_free_mb
        self.free_mib: float | None = None
        self.wal_limit_mb = wal_limit_mb
        self._storage_low = False
        self.cache_mb = cache_mb
        self.prewarm = prewarm
        self.max_pending = max_pending
        self.on_commit = on_commit
        self.shared = shared
        self.loop: asyncio.AbstractEventLoop | None = None
        self._store: Store | None = None
        self._batch: list[tuple[IncomingMessage, asyncio.Future[AcceptedMessage]]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._busy_since: float | None = None
        self._refresh_handle: asyncio.TimerHandle | None = None
        self._closed = False
        self._inflight = False
        self._reader: Store | None = None
        #: The one commit thread (the store's connection is only used there).
        self._executor = concurrent.futures.ThreadPoolExecutor(1, "bounced-commit")
        self._pending = 0
        self.heartbeat = time.monotonic()
        self.committed = 0
        self.commits = 0

    # -- life cycle

    def start(self) -> None:
        """Open the database (on the running loop's thread) and start tracking the backlog."""
        self.loop = asyncio.get_running_loop()
        self._store = Store.open(self.db_path, cache_mb=self.cache_mb)
        # Never block the loop on the worker's lock: fail fast and retry (see _flush).
        # Checkpoints (copying the WAL into the database file, with its own fsync) are
        # left to the worker's checkpoint thread: here they would stall every session.
        # Its WAL is cut back to database.wal_limit_mb when it restarts the WAL.
        self._store.configure_writer(busy_timeout_ms=0, autocheckpoint_pages=0,
                                     wal_limit_mb=self.wal_limit_mb)
        if self.prewarm:  # on the commit thread, ahead of the first commit
            self._executor.submit(self._prewarm, self._store)
        self._reader = Store.open(self.db_path)  # backlog counts, on the loop thread
        self._pending = self._reader.messages.count(MessageState.PENDING)
        self._check_free_space()
        self._refresh()

    async def stop(self) -> None:
        """Refuse new messages, commit those already accepted, close the database."""
        self._closed = True
        while self._batch or self._inflight:
            await asyncio.sleep(0.001)
        if self._refresh_handle is not None:
            self._refresh_handle.cancel()
        self._executor.shutdown(wait=True)
        for store in (self._store, self._reader):
            if store is not None:
                store.close()
        self._store = self._reader = None

    @property
    def alive(self) -> bool:
        return self._store is not None

    @staticmethod
    def _prewarm(store: Store) -> None:
        try:
            log.info("database.prewarm", **store.prewarm(STORING_BTREES).log_fields())
        except DatabaseError as error:  # an optimisation: the writer works without it
            log.warning("database.prewarm.failed", error=repr(error), path=str(store.location))

    @property
    def _queued(self) -> int:
        """Messages waiting for their commit."""
        return len(self._batch)

    # -- MessageSink

    def overloaded(self) -> bool:
        return self._pending + len(self._batch) > self.max_pending

    def storage_low(self) -> bool:
        """Free space under the reserve, as last measured (at most 250 ms ago)."""
        return self._storage_low

    @property
    def pending(self) -> int:
        return self._pending

    async def accept(self, message: IncomingMessage) -> AcceptedMessage:
        if self._closed or self._store is None or self.loop is None:
            raise StoreClosedError("the writer is stopped")
        future: asyncio.Future[AcceptedMessage] = self.loop.create_future()
        self._batch.append((message, future))
        if self._flush_handle is None:
            # After the other callbacks of this turn, so their messages join the group
            # (and while a commit runs, _committed starts the next one).
            self._flush_handle = self.loop.call_soon(self._flush)
        # Shielded: a client that disconnects while we commit must not cancel the
        # commit's bookkeeping; its message is stored and a re-send is a duplicate.
        return await asyncio.shield(future)

    # -- committing

    def _flush(self) -> None:
        self._flush_handle = None
        store, loop = self._store, self.loop
        if self._inflight or not self._batch or store is None or loop is None:
            return
        group: list[tuple[IncomingMessage, asyncio.Future[AcceptedMessage]]] = []
        size = 0
        for item in self._batch:
            if group and (len(group) >= MAX_GROUP or size >= MAX_GROUP_BYTES):
                break
            group.append(item)
            size += len(item[0].raw)
        incoming = [message for message, _future in group]
        self.heartbeat = time.monotonic()
        self._inflight = True
        commit = loop.run_in_executor(self._executor, store.messages.insert, incoming)
        commit.add_done_callback(lambda done: self._committed(group, done))

    def _committed(
        self,
        group: list[tuple[IncomingMessage, asyncio.Future[AcceptedMessage]]],
        done: asyncio.Future[list[AcceptedMessage]],
    ) -> None:
        self._inflight = False
        error = done.exception()
        if error is None:
            results = done.result()
            self._done_waiting()
            del self._batch[: len(group)]
            self.commits += 1
            self.committed += len(group)
            if self.shared is not None:
                self.shared.committed.value += len(group)
            self._pending += sum(1 for r in results if not r.duplicate)
            for (_message, future), result in zip(group, results, strict=True):
                if not future.done():
                    future.set_result(result)
            self.on_commit()
        elif is_busy(error):
            if self._retry_later():
                return
            self._fail(group, error)
        else:
            self._fail(group, error)
        if self._batch and self._flush_handle is None and self.loop is not None:
            self._flush_handle = self.loop.call_soon(self._flush)

    def _retry_later(self) -> bool:
        """The worker holds the write lock: try again shortly, unless we waited too long."""
        assert self.loop is not None
        now = time.monotonic()
        if self._busy_since is None:
            self._busy_since = now
            if self.shared is not None:
                self.shared.writer_waiting.value += 1
        if now - self._busy_since > LOCK_WAIT_SECONDS:
            return False
        self._flush_handle = self.loop.call_later(0.0005, self._flush)  # type: ignore[assignment]
        return True

    def _done_waiting(self) -> None:
        if self._busy_since is not None:
            self._busy_since = None
            if self.shared is not None:
                self.shared.writer_waiting.value -= 1

    def _fail(
        self,
        group: list[tuple[IncomingMessage, asyncio.Future[AcceptedMessage]]],
        error: BaseException,
    ) -> None:
        self._done_waiting()
        log.error("store.commit_failed", error=repr(error), messages=len(group),
                  path=self.where)
        del self._batch[: len(group)]
        for _message, future in group:
            if not future.done():
                future.set_exception(error)

    def _refresh(self) -> None:
        """Re-read the backlog now and then: the worker shrinks it in another process."""
        assert self.loop is not None
        if self._reader is not None:
            try:
                self._pending = self._reader.messages.count(MessageState.PENDING)
            except DatabaseError as error:
                log.warning("store.pending_count_failed", error=repr(error),
                            path=self.where)
            self.heartbeat = time.monotonic()
        self._check_free_space()
        self._refresh_handle = self.loop.call_later(PENDING_REFRESH_SECONDS, self._refresh)

    def _check_free_space(self) -> None:
        """Measure the free space; say so in the log when it crosses the reserve."""
        if not self.min_free_mb or self._file is None:
            self._storage_low = False
            return
        try:
            free = free_mib(self._file)
        except OSError as error:  # cannot tell: do not refuse mail over it
            log.warning("storage.check_failed", error=repr(error))
            return
        self.free_mib = free
        low = free < self.min_free_mb
        if low and not self._storage_low:
            log.warning("storage.reserve_reached", free_mib=round(free, 1),
                        min_free_mb=self.min_free_mb, reply="452 4.3.1",
                        effect="new mail refused, the worker goes on processing")
        elif self._storage_low and not low:
            log.info("storage.reserve_restored", free_mib=round(free, 1),
                     min_free_mb=self.min_free_mb)
        self._storage_low = low
