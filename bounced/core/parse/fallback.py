"""Last resort for recipients: flufl.bounce's collection of vendor detectors.

It runs only when neither a DSN part nor the prose scanner found a recipient, since it
needs a second parse with :mod:`email` (compat32) and costs more than all the rest.
flufl.bounce logs (with a traceback) any detector that crashes on odd input; those
reports are collected into ``problems`` instead of reaching the operator's terminal.

Its detectors search each line with patterns that are quadratic in the line's length
(LLNL's on a 64 KB line of commas took 4 s), so they only see the head of the message,
its lines cut (:data:`MAX_BYTES`, :data:`MAX_LINE`).
"""

from __future__ import annotations

import email
import logging
import re
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.utils import getaddresses

from bounced.core.parse.mime import Headers, Loaded

_SYSTEM_LOCAL = re.compile(r"^(?:postmaster|mailer-daemon|abuse|root|hostmaster)@", re.I)

MAX_BYTES = 32 * 1024
"""What flufl.bounce reads of a message: the notice is at its top (its worst lines cost
~0.1 s at this size)."""
MAX_LINE = 998
"""Longer lines are cut to this (RFC 5322's limit: no MTA writes longer ones)."""
_LOGGER = logging.getLogger("flufl.bounce")


class _Collector(logging.Handler):
    """Keeps the names of the detectors flufl.bounce reports as crashed."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.failed: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.failed.append(record.getMessage())


@contextmanager
def _quiet_flufl() -> Iterator[_Collector]:
    collector = _Collector()
    propagate = _LOGGER.propagate
    _LOGGER.addHandler(collector)
    _LOGGER.propagate = False
    try:
        yield collector
    finally:
        _LOGGER.removeHandler(collector)
        _LOGGER.propagate = propagate


def bounded(raw: bytes) -> bytes:
    """The first :data:`MAX_BYTES` of ``raw``, each line cut to :data:`MAX_LINE`: what
    flufl.bounce's per-line patterns can read in bounded time (``MAX_LINE`` squared)."""
    head = raw[:MAX_BYTES]
    if all(len(line) <= MAX_LINE for line in head.split(b"\n")):
        return head
    return b"\n".join(line[:MAX_LINE] for line in head.split(b"\n"))


def scan(loaded: Loaded, headers: Headers) -> list[str]:
    """Addresses flufl.bounce reads as failed, minus the bounce's own addresses."""
    from flufl.bounce import scan_message  # imported on first use: rarely needed, ~20 ms

    with _quiet_flufl() as collector:
        try:
            message = email.message_from_bytes(bounded(loaded.raw), policy=policy.compat32)
            found = scan_message(message)
        except Exception as error:  # a third-party scanner must not sink the parse
            loaded.problems.append(f"flufl.bounce failed: {type(error).__name__}")
            return []
    if collector.failed:
        loaded.problems.append(f"flufl.bounce: {len(collector.failed)} detector(s) crashed")
    own = {
        address.lower()
        for name in ("to", "from", "delivered-to", "x-original-to", "return-path")
        for _, address in getaddresses(headers.get_all(name))
    }
    addresses = []
    for raw in sorted(found):
        address = (raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)).strip()
        if "@" in address and address.lower() not in own and not _SYSTEM_LOCAL.match(address):
            addresses.append(address)
    return addresses
