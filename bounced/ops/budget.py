"""A time limit on the CPU work of one message: what no hostile input may exceed.

Parsing and qualifying are meant to be linear in the size of the input (and the input is
bounded), but the daemon listens on an MX: anyone may send it anything, including a
shape nobody thought of. The limit is the second line of defence: the work of one
message is interrupted when it runs past ``processing.message_budget``, the message is
set aside as ``failed`` with that reason, and the rest flows on.

It uses ``SIGALRM``, which interrupts Python code and the regular expression engine
alike (CPython's ``re`` checks for signals while it matches); so it applies in a
process's main thread only (the worker's processing loop, ``bounced ingest``),
elsewhere the work runs unlimited.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType


class BudgetExceededError(Exception):
    """The work ran past its time limit."""


def _expired(_signal: int, _frame: FrameType | None) -> None:
    raise BudgetExceededError


@contextmanager
def time_limit(seconds: float | None) -> Iterator[None]:
    """Interrupt the block with :class:`BudgetExceededError` after ``seconds``
    (``None`` or 0: no limit; no limit either outside the main thread)."""
    usable = (bool(seconds) and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return
    previous = signal.signal(signal.SIGALRM, _expired)
    signal.setitimer(signal.ITIMER_REAL, float(seconds or 0))
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
