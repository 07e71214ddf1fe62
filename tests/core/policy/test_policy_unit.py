"""The quarantine policy (docs/policy.md) as pure functions, on plain values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bounced.config import PolicyConfig
from bounced.core.policy import PolicyFacts, apply, cleanup, ordinal
from bounced.model import (
    AddressState,
    FailureType,
    Kind,
    Qualification,
    QualifiedBy,
    QualifiedBySource,
    QuarantineState,
    Reason,
)

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
CONFIG = PolicyConfig()
ADDRESS = "jane@example.org"

SOFT = PolicyFacts(Kind.FAILURE, FailureType.SOFT, Reason.MAILBOX_FULL, "status:5.2.2")
SOFT_REFUSED = PolicyFacts(Kind.FAILURE, FailureType.SOFT, Reason.REFUSED, "rule:40")
HARD = PolicyFacts(Kind.FAILURE, FailureType.HARD, Reason.USER_UNKNOWN, "rule:12")
UNDEFINED = PolicyFacts(Kind.FAILURE, FailureType.UNDEFINED, Reason.NOT_DEFINED, "none")
FEEDBACK = PolicyFacts(Kind.FEEDBACK, FailureType.HARD, Reason.DENYLISTED, "kind", "abuse")


def run(facts_and_times: list[tuple[PolicyFacts, datetime]],
        config: PolicyConfig = CONFIG, state: AddressState | None = None):
    events = []
    for facts, at in facts_and_times:
        outcome = apply(state, facts, at, config, address=ADDRESS)
        state = outcome.state
        if outcome.event:
            events.append(outcome.event)
    return state, events


def test_hard_bounce_quarantines_at_once_with_a_cause_naming_reason_and_rule():
    state, events = run([(HARD, T0)])
    assert state is not None
    assert state.state is QuarantineState.QUARANTINE
    assert state.quarantined_at == T0
    assert state.reason is Reason.USER_UNKNOWN
    assert state.release_at is None
    assert [(e.old_state, e.new_state) for e in events] == [(None, QuarantineState.QUARANTINE)]
    assert events[0].cause == "hard bounce: User unknown (rule:12)"


def test_five_soft_errors_a_day_apart_quarantine_on_the_fifth():
    days = [(SOFT_REFUSED, T0 + timedelta(days=i)) for i in range(5)]
    state, events = run(days[:4])
    assert state.state is QuarantineState.ERRONEOUS and state.error_count == 4
    state, events = run(days)
    assert state.state is QuarantineState.QUARANTINE
    assert state.error_count == 5
    assert [e.new_state for e in events] == [QuarantineState.ERRONEOUS, QuarantineState.QUARANTINE]
    assert events[-1].cause == "5th soft error: Refused (rule:40)"


def test_soft_errors_less_than_the_interval_apart_count_once():
    state, events = run([(SOFT, T0 + timedelta(hours=h)) for h in (0, 5, 12, 23)])
    assert state.state is QuarantineState.ERRONEOUS
    assert state.error_count == 1
    assert state.last_counted_error_at == T0
    assert state.last_error_at == T0 + timedelta(hours=23)
    assert len(events) == 1


def test_soft_errors_exactly_the_interval_apart_count_separately():
    state, _ = run([(SOFT, T0), (SOFT, T0 + CONFIG.soft_error_interval)])
    assert state.error_count == 2


def test_threshold_and_interval_come_from_the_configuration():
    config = PolicyConfig(soft_error_threshold=2, soft_error_interval=timedelta(hours=1))
    state, _ = run([(SOFT_REFUSED, T0), (SOFT_REFUSED, T0 + timedelta(hours=1))], config)
    assert state.state is QuarantineState.QUARANTINE


def test_counter_older_than_reset_period_starts_again_from_zero():
    state, _ = run([
        (SOFT, T0),
        (SOFT, T0 + timedelta(days=1)),
        (SOFT, T0 + timedelta(days=1) + CONFIG.counter_reset_after + timedelta(seconds=1)),
    ])
    assert state.error_count == 1
    assert state.state is QuarantineState.ERRONEOUS


def test_counter_exactly_reset_period_old_still_counts_on():
    state, _ = run([(SOFT, T0), (SOFT, T0 + CONFIG.counter_reset_after)])
    assert state.error_count == 2


def test_first_undefined_error_changes_nothing_but_is_remembered():
    state, events = run([(UNDEFINED, T0)])
    assert state is not None
    assert state.state is QuarantineState.VALID
    assert state.undefined_count == 1
    assert state.error_count == 0
    assert events == []


def test_second_undefined_error_counts_like_a_soft_one():
    state, events = run([(UNDEFINED, T0), (UNDEFINED, T0 + timedelta(days=1))])
    assert state.state is QuarantineState.ERRONEOUS
    assert state.error_count == 1
    assert events[0].cause.startswith("1st soft error (2nd undefined)")


def test_undefined_grace_is_configurable():
    config = PolicyConfig(undefined_grace=2)
    state, _ = run([(UNDEFINED, T0 + timedelta(days=i)) for i in range(2)], config)
    assert state.state is QuarantineState.VALID
    state, _ = run([(UNDEFINED, T0 + timedelta(days=i)) for i in range(3)], config)
    assert state.state is QuarantineState.ERRONEOUS


@pytest.mark.parametrize("kind", [Kind.DELAY, Kind.DELIVERED, Kind.AUTOREPLY, Kind.NOT_BOUNCE])
def test_non_failure_kinds_change_nothing(kind: Kind):
    erroneous = AddressState(ADDRESS, QuarantineState.ERRONEOUS, error_count=2,
                             last_counted_error_at=T0)
    facts = PolicyFacts(kind, FailureType.IGNORED, Reason.NOT_DEFINED, "kind")
    outcome = apply(erroneous, facts, T0 + timedelta(days=2), CONFIG)
    assert outcome.state == erroneous
    assert outcome.event is None
    assert apply(None, facts, T0, CONFIG, address=ADDRESS).state is None


def test_ignored_failure_changes_nothing():
    facts = PolicyFacts(Kind.FAILURE, FailureType.IGNORED, Reason.NOT_CONNECTED, "rule:3")
    assert run([(facts, T0)]) == (None, [])


def test_spam_complaint_denylists():
    state, events = run([(FEEDBACK, T0)])
    assert state.state is QuarantineState.DENYLISTED
    assert state.reason is Reason.DENYLISTED
    assert events[0].cause == "ARF complaint (abuse)"


def test_spam_complaint_denylists_a_quarantined_address_too():
    state, events = run([(HARD, T0), (FEEDBACK, T0 + timedelta(hours=1))])
    assert state.state is QuarantineState.DENYLISTED
    assert [e.new_state for e in events][-1] is QuarantineState.DENYLISTED


@pytest.mark.parametrize("facts", [HARD, SOFT, UNDEFINED, FEEDBACK])
def test_allowlisted_address_is_never_quarantined_and_verdict_becomes_error_ignored(facts):
    allowlisted = AddressState(ADDRESS, QuarantineState.ALLOWLISTED)
    qualification = Qualification(facts.failure_type, facts.reason,
                                  QualifiedBy(QualifiedBySource.RULE, "12"))
    for day in range(6):
        outcome = apply(allowlisted, facts, T0 + timedelta(days=day), CONFIG,
                        qualification=qualification)
        assert outcome.state == allowlisted
        assert outcome.event is None
        assert outcome.qualification is not None
        assert outcome.qualification.failure_type is FailureType.IGNORED
        assert outcome.qualification.reason is Reason.ERROR_IGNORED


@pytest.mark.parametrize("facts", [HARD, SOFT, UNDEFINED, FEEDBACK])
def test_denylisted_stays_denylisted(facts):
    denylisted = AddressState(ADDRESS, QuarantineState.DENYLISTED, reason=Reason.DENYLISTED)
    outcome = apply(denylisted, facts, T0, CONFIG)
    assert outcome.state == denylisted
    assert outcome.event is None


def test_other_verdicts_keep_their_qualification():
    qualification = Qualification(FailureType.HARD, Reason.USER_UNKNOWN)
    outcome = apply(None, HARD, T0, CONFIG, address=ADDRESS, qualification=qualification)
    assert outcome.qualification == qualification


def test_mailbox_full_quarantine_gets_a_release_date_and_cleanup_releases_it():
    state, _ = run([(SOFT, T0 + timedelta(days=i)) for i in range(5)])
    quarantined_at = T0 + timedelta(days=4)
    assert state.state is QuarantineState.QUARANTINE
    assert state.release_at == quarantined_at + CONFIG.mailbox_full_release_after
    early = cleanup(state, state.release_at - timedelta(seconds=1), CONFIG)
    assert early.state == state and early.event is None
    released = cleanup(state, state.release_at, CONFIG)
    assert released.state.state is QuarantineState.VALID
    assert released.state.error_count == 0
    assert released.state.release_at is None
    assert released.event.old_state is QuarantineState.QUARANTINE
    assert released.event.cause.startswith("released: Mailbox full quarantine")


def test_other_quarantines_are_not_released_by_cleanup():
    state, _ = run([(HARD, T0)])
    later = cleanup(state, T0 + timedelta(days=365), CONFIG)
    assert later.state == state and later.event is None


def test_hard_error_on_a_mailbox_full_quarantine_cancels_its_release():
    state, _ = run([(SOFT, T0 + timedelta(days=i)) for i in range(5)])
    state, _ = run([(HARD, T0 + timedelta(days=6))], state=state)
    assert state.state is QuarantineState.QUARANTINE
    assert state.release_at is None
    assert state.reason is Reason.USER_UNKNOWN


def test_cleanup_resets_a_stale_counter_and_keeps_a_fresh_one():
    state, _ = run([(SOFT, T0)])
    fresh = cleanup(state, T0 + timedelta(days=5), CONFIG)
    assert fresh.state == state and fresh.event is None
    stale = cleanup(state, T0 + CONFIG.counter_reset_after + timedelta(seconds=1), CONFIG)
    assert stale.state.state is QuarantineState.VALID
    assert stale.state.error_count == 0
    assert stale.event.cause.startswith("counter reset")


def test_policy_is_pure_same_input_same_output():
    first = apply(None, SOFT, T0, CONFIG, address=ADDRESS)
    second = apply(None, SOFT, T0, CONFIG, address=ADDRESS)
    assert first == second


@pytest.mark.parametrize(("number", "text"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"),
                                              (11, "11th"), (12, "12th"), (21, "21st")])
def test_ordinals_read_naturally(number: int, text: str):
    assert ordinal(number) == text


def test_a_bounce_replayed_out_of_order_does_not_move_the_last_error_back():
    state, _ = run([(SOFT, T0 + timedelta(days=3)), (SOFT, T0)])
    assert state.last_error_at == T0 + timedelta(days=3)
    assert state.error_count == 1
