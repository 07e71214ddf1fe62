"""The pure cores of the operator commands, on plain values (no database, no clock)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bounced.config import PolicyConfig
from bounced.core.times import parse_when
from bounced.model import AddressState, FailureType, Kind, QuarantineState, Reason
from bounced.ops.quarantine import (
    Override,
    StoredVerdict,
    allowed,
    denied,
    parse_import,
    released,
    replay,
)

NOW = datetime(2026, 11, 22, 13, 5, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-22T13:05:00Z", NOW),
    ("2026-11-22", datetime(2026, 11, 22, tzinfo=UTC)),
    ("2026-11-22T14:05:00+01:00", NOW),
    ("7d", NOW - timedelta(days=7)),
    ("24h", NOW - timedelta(hours=24)),
    ("90m", NOW - timedelta(minutes=90)),
    ("2w", NOW - timedelta(weeks=2)),
])
def test_times_on_the_command_line_are_iso_or_relative_to_the_clock_given(
        text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


def test_a_time_that_is_neither_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="7d, 24h"):
        parse_when("last tuesday", NOW)


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


def test_import_reads_a_header_column_and_numbers_bad_lines() -> None:
    plan = parse_import("name;x,Email\nJo,jo@example.org\nbad,@example.org\n# comment\n"
                        "Al,AL@EXAMPLE.ORG\nAl again,al@example.org\nshort\n")
    assert plan.addresses == ((2, "jo@example.org"), (5, "al@example.org"))
    assert [(bad.line, bad.problem) for bad in plan.bad] == [
        (3, "not an email address: '@example.org'"), (7, "no column 2")]
    assert plan.duplicates == 1


def test_import_without_header_takes_the_first_column() -> None:
    plan = parse_import("a@example.org,2026-01-01\nb@example.org\n")
    assert [address for _, address in plan.addresses] == ["a@example.org", "b@example.org"]
    assert plan.bad == ()


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


