"""``bounced quarantine rollback``: an ISP outage quarantined good addresses; undo it."""

from __future__ import annotations

import pytest

from tests.ops.quarantine.conftest import Ops, day, iso

VALID_BEFORE = [f"fine-{n:02d}@isp.example" for n in range(20)]
ERRONEOUS_BEFORE = [f"soft-{n:02d}@isp.example" for n in range(5)]
TRULY_GONE = "gone@isp.example"


@pytest.fixture
def outage(ops: Ops) -> Ops:
    """Day 0-1: a few soft errors and one real hard bounce. Day 5: the ISP answers
    "User unknown" for everyone for an afternoon, quarantining 25 good addresses."""
    for number in (0, 1):
        ops.ingest(day(number), *(("mailbox-full", a) for a in ERRONEOUS_BEFORE))
    ops.ingest(day(1), ("user-unknown", TRULY_GONE))
    ops.ingest(day(5), *(("user-unknown", a) for a in [*VALID_BEFORE, *ERRONEOUS_BEFORE]))
    ops.ingest(day(5.1), ("user-unknown", TRULY_GONE))
    assert ops.sql("SELECT count(*) FROM suppression_list") == [(26,)]
    return ops


def outage_text(ops: Ops) -> int:
    return ops.sql("SELECT id FROM qualification WHERE text LIKE '%User unknown%'")[0][0]


def test_dry_run_shows_the_restored_states_and_writes_nothing(outage: Ops) -> None:
    before = outage.sql("SELECT * FROM addresses ORDER BY address")
    result = outage.cmd("quarantine", "rollback", "--since", iso(day(5)), "--until",
                        iso(day(6)), "--text", str(outage_text(outage)), "--dry-run",
                        "--at", iso(day(6)))
    rows = {line.split()[0]: line.split()[1:3] for line in result.lines_with("@isp.example")}
    assert rows == {**{a: ["quarantine", "valid"] for a in VALID_BEFORE},
                    **{a: ["quarantine", "erroneous"] for a in ERRONEOUS_BEFORE}}
    assert "26 bounce(s) would no longer count, 25 address(es) would change (dry run)" \
        in result.out
    assert outage.sql("SELECT * FROM addresses ORDER BY address") == before
    assert outage.sql("SELECT count(*) FROM verdict_changes") == [(0,)]


def test_rollback_of_one_text_restores_previous_states_and_history_shows_both_steps(
        outage: Ops) -> None:
    text = outage_text(outage)
    result = outage.cmd("quarantine", "rollback", "--since", iso(day(5)), "--until",
                        iso(day(6)), "--text", str(text), "--at", iso(day(6)))
    assert "25 address(es) changed" in result.out
    assert {outage.state(a)[:2] for a in VALID_BEFORE} == {("valid", 0)}
    assert {outage.state(a)[:3] for a in ERRONEOUS_BEFORE} == {("erroneous", 2, 5)}
    assert outage.state(TRULY_GONE)[0] == "quarantine"   # quarantined before the outage
    history = outage.history(VALID_BEFORE[0])
    assert [row[:2] for row in history] == [(None, "quarantine"), ("quarantine", "valid")]
    assert history[0][2] == "hard bounce: User unknown (rule:10003)"
    assert history[1][2] == (f"rollback of text #{text} since {iso(day(5))} until {iso(day(6))}"
                             ": 1 bounce(s) no longer count")
    # the bounces stay in the delivery log, marked as not counting, old verdict kept
    assert outage.sql("SELECT b.failure_type, c.old_failure_type, c.action FROM bounces b "
                      "JOIN verdict_changes c ON c.bounce_id = b.id "
                      "WHERE b.recipient = ?", (VALID_BEFORE[0],)) == [
        ("ignored", "hard", "rollback")]
    assert outage.run("check", "--db", str(outage.db), *VALID_BEFORE, *ERRONEOUS_BEFORE
                      ).status == 0

    again = outage.cmd("quarantine", "rollback", "--since", iso(day(5)), "--until",
                       iso(day(6)), "--text", str(text), "--at", iso(day(7)))
    assert "0 bounce(s) no longer count, 0 address(es) changed" in again.out
    assert len(outage.history(VALID_BEFORE[0])) == 2


def test_a_reprocess_after_a_rollback_does_not_count_the_outage_again(outage: Ops) -> None:
    outage.cmd("quarantine", "rollback", "--since", iso(day(5)), "--until", iso(day(6)),
               "--text", str(outage_text(outage)), "--at", iso(day(6)))
    result = outage.cmd("reprocess", "--at", iso(day(7)))
    assert "applied: 0 address(es) changed state" in result.out
    assert {outage.state(a)[0] for a in VALID_BEFORE} == {"valid"}


def test_rollback_by_rule_undoes_what_the_rule_caused_in_the_window(outage: Ops) -> None:
    result = outage.cmd("quarantine", "rollback", "--since", "2d", "--rule", "10003",
                        "--at", iso(day(6)))
    assert "rule #10003 since 2026-11-05T09:00:00Z" in result.out
    assert "25 address(es) changed" in result.out
    assert outage.state(TRULY_GONE)[0] == "quarantine"


def test_rollback_needs_a_text_or_a_rule(outage: Ops) -> None:
    result = outage.run("quarantine", "rollback", "--db", str(outage.db), "--since", "1d")
    assert result.status == 2 and "--text" in result.err
    bad_time = outage.run("quarantine", "rollback", "--db", str(outage.db), "--since",
                          "yesterday", "--text", "1")
    assert bad_time.status == 2 and "--since" in bad_time.err
