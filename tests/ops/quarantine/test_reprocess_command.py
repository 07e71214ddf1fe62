"""``bounced reprocess``: a rule changed after 200 bounces; what changes, exactly."""

from __future__ import annotations

import pytest

from tests.harness.database import is_postgresql
from tests.ops.quarantine.conftest import Ops, day, iso

BLOCKED = [f"blk-{n:02d}@example.org" for n in range(30)]   # 2 RBL bounces each
MIXED = [f"mix-{n:02d}@example.org" for n in range(10)]     # RBL, then user unknown
FULL = [f"full-{n:02d}@example.org" for n in range(40)]     # 2 mailbox-full each
RELAY = [f"relay-{n:02d}@example.org" for n in range(20)]   # 2 relay-denied each


@pytest.fixture
def two_hundred_bounces(ops: Ops) -> Ops:
    """An operator rule too broad for RBL listings (hard) when 200 bounces come in."""
    ops.add_rule(10_001, "blocked using", "hard", 20)
    for number in (0, 1):
        mails = [("rbl-blocked", a) for a in BLOCKED] + [("mailbox-full", a) for a in FULL] \
            + [("relay-denied", a) for a in RELAY] \
            + [("rbl-blocked" if number == 0 else "user-unknown", a) for a in MIXED]
        ops.ingest(day(number), *mails)
    assert ops.sql("SELECT count(*) FROM bounces") == [(200,)]
    # Today's rules: the RBL rule is withdrawn, relay denials now mean a dead domain.
    ops.sql("UPDATE rules SET enabled = 0 WHERE id = 10001")
    ops.add_rule(10_004, "Relay access denied", "hard", 2)
    return ops


def listed(output: str) -> dict[str, tuple[str, str]]:
    rows = [line.split() for line in output.splitlines() if "@example.org" in line]
    return {row[0]: (row[1], row[2]) for row in rows}


def snapshot(ops: Ops) -> list[tuple[object, ...]]:
    concat = ("string_agg(failure_type, ',' ORDER BY id)" if is_postgresql(ops.db)
              else "group_concat(failure_type)")
    return ops.sql("SELECT a.*, (SELECT count(*) FROM address_events), "
                   "(SELECT count(*) FROM verdict_changes), "
                   f"(SELECT {concat} FROM bounces) FROM addresses a "
                   "ORDER BY address")


def test_dry_run_lists_exactly_the_addresses_that_would_change(two_hundred_bounces: Ops) -> None:
    ops = two_hundred_bounces
    before = snapshot(ops)
    result = ops.cmd("reprocess", "--dry-run", "--at", iso(day(2)))
    assert listed(result.out) == {
        **{a: ("quarantine", "erroneous") for a in BLOCKED},
        **{a: ("erroneous", "quarantine") for a in RELAY},
    }
    assert "200 message(s) re-qualified: 110 bounce(s) get another verdict" in result.out
    assert "would change 50 address(es): 30 leave quarantine, 20 enter quarantine" in result.out
    assert snapshot(ops) == before


def test_applying_changes_states_keeps_history_and_is_safe_twice(two_hundred_bounces: Ops) -> None:
    ops = two_hundred_bounces
    events_before = ops.sql("SELECT * FROM address_events ORDER BY id")
    result = ops.cmd("reprocess", "--at", iso(day(2)))
    assert "applied: 50 address(es) changed state" in result.out
    assert {ops.state(a)[:2] for a in BLOCKED} == {("erroneous", 2)}
    assert {ops.state(a)[0] for a in RELAY} == {"quarantine"}
    assert {ops.state(a)[:3] for a in MIXED} == {("quarantine", 2, 1)}  # now User unknown
    assert {ops.state(a)[:2] for a in FULL} == {("erroneous", 2)}
    # the history is appended to, never rewritten
    events_after = ops.sql("SELECT * FROM address_events ORDER BY id")
    assert events_after[: len(events_before)] == events_before
    assert [row[:2] for row in ops.history(BLOCKED[0])] == [
        (None, "quarantine"), ("quarantine", "erroneous")]
    assert ops.history(BLOCKED[0])[-1][2].startswith(
        "reprocess with today's rules: bounce #")
    # each changed verdict is kept with the old one
    assert ops.sql("SELECT action, old_failure_type, new_failure_type, count(*) "
                   "FROM verdict_changes GROUP BY 1, 2, 3 ORDER BY 2") == [
        ("reprocess", "hard", "soft", 70), ("reprocess", "soft", "hard", 40)]
    assert ops.sql("SELECT failure_type, reason_code, qualified_by, count(*) FROM bounces "
                   "WHERE recipient LIKE 'relay-%' GROUP BY 1, 2, 3") == [
        ("hard", 2, "rule:10004", 40)]

    again = ops.cmd("reprocess", "--at", iso(day(3)))
    assert "0 bounce(s) get another verdict" in again.out
    assert "applied: 0 address(es) changed state" in again.out
    assert ops.sql("SELECT count(*) FROM address_events") == [(len(events_after),)]


def test_since_limits_reprocessing_to_recent_bounces(two_hundred_bounces: Ops) -> None:
    ops = two_hundred_bounces
    result = ops.cmd("reprocess", "--dry-run", "--since", "12h", "--at", iso(day(1.25)))
    # only day-1 messages: the second RBL/relay bounces and the mixed user-unknown ones
    assert "100 message(s) since 2026-11-02T03:00:00Z re-qualified: 50 bounce(s)" in result.out


def test_reprocess_leaves_allowlisted_verdicts_alone(ops: Ops) -> None:
    ops.cmd("quarantine", "allow", "vip@example.org", "--at", iso(day(0)))
    ops.ingest(day(1), ("user-unknown", "vip@example.org"))
    result = ops.cmd("reprocess", "--dry-run", "--at", iso(day(2)))
    assert "0 bounce(s) get another verdict" in result.out
