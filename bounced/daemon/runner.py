"""The worker's loops, in the shape of GNU Mailman 3's runners (``core/runner.py``).

A :class:`Runner` owns its loop; a subclass only says what its work is
(:meth:`Runner._work`) and what to do with one piece of it (:meth:`Runner._dispose`).
When disposing of an item raises, the base class *shunts* it (:meth:`Runner._shunt`):
the failure is logged with its item and the loop goes on with the next one, so one
bad piece of work never stops the others. What shunting means is the subclass's
business: a message whose processing fails is already kept as ``failed`` by the
pipeline (its raw bytes stay, ``bounced db retry`` processes it again); a batch the
database refused stays ``pending`` and is retried after a pause.

A :class:`PeriodicJob` is a runner whose work is due every ``interval``: the cleanup of
the quarantine policy and the retention purge. The worker process
(:mod:`bounced.daemon.worker`) runs them between rounds of processing.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")


class Runner(ABC, Generic[Item]):
    """A loop over pieces of work; failures of one piece are shunted, never fatal."""

    #: The name in log events (``runner`` field).
    name = "runner"

    def __init__(self, log: Any) -> None:
        self.log = log

    def run_once(self) -> int:
        """Dispose of every piece of work there is now; returns how many there were."""
        count = 0
        for item in self._work():
            count += 1
            try:
                self._dispose(item)
            except Exception as error:  # shunted: logged, and the loop goes on
                self._shunt(item, error)
        return count

    def run(self, stopping: Callable[[], bool], snooze: Callable[[], object]) -> None:
        """Loop until ``stopping()``; ``snooze()`` waits when there was nothing to do."""
        while not stopping():
            if not self.run_once():
                snooze()

    @abstractmethod
    def _work(self) -> Iterable[Item]:
        """The pieces of work ready now (may be empty)."""

    @abstractmethod
    def _dispose(self, item: Item) -> None:
        """Do one piece of work."""

    def _shunt(self, item: Item, error: Exception) -> None:
        """A piece of work failed: say so. Subclasses keep it somewhere to be retried."""
        self.log.error(f"{self.name}.failed", item=repr(item)[:200], error=repr(error))


class PeriodicJob(Runner[None]):
    """A runner whose one piece of work is due every :meth:`interval` seconds."""

    def __init__(self, log: Any, *, monotonic: Callable[[], float] = time.monotonic) -> None:
        super().__init__(log)
        self._monotonic = monotonic
        self.next_run = monotonic()

    @abstractmethod
    def interval(self) -> float:
        """Seconds between two runs (read each time: a reload may change it)."""

    def _work(self) -> Iterable[None]:
        if self._monotonic() < self.next_run:
            return ()
        self.next_run = self._monotonic() + max(self.interval(), 1.0)
        return (None,)
