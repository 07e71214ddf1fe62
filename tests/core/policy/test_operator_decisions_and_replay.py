"""Operator decisions and the replay of an address's verdicts, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bounced.config import PolicyConfig
from bounced.core.decisions import allowed, denied, released
from bounced.core.replay import Override, StoredVerdict, replay
from bounced.model import AddressState, FailureType, Kind, QuarantineState, Reason

NOW = datetime(2026, 11, 22, 13, 5, tzinfo=UTC)


def test_release_zeroes_counters_and_a_second_release_is_no_event() -> None:
    quarantined = AddressState("a@example.org", QuarantineState.QUARANTINE, error_count=5,
                               reason=Reason.MAILBOX_FULL, quarantined_at=NOW,
                               release_at=NOW + timedelta(days=30))
    new, event = released(quarantined, "a@example.org", NOW, "ticket 7")
    assert (new.state, new.error_count, new.release_at) == (QuarantineState.VALID, 0, None)
    assert event is not None and event.cause == "released by operator: ticket 7"
    assert released(new, "a@example.org", NOW)[1] is None


def test_allow_and_deny_of_an_unknown_address_create_it_with_an_event() -> None:
    state, event = allowed(None, "v@example.org", NOW)
    assert state.state is QuarantineState.ALLOWLISTED
    assert event is not None and (event.old_state, event.new_state) == (
        None, QuarantineState.ALLOWLISTED)
    state, event = denied(None, "d@example.org", NOW)
    assert (state.state, state.reason, state.release_at) == (
        QuarantineState.DENYLISTED, Reason.DENYLISTED, None)
    assert event is not None and event.cause == "denylisted by operator"


def _soft(bounce_id: int, days: float) -> StoredVerdict:
    return StoredVerdict(bounce_id, NOW + timedelta(days=days), Kind.FAILURE,
                         FailureType.SOFT, Reason.MAILBOX_FULL, "rule:250", None)


def test_replay_counts_soft_errors_like_the_policy_and_skips_rolled_back_ones() -> None:
    verdicts = [_soft(n, n) for n in range(5)]
    config = PolicyConfig()
    assert replay(None, "a@example.org", verdicts, config).state is QuarantineState.QUARANTINE
    undone = {4: Override(None, None, None, counts=False)}
    after = replay(None, "a@example.org", verdicts, config, undone)
    assert after is not None and (after.state, after.error_count) == (
        QuarantineState.ERRONEOUS, 4)


def test_replay_with_an_override_judges_a_bounce_anew() -> None:
    hard = {0: Override(FailureType.HARD, Reason.USER_UNKNOWN, "rule:300")}
    state = replay(None, "a@example.org", [_soft(0, 0)], PolicyConfig(), hard)
    assert state is not None and (state.state, state.reason) == (
        QuarantineState.QUARANTINE, Reason.USER_UNKNOWN)


def test_replay_releases_mailbox_full_between_bounces_like_the_cleanup_job() -> None:
    verdicts = [*(_soft(n, n) for n in range(5)), _soft(9, 40)]
    state = replay(None, "a@example.org", verdicts, PolicyConfig())
    assert state is not None and (state.state, state.error_count) == (
        QuarantineState.ERRONEOUS, 1)


def test_replay_from_an_operator_allowlisting_never_quarantines() -> None:
    base = AddressState("a@example.org", QuarantineState.ALLOWLISTED)
    state = replay(base, "a@example.org", [_soft(n, n) for n in range(6)], PolicyConfig())
    assert state is not None and state.state is QuarantineState.ALLOWLISTED
