"""The issue's scenario end to end, answered by ``bounced check`` as a sender would ask."""

from __future__ import annotations

import json

from tests.ops.quarantine.conftest import Ops, day, iso


def check_states(ops: Ops, *addresses: str) -> dict[str, dict[str, object]]:
    result = ops.run("check", "--db", str(ops.db), "--json", *addresses)
    return {row["address"]: row for row in map(json.loads, result.out.splitlines())}


def test_a_day_of_bounces_gives_each_address_the_state_the_policy_promises(ops: Ops) -> None:
    # five soft bounces at least 24 h apart -> quarantine (Mailbox full)
    for number in range(5):
        ops.ingest(day(number), ("mailbox-full", "full@example.org"))
    # four soft bounces within one day -> erroneous, one counted error
    for hours in (0, 5, 11, 23):
        ops.ingest(day(hours / 24), ("mailbox-full", "busy@example.org"))
    # a hard bounce -> quarantine; an ARF complaint -> denylisted
    ops.ingest(day(1), ("user-unknown", "gone@example.org"))
    ops.ingest(day(1), ("arf", "angry@example.org"))
    # an allowlisted address stays deliverable whatever bounces
    ops.cmd("quarantine", "allow", "vip@example.org", "--at", iso(day(0)))
    ops.ingest(day(2), ("user-unknown", "vip@example.org"))

    assert ops.state("full@example.org") == ("quarantine", 5, 5)
    assert ops.state("busy@example.org") == ("erroneous", 1, 5)
    assert ops.state("gone@example.org") == ("quarantine", 1, 1)
    assert ops.state("angry@example.org")[0] == "denylisted"
    assert ops.state("vip@example.org")[0] == "allowlisted"
    assert ops.sql("SELECT failure_type, reason_code FROM bounces "
                   "WHERE recipient = 'vip@example.org'") == [("ignored", 25)]

    states = check_states(ops, "full@example.org", "busy@example.org", "gone@example.org",
                          "angry@example.org", "vip@example.org")
    assert {a: s["deliverable"] for a, s in states.items()} == {
        "full@example.org": False, "busy@example.org": True, "gone@example.org": False,
        "angry@example.org": False, "vip@example.org": True,
    }
    assert states["full@example.org"]["reason"] == "Mailbox full"
    assert states["full@example.org"]["since"] == iso(day(4))
    assert "Mailbox full" in states["full@example.org"]["last_bounce"]["diagnostic"]

    deliverable = ("busy@example.org", "vip@example.org", "never-seen@example.org")
    assert ops.run("check", "--db", str(ops.db), *deliverable).status == 0
    assert ops.run("check", "--db", str(ops.db), *deliverable, "full@example.org").status == 1
    assert ops.run("check", "--db", str(ops.db), "angry@example.org").status == 1

    # cleanup 31 days after the quarantine releases the Mailbox-full one only
    ops.cmd("cleanup", "--at", iso(day(4 + 31)))
    assert ops.state("full@example.org")[:2] == ("valid", 0)
    assert ops.state("gone@example.org")[0] == "quarantine"
    assert ops.state("busy@example.org")[:2] == ("valid", 0)  # counter older than 10 days
    assert ops.history("full@example.org")[-1][:2] == ("quarantine", "valid")
    released = check_states(ops, "full@example.org")["full@example.org"]
    assert (released["state"], released["deliverable"], released["reason"]) == (
        "valid", True, None)
    assert ops.run("check", "--db", str(ops.db), "full@example.org", "busy@example.org",
                   "vip@example.org").status == 0
    assert ops.run("check", "--db", str(ops.db), "gone@example.org").status == 1
