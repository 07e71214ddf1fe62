"""What would an address's state be if some of its bounces had been judged otherwise?

``bounced reprocess`` (today's rules judge a bounce differently) and ``quarantine
rollback`` (some bounces no longer count) both need the answer. :func:`replay` gives
it, purely: it runs the quarantine policy again over the address's stored verdicts, in
time order, from the last operator decision (an operator's release, allow or deny is a
fact to build on, not something to recompute), simulating the periodic cleanup
between bounces.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bounced.config import PolicyConfig
from bounced.core.policy import PolicyFacts, apply, cleanup
from bounced.model import AddressState, FailureType, Kind, QuarantineState, Reason


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    """A ``bounces`` row as the policy sees it."""

    bounce_id: int
    at: datetime
    kind: Kind
    failure_type: FailureType | None
    reason: Reason | None
    qualified_by: str | None
    feedback_type: str | None

    def facts(self) -> PolicyFacts:
        return PolicyFacts(self.kind, self.failure_type, self.reason, self.qualified_by,
                           self.feedback_type)


@dataclass(frozen=True, slots=True)
class Override:
    """A verdict as it would be judged now (reprocess); ``counts=False``: rolled back."""

    failure_type: FailureType | None
    reason: Reason | None
    qualified_by: str | None
    counts: bool = True


def replay(
    base: AddressState | None,
    address: str,
    verdicts: Sequence[StoredVerdict],
    config: PolicyConfig,
    overrides: Mapping[int, Override] | None = None,
) -> AddressState | None:
    """The state ``address`` would have after ``verdicts`` (time-ordered), starting from
    ``base``, with some verdicts judged differently. Pure.

    The periodic cleanup is simulated before each bounce (the daemon runs it hourly,
    so a due Mailbox-full release would have happened by then); the final state is
    left as the bounces made it, like the stored one until the next cleanup run.
    """
    state = base
    for verdict in verdicts:
        override = (overrides or {}).get(verdict.bounce_id)
        if override is not None and not override.counts:
            continue
        facts = verdict.facts()
        if override is not None:
            facts = replace(facts, failure_type=override.failure_type, reason=override.reason,
                            qualified_by=override.qualified_by)
        if state is not None:
            state = cleanup(state, verdict.at, config).state or state
        outcome = apply(state, facts, verdict.at, config, address=address)
        state = outcome.state if outcome.state is not None else state
    return state


def same_state(a: AddressState | None, b: AddressState | None) -> bool:
    """Equal for the policy (what quarantines, what counts), ignoring bookkeeping times."""
    def key(s: AddressState | None) -> tuple[object, ...]:
        if s is None:
            return (QuarantineState.VALID, 0, None, None, None, None)
        return (s.state, s.error_count, s.last_counted_error_at, s.reason, s.quarantined_at,
                s.release_at)
    return key(a) == key(b)


def state_of(s: AddressState | None) -> QuarantineState:
    return s.state if s is not None else QuarantineState.VALID


def replay_base(address: str, decision: tuple[datetime, QuarantineState] | None
                ) -> tuple[AddressState | None, datetime | None]:
    """Where a replay of ``address`` starts: the state its last operator decision set
    (``(when, state)``; counters at zero, since every operator action zeroes them), and
    from when bounces count again; nothing and the beginning when there is none."""
    if decision is None:
        return None, None
    at, state = decision
    denylisted = state is QuarantineState.DENYLISTED
    return AddressState(
        address, state,
        reason=Reason.DENYLISTED if denylisted else None,
        quarantined_at=at if denylisted else None,
        updated_at=at,
    ), at
