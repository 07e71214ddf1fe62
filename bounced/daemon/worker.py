"""The worker process: processing, maintenance and DNS evidence, off the SMTP path.

The daemon (:mod:`bounced.daemon.serve`) starts one worker process (spawned, niced, and
killed with its parent through ``PR_SET_PDEATHSIG``). Inside it, runners
(:mod:`bounced.daemon.runner`) do the work:

- :class:`ProcessingRunner`: parse -> qualify -> policy -> store for ``pending``
  messages, in transactions of :data:`WORKER_CHUNK` messages. It starts with whatever a
  previous run left ``pending`` (crash recovery needs no special path) and is woken
  after each commit of the writer;
- :class:`CleanupJob` and :class:`RetentionJob`, every ``maintenance.interval``: the
  quarantine policy's cleanup (due Mailbox-full releases, stale counters) and the purge
  past ``database.retention``;
- :class:`DnsEvidenceRunner`, in a thread of its own with its own connection: one
  look-up may take the whole ``dns.timeout`` (a resolver outage), and that must delay
  evidence, never verdicts.

Receiving comes first: when the two compete for a CPU, the MTA waiting for its ``250``
wins. The worker yields the write lock to a waiting writer before each transaction and
defers processing during a burst (:meth:`ProcessingRunner.defer_while_busy`).
"""

from __future__ import annotations

import os
import threading
import time
from abc import abstractmethod
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from multiprocessing.connection import Connection
from typing import Any

from bounced.config import Config
from bounced.daemon.metrics import WorkReport, report_of
from bounced.daemon.runner import PeriodicJob, Runner
from bounced.daemon.writer import SharedCounters
from bounced.log import get_logger
from bounced.model import MessageState, Rule
from bounced.ops.processing import ProcessResult, process_messages, run_cleanup, trust_policy
from bounced.ops.webhooks import subscribe
from bounced.store import PROCESSING_BTREES, DatabaseError, Location, Store, StoreError

#: Messages per worker transaction: short, so the writer never waits long for the lock.
WORKER_CHUNK = 25
#: The same on PostgreSQL, where the SMTP writers never wait for the worker: longer,
#: fewer round trips per message, while other hosts wait at most that long for an
#: address this chunk holds.
WORKER_CHUNK_CONCURRENT = 100
#: Seconds the DNS evidence runner rests when no bounce waits for evidence.
DNS_EVIDENCE_IDLE_SECONDS = 5.0
#: Longest the worker holds back while the writer waits, per chunk.
WORKER_YIELD_SECONDS = 0.05
#: Receiving rate (messages/s) above which the worker defers processing (a burst).
DEFER_ABOVE_RATE = 200.0
#: Longest a pending message waits for processing because of a burst.
MAX_DEFER_SECONDS = 10.0
#: Pause after the database refused a batch, before it is tried again.
BATCH_RETRY_SECONDS = 1.0

Clock = Callable[[], datetime]
#: What reading the database file may raise when it is damaged or gone.
_UNUSABLE: tuple[type[Exception], ...] = (*DatabaseError, StoreError)


def utc_now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- runners


class ProcessingRunner(Runner[Sequence[int]]):
    """Pending messages, in chunks of :data:`WORKER_CHUNK`, oldest first.

    A message the pipeline cannot process is kept ``failed`` with its error by
    :func:`bounced.ops.processing.process_messages` itself; what reaches
    :meth:`_shunt` is a chunk the database refused (full disk, lock held too long): it
    stays ``pending`` and is tried again after :data:`BATCH_RETRY_SECONDS`.
    """

    name = "processing"

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.log)
        self.worker = worker
        self._rate_at = time.monotonic()
        shared = worker.shared
        self._rate_count = shared.committed.value if shared is not None else 0
        self._rate = 0.0
        self._failed = False

    def _work(self) -> Iterable[Sequence[int]]:
        self._failed = False
        store, config = self.worker.store, self.worker.config
        ids = store.messages.ids(MessageState.PENDING, config.processing.batch_size)
        size = WORKER_CHUNK_CONCURRENT if store.dialect.concurrent_writers else WORKER_CHUNK
        chunk = min(size, config.processing.batch_size)
        for start in range(0, len(ids), chunk):
            if self._failed:
                return
            self.defer_while_busy()
            self._yield_to_writer()
            yield ids[start:start + chunk]

    def _dispose(self, item: Sequence[int]) -> None:
        worker = self.worker
        config = worker.config
        config = replace(config, processing=replace(config.processing, batch_size=len(item)))
        results = process_messages(worker.store, item, config=config, rules=worker.rules,
                                   trust=trust_policy(config))
        for result in results:
            self._log_result(result)
        now = worker.clock()
        work = report_of(results, lambda result: (now - result.received_at).total_seconds()
                         if result.received_at is not None else None)
        if work:
            worker.report(work)

    def _shunt(self, item: Sequence[int], error: Exception) -> None:
        self.log.error("worker.batch_failed", error=repr(error), messages=len(item),
                       path=self.worker.where)
        self._failed = True
        time.sleep(BATCH_RETRY_SECONDS)

    # -- sharing the machine with the listener

    def _yield_to_writer(self) -> None:
        shared = self.worker.shared
        if shared is None:
            return
        end = time.monotonic() + WORKER_YIELD_SECONDS
        while shared.writer_waiting.value > 0 and time.monotonic() < end:
            time.sleep(0.0005)

    def receiving_rate(self) -> float:
        """Messages/s the listener stored lately (sampled every 100 ms or more)."""
        shared = self.worker.shared
        if shared is None:
            return 0.0
        now, count = time.monotonic(), shared.committed.value
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
        store = self.worker.store
        while self.receiving_rate() > DEFER_ABOVE_RATE:
            oldest = store.messages.oldest_pending_received_at()
            if oldest is None or (self.worker.clock() - oldest).total_seconds() > MAX_DEFER_SECONDS:
                return
            if store.messages.count(MessageState.PENDING) >= (
                    self.worker.config.processing.max_pending // 2):
                return
            time.sleep(0.1)

    # -- logs

    def _log_result(self, result: ProcessResult) -> None:
        if result.skipped:
            return
        if result.error is not None:
            self.log.error("message.failed", message_id=result.message_id, error=result.error)
            return
        if not result.recipients:
            self.log.info("message.processed", message_id=result.message_id,
                          kind=str(result.kind), verdicts=0)
            return
        for rcpt in result.recipients:
            if rcpt.untrusted is not None:
                self.log.warning(
                    "bounce.untrusted",
                    message_id=result.message_id,
                    bounce_id=rcpt.bounce_id,
                    recipient=rcpt.recipient,
                    verp_token=result.verp_token,
                    reason=rcpt.untrusted,
                    effect="verdict stored, address state not changed",
                )
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
                address_state=str(rcpt.address_state) if rcpt.address_state is not None
                else None,
                state_change=rcpt.event,
                trusted=result.trusted,
            )


class MaintenanceJob(PeriodicJob):
    """A job of the worker due every ``maintenance.interval``, run by one host at a
    time when several share a PostgreSQL database (:meth:`Store.exclusive`): the
    others skip the round, the job's next turn comes with the interval."""

    def __init__(self, worker: Worker) -> None:
        super().__init__(worker.log)
        self.worker = worker

    def interval(self) -> float:
        return self.worker.config.maintenance.interval.total_seconds()

    def _dispose(self, item: None) -> None:
        with self.worker.store.exclusive(self.name) as mine:
            if mine:
                self._run()
            else:
                self.log.info(f"{self.name}.skipped", reason="another host runs it now")

    @abstractmethod
    def _run(self) -> None:
        """The job itself."""


class CleanupJob(MaintenanceJob):
    """The quarantine policy's cleanup: due Mailbox-full releases, stale counters."""

    name = "maintenance"

    def _run(self) -> None:
        events = run_cleanup(self.worker.store, config=self.worker.config,
                             at=self.worker.clock())
        if events:
            self.worker.report(WorkReport(state_changes=Counter(
                str(event.new_state) for event in events)))
        for event in events:
            self.log.info(
                "address.changed",
                address=event.address,
                old_state=str(event.old_state) if event.old_state else None,
                new_state=str(event.new_state),
                cause=event.cause,
            )
        self.log.info("maintenance.done", changes=len(events))


class RetentionJob(MaintenanceJob):
    """The purge of raw messages and bounces past ``database.retention``
    (:mod:`bounced.store.retention` says what is kept as evidence of the history)."""

    name = "retention"

    def _run(self) -> None:
        cutoff = self.worker.clock() - self.worker.config.database.retention
        purged = self.worker.store.retention.purge(cutoff)
        self.log.info(
            "retention.purged",
            before=cutoff.isoformat(),
            messages_deleted=purged.messages_deleted,
            bounces_deleted=purged.bounces_deleted,
            raw_dropped=purged.raw_dropped,
            webhook_events_deleted=purged.webhook_events_deleted,
        )


class DnsEvidenceRunner(Runner[int]):
    """Records DNS evidence on ``Invalid domain`` bounces, beside the processing loop.

    Runs in a thread of the worker process with its own database connection, and reads
    the worker's configuration on every round, so SIGHUP applies to it too.
    """

    name = "dns.evidence"

    def __init__(self, worker: Worker, store: Store) -> None:
        super().__init__(worker.log)
        self.worker = worker
        self.store = store

    def _work(self) -> Iterable[int]:
        if not self.worker.config.dns.enabled:
            return ()
        from bounced.ops.dns import backfill_evidence, cache_for

        with self.store.exclusive(self.name) as mine:  # one host looks each domain up
            if not mine:
                return ()
            cache = cache_for(self.store, self.worker.config.dns, self.worker.clock)
            done = backfill_evidence(cache)
        return (done,) if done else ()

    def _dispose(self, item: int) -> None:
        self.log.info("dns.evidence", bounces=item)


# --------------------------------------------------------------------------- the process


class Worker:
    """The worker process's state: its configuration, store, rules and runners."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Clock = utc_now,
        shared: SharedCounters | None = None,
        report: Callable[[WorkReport], None] = lambda _: None,
    ) -> None:
        self.config = config
        self.clock = clock
        self.shared = shared
        #: Where what the worker did goes (the listener's metrics).
        self.report = report
        self.log = get_logger("bounced.worker")
        #: The database, as log lines name it (a URL without its password).
        self.where = str(Location.parse(config.database.location))
        self.store = subscribe(
            Store.open(config.database.location, cache_mb=config.database.cache_mb), config)
        self.rules: tuple[Rule, ...] = self.store.rules.enabled()
        self.processing = ProcessingRunner(self)
        self.jobs: list[PeriodicJob] = [CleanupJob(self), RetentionJob(self)]

    def close(self) -> None:
        self.store.close()

    def reload(self, config: Config) -> None:
        self.config = config
        subscribe(self.store, config)
        self.rules = self.store.rules.enabled()
        self.log.info("worker.reloaded", rules=len(self.rules))

    def run(
        self, control: Connection, wake: Any, stop_requested: threading.Event, parent_pid: int
    ) -> None:
        self.log.info(
            "worker.started",
            pid=os.getpid(),
            pending=self.store.messages.count(MessageState.PENDING),
            rules=len(self.rules),
        )
        if self.config.database.prewarm:
            try:
                prewarmed = self.store.prewarm(PROCESSING_BTREES)
                self.log.info("database.prewarm", **prewarmed.log_fields())
            except DatabaseError as error:  # an optimisation: processing works without it
                self.log.warning("database.prewarm.failed", error=repr(error),
                                 path=self.where)
        evidence_stop = threading.Event()
        evidence = threading.Thread(target=self._evidence, args=(evidence_stop,),
                                    name="dns-evidence", daemon=True)
        evidence.start()
        if not self.store.is_postgresql:  # the server checks its own pages
            threading.Thread(target=self._check_file, name="quick-check", daemon=True).start()
        try:
            with self.store.checkpoint_in_background(
                    self._checkpoint_failed, wal_limit_mb=self.config.database.wal_limit_mb,
                    wal_warn_mb=self.config.database.wal_warn_mb,
                    on_event=self._checkpoint_event):
                self._loop(control, wake, stop_requested, parent_pid)
        finally:
            evidence_stop.set()
            evidence.join(timeout=self.config.dns.timeout.total_seconds() + 1.0)

    def _evidence(self, stop: threading.Event) -> None:
        store = Store.open(self.config.database.location)
        try:
            DnsEvidenceRunner(self, store).run(
                stop.is_set, lambda: stop.wait(DNS_EVIDENCE_IDLE_SECONDS))
        finally:
            store.close()

    def _check_file(self) -> None:
        """Read the whole database file once after start (``PRAGMA quick_check``), so a
        page damaged in the middle of a valid file is reported now, not when a query
        happens to reach it weeks later."""
        started = time.monotonic()
        path = self.config.database.location
        try:
            with Store.open_readonly(path, require_schema=False) as store:
                problems = store.health.quick_check()
        except _UNUSABLE as error:
            problems = [f"{type(error).__name__}: {error}"]
        seconds = round(time.monotonic() - started, 2)
        if problems:
            self.log.error("database.damaged", path=str(path), problems=problems[:20],
                           seconds=seconds,
                           hint="restore from a backup, or `sqlite3 DB .recover`")
        else:
            self.log.info("database.checked", path=str(path), seconds=seconds)

    def _checkpoint_failed(self, error: BaseException) -> None:
        self.log.warning("checkpoint.failed", error=repr(error), path=self.where)

    def _checkpoint_event(self, name: str, fields: dict[str, Any]) -> None:
        """database.wal_pinned (a warning) and database.wal_released from the checkpointer."""
        (self.log.warning if name == "database.wal_pinned" else self.log.info)(name, **fields)

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
            try:
                if self._round(wake, stop_requested):
                    return
            except DatabaseError as error:
                # PostgreSQL restarting, a network cut: the store reconnects on its next
                # use; whatever was not committed is still pending.
                self.log.error("worker.database_failed", error=repr(error), path=self.where)
                time.sleep(BATCH_RETRY_SECONDS)

    def _round(self, wake: Any, stop_requested: threading.Event) -> bool:
        """Process what is pending, else run the due jobs and sleep; True: stop now."""
        if self.processing.run_once():
            return False
        if stop_requested.is_set():
            self.log.info("worker.stopped",
                          pending=self.store.messages.count(MessageState.PENDING))
            return True
        for job in self.jobs:
            job.run_once()
        self._sleep(wake)
        return False

    def _sleep(self, wake: Any) -> None:
        """Wait for the listener's nudge (or a second). The idle flag is raised before the
        last look at the backlog, so a commit in between is never missed."""
        if self.shared is not None:
            self.shared.worker_idle.value = 1
        try:
            if self.store.messages.ids(MessageState.PENDING, 1):
                return
            wake.wait(timeout=1.0)
            wake.clear()
        finally:
            if self.shared is not None:
                self.shared.worker_idle.value = 0
