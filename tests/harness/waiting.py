"""Waiting for what a daemon does in its own time (processing, deliveries, binds)."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(condition: Callable[[], object], *, seconds: float = 60.0,
               every: float = 0.05) -> bool:
    """Whether ``condition()`` turned true within ``seconds``, asked every ``every``
    seconds (and once more at the end, so a slow machine's last chance counts)."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if condition():
            return True
        time.sleep(every)
    return bool(condition())
