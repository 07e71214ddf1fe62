"""Times and durations: the one stored format, and what operators may type.

Every time bounced stores or prints is UTC ISO-8601 with a ``Z``
(``2026-11-22T13:05:00Z``): one format everywhere keeps string comparison in SQL
(``WHERE at >= '2026-11-01'``) equal to time comparison, and an audit with ``sqlite3``
reads the same strings the commands print (see ``docs/schema.md``).

Durations are written with a unit, ``90s``, ``15m``, ``24h``, ``10d``, ``2w``, in the
configuration and on the command line alike. Nothing here reads a clock: "7 days ago"
is computed from a ``now`` the caller passes in (``--at`` or the daemon's clock).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def format_time(moment: datetime) -> str:
    """``2026-11-22T13:05:00Z``; a naive datetime is taken as UTC already."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def format_optional(moment: datetime | None) -> str | None:
    """:func:`format_time`, with ``None`` for no time."""
    return format_time(moment) if moment is not None else None


def parse_time(text: str | None) -> datetime | None:
    """The inverse of :func:`format_time` (any ISO-8601 form; no offset means UTC);
    ``None`` or empty gives ``None``. Raises ValueError on anything else."""
    if not text:
        return None
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def parse_instant(text: str) -> datetime:
    """An ISO-8601 time typed by an operator (``2026-11-22T13:05:00Z``, ``2026-11-22``
    meaning its midnight UTC); ValueError names the accepted form."""
    try:
        moment = parse_time(text)
    except ValueError:
        moment = None
    if moment is None:
        raise ValueError(f"expected an ISO-8601 time such as 2026-11-22T13:05:00Z, got {text!r}")
    return moment


def parse_duration(text: str) -> timedelta:
    """``"24h"`` -> ``timedelta(hours=24)``; units s, m, h, d, w. ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    return timedelta(**{_UNITS[match.group(2).lower()]: float(match.group(1))})


def parse_when(text: str, now: datetime) -> datetime:
    """A point in time as operators write it: ISO-8601, or a duration before ``now``
    (``7d``, ``24h``). ``now`` is passed in, so ``--since 7d --at T`` means a week
    before T in tests and replays alike. ValueError lists the accepted forms."""
    try:
        return now - parse_duration(text)
    except ValueError:
        pass
    try:
        return parse_instant(text)
    except ValueError:
        raise ValueError(
            f"expected an ISO-8601 time (2026-11-22T13:05:00Z, 2026-11-22) or a duration "
            f"before now (7d, 24h, 30m), got {text!r}"
        ) from None
