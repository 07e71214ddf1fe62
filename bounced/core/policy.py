"""Quarantine policy (docs/policy.md) as pure functions: state + verdict + time -> new state.

Nothing here reads a clock or a database: the pipeline passes the time the bounce counts
at (``at``, the receipt time or the message's own ``Date`` when replaying history) and
the address's current state, and writes back what comes out. That keeps every rule of
the policy testable on plain values and makes replaying old bounces deterministic.

Summary of the rules (thresholds come from :class:`~bounced.config.PolicyConfig`):

- hard -> ``quarantine`` at once;
- soft -> the counter grows, but two errors count separately only when at least
  ``soft_error_interval`` apart; ``soft_error_threshold`` counted errors -> ``quarantine``;
  a counter whose last counted error is older than ``counter_reset_after`` restarts at 0;
- undefined -> the first ``undefined_grace`` per address change nothing but are
  remembered; later ones count like soft errors;
- ignored, delay, delivered, autoreply, not_bounce -> no change;
- feedback (spam complaint) -> ``denylisted``;
- ``allowlisted`` is never quarantined; its verdicts are rewritten to ignored /
  Error ignored (25); ``denylisted`` stays ``denylisted``;
- a ``Mailbox full`` quarantine carries ``release_at`` and :func:`cleanup` releases it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from bounced.config import PolicyConfig
from bounced.model import (
    AddressEvent,
    AddressState,
    FailureType,
    Kind,
    Qualification,
    QuarantineState,
    Reason,
    Verdict,
)


@dataclass(frozen=True, slots=True)
class PolicyFacts:
    """What the policy needs to know about one verdict, independent of parsing."""

    kind: Kind
    failure_type: FailureType | None
    reason: Reason | None
    #: What qualified it (``rule:12``, ``status``, ...), quoted in event causes.
    qualified_by: str | None = None
    #: ARF ``Feedback-Type`` (``abuse``), quoted in the cause of a denylisting.
    feedback_type: str | None = None

    @classmethod
    def of(cls, verdict: Verdict) -> PolicyFacts:
        return cls(
            kind=verdict.recipient.kind,
            failure_type=verdict.failure_type,
            reason=verdict.reason,
            qualified_by=str(verdict.qualification.qualified_by)
            if verdict.qualification
            else None,
            feedback_type=verdict.recipient.feedback_type,
        )


@dataclass(frozen=True, slots=True)
class PolicyOutcome:
    """The result of applying the policy to one verdict.

    ``state`` is ``None`` only when there was no state and nothing worth remembering
    (a delay for an unknown address creates no ``addresses`` row). ``qualification`` is
    the verdict's qualification as it must be recorded: unchanged, except for an
    allowlisted address whose verdicts carry ignored / Error ignored (25).
    """

    state: AddressState | None
    event: AddressEvent | None
    qualification: Qualification | None = None


_NO_CHANGE_KINDS = (Kind.DELAY, Kind.DELIVERED, Kind.AUTOREPLY, Kind.NOT_BOUNCE)


def ordinal(number: int) -> str:
    """``1`` -> ``1st``, ``2`` -> ``2nd``, ``11`` -> ``11th``: for readable causes."""
    if 10 <= number % 100 <= 20:
        suffix = "th"
    else:
        suffix = {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


def _describe(facts: PolicyFacts) -> str:
    label = facts.reason.label if facts.reason is not None else "no reason"
    return f"{label} ({facts.qualified_by})" if facts.qualified_by else label


def _event(
    old: AddressState | None, new: AddressState, at: datetime, cause: str
) -> AddressEvent | None:
    old_state = old.state if old is not None else None
    if old_state == new.state or (old_state is None and new.state is QuarantineState.VALID):
        return None
    return AddressEvent(new.address, at, old_state, new.state, cause)


def _latest(known: datetime | None, at: datetime) -> datetime:
    """The later of two times: bounces replayed out of order never move "last" back."""
    return at if known is None or at > known else known


def _reset_stale_counter(
    current: AddressState, at: datetime, config: PolicyConfig
) -> AddressState:
    """Forget counted errors whose last one is older than ``counter_reset_after``."""
    last = current.last_counted_error_at
    if current.error_count and last is not None and at - last > config.counter_reset_after:
        return replace(current, error_count=0, last_counted_error_at=None)
    return current


def _quarantine(current: AddressState, reason: Reason | None, at: datetime,
                config: PolicyConfig) -> AddressState:
    release_at = at + config.mailbox_full_release_after if reason is Reason.MAILBOX_FULL else None
    return replace(
        current,
        state=QuarantineState.QUARANTINE,
        reason=reason,
        quarantined_at=at,
        release_at=release_at,
    )


def apply(
    state: AddressState | None,
    facts: PolicyFacts,
    at: datetime,
    config: PolicyConfig,
    *,
    address: str | None = None,
    qualification: Qualification | None = None,
) -> PolicyOutcome:
    """Apply one verdict about one address at time ``at``.

    ``address`` is needed when ``state`` is ``None`` (first time the address is seen);
    ``qualification`` is the verdict's own, passed back (possibly rewritten) in the
    outcome so the caller records what the policy decided.
    """
    name = state.address if state is not None else address
    if name is None:
        raise ValueError("apply() needs an address when there is no state yet")
    current = state if state is not None else AddressState(name)

    if current.state is QuarantineState.ALLOWLISTED:
        rewritten = (
            Qualification(FailureType.IGNORED, Reason.ERROR_IGNORED, qualification.qualified_by)
            if qualification is not None
            else None
        )
        return PolicyOutcome(state, None, rewritten)
    if current.state is QuarantineState.DENYLISTED:
        return PolicyOutcome(state, None, qualification)
    if facts.kind is Kind.FEEDBACK:
        new, cause = _complaint(current, facts, at), _complaint_cause(facts)
    elif facts.kind in _NO_CHANGE_KINDS or facts.failure_type in (None, FailureType.IGNORED):
        return PolicyOutcome(state, None, qualification)
    elif current.state is QuarantineState.QUARANTINE:
        return PolicyOutcome(_quarantined_again(current, facts, at), None, qualification)
    elif facts.failure_type is FailureType.HARD:
        new = _quarantine(
            replace(current, error_count=current.error_count + 1,
                    last_error_at=_latest(current.last_error_at, at),
                    last_counted_error_at=at, updated_at=at),
            facts.reason, at, config,
        )
        cause = f"hard bounce: {_describe(facts)}"
    else:
        counted = _count_soft(current, facts, at, config)
        if counted.cause is None:
            return PolicyOutcome(counted.state, None, qualification)
        new, cause = counted.state, counted.cause
    return PolicyOutcome(new, _event(state, new, at, cause), qualification)


def _complaint(current: AddressState, facts: PolicyFacts, at: datetime) -> AddressState:
    """A spam complaint: the address is denylisted for good."""
    return replace(
        current,
        state=QuarantineState.DENYLISTED,
        reason=Reason.DENYLISTED,
        quarantined_at=at,
        release_at=None,
        last_error_at=_latest(current.last_error_at, at),
        updated_at=at,
    )


def _complaint_cause(facts: PolicyFacts) -> str:
    return f"ARF complaint ({facts.feedback_type})" if facts.feedback_type else "ARF complaint"


def _quarantined_again(current: AddressState, facts: PolicyFacts, at: datetime) -> AddressState:
    """An error for an address already in quarantine: remembered, and a hard error
    replaces a Mailbox-full quarantine so that the cleanup job does not release it."""
    new = replace(current, last_error_at=_latest(current.last_error_at, at), updated_at=at)
    if facts.failure_type is FailureType.HARD and current.reason is Reason.MAILBOX_FULL \
            and facts.reason is not Reason.MAILBOX_FULL:
        new = replace(new, reason=facts.reason, release_at=None)
    return new


@dataclass(frozen=True, slots=True)
class _Counted:
    """A soft (or undefined) error applied: the new state, and the cause of the change
    when it counted (``None``: remembered only)."""

    state: AddressState
    cause: str | None


def _count_soft(current: AddressState, facts: PolicyFacts, at: datetime,
                config: PolicyConfig) -> _Counted:
    """A soft error (or an undefined one past its grace) counts when far enough from the
    last counted one; the threshold-th counted error quarantines."""
    last_error = _latest(current.last_error_at, at)
    counted_as = "soft error"
    if facts.failure_type is FailureType.UNDEFINED:
        seen = current.undefined_count + 1
        if seen <= config.undefined_grace:
            return _Counted(replace(current, undefined_count=seen, last_error_at=last_error,
                                    updated_at=at), None)
        current = replace(current, undefined_count=seen)
        counted_as = f"soft error ({ordinal(seen)} undefined)"
    current = _reset_stale_counter(current, at, config)
    last = current.last_counted_error_at
    if last is not None and at - last < config.soft_error_interval:
        # Too close to the last counted error (or older than it, when replaying out of
        # order): remembered as the last error, not counted, state unchanged.
        return _Counted(replace(current, last_error_at=last_error, updated_at=at), None)
    count = current.error_count + 1
    new = replace(
        current,
        error_count=count,
        last_error_at=last_error,
        last_counted_error_at=at,
        reason=facts.reason,
        updated_at=at,
        state=QuarantineState.ERRONEOUS,
    )
    if count >= config.soft_error_threshold:
        new = _quarantine(new, facts.reason, at, config)
    return _Counted(new, f"{ordinal(count)} {counted_as}: {_describe(facts)}")


def cleanup(state: AddressState, at: datetime, config: PolicyConfig) -> PolicyOutcome:
    """The periodic job's view of one address: release due Mailbox-full quarantines and
    forget stale soft-error counters (an ``erroneous`` address goes back to ``valid``)."""
    if (
        state.state is QuarantineState.QUARANTINE
        and state.release_at is not None
        and at >= state.release_at
    ):
        new = replace(
            state,
            state=QuarantineState.VALID,
            error_count=0,
            last_counted_error_at=None,
            quarantined_at=None,
            release_at=None,
            updated_at=at,
        )
        label = state.reason.label if state.reason is not None else "quarantine"
        age = _days(config.mailbox_full_release_after)
        cause = f"released: {label} quarantine older than {age}"
        return PolicyOutcome(new, AddressEvent(state.address, at, state.state, new.state, cause))
    if state.state is QuarantineState.ERRONEOUS:
        reset = _reset_stale_counter(state, at, config)
        if reset.error_count == 0:
            new = replace(reset, state=QuarantineState.VALID, updated_at=at)
            cause = (
                "counter reset: last counted error older than "
                f"{_days(config.counter_reset_after)}"
            )
            return PolicyOutcome(new, AddressEvent(state.address, at, state.state, new.state,
                                                   cause))
    return PolicyOutcome(state, None)


def _days(delta: timedelta) -> str:
    if delta.total_seconds() % 86400 == 0:
        return f"{int(delta.total_seconds() // 86400)} days"
    return f"{delta.total_seconds() / 3600:g} h"
