"""Rule files: the shipped defaults and an operator's own file, and the errors a bad
file gives (they must name the rule and the key, so the operator finds the line)."""

from __future__ import annotations

import pytest

from bounced.core.qualify import (
    USER_IDS,
    RuleError,
    load_default_rules,
    order_rules,
    parse_rules,
    qualify,
)
from bounced.model import FailureType, Kind, Reason, RecipientReport

GOOD = """
[[rule]]
id = 10001
pattern = 'our partner says: gone'
type = "hard"
reason = "User unknown"
priority = 5
comment = "A partner MTA's wording for a deleted account."

[[rule]]
id = 10002
pattern = 'quota'
type = "soft"
reason = 5
"""


def operator_rules(text: str, source: str = "rules.toml") -> tuple:
    """An operator's rule document, read as ``bounced rules import`` reads it."""
    return parse_rules(text, source=source, ids=USER_IDS)


def test_a_user_rule_file_loads_with_reasons_by_label_or_code() -> None:
    rules = operator_rules(GOOD)
    assert [rule.id for rule in rules] == [10001, 10002]
    first, second = rules
    assert (first.failure_type, first.reason, first.priority) == (
        FailureType.HARD, Reason.USER_UNKNOWN, 5)
    assert first.comment == "A partner MTA's wording for a deleted account."
    assert (second.reason, second.priority) == (Reason.MAILBOX_FULL, 100)


def test_user_rules_combined_with_the_defaults_take_part_in_qualifying() -> None:
    rules = order_rules((*load_default_rules(), *operator_rules(GOOD)))
    recipient = RecipientReport("jane@example.org", Kind.FAILURE, status="5.0.0")
    verdict = qualify(recipient, "550 our partner says: gone", rules=rules)
    assert verdict is not None
    assert str(verdict.qualified_by) == "rule:10001"
    assert verdict.failure_type is FailureType.HARD


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ("id = 10005\npattern = 'user (unknown'\ntype = 'hard'\nreason = 1",
         r"rule 10005: key 'pattern': invalid regular expression"),
        ("id = 10005\npattern = 'x'\ntype = 'hard'\nreason = 'Vanished'",
         r"rule 10005: key 'reason': unknown reason 'Vanished'"),
        ("id = 10005\npattern = 'x'\ntype = 'fatal'\nreason = 1",
         r"rule 10005: key 'type': unknown type 'fatal'"),
        ("id = 10005\npattern = 'x'\nreason = 1", r"rule 10005: key 'type': missing"),
        ("id = 10005\npatern = 'x'\npattern = 'x'\ntype = 'hard'\nreason = 1",
         r"rule 10005: key 'patern': unknown key"),
        ("id = 10005\npattern = 'x?'\ntype = 'hard'\nreason = 1",
         r"rule 10005: key 'pattern': matches the empty text"),
        ("id = 10005\npattern = 'x'\ntype = 'hard'\nreason = 1\npriority = 'high'",
         r"rule 10005: key 'priority': must be an integer"),
        ("id = 10005\npattern = 'x'\ntype = 'hard'\nreason = 1\nstatus = '5.(1'",
         r"rule 10005: key 'status': invalid regular expression"),
        ("id = 'ten'\npattern = 'x'\ntype = 'hard'\nreason = 1",
         r"rule ten: key 'id': must be a positive integer"),
        ("id = 42\npattern = 'x'\ntype = 'hard'\nreason = 1",
         r"rule 42: key 'id': must be in 10000\.\."),
    ],
)
def test_a_bad_rule_names_its_id_and_key(body: str, fragment: str) -> None:
    with pytest.raises(RuleError, match=fragment):
        operator_rules(f"[[rule]]\n{body}\n")


def test_a_duplicate_id_in_one_file_is_an_error() -> None:
    rule = "[[rule]]\nid = 10009\npattern = 'x'\ntype = 'soft'\nreason = 20\n"
    with pytest.raises(RuleError, match="rule 10009: key 'id': duplicate id"):
        operator_rules(rule + rule)


def test_a_file_that_is_not_toml_is_reported_with_its_path() -> None:
    with pytest.raises(RuleError, match="not valid TOML") as error:
        operator_rules("[[rule]\nid = 1", source="/etc/bounced/rules.toml")
    assert "/etc/bounced/rules.toml" in str(error.value)


def test_default_ids_must_stay_below_the_user_range() -> None:
    rule = "[[rule]]\nid = 10000\npattern = 'x'\ntype = 'soft'\nreason = 20\n"
    with pytest.raises(RuleError, match=r"rule 10000: key 'id': must be in 1\.\.9999"):
        parse_rules(rule, ids=range(1, 10_000))


def test_the_default_rules_are_loaded_once_and_are_all_valid_and_documented() -> None:
    rules = load_default_rules()
    assert rules is load_default_rules()
    assert len(rules) >= 10
    assert all(1 <= rule.id <= 9999 for rule in rules)
    assert len({rule.id for rule in rules}) == len(rules)
    assert all(rule.comment for rule in rules), "every default rule says what it describes"
    assert all(rule.source for rule in rules), "every default rule says where it comes from"
    assert list(rules) == sorted(rules, key=lambda rule: (rule.priority, rule.id))
