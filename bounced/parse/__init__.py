"""Parse stage: the bytes of one message -> a :class:`~bounced.model.BounceReport`.

PLACEHOLDER: being written (RFC 3464 DSNs, vendor formats, ARF, RFC 3834).
"""

from __future__ import annotations

from bounced.model import BounceReport, Kind


def parse_message(raw: bytes) -> BounceReport:
    """Parse one message. Never raises: unusable input gives kind ``not_bounce`` with
    the reason in ``problems``."""
    return BounceReport(kind=Kind.NOT_BOUNCE, problems=("parser not written yet",))
