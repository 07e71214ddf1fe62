"""Which change of an address's state is an event a sending platform is told of."""

from __future__ import annotations

import pytest

from bounced.core.events import address_event_type
from bounced.model import EventType, QuarantineState

Q, D, V, E, A = (QuarantineState.QUARANTINE, QuarantineState.DENYLISTED,
                 QuarantineState.VALID, QuarantineState.ERRONEOUS, QuarantineState.ALLOWLISTED)


@pytest.mark.parametrize(("old", "new", "event"), [
    (None, Q, EventType.ADDRESS_QUARANTINED),
    (E, Q, EventType.ADDRESS_QUARANTINED),
    (None, D, EventType.ADDRESS_DENYLISTED),
    (Q, D, EventType.ADDRESS_DENYLISTED),
    (Q, V, EventType.ADDRESS_RELEASED),
    (D, A, EventType.ADDRESS_RELEASED),
    (Q, E, EventType.ADDRESS_RELEASED),
    (None, E, None),
    (E, V, None),
    (V, A, None),
    (Q, Q, None),
    (D, D, None),
])
def test_entering_or_leaving_the_suppression_list_is_an_event(
        old: QuarantineState | None, new: QuarantineState, event: EventType | None) -> None:
    assert address_event_type(old, new) is event
