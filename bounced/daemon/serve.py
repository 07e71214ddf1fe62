"""The daemon: listeners, group-commit writer, processing worker, signals, maintenance.

Three lanes, so that durability does not cost throughput and parsing does not slow the
SMTP dialogue:

1. **Event loop** (main thread): aiosmtpd sessions (:mod:`bounced.daemon.receive`). At the end
   of DATA a session hands its message to the :class:`GroupCommitWriter` and waits for
   the durable id.
2. **Commit thread** (:class:`GroupCommitWriter`): one transaction at a time
   (:meth:`Store.insert_messages`, ``synchronous=FULL``) holding every message whose
   DATA ended while the previous one was committing. Sixteen sessions finishing DATA
   together cost one fsync, not sixteen; no timer adds latency when traffic is light;
   sqlite3 releases the GIL while it writes, so the sessions go on meanwhile.
3. **Worker process** (:func:`worker_main`): parse → qualify → policy → store for
   ``pending`` messages, on the second core, in its own transactions. It starts with
   whatever a previous run left ``pending`` (crash recovery needs no special path),
   is woken after each commit, and runs the periodic cleanup. It dies with the daemon
   (``PR_SET_PDEATHSIG``): a crash is a crash of the whole service, and whatever was
   not committed is redone from ``pending`` on the next start, exactly once.

Back-pressure: the writer tracks the ``pending`` backlog; beyond
``processing.max_pending`` new transactions get ``451 4.3.2`` so the sending MTA keeps
the bounces instead of us. Memory is bounded by the connection cap times the size limit.

Signals: SIGTERM/SIGINT stop accepting, let sessions in a transaction finish (idle ones
get ``421``), commit what is queued, let the worker drain the backlog, exit 0. SIGHUP
re-reads the configuration file and the rules (listener addresses need a restart).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import multiprocessing
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bounced import log as logsetup
from bounced.config import Config, ConfigError, load_config
from bounced.core.times import parse_time
from bounced.daemon import sdnotify
from bounced.daemon.receive import (
    BouncedSMTP,
    BounceHandler,
    ReceivePolicy,
    new_limits,
    protocol_factory,
)
from bounced.log import get_logger
from bounced.model import AcceptedMessage, IncomingMessage
from bounced.store import PROCESSING_BTREES, STORING_BTREES, Store, StoreError

log = get_logger("bounced.daemon.serve")

#: Longest wait for sessions in a transaction to finish after SIGTERM.
SHUTDOWN_GRACE_SECONDS = 30.0
#: Messages (and bytes) at most in one group commit: bounds one transaction's memory.
MAX_GROUP = 512
MAX_GROUP_BYTES = 64 * 1024 * 1024
#: Longest the writer waits for the database write lock before failing the group (451).
LOCK_WAIT_SECONDS = 30.0
#: Messages per worker transaction: short, so the writer never waits long for the lock.
WORKER_CHUNK = 25
#: Seconds the DNS evidence thread rests when no bounce waits for evidence.
DNS_EVIDENCE_IDLE_SECONDS = 5.0
#: Longest the worker holds back while the writer waits, per chunk.
WORKER_YIELD_SECONDS = 0.05
#: Receiving rate (messages/s) above which the worker defers processing (a burst).
DEFER_ABOVE_RATE = 200.0
#: Longest a pending message waits for processing because of a burst.
MAX_DEFER_SECONDS = 10.0
#: Scheduling priority of the processing worker relative to the listener (see worker_main).
WORKER_NICENESS = 10
#: How often the writer re-reads the pending backlog from the database.
PENDING_REFRESH_SECONDS = 0.25


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ServeOptions:
    """What the command line says; each set field overrides the configuration file."""

    config_path: str | None = None
    db: str | None = None
    smtp: str | None = None
    lmtp: str | None = None


def effective_config(options: ServeOptions) -> Config:
    """The configuration file (or the defaults) with the command-line overrides applied."""
    config = load_config(options.config_path)
    if options.db is not None:
        config = replace(config, database=replace(config.database, path=options.db))
    if options.smtp is not None:
        config = replace(config, smtp=replace(config.smtp, listen=options.smtp))
    if options.lmtp is not None:
        config = replace(config, lmtp=replace(config.lmtp, listen=options.lmtp))
    return config


@dataclass(frozen=True)
class ListenAddress:
    """``HOST:PORT`` / ``[V6]:PORT`` (TCP) or ``unix:/path`` (a Unix socket)."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        value = text.strip()
        if value.startswith("unix:"):
            path = value[5:]
            if not path:
                raise ValueError(f"missing socket path in {text!r}")
            return cls(path=path)
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"expected HOST:PORT or unix:/path, got {text!r}")
        return cls(host=host.strip("[]"), port=int(port))

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"


# --------------------------------------------------------------------------- writer


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
    ) -> None:
        self.db_path = db_path
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
        self._store.conn.execute("PRAGMA busy_timeout = 0")
        # Checkpoints (copying the WAL into the database file, with its own fsync) are
        # left to the worker's checkpoint thread: here they would stall every session.
        self._store.conn.execute("PRAGMA wal_autocheckpoint = 0")
        if self.prewarm:  # on the commit thread, ahead of the first commit
            self._executor.submit(self._prewarm, self._store)
        self._reader = Store.open(self.db_path)  # backlog counts, on the loop thread
        self._pending = self._reader.pending_count()
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
        except sqlite3.Error as error:  # an optimisation: the writer works without it
            log.warning("database.prewarm.failed", error=repr(error))

    @property
    def _queued(self) -> int:
        """Messages waiting for their commit."""
        return len(self._batch)

    # -- MessageSink

    def overloaded(self) -> bool:
        return self._pending + len(self._batch) > self.max_pending

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
        commit = loop.run_in_executor(self._executor, store.insert_messages, incoming)
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
        elif isinstance(error, sqlite3.OperationalError) and _is_busy(error):
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
        log.error("store.commit_failed", error=repr(error), messages=len(group))
        del self._batch[: len(group)]
        for _message, future in group:
            if not future.done():
                future.set_exception(error)

    def _refresh(self) -> None:
        """Re-read the backlog now and then: the worker shrinks it in another process."""
        assert self.loop is not None
        if self._reader is not None:
            try:
                self._pending = self._reader.pending_count()
            except sqlite3.Error as error:
                log.warning("store.pending_count_failed", error=repr(error))
            self.heartbeat = time.monotonic()
        self._refresh_handle = self.loop.call_later(PENDING_REFRESH_SECONDS, self._refresh)


def _is_busy(error: sqlite3.OperationalError) -> bool:
    text = str(error)
    return "locked" in text or "busy" in text


# --------------------------------------------------------------------------- worker


def _die_with_parent() -> None:
    """Ask Linux to SIGKILL us when the daemon dies, so kill -9 leaves no orphan writer."""
    with contextlib.suppress(Exception):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def worker_main(
    config: Config,
    control: Connection,
    wake: Any,
    parent_pid: int,
    shared: SharedCounters | None = None,
) -> None:
    """Entry point of the processing process (spawned): loop until told to stop.

    ``control`` carries ``("config", Config)`` (SIGHUP) and ``("stop", None)``
    (drain the backlog, then exit); ``wake`` is set by the writer after each commit.
    """
    _die_with_parent()
    # Receiving comes first: when the two compete for a CPU, the MTA waiting for its 250
    # wins and the backlog (bounded by max_pending) is worked off in the idle time.
    with contextlib.suppress(OSError):
        os.nice(WORKER_NICENESS)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the parent decides
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    stop_requested = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop_requested.set())
    logsetup.configure(config.logging.format, config.logging.level)
    worker = ProcessingWorker(config, shared=shared)
    try:
        worker.run(control, wake, stop_requested, parent_pid)
    finally:
        worker.close()


class DnsEvidenceThread(threading.Thread):
    """Records DNS evidence on ``Invalid domain`` bounces, beside the processing loop.

    A thread of the worker process with its own database connection: one look-up may
    take the whole ``dns.timeout`` (a resolver outage), and that must delay evidence,
    never verdicts. It reads the worker's configuration on every round, so SIGHUP
    applies to it too.
    """

    def __init__(self, worker: ProcessingWorker) -> None:
        super().__init__(name="dns-evidence", daemon=True)
        self.worker = worker
        self.stopping = threading.Event()

    def run(self) -> None:
        from bounced.ops.dns import backfill_evidence, cache_for

        store = Store.open(self.worker.config.database.path)
        try:
            while not self.stopping.is_set():
                done = 0
                dns_config = self.worker.config.dns
                if dns_config.enabled:
                    try:
                        cache = cache_for(store.conn, dns_config, self.worker.clock)
                        done = backfill_evidence(cache)
                    except Exception as error:  # evidence is an extra: log, rest, go on
                        self.worker.log.error("dns.evidence_failed", error=repr(error))
                if done:
                    self.worker.log.info("dns.evidence", bounces=done)
                self.stopping.wait(0.0 if done else DNS_EVIDENCE_IDLE_SECONDS)
        finally:
            store.close()


class ProcessingWorker:
    """Processes pending messages and runs the maintenance schedule (in the worker process)."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        shared: SharedCounters | None = None,
    ) -> None:
        # imported here: the parent never parses
        from bounced.ops.processing import process_messages

        self._process = process_messages
        self.shared = shared
        self._rate_at = time.monotonic()
        self._rate_count = shared.committed.value if shared is not None else 0
        self._rate = 0.0
        self.config = config
        self.clock = clock
        self.store = Store.open(config.database.path, cache_mb=config.database.cache_mb)
        self.rules = self.store.load_rules()
        self.next_maintenance = time.monotonic()
        self.log = get_logger("bounced.worker")

    def close(self) -> None:
        self.store.close()

    def reload(self, config: Config) -> None:
        self.config = config
        self.rules = self.store.load_rules()
        self.log.info("worker.reloaded", rules=len(self.rules))

    def run(
        self, control: Connection, wake: Any, stop_requested: threading.Event, parent_pid: int
    ) -> None:
        self.log.info(
            "worker.started",
            pid=os.getpid(),
            pending=self.store.pending_count(),
            rules=len(self.rules),
        )
        if self.config.database.prewarm:
            try:
                prewarmed = self.store.prewarm(PROCESSING_BTREES)
                self.log.info("database.prewarm", **prewarmed.log_fields())
            except sqlite3.Error as error:  # an optimisation: processing works without it
                self.log.warning("database.prewarm.failed", error=repr(error))
        evidence = DnsEvidenceThread(self)
        evidence.start()
        try:
            with self.store.checkpoint_in_background(self._checkpoint_failed):
                self._loop(control, wake, stop_requested, parent_pid)
        finally:
            evidence.stopping.set()
            evidence.join(timeout=self.config.dns.timeout.total_seconds() + 1.0)

    def _checkpoint_failed(self, error: BaseException) -> None:
        self.log.warning("checkpoint.failed", error=repr(error))

    def _loop(
        self, control: Connection, wake: Any, stop_requested: threading.Event, parent_pid: int
    ) -> None:
        while True:
            while control.poll(0):
                kind, payload = control.recv()
                if kind == "config":
                    self.reload(payload)
                elif kind == "stop":
                    stop_requested.set()
            if os.getppid() != parent_pid:
                return  # orphaned without PDEATHSIG (non-Linux): the new daemon redoes pending work
            if self.process_some():
                continue
            if stop_requested.is_set():
                self.log.info("worker.stopped", pending=self.store.pending_count())
                return
            if time.monotonic() >= self.next_maintenance:
                self.maintenance()
            self._sleep(wake)

    def _sleep(self, wake: Any) -> None:
        """Wait for the listener's nudge (or a second). The idle flag is raised before the
        last look at the backlog, so a commit in between is never missed."""
        if self.shared is not None:
            self.shared.worker_idle.value = 1
        try:
            if self.store.pending_message_ids(1):
                return
            wake.wait(timeout=1.0)
            wake.clear()
        finally:
            if self.shared is not None:
                self.shared.worker_idle.value = 0

    def process_some(self) -> int:
        """Process up to ``processing.batch_size`` pending messages; returns how many.

        They go in transactions of :data:`WORKER_CHUNK` messages (the pipeline's own
        atomic unit, ``processing.batch_size`` of the config passed to it) and before
        each one the worker lets a waiting writer in: a 250 is waiting on that commit.
        """
        ids = self.store.pending_message_ids(self.config.processing.batch_size)
        if not ids:
            return 0
        from bounced.core.verp import trust_check

        trust = trust_check(self.config.verp.secret, self._untrusted)
        chunk = min(WORKER_CHUNK, self.config.processing.batch_size)
        config = replace(self.config, processing=replace(self.config.processing, batch_size=chunk))
        for start in range(0, len(ids), chunk):
            self.defer_while_busy()
            self._yield_to_writer()
            part = ids[start : start + chunk]
            try:
                results = self._process(
                    self.store, part, config=config, rules=self.rules, trust=trust
                )
            except Exception as error:  # the database itself failed: retry the batch later
                self.log.error("worker.batch_failed", error=repr(error), messages=len(part))
                time.sleep(1.0)
                return start
            for result in results:
                self._log_result(result)
        return len(ids)

    def _yield_to_writer(self) -> None:
        if self.shared is None:
            return
        end = time.monotonic() + WORKER_YIELD_SECONDS
        while self.shared.writer_waiting.value > 0 and time.monotonic() < end:
            time.sleep(0.0005)

    def receiving_rate(self) -> float:
        """Messages/s the listener stored lately (sampled every 100 ms or more)."""
        if self.shared is None:
            return 0.0
        now, count = time.monotonic(), self.shared.committed.value
        if now - self._rate_at >= 0.1:
            self._rate = (count - self._rate_count) / (now - self._rate_at)
            self._rate_at, self._rate_count = now, count
        return self._rate

    def defer_while_busy(self) -> None:
        """During a burst, leave the CPU to the listener; catch up as soon as it eases.

        Parsing competes with the SMTP sessions for the same cores (two here, with the
        sending MTA on them too): processing during a burst would slow every 250 down.
        So while messages arrive faster than :data:`DEFER_ABOVE_RATE`, the worker waits,
        but never past half of ``processing.max_pending`` (back-pressure must not start
        because of it) nor past :data:`MAX_DEFER_SECONDS` for the oldest pending message.
        """
        while self.receiving_rate() > DEFER_ABOVE_RATE:
            # Both through the index on state (ids grow with arrival): cheap to ask often.
            oldest_row = self.store.conn.execute(
                "SELECT received_at FROM messages WHERE state = 'pending' ORDER BY id LIMIT 1"
            ).fetchone()
            oldest = parse_time(oldest_row[0]) if oldest_row else None
            if oldest is None or (self.clock() - oldest).total_seconds() > MAX_DEFER_SECONDS:
                return
            if self.store.pending_count() >= self.config.processing.max_pending // 2:
                return
            time.sleep(0.1)

    def _untrusted(self, message_id: int, token: str | None, problem: Any) -> None:
        self.log.warning(
            "bounce.untrusted",
            message_id=message_id,
            verp_token=token,
            reason=str(problem),
            effect="verdicts stored, no address state changed",
        )

    def _log_result(self, result: Any) -> None:
        if result.skipped:
            return
        if result.error is not None:
            self.log.error("message.failed", message_id=result.message_id, error=result.error)
            return
        if not result.recipients:
            self.log.info(
                "message.processed", message_id=result.message_id, kind=str(result.kind), verdicts=0
            )
            return
        for rcpt in result.recipients:
            self.log.info(
                "bounce.verdict",
                message_id=result.message_id,
                bounce_id=rcpt.bounce_id,
                recipient=rcpt.recipient,
                kind=str(rcpt.kind),
                failure_type=rcpt.failure_type,
                reason=rcpt.reason.label if rcpt.reason is not None else None,
                reason_code=int(rcpt.reason) if rcpt.reason is not None else None,
                qualified_by=rcpt.qualified_by,
                address_state=str(rcpt.address_state) if rcpt.address_state is not None else None,
                state_change=rcpt.event,
                trusted=result.trusted,
            )

    def maintenance(self) -> None:
        from bounced.ops.processing import run_cleanup

        self.next_maintenance = time.monotonic() + max(
            self.config.maintenance.interval.total_seconds(), 1.0
        )
        try:
            events = run_cleanup(self.store, config=self.config, at=self.clock())
        except Exception as error:
            self.log.error("maintenance.failed", error=repr(error))
            return
        for event in events:
            self.log.info(
                "address.changed",
                address=event.address,
                old_state=str(event.old_state) if event.old_state else None,
                new_state=str(event.new_state),
                cause=event.cause,
            )
        self.log.info("maintenance.done", changes=len(events))


class WorkerHandle:
    """The parent's side of the worker process: start, wake, reconfigure, drain, restart."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self._context = multiprocessing.get_context("spawn")
        self.wake = self._context.Event()
        #: Set by the writer thread while it waits for the database (see _insert).
        self.shared = SharedCounters.create(self._context)
        self.process: Any = None
        self._control: Connection | None = None
        self.stopping = False
        self.restarts = 0

    def start(self) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        self._control = sender
        self.process = self._context.Process(
            target=worker_main,
            args=(self.config, receiver, self.wake, os.getpid(), self.shared),
            name="bounced-worker",
            daemon=False,
        )
        self.process.start()
        receiver.close()

    def nudge(self) -> None:
        """After a commit: wake the worker if it sleeps (no system call when it is busy)."""
        if self.shared.worker_idle.value:
            self.wake.set()

    def send(self, kind: str, payload: Any = None) -> None:
        if self._control is None:
            return
        with contextlib.suppress(OSError, BrokenPipeError):
            self._control.send((kind, payload))
        self.wake.set()

    def reconfigure(self, config: Config) -> None:
        self.config = config
        self.send("config", config)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.is_alive()

    def stop(self) -> int | None:
        """Ask the worker to drain the backlog and exit; wait for it (blocking)."""
        self.stopping = True
        if self.process is None:
            return None
        self.send("stop")
        self.process.join()
        return self.process.exitcode


# --------------------------------------------------------------------------- daemon


class Daemon:
    """One running bounced: listeners + writer + worker, driven by an asyncio loop."""

    def __init__(
        self,
        options: ServeOptions,
        *,
        config: Config | None = None,
        notifier: sdnotify.Notifier | None = None,
        inherited: Sequence[sdnotify.InheritedSocket] = (),
    ) -> None:
        self.options = options
        self.config = config if config is not None else effective_config(options)
        self.notifier = notifier if notifier is not None else sdnotify.Notifier({})
        self.inherited = list(inherited)
        self.servers: list[asyncio.AbstractServer] = []
        self.addresses: list[str] = []
        self.limits = new_limits(self.config.smtp.max_connections)
        self.stop_event: asyncio.Event | None = None
        self.worker = WorkerHandle(self.config)
        self.writer: GroupCommitWriter | None = None
        self.handlers: list[BounceHandler] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- start

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        config = self.config
        # Create/migrate the database once, here, before two processes race to do it.
        Store.open(config.database.path).close()
        self.worker.start()
        self.writer = GroupCommitWriter(
            config.database.path,
            max_pending=config.processing.max_pending,
            on_commit=self.worker.nudge,
            shared=self.worker.shared,
            cache_mb=config.database.cache_mb,
            prewarm=config.database.prewarm,
        )
        self.writer.start()
        policy = ReceivePolicy.from_config(config)
        _warn_if_open(policy)
        by_name = {s.name: s for s in self.inherited}
        unnamed = [s for s in self.inherited if s.name not in ("smtp", "lmtp")]
        smtp_sock = by_name.get("smtp") or (unnamed[0] if unnamed else None)
        lmtp_sock = by_name.get("lmtp")
        if smtp_sock is not None or config.smtp.listen:
            await self._listen(policy, lmtp=False, inherited=smtp_sock, address=config.smtp.listen)
        if lmtp_sock is not None or config.lmtp.listen:
            await self._listen(policy, lmtp=True, inherited=lmtp_sock, address=config.lmtp.listen)
        if not self.servers:
            raise ConfigError(
                "smtp.listen",
                "no listener: set smtp.listen or lmtp.listen (or use socket activation)",
            )
        self._tasks.append(asyncio.create_task(self._watchdog()))
        self._tasks.append(asyncio.create_task(self._supervise_worker()))
        log.info(
            "serve.ready",
            listen=self.addresses,
            db=str(config.database.path),
            pending=self.writer.pending,
            pid=os.getpid(),
        )
        self.notifier.ready(self._status())
        self.ready.set()

    async def _listen(
        self,
        policy: ReceivePolicy,
        *,
        lmtp: bool,
        inherited: sdnotify.InheritedSocket | None,
        address: str,
    ) -> None:
        assert self.loop is not None
        handler = BounceHandler(self.writer, policy, lmtp=lmtp)  # type: ignore[arg-type]
        self.handlers.append(handler)
        factory = protocol_factory(handler, self.config, lmtp=lmtp, limits=self.limits)
        kind = "lmtp" if lmtp else "smtp"
        if inherited is not None:
            sock = socket.socket(fileno=inherited.fd)
            sock.setblocking(False)
            if sock.family == socket.AF_UNIX:
                server = await self.loop.create_unix_server(factory, sock=sock)
            else:
                server = await self.loop.create_server(factory, sock=sock)
            where = f"fd:{inherited.fd}({inherited.name})"
        else:
            listen = ListenAddress.parse(address)
            if listen.path is not None:
                path = Path(listen.path)
                if path.is_socket():
                    path.unlink()  # stale socket of a previous run
                server = await self.loop.create_unix_server(factory, path=listen.path)
                where = str(listen)
            else:
                server = await self.loop.create_server(
                    factory,
                    host=listen.host,
                    port=listen.port or 0,
                    reuse_address=True,
                    backlog=1024,
                )
                bound = server.sockets[0].getsockname()
                where = str(ListenAddress(host=str(bound[0]), port=int(bound[1])))
        self.servers.append(server)
        self.addresses.append(f"{kind}://{where}")

    # -- run

    async def serve(self) -> int:
        """Run until :meth:`request_stop`; then shut down gracefully. Returns the exit code."""
        assert self.stop_event is not None
        await self.stop_event.wait()
        return await self.shutdown()

    def request_stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()

    def install_signal_handlers(self) -> None:
        assert self.loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> None:
        """SIGHUP: re-read the configuration file; the worker re-reads rules too."""
        try:
            config = effective_config(self.options)
        except ConfigError as error:
            log.error("serve.reload_failed", error=str(error), effect="previous configuration kept")
            return
        policy = ReceivePolicy.from_config(config)
        _warn_if_open(policy)
        for handler in self.handlers:
            handler.update_policy(policy)
        if self.writer is not None:
            self.writer.max_pending = config.processing.max_pending
        self.limits.max_connections = config.smtp.max_connections
        restart_needed = [
            key
            for key, old, new in (
                ("smtp.listen", self.config.smtp.listen, config.smtp.listen),
                ("lmtp.listen", self.config.lmtp.listen, config.lmtp.listen),
                ("database.path", self.config.database.path, config.database.path),
                ("smtp.hostname", self.config.smtp.hostname, config.smtp.hostname),
            )
            if old != new
        ]
        logsetup.configure(config.logging.format, config.logging.level)
        self.config = config
        self.worker.reconfigure(config)
        log.info("serve.reloaded", restart_needed=restart_needed or None)
        self.notifier.status(self._status())

    async def shutdown(self) -> int:
        assert self.writer is not None
        log.info("serve.stopping", connections=len(self.limits.open), pending=self.writer.pending)
        self.notifier.stopping("stopping: finishing sessions and pending work")
        for server in self.servers:
            server.close()
        self.limits.closing = True
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while self.limits.open and time.monotonic() < deadline:
            for protocol in list(self.limits.open):
                protocol.close_idle()
            await asyncio.sleep(0.05)
        for protocol in list(self.limits.open):  # grace over: cut the rest (they get no 250)
            if protocol.transport is not None:
                protocol.transport.close()
        await asyncio.sleep(0)
        for task in self._tasks:
            task.cancel()
        await self.writer.stop()
        code = await asyncio.get_running_loop().run_in_executor(None, self.worker.stop)
        log.info("serve.stopped", worker_exit=code)
        return 0

    # -- background tasks

    def _status(self) -> str:
        pending = self.writer.pending if self.writer else 0
        listening = ", ".join(self.addresses)
        return f"listening on {listening}; pending={pending} connections={len(self.limits.open)}"

    async def _watchdog(self) -> None:
        """WATCHDOG=1 only while the writer thread is alive and not stuck."""
        interval = self.notifier.watchdog_interval or 10.0
        while True:
            await asyncio.sleep(min(interval, 10.0))
            writer = self.writer
            healthy = (
                writer is not None and writer.alive and time.monotonic() - writer.heartbeat < 60
            )
            if healthy:
                self.notifier.watchdog()
            else:
                log.error("serve.unhealthy", writer_alive=bool(writer and writer.alive))
            self.notifier.status(self._status())

    async def _supervise_worker(self) -> None:
        """Restart the worker if it dies: a crash in processing must not stop reception."""
        while True:
            await asyncio.sleep(1.0)
            if self.worker.stopping or self.worker.alive:
                continue
            code = self.worker.process.exitcode if self.worker.process else None
            self.worker.restarts += 1
            log.error("worker.died", exit_code=code, restarts=self.worker.restarts)
            await asyncio.sleep(min(30.0, 0.5 * self.worker.restarts))
            if not self.worker.stopping:
                self.worker.start()


def _warn_if_open(policy: ReceivePolicy) -> None:
    """Once per (re)configuration, not per session: the operator needs it said, not spammed."""
    if policy.recipients.accepts_everything:
        log.warning(
            "serve.open_recipients",
            hint="no smtp.bounce_domains nor smtp.bounce_addresses configured: every "
            "recipient is accepted; configure them before exposing bounced beyond loopback",
        )


def run(options: ServeOptions, *, environ: dict[str, str] | None = None) -> int:
    """``bounced serve``: configure logging, run the daemon until a stop signal."""
    env = dict(os.environ) if environ is None else environ
    try:
        config = effective_config(options)
    except ConfigError as error:
        print(f"bounced serve: {error}", file=sys.stderr)
        return 2
    logsetup.configure(config.logging.format, config.logging.level)
    notifier = sdnotify.Notifier(env)
    inherited = sdnotify.listen_fds(env)
    sdnotify.unset_activation_environment()
    daemon = Daemon(options, config=config, notifier=notifier, inherited=inherited)

    async def main() -> int:
        try:
            await daemon.start()
        except (OSError, ConfigError, ValueError, StoreError) as error:
            log.error("serve.start_failed", error=str(error))
            if daemon.writer is not None:
                await daemon.writer.stop()
            if daemon.worker.process is not None:
                daemon.worker.stop()
            return 1
        daemon.install_signal_handlers()
        return await daemon.serve()

    try:
        return asyncio.run(main())
    finally:
        notifier.close()


__all__ = [
    "BouncedSMTP",
    "Daemon",
    "GroupCommitWriter",
    "ListenAddress",
    "ServeOptions",
    "effective_config",
    "run",
]
