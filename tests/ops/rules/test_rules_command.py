"""``bounced rules``: the qualification queue and rule management, end to end.

Bounces go in through ``bounced ingest`` (sample files and DSNs with chosen texts), the
commands run through ``bounced.cli.main``, and the outcome is read back with SQL on the
public schema, the way an operator would check it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.paths import DATA, ROOT

MTA_LAB = DATA / "mta-lab"
DEFAULT_RULES = ROOT / "bounced" / "data" / "rules.toml"
#: Wordings no shipped rule knows, so that suggestions must come from elsewhere.
FROB = "550 5.0.0 the quantum frobnicator swallowed the parcel for <{address}>"
FROB_LATER = "451 4.0.0 the quantum frobnicator swallowed the parcel today"
FROB_OTHER = "550 5.0.0 quantum frobnicator swallowed this parcel again"


@pytest.fixture
def ingest(bounced, db: Path) -> Callable[..., str]:
    def run(*paths: Path) -> str:
        result = bounced(["ingest", "--db", str(db), *map(str, paths)])
        assert result.status == 0, result.out + result.err
        return result.out

    return run


@pytest.fixture
def rules(bounced, db: Path) -> Callable[..., object]:
    """``rules("queue", "--json")`` runs ``bounced rules queue --db DB --json``."""

    def run(action: str, *args: str):
        return bounced(["rules", action, "--db", str(db), *args])

    return run


def text_id(sql, text_like: str) -> int:
    rows = sql("SELECT id FROM qualification WHERE text LIKE ?", (text_like,))
    assert len(rows) == 1, rows
    return int(rows[0][0])


def queue_json(rules, *args: str) -> list[dict]:
    result = rules("queue", "--json", *args)
    assert result.status == 0, result.err
    return [json.loads(line) for line in result.out.splitlines()]


# --------------------------------------------------------------------------- queue


def test_queue_lists_waiting_texts_by_occurrences_with_the_current_verdict(ingest, rules, sql):
    ingest(*sorted(MTA_LAB.glob("*.eml")))
    items = queue_json(rules, "--limit", "100")
    expected = sql("SELECT id, occurrences FROM to_qualify")
    assert [(item["id"], item["occurrences"]) for item in items] == expected
    assert [item["occurrences"] for item in items] == sorted(
        (item["occurrences"] for item in items), reverse=True)
    unknown = next(item for item in items if "User unknown in virtual" in item["text"])
    qualified_by, = sql("SELECT qualified_by FROM qualification WHERE id = ?", (unknown["id"],))[0]
    assert qualified_by.startswith("status:5.1.1+")  # the code, backed by stage and wording
    assert unknown["current"]["qualified_by"] == qualified_by
    assert unknown["suggested"] == {"type": "hard", "reason": 1, "basis": "status code 5.1.1"}


def test_queue_text_output_shows_suggestion_and_the_command_to_accept_it(
        ingest, rules, dsn_file, db):
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    result = rules("queue")
    assert result.status == 0
    assert "the quantum frobnicator swallowed the parcel for <*>" in result.out
    assert "suggested: soft/Refused (20) - status code 550" in result.out
    assert f"bounced rules qualify --db {db} " in result.out


def test_a_similar_operator_decision_beats_the_status_code(ingest, rules, sql, dsn_file):
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    first = text_id(sql, "%frobnicator swallowed the parcel for%")
    assert rules("qualify", str(first), "--type", "hard", "--reason", "User unknown").status == 0
    ingest(dsn_file("b@example.net", "5.0.0", FROB_OTHER))
    second = text_id(sql, "%swallowed this parcel again%")
    item, = (item for item in queue_json(rules) if item["id"] == second)
    assert item["current"]["qualified_by"] == "status:550"  # what the code table says
    assert item["suggested"]["type"] == "hard"
    assert item["suggested"]["reason"] == 1
    assert item["suggested"]["basis"].startswith(f"like text #{first} (similarity ")


def test_a_transient_code_turns_a_hard_suggestion_soft(ingest, rules, sql, dsn_file):
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    first = text_id(sql, "%frobnicator swallowed the parcel for%")
    rules("qualify", str(first), "--type", "hard", "--reason", "1")
    ingest(dsn_file("c@example.net", "4.0.0", FROB_LATER, action="failed"))
    later = text_id(sql, "%parcel today%")
    item, = (item for item in queue_json(rules) if item["id"] == later)
    assert (item["suggested"]["type"], item["suggested"]["reason"]) == ("soft", 1)
    assert "transient code" in item["suggested"]["basis"]


def test_an_empty_queue_says_so(rules):
    result = rules("queue")
    assert (result.status, result.out) == (0, "nothing to qualify\n")


# --------------------------------------------------------------------------- qualify


def test_keep_decides_later_bounces_of_the_text_and_leaves_the_queue(
        ingest, rules, sql, dsn_file):
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    ident = text_id(sql, "%frobnicator%")
    result = rules("qualify", str(ident), "--type", "hard", "--reason", "User unknown")
    assert result.status == 0, result.err
    assert "to_qualify soft/Refused (20) -> keep hard/User unknown (1)" in result.out
    assert sql("SELECT status, failure_type, reason_code FROM qualification WHERE id = ?",
               (ident,)) == [("keep", "hard", 1)]
    assert sql("SELECT count(*) FROM to_qualify WHERE id = ?", (ident,)) == [(0,)]
    ingest(dsn_file("b@example.net", "5.0.0", FROB.format(address="b@example.net")))
    assert sql("SELECT failure_type, reason_code, qualified_by FROM bounces "
               "WHERE recipient = 'b@example.net'") == [("hard", 1, f"table:{ident}")]
    assert sql("SELECT state FROM addresses WHERE address = 'b@example.net'") == [
        ("quarantine",)]


def test_ignore_keeps_later_bounces_of_the_text_from_counting(ingest, rules, sql, dsn_file):
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    ident = text_id(sql, "%frobnicator%")
    assert rules("qualify", str(ident), "--ignore").status == 0
    assert sql("SELECT status, failure_type, reason_code FROM qualification WHERE id = ?",
               (ident,)) == [("ignore", "ignored", 20)]
    ingest(dsn_file("b@example.net", "5.0.0", FROB.format(address="b@example.net")))
    assert sql("SELECT failure_type FROM bounces WHERE recipient = 'b@example.net'") == [
        ("ignored",)]
    assert sql("SELECT count(*) FROM addresses WHERE address = 'b@example.net' "
               "AND state <> 'valid'") == [(0,)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["999", "--ignore"], "no text #999"),
        (["1", "--type", "hard"], "keep needs --type and --reason"),
        (["1", "--type", "undefined", "--reason", "1"], "'undefined' is not a decision"),
    ],
)
def test_impossible_decisions_are_refused_and_change_nothing(
        ingest, rules, sql, dsn_file, args, message):
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    before = sql("SELECT * FROM qualification")
    result = rules("qualify", *args)
    assert result.status == 1
    assert message in result.err
    assert sql("SELECT * FROM qualification") == before


def test_an_unknown_type_or_reason_is_a_usage_error(rules):
    assert rules("qualify", "1", "--type", "fatal", "--reason", "1").status == 2
    assert rules("qualify", "1", "--type", "hard", "--reason", "Gone fishing").status == 2


# --------------------------------------------------------------------------- rules


def test_user_rules_are_numbered_from_10000_and_decide_later_bounces(
        ingest, rules, sql, dsn_file):
    first = rules("add", "quantum frobnicator", "--type", "hard", "--reason", "1",
                  "--priority", "5", "--comment", "Frob MTA: mailbox gone")
    second = rules("add", "flux capacitor", "--type", "soft", "--reason", "Unreachable")
    assert (first.status, second.status) == (0, 0)
    assert sql("SELECT id, pattern, failure_type, reason_code, priority, origin, enabled, "
               "comment FROM rules WHERE origin = 'user' ORDER BY id") == [
        (10000, "quantum frobnicator", "hard", 1, 5, "user", 1, "Frob MTA: mailbox gone"),
        (10001, "flux capacitor", "soft", 3, 100, "user", 1, ""),
    ]
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    assert sql("SELECT failure_type, reason_code, qualified_by FROM bounces") == [
        ("hard", 1, "rule:10000")]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [("user (unknown", "invalid regular expression"), ("x?", "matches the empty text")],
)
def test_an_unusable_pattern_is_refused_and_nothing_is_stored(rules, sql, pattern, message):
    result = rules("add", pattern, "--type", "hard", "--reason", "1")
    assert result.status == 1
    assert message in result.err
    assert sql("SELECT count(*) FROM rules WHERE origin = 'user'") == [(0,)]


def test_list_shows_rules_in_the_order_they_are_tried(rules, sql):
    rules("add", "quantum frobnicator", "--type", "hard", "--reason", "1", "--priority", "1")
    result = rules("list", "--json")
    listed = [json.loads(line) for line in result.out.splitlines()]
    assert [rule["id"] for rule in listed] == [
        row[0] for row in sql("SELECT id FROM rules ORDER BY priority, id")]
    assert listed[0]["id"] == 10000
    table = rules("list", "--user")
    assert table.out.splitlines()[2].split()[:6] == [
        "10000", "1", "user", "yes", "hard", "User"]


def test_a_disabled_rule_no_longer_decides_and_stays_disabled_after_reopening(
        ingest, rules, sql, dsn_file, bounced, db):
    rules("add", "quantum frobnicator", "--type", "hard", "--reason", "1")
    default_id = sql("SELECT min(id) FROM rules WHERE origin = 'default'")[0][0]
    assert rules("disable", "10000").status == 0
    assert rules("disable", str(default_id)).status == 0
    bounced(["db", "init", "--db", str(db)])  # reopen: defaults are reseeded
    assert sql("SELECT id, enabled FROM rules WHERE id IN (?, 10000) ORDER BY id",
               (default_id,)) == [(default_id, 0), (10000, 0)]
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    assert sql("SELECT qualified_by FROM bounces") == [("status:550",)]
    assert rules("enable", "10000").status == 0
    assert rules("disable", "4242").status == 1


def test_rules_test_agrees_with_what_ingest_records(ingest, rules, sql, dsn_file):
    rules("add", "quantum frobnicator", "--type", "hard", "--reason", "1")
    for path in sorted(MTA_LAB.glob("postfix-0*.eml")):
        ingest(path)
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    rows = sql("SELECT DISTINCT diagnostic, status, smtp_command, failure_type, reason_code, "
               "qualified_by FROM bounces WHERE kind = 'failure' AND diagnostic <> ''")
    assert len(rows) >= 5
    for diagnostic, status, command, failure_type, reason_code, qualified_by in rows:
        stage = ["--command", command] if command else []
        result = rules("test", diagnostic, "--status", status, *stage)
        assert result.status == 0, result.err
        verdict = next(line for line in result.out.splitlines() if line.startswith("verdict:"))
        assert verdict.endswith(f"({reason_code}) by {qualified_by}"), (diagnostic, verdict)
        assert f" {failure_type}/" in verdict


def test_rules_test_names_the_step_the_deciding_rule_and_the_shadowed_ones(rules):
    rules("add", "quantum frobnicator", "--type", "hard", "--reason", "1", "--priority", "1")
    rules("add", "frobnicator", "--type", "soft", "--reason", "20", "--priority", "2")
    result = rules("test", FROB.format(address="x@example.net"))
    assert "step:       2. processing rule" in result.out
    assert "rule:       10000 priority 1: quantum frobnicator" in result.out
    assert "matching:   10000, 10001 (the first one decides)" in result.out
    assert "normalized: 550 5.0.0 the quantum frobnicator swallowed the parcel for <*>" \
        in result.out
    fallback = rules("test", "554 the frobulator is sad")
    assert "step:       3. shipped knowledge: status code" in fallback.out
    assert "verdict:    soft/Refused (20) by status:554" in fallback.out


def test_rules_test_reports_the_operators_table_decision_first(ingest, rules, sql, dsn_file):
    ingest(dsn_file("a@example.net", "5.0.0", FROB.format(address="a@example.net")))
    ident = text_id(sql, "%frobnicator%")
    rules("qualify", str(ident), "--type", "soft", "--reason", "Mailbox full")
    result = rules("test", FROB.format(address="other@example.org"))
    assert f"table:      #{ident} status keep" in result.out
    assert f"verdict:    soft/Mailbox full (5) by table:{ident}" in result.out
    assert "step:       1. qualification table" in result.out


# --------------------------------------------------------------------------- export/import


def _user_rules(db: Path) -> list[tuple]:
    from tests.conftest import query  # the operator's view of the table

    return query(db, "SELECT id, pattern, failure_type, reason_code, priority, enabled, "
                     "comment FROM rules WHERE origin = 'user' ORDER BY id")


def test_export_then_import_moves_user_rules_to_another_instance(bounced, tmp_path, db):
    other = tmp_path / "other.db"
    for args in (["quantum frobnicator", "--type", "hard", "--reason", "1", "--comment",
                  "it's \"quoted\" and\nmultiline"],
                 [r"flux\s+capacitor'", "--type", "soft", "--reason", "3", "--priority", "7"]):
        assert bounced(["rules", "add", "--db", str(db), *args]).status == 0
    bounced(["rules", "disable", "--db", str(db), "10001"])
    exported = tmp_path / "rules.toml"
    assert bounced(["rules", "export", "--db", str(db), "-o", str(exported)]).status == 0
    result = bounced(["rules", "import", "--db", str(other), str(exported)])
    assert result.status == 0, result.err
    assert "2 rule(s) imported" in result.out
    assert _user_rules(other) == _user_rules(db)
    assert [row[5] for row in _user_rules(other)] == [1, 0]
    again = bounced(["rules", "import", "--db", str(other), str(exported)])
    assert "rule 10000: unchanged" in again.out
    assert "0 rule(s) imported, 2 left as they were" in again.out
    assert _user_rules(other) == _user_rules(db)


def test_importing_the_shipped_defaults_never_overwrites_user_rules(bounced, db, sql):
    bounced(["rules", "add", "--db", str(db), "quantum frobnicator", "--type", "hard",
             "--reason", "1"])
    defaults_before = sql("SELECT * FROM rules WHERE origin = 'default' ORDER BY id")
    users_before = sql("SELECT * FROM rules WHERE origin = 'user' ORDER BY id")
    result = bounced(["rules", "import", "--db", str(db), str(DEFAULT_RULES)])
    assert result.status == 0, result.err
    shipped = len(re.findall(r"^\[\[rule\]\]", DEFAULT_RULES.read_text("utf-8"), re.M))
    assert result.out.count("skipped (shipped default, never imported)") == shipped
    assert f"0 rule(s) imported, {shipped} left as they were" in result.out
    assert sql("SELECT * FROM rules WHERE origin = 'user' ORDER BY id") == users_before
    assert sql("SELECT * FROM rules WHERE origin = 'default' ORDER BY id") == defaults_before


def test_a_different_rule_with_a_taken_id_is_added_under_a_new_id_unless_replace(
        bounced, tmp_path, db, sql):
    incoming = tmp_path / "in.toml"
    incoming.write_text(
        "[[rule]]\nid = 10000\ntype = \"soft\"\nreason = \"Refused\"\n"
        "pattern = '''flux capacitor'''\n", encoding="utf-8")
    bounced(["rules", "add", "--db", str(db), "quantum frobnicator", "--type", "hard",
             "--reason", "1"])
    result = bounced(["rules", "import", "--db", str(db), str(incoming)])
    assert "rule 10000: added under a new id as 10001 (id 10000 is a different rule here)" \
        in result.out
    assert sql("SELECT id, pattern FROM rules WHERE origin = 'user' ORDER BY id") == [
        (10000, "quantum frobnicator"), (10001, "flux capacitor")]
    sql_before = sql("SELECT * FROM rules")
    dry = bounced(["rules", "import", "--db", str(db), "--replace", "--dry-run",
                   str(incoming)])
    assert "dry run" in dry.out
    assert sql("SELECT * FROM rules") == sql_before
    # identical content exists as 10001: nothing to replace, nothing duplicated
    replaced = bounced(["rules", "import", "--db", str(db), "--replace", str(incoming)])
    assert "rule 10000: unchanged as 10001" in replaced.out
    incoming.write_text(incoming.read_text().replace("flux", "warp"), encoding="utf-8")
    bounced(["rules", "import", "--db", str(db), "--replace", str(incoming)])
    assert sql("SELECT id, pattern FROM rules WHERE origin = 'user' ORDER BY id") == [
        (10000, "warp capacitor"), (10001, "flux capacitor")]


def test_an_invalid_rule_file_imports_nothing(bounced, tmp_path, db, sql):
    bad = tmp_path / "bad.toml"
    bad.write_text(
        "[[rule]]\nid = 10005\ntype = \"soft\"\nreason = 20\npattern = 'fine'\n\n"
        "[[rule]]\nid = 10006\ntype = \"soft\"\nreason = 20\npattern = 'broken ('\n",
        encoding="utf-8")
    result = bounced(["rules", "import", "--db", str(db), str(bad)])
    assert result.status == 1
    assert "rule 10006: key 'pattern'" in result.err
    assert sql("SELECT count(*) FROM rules WHERE origin = 'user'") == [(0,)]


def test_rule_conditions_survive_add_export_and_import(bounced, tmp_path, db, sql):
    other = tmp_path / "other.db"
    assert bounced(["rules", "add", "--db", str(db), "quantum frobnicator", "--type", "hard",
                    "--reason", "1", "--status", r"5\.0\.0", "--command", "RCPT"]).status == 0
    exported = tmp_path / "rules.toml"
    bounced(["rules", "export", "--db", str(db), "-o", str(exported)])
    assert "status = '''5\\.0\\.0'''" in exported.read_text()
    assert bounced(["rules", "import", "--db", str(other), str(exported)]).status == 0
    from tests.conftest import query

    assert query(other, "SELECT id, status, command FROM rules WHERE origin = 'user'") == [
        (10000, r"5\.0\.0", "RCPT")]
    assert sql("SELECT status, command FROM rules WHERE id = 10000") == [(r"5\.0\.0", "RCPT")]


def test_a_conditional_rule_decides_only_when_its_conditions_hold(rules):
    rules("add", "quantum frobnicator", "--type", "hard", "--reason", "1", "--status",
          r"5\.0\.0")
    text = FROB.format(address="x@example.net")
    assert "by rule:10000" in rules("test", text).out
    assert "by rule:10000" not in rules("test", text, "--status", "5.7.1").out


def test_qualified_texts_move_to_another_instance_as_exact_rules(
        bounced, tmp_path, db, sql, dsn_file):
    other = tmp_path / "other.db"
    diagnostic = FROB.format(address="a@example.net") + " (ticket #42) [x]"
    bounced(["ingest", "--db", str(db), str(dsn_file("a@example.net", "5.0.0", diagnostic))])
    ident = text_id(sql, "%frobnicator%")
    bounced(["rules", "qualify", "--db", str(db), str(ident), "--type", "hard", "--reason", "1"])
    exported = tmp_path / "rules.toml"
    bounced(["rules", "export", "--db", str(db), "--texts", "-o", str(exported)])
    assert bounced(["rules", "import", "--db", str(other), str(exported)]).status == 0
    from tests.conftest import query

    assert query(other, "SELECT priority, failure_type, reason_code, comment FROM rules "
                        "WHERE origin = 'user'") == [
        (1, "hard", 1, f"qualified text #{ident} (keep)")]
    # on the other instance, the same text is decided by that rule, a longer one is not
    bounced(["ingest", "--db", str(other), str(dsn_file("b@example.net", "5.0.0",
                                                         diagnostic.replace("a@", "b@")))])
    bounced(["ingest", "--db", str(other), str(dsn_file("c@example.net", "5.0.0",
                                                         diagnostic + " extra"))])
    assert query(other, "SELECT recipient, failure_type, qualified_by FROM bounces "
                        "ORDER BY id") == [("b@example.net", "hard", "rule:10000"),
                                           ("c@example.net", "soft", "status:550")]
