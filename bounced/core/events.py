"""What webhook endpoints are told, as plain data (``docs/webhooks.md``).

An event is a change a sending platform acts on: a verdict on a bounce, an address
that entered or left quarantine or the denylist, a spam complaint. Its body is JSON in
the Standard Webhooks shape (``{"type", "timestamp", "data"}``); the store writes it to
the outbox in the same transaction as the change it describes, and the daemon delivers
it signed, at least once (the event id lets a receiver drop a duplicate).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from bounced.core.times import format_optional, format_time
from bounced.model import AddressEvent, EventType, QuarantineState, Reason

_SUPPRESSED = (QuarantineState.QUARANTINE, QuarantineState.DENYLISTED)


def address_event_type(old: QuarantineState | None, new: QuarantineState) -> EventType | None:
    """The event a change of state is, if any: entering quarantine or the denylist, or
    leaving them (a change between valid and erroneous concerns nobody outside)."""
    if new is QuarantineState.DENYLISTED and old is not QuarantineState.DENYLISTED:
        return EventType.ADDRESS_DENYLISTED
    if new is QuarantineState.QUARANTINE and old is not QuarantineState.QUARANTINE:
        return EventType.ADDRESS_QUARANTINED
    if old in _SUPPRESSED and new not in _SUPPRESSED:
        return EventType.ADDRESS_RELEASED
    return None


def envelope(event_type: EventType, at: datetime, data: dict[str, Any]) -> dict[str, Any]:
    """The body of an event: ``type``, ``timestamp`` of the change, ``data``."""
    return {"type": event_type.value, "timestamp": format_time(at), "data": data}


def address_data(event: AddressEvent, *, reason: Reason | None, bounce_id: int | None,
                 actor: str | None) -> dict[str, Any]:
    return {
        "address": event.address,
        "old_state": event.old_state.value if event.old_state else None,
        "new_state": event.new_state.value,
        "reason_code": int(reason) if reason is not None else None,
        "reason": reason.label if reason is not None else None,
        "cause": event.cause,
        "at": format_time(event.at),
        "bounce_id": bounce_id,
        "actor": actor,
    }


def verdict_data(*, bounce_id: int, message_id: int, recipient: str | None, kind: str,
                 failure_type: str | None, reason: Reason | None, qualified_by: str | None,
                 status: str | None, diagnostic: str, at: datetime, applied: bool,
                 feedback_type: str | None = None, channel: str = "email") -> dict[str, Any]:
    return {
        "channel": channel,
        "bounce_id": bounce_id,
        "message_id": message_id,
        "recipient": recipient,
        "kind": kind,
        "failure_type": failure_type,
        "reason_code": int(reason) if reason is not None else None,
        "reason": reason.label if reason is not None else None,
        "qualified_by": qualified_by,
        "status": status,
        "diagnostic": diagnostic[:2000],
        "at": format_optional(at),
        "applied": applied,
        "feedback_type": feedback_type,
    }
