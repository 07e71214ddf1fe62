"""Starting, stopping and talking to the worker process (the daemon's side of it).

The worker (:mod:`bounced.daemon.worker`) runs in a process of its own, spawned: a
crash there is a crash of processing only, reception goes on and the daemon starts a
new worker. This module stays light on purpose: the listener's process imports it, and
must not pay for the parser, the rules and the policy it never runs.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from bounced import log as logsetup
from bounced.config import Config
from bounced.daemon.writer import SharedCounters

#: Scheduling priority of the worker relative to the listener.
WORKER_NICENESS = 10


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
    reports: Connection | None = None,
) -> None:
    """Entry point of the processing process (spawned): loop until told to stop.

    ``control`` carries ``("config", Config)`` (SIGHUP) and ``("stop", None)``
    (drain the backlog, then exit); ``wake`` is set by the writer after each commit;
    ``reports`` takes the worker's :class:`~bounced.daemon.metrics.WorkReport` back to
    the listener's process, where the metrics live.
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
    from bounced.daemon.worker import Worker  # here: the listener's process never parses

    def report(work: Any) -> None:
        if reports is not None:
            with contextlib.suppress(OSError, ValueError):
                reports.send(work)

    worker = Worker(config, shared=shared, report=report)
    try:
        worker.run(control, wake, stop_requested, parent_pid)
    finally:
        worker.close()


class WorkerHandle:
    """The parent's side of the worker process: start, wake, reconfigure, drain, restart."""

    def __init__(self, config: Config, on_report: Callable[[Any], None] = lambda _: None
                 ) -> None:
        self.config = config
        self.on_report = on_report
        self._context = multiprocessing.get_context("spawn")
        self.wake = self._context.Event()
        #: Shared with the writer: its lock waits and commit count (see SharedCounters).
        self.shared = SharedCounters.create(self._context)
        self.process: Any = None
        self._control: Connection | None = None
        self.stopping = False
        self.restarts = 0

    def start(self) -> None:
        receiver, sender = self._context.Pipe(duplex=False)
        report_reader, report_writer = self._context.Pipe(duplex=False)
        self._control = sender
        self.process = self._context.Process(
            target=worker_main,
            args=(self.config, receiver, self.wake, os.getpid(), self.shared, report_writer),
            name="bounced-worker",
            daemon=False,
        )
        self.process.start()
        receiver.close()
        report_writer.close()
        threading.Thread(target=self._read_reports, args=(report_reader,),
                         name="worker-reports", daemon=True).start()

    def _read_reports(self, reader: Connection) -> None:
        """Hand each report of the worker to ``on_report`` until the worker is gone."""
        with reader:
            while True:
                try:
                    report = reader.recv()
                except (EOFError, OSError):
                    return
                self.on_report(report)

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
