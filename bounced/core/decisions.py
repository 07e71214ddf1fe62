"""Operator decisions on an address, as pure functions: release, allow, deny.

Each is a state change like the ones bounces cause, so it produces the same types as
the policy (:class:`~bounced.model.AddressState`, :class:`~bounced.model.AddressEvent`),
with a cause that says who did it ("released by operator: customer fixed the
mailbox"). An audit with ``sqlite3`` then tells operator decisions and bounce-driven
ones apart by their cause alone, and a replay (:mod:`bounced.core.replay`) builds on
the last one (``docs/policy.md``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime

from bounced.model import AddressEvent, AddressState, QuarantineState, Reason

#: Causes of operator decisions start with one of these; :func:`replay` builds on them.
RELEASED = "released by operator"
ALLOWLISTED = "allowlisted by operator"
DENYLISTED = "denylisted by operator"
OPERATOR_CAUSES = (RELEASED, ALLOWLISTED, DENYLISTED)


def _cause(base: str, note: str | None) -> str:
    return f"{base}: {note.strip()}" if note and note.strip() else base


def _decide(
    current: AddressState | None,
    address: str,
    target: AddressState,
    at: datetime,
    cause: str,
) -> tuple[AddressState, AddressEvent | None]:
    old = current.state if current is not None else None
    if old is target.state:
        return current or target, None
    return target, AddressEvent(address, at, old, target.state, cause)


def _cleared(base: AddressState, state: QuarantineState, at: datetime) -> AddressState:
    """``base`` in ``state`` with every counter, reason and quarantine date forgotten."""
    return replace(
        base, state=state, error_count=0, last_counted_error_at=None, reason=None,
        quarantined_at=None, release_at=None, undefined_count=0, updated_at=at,
    )


def released(current: AddressState | None, address: str, at: datetime,
             note: str | None = None) -> tuple[AddressState, AddressEvent | None]:
    """Back to ``valid`` with counters at zero: the operator knows the address works.

    Releasing an address that is already valid changes nothing and writes no event, so
    running the same release twice leaves one line of history.
    """
    target = _cleared(current or AddressState(address), QuarantineState.VALID, at)
    return _decide(current, address, target, at, _cause(RELEASED, note))


def allowed(current: AddressState | None, address: str, at: datetime,
            note: str | None = None) -> tuple[AddressState, AddressEvent | None]:
    """On the allowlist: never quarantined again, its errors carry reason 25 (the
    pipeline's policy does that for the ``allowlisted`` state)."""
    target = _cleared(current or AddressState(address), QuarantineState.ALLOWLISTED, at)
    return _decide(current, address, target, at, _cause(ALLOWLISTED, note))


def denied(current: AddressState | None, address: str, at: datetime,
           note: str | None = None) -> tuple[AddressState, AddressEvent | None]:
    """On the denylist (reason 8), for good: no cleanup job ever releases it."""
    base = current or AddressState(address)
    target = replace(
        base, state=QuarantineState.DENYLISTED, reason=Reason.DENYLISTED, quarantined_at=at,
        release_at=None, updated_at=at,
    )
    return _decide(current, address, target, at, _cause(DENYLISTED, note))


#: ``(current, address, at, note) -> (new state, event or None)``: the decisions above.
Decision = Callable[[AddressState | None, str, datetime, str | None],
                    tuple[AddressState, AddressEvent | None]]
