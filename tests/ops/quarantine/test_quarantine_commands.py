"""``bounced quarantine list|show|release|allow|deny|import|export`` and ``check`` output."""

from __future__ import annotations

import csv
import io
import json
import sqlite3
import time
from typing import Any

import psycopg

from tests.harness.database import is_postgresql
from tests.ops.quarantine.conftest import Ops, day, iso


def quarantined(ops: Ops, *addresses: str) -> None:
    ops.ingest(day(0), *(("user-unknown", address) for address in addresses))


def test_release_returns_a_quarantined_address_to_valid_and_says_who_did_it(ops: Ops) -> None:
    quarantined(ops, "back@example.org")
    result = ops.cmd("quarantine", "release", "Back@Example.org", "--note", "ticket 42",
                     "--at", iso(day(1)))
    assert "back@example.org: quarantine -> valid" in result.out
    assert ops.state("back@example.org") == ("valid", 0, None)
    assert ops.sql("SELECT old_state, new_state, cause, bounce_id, at FROM address_events "
                   "WHERE address = 'back@example.org' ORDER BY id")[-1] == (
        "quarantine", "valid", "released by operator: ticket 42", None, iso(day(1)))
    assert ops.run("check", "--db", str(ops.db), "back@example.org").status == 0


def test_releasing_twice_writes_one_history_line(ops: Ops) -> None:
    quarantined(ops, "twice@example.org")
    ops.cmd("quarantine", "release", "twice@example.org")
    again = ops.cmd("quarantine", "release", "twice@example.org")
    assert "already valid, unchanged" in again.out
    assert [row[:2] for row in ops.history("twice@example.org")] == [
        (None, "quarantine"), ("quarantine", "valid")]


def test_allowlisted_address_errors_are_ignored_with_reason_25(ops: Ops) -> None:
    quarantined(ops, "vip@example.org")
    ops.cmd("quarantine", "allow", "vip@example.org", "--at", iso(day(1)))
    ops.ingest(day(2), ("user-unknown", "vip@example.org"))
    ops.ingest(day(3), ("arf", "vip@example.org"))
    assert ops.state("vip@example.org")[0] == "allowlisted"
    assert ops.sql("SELECT failure_type, reason_code FROM bounces WHERE recipient = ? "
                   "ORDER BY id", ("vip@example.org",))[1:] == [("ignored", 25), ("ignored", 25)]
    assert ops.history("vip@example.org")[-1][2] == "allowlisted by operator"


def test_deny_puts_an_address_on_the_suppression_list_for_good(ops: Ops) -> None:
    ops.cmd("quarantine", "deny", "spamtrap@example.org", "--at", iso(day(0)))
    assert ops.sql("SELECT address, state, reason, since FROM suppression_list") == [
        ("spamtrap@example.org", "denylisted", "Denylisted address", iso(day(0)))]
    ops.cmd("cleanup", "--at", iso(day(400)))
    assert ops.state("spamtrap@example.org")[0] == "denylisted"
    assert ops.run("check", "--db", str(ops.db), "spamtrap@example.org").status == 1


def test_list_shows_quarantined_and_denylisted_addresses_by_default(ops: Ops) -> None:
    quarantined(ops, "q@example.org")
    ops.ingest(day(0), ("mailbox-full", "soft@example.org"))
    ops.cmd("quarantine", "deny", "d@example.org")
    table = ops.cmd("quarantine", "list")
    assert table.lines_with("@") and {line.split()[0] for line in table.lines_with("@")} == {
        "q@example.org", "d@example.org"}
    erroneous = ops.cmd("quarantine", "list", "--state", "erroneous", "--json")
    assert [json.loads(line)["address"] for line in erroneous.out.splitlines()] == [
        "soft@example.org"]


def test_show_prints_the_full_history(ops: Ops) -> None:
    quarantined(ops, "h@example.org")
    ops.cmd("quarantine", "release", "h@example.org", "--at", iso(day(1)))
    ops.cmd("quarantine", "deny", "h@example.org", "--at", iso(day(2)))
    shown = ops.cmd("quarantine", "show", "h@example.org")
    assert shown.out.startswith("h@example.org: denylisted, Denylisted address")
    causes = [line for line in shown.out.splitlines() if line.startswith("2026-")]
    assert len(causes) == 3
    assert "hard bounce: User unknown (rule:10003)" in causes[0]
    assert "released by operator" in causes[1] and "denylisted by operator" in causes[2]
    data = json.loads(ops.cmd("quarantine", "show", "h@example.org", "--json").out)
    assert [e["new_state"] for e in data["history"]] == ["quarantine", "valid", "denylisted"]


def test_import_denylists_good_lines_and_reports_bad_ones_by_number(ops: Ops) -> None:
    ops.cmd("quarantine", "allow", "friend@example.org")
    ops.cmd("quarantine", "deny", "known@example.org")
    source = ops.directory / "crm-export.csv"
    source.write_text(
        "email,name\n"                      # 1 header
        "one@example.org,One\n"             # 2
        "not an address,Two\n"              # 3 bad
        "\n"                                # 4 blank
        "<Three@Example.ORG>,Three\n"       # 5
        "one@example.org,One again\n"       # 6 duplicate
        "friend@example.org,Friend\n"       # 7 allowlisted: kept
        "known@example.org,Known\n"         # 8 already denylisted
        ",Nobody\n"                         # 9 bad
        "x@nodot\n",                        # 10 bad
        encoding="utf-8",
    )
    result = ops.run("quarantine", "import", str(source), "--db", str(ops.db))
    assert result.status == 1
    assert [line.split(": ")[0] for line in result.err.splitlines()] == [
        f"{source}:3", f"{source}:9", f"{source}:10"]
    assert "denylisted 2, already denylisted 1, kept on the allowlist 1, bad line(s) 3" \
        in result.out
    assert ops.sql("SELECT address FROM addresses WHERE state = 'denylisted' "
                   "ORDER BY address") == [("known@example.org",), ("one@example.org",),
                                           ("three@example.org",)]
    assert ops.history("three@example.org") == [
        (None, "denylisted", "denylisted by operator: import of crm-export.csv line 5")]
    assert ops.state("friend@example.org")[0] == "allowlisted"


def test_import_dry_run_changes_nothing(ops: Ops) -> None:
    source = ops.directory / "list.csv"
    source.write_text("a@example.org\nb@example.org\n", encoding="utf-8")
    result = ops.cmd("quarantine", "import", str(source), "--dry-run")
    assert "2 address(es) to denylist, 0 bad line(s)" in result.out
    assert ops.sql("SELECT count(*) FROM addresses") == [(0,)]


def test_export_is_the_suppression_list_as_csv_or_json(ops: Ops) -> None:
    quarantined(ops, "q@example.org")
    ops.cmd("quarantine", "deny", "d@example.org", "--at", iso(day(3)))
    ops.ingest(day(0), ("mailbox-full", "soft@example.org"))
    rows = list(csv.reader(io.StringIO(ops.cmd("quarantine", "export").out)))
    assert rows == [
        ["address", "state", "reason", "since"],
        ["d@example.org", "denylisted", "Denylisted address", iso(day(3))],
        ["q@example.org", "quarantine", "User unknown", iso(day(0))],
    ]
    data = json.loads(ops.cmd("quarantine", "export", "--format", "json").out)
    assert [row["address"] for row in data] == ["d@example.org", "q@example.org"]
    assert data[1] == {"address": "q@example.org", "state": "quarantine",
                       "reason": "User unknown", "since": iso(day(0))}


def test_check_prints_state_reason_since_and_last_bounce_text(ops: Ops) -> None:
    quarantined(ops, "gone@example.org")
    result = ops.run("check", "--db", str(ops.db), "gone@example.org", "new@example.org")
    assert result.status == 1
    gone, new, why = result.lines_with("@example.org")
    assert gone.split() == ["gone@example.org", "quarantine", "NO", "User", "unknown",
                            iso(day(0)), "1", iso(day(0))]
    assert new.split() == ["new@example.org", "valid", "(never", "seen)", "yes", "-", "-", "0",
                           "-"]
    assert why == ("gone@example.org: 550 5.1.1 <gone@example.org>: Recipient address "
                   "rejected: User unknown in virtual mailbox table")


def test_read_commands_refuse_a_missing_database_with_status_2(ops: Ops) -> None:
    missing = str(ops.directory / "typo.db")
    for args in (("check", "a@example.org"), ("quarantine", "export"),
                 ("quarantine", "list"), ("explain", "a@example.org")):
        result = ops.run(*args, "--db", missing)
        assert result.status == 2 and "no such database file" in result.err, args
    assert not (ops.directory / "typo.db").exists()


def test_read_commands_refuse_a_file_that_is_not_a_database(ops: Ops) -> None:
    junk = ops.directory / "notes.db"
    junk.write_text("this is not SQLite\n" * 100, encoding="utf-8")
    result = ops.run("check", "a@example.org", "--db", str(junk))
    assert result.status == 2 and "not a usable bounced database" in result.err


def test_check_answers_while_another_writer_holds_the_lock(ops: Ops) -> None:
    quarantined(ops, "q@example.org")
    # the daemon in the middle of a batch:
    writer: Any = (psycopg.connect(str(ops.db), autocommit=True) if is_postgresql(ops.db)
                   else sqlite3.connect(ops.db, isolation_level=None))
    writer.execute("BEGIN" if is_postgresql(ops.db) else "BEGIN IMMEDIATE")
    writer.execute("UPDATE addresses SET error_count = 99")
    try:
        started = time.monotonic()
        result = ops.run("check", "--db", str(ops.db), "--json", "q@example.org")
        assert time.monotonic() - started < 5
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    assert result.status == 1
    assert json.loads(result.out)["error_count"] == 1   # the last committed state


def test_import_reads_standard_input_with_dash(ops: Ops, monkeypatch) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("a@example.org\nb@example.org\n"))
    result = ops.cmd("quarantine", "import", "-")
    assert "denylisted 2" in result.out
    assert ops.history("b@example.org")[0][2] == "denylisted by operator: import of stdin line 2"
