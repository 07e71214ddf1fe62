"""``bounced explain``: every bounce, its text and what qualified it, and each state change."""

from __future__ import annotations

import json

from tests.ops.quarantine.conftest import Ops, day, iso


def test_explain_lists_bounces_texts_qualifiers_and_state_changes_in_time_order(
        ops: Ops) -> None:
    address = "story@example.org"
    ops.ingest(day(0), ("mailbox-full", address))
    ops.ingest(day(1), ("rbl-blocked", address))
    ops.ingest(day(2), ("user-unknown", address))
    ops.cmd("quarantine", "release", address, "--at", iso(day(3)))
    text_id = ops.sql("SELECT id FROM qualification WHERE text LIKE '%Mailbox full%'")[0][0]

    out = ops.cmd("explain", address).out
    lines = out.splitlines()
    assert lines[0] == f"{address}: valid, may be sent to"
    timeline = [line for line in lines if line.startswith("2026-")]
    assert [line.split("  ", 1)[1].split(":")[0] for line in timeline] == [
        "bounce #1 (message #1) failure 5.2.2",
        "state new -> erroneous",
        "bounce #2 (message #2) failure 5.7.1",
        "bounce #3 (message #3) failure 5.1.1",
        "state erroneous -> quarantine",
        "state quarantine -> valid",
    ]
    assert f"    text #{text_id} [to_qualify]: 552 5.2.2 <*>: Mailbox full" in lines
    assert "    qualified by status:5.2.2+phrase:mailboxfull: status code 5.2.2 (RFC 3463 / " \
           "SMTP reply code table); the wording of the failure class (mailboxfull)" in lines
    assert "    qualified by rule:10003: user rule #10003: " \
           "/User unknown in virtual mailbox table/" in lines
    assert timeline[-1].endswith("released by operator")


def test_explain_json_carries_the_same_timeline_for_a_machine(ops: Ops) -> None:
    address = "machine@example.org"
    ops.ingest(day(0), ("user-unknown", address))
    data = json.loads(ops.cmd("explain", address, "--json").out)
    assert data["current"]["state"] == "quarantine"
    bounce, change = data["timeline"]
    assert (bounce["type"], bounce["failure_type"], bounce["reason"], bounce["qualified_by"]) \
        == ("bounce", "hard", "User unknown", "rule:10003")
    assert bounce["text"] == ("550 5.1.1 <*>: Recipient address rejected: "
                              "User unknown in virtual mailbox table")
    assert (change["type"], change["old_state"], change["new_state"], change["bounce_id"]) == (
        "state_change", None, "quarantine", bounce["bounce_id"])


def test_explain_an_unknown_address_says_it_was_never_seen(ops: Ops) -> None:
    ops.cmd("db", "init")
    out = ops.cmd("explain", "Nobody@Example.org").out
    assert out.splitlines() == [
        "nobody@example.org: valid (never seen), may be sent to",
        "no bounce and no state change recorded",
    ]


def test_explain_shows_a_rolled_back_verdict_and_the_undo(ops: Ops) -> None:
    address = "outage@example.org"
    ops.ingest(day(0), ("user-unknown", address))
    text = ops.sql("SELECT qualification_id FROM bounces WHERE recipient = ?", (address,))[0][0]
    ops.cmd("quarantine", "rollback", "--since", iso(day(0)), "--text", str(text),
            "--at", iso(day(1)))
    lines = ops.cmd("explain", address).out.splitlines()
    window = f"rollback of text #{text} since {iso(day(0))}"
    assert f"    {iso(day(1))} {window}: hard/User unknown (rule:10003) -> " \
           "ignored/User unknown (rule:10003)" in lines
    assert lines[-1] == (f"{iso(day(1))}  state quarantine -> valid: {window}: "
                         "1 bounce(s) no longer count")
    assert lines[0] == f"{address}: valid, may be sent to"
