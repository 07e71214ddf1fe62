"""The qualification order of docs/qualification.md, step by step, with small hand-made rule sets so
that each test shows one decision and nothing else."""

from __future__ import annotations

import pytest

from bounced.core.qualify import match_rule, qualify
from bounced.model import (
    Action,
    FailureType,
    Kind,
    Qualification,
    QualificationStatus,
    QualifiedBy,
    QualifiedBySource,
    Reason,
    RecipientReport,
    Rule,
    TableEntry,
)

UNKNOWN_USER_RULE = Rule(
    id=10_001, pattern=r"user unknown", failure_type=FailureType.HARD,
    reason=Reason.USER_UNKNOWN,
)
FULL_RULE = Rule(
    id=10_002, pattern=r"mailbox full", failure_type=FailureType.SOFT,
    reason=Reason.MAILBOX_FULL,
)
RULES = (UNKNOWN_USER_RULE, FULL_RULE)


def failure(status: str | None = None, reply_code: str | None = None,
            action: Action | None = Action.FAILED, command: str | None = None) -> RecipientReport:
    return RecipientReport(
        address="jane@example.org", kind=Kind.FAILURE, action=action, status=status,
        reply_code=reply_code, smtp_command=command,
    )


def entry(status: QualificationStatus, failure_type: FailureType = FailureType.SOFT,
          reason: Reason = Reason.REFUSED) -> TableEntry:
    return TableEntry(id=7, status=status, failure_type=failure_type, reason=reason)


def test_keep_entry_wins_over_a_matching_rule() -> None:
    verdict = qualify(
        failure("5.1.1"), "550 5.1.1 <*>: User unknown",
        entry=entry(QualificationStatus.KEEP, FailureType.SOFT, Reason.MAILBOX_FULL),
        rules=RULES,
    )
    assert verdict == Qualification(
        FailureType.SOFT, Reason.MAILBOX_FULL, QualifiedBy(QualifiedBySource.TABLE, "7")
    )


def test_ignore_entry_makes_the_failure_ignored_with_the_entry_reason() -> None:
    verdict = qualify(
        failure("5.1.1"), "550 5.1.1 <*>: User unknown",
        entry=entry(QualificationStatus.IGNORE, FailureType.HARD, Reason.USER_UNKNOWN),
        rules=RULES,
    )
    assert verdict == Qualification(
        FailureType.IGNORED, Reason.USER_UNKNOWN, QualifiedBy(QualifiedBySource.TABLE, "7")
    )


def test_to_qualify_entry_falls_through_to_the_rules() -> None:
    verdict = qualify(
        failure("5.1.1"), "550 5.1.1 <*>: User unknown",
        entry=entry(QualificationStatus.TO_QUALIFY, FailureType.UNDEFINED, Reason.NOT_DEFINED),
        rules=RULES,
    )
    assert verdict == Qualification(
        FailureType.HARD, Reason.USER_UNKNOWN, QualifiedBy(QualifiedBySource.RULE, "10001")
    )


def test_a_rule_wins_over_the_status_code() -> None:
    # 5.1.1 alone would say hard / User unknown: the words say the mailbox is full.
    verdict = qualify(failure("5.1.1", "550"), "550 5.1.1 mailbox full", rules=RULES)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (FailureType.SOFT, Reason.MAILBOX_FULL)
    assert str(verdict.qualified_by) == "rule:10002"


def test_rules_are_searched_case_insensitively_anywhere_in_the_text() -> None:
    verdict = qualify(failure(), "host #xxx# said: 550 USER UNKNOWN (in reply to RCPT TO)",
                      rules=RULES)
    assert verdict is not None and verdict.reason is Reason.USER_UNKNOWN


def test_the_status_code_decides_when_no_rule_matches() -> None:
    verdict = qualify(failure("5.1.1", "550"), "550 5.1.1 #xxx#; not found", rules=RULES)
    assert verdict == Qualification(
        FailureType.HARD, Reason.USER_UNKNOWN, QualifiedBy(QualifiedBySource.STATUS, "5.1.1")
    )


def test_the_reply_code_decides_when_the_enhanced_code_is_generic() -> None:
    verdict = qualify(failure("5.0.0", "552"), "552 sorry", rules=RULES)
    assert verdict == Qualification(
        FailureType.SOFT, Reason.MAILBOX_FULL, QualifiedBy(QualifiedBySource.STATUS, "552")
    )


def test_without_codes_in_the_report_the_codes_written_in_the_text_decide() -> None:
    verdict = qualify(failure(), "550 5.1.1 #xxx#; not found", rules=RULES)
    assert verdict == Qualification(
        FailureType.HARD, Reason.USER_UNKNOWN, QualifiedBy(QualifiedBySource.STATUS, "5.1.1")
    )


def test_the_report_codes_win_over_codes_written_in_the_text() -> None:
    verdict = qualify(failure("5.2.2"), "550 5.1.1 #xxx#; not found", rules=RULES)
    assert verdict is not None and verdict.reason is Reason.MAILBOX_FULL


def test_nothing_known_gives_undefined_not_defined_by_none() -> None:
    verdict = qualify(failure("5.0.0"), "something went wrong", rules=RULES)
    assert verdict == Qualification(
        FailureType.UNDEFINED, Reason.NOT_DEFINED, QualifiedBy(QualifiedBySource.NONE)
    )
    assert str(verdict.qualified_by) == "none"


def test_an_empty_text_with_no_code_is_undefined() -> None:
    verdict = qualify(failure(), "", rules=RULES)
    assert verdict is not None and verdict.failure_type is FailureType.UNDEFINED


def test_lower_priority_runs_first_then_lower_id() -> None:
    late = Rule(id=1, pattern="refused", failure_type=FailureType.SOFT,
                reason=Reason.REFUSED, priority=50)
    early = Rule(id=9, pattern="refused", failure_type=FailureType.SOFT,
                 reason=Reason.UNREACHABLE, priority=10)
    same_priority_higher_id = Rule(id=12, pattern="refused", failure_type=FailureType.HARD,
                                   reason=Reason.REFUSED, priority=10)
    rules = (late, same_priority_higher_id, early)
    assert match_rule("connection refused", rules) is early


def test_a_disabled_rule_is_skipped() -> None:
    disabled = Rule(id=3, pattern="user unknown", failure_type=FailureType.SOFT,
                    reason=Reason.REFUSED, priority=1, enabled=False)
    assert match_rule("user unknown", (disabled, UNKNOWN_USER_RULE)) is UNKNOWN_USER_RULE


def test_status_and_command_conditions_restrict_a_rule() -> None:
    at_data = Rule(id=5, pattern="user unknown", failure_type=FailureType.SOFT,
                   reason=Reason.REFUSED, priority=1, command="DATA", status=r"5\.2\.0")
    rules = (at_data, UNKNOWN_USER_RULE)
    assert match_rule("user unknown", rules, status="5.2.0", command="DATA") is at_data
    assert match_rule("user unknown", rules, status="5.2.0", command="RCPT") is UNKNOWN_USER_RULE
    assert match_rule("user unknown", rules, status="5.1.1", command="DATA") is UNKNOWN_USER_RULE
    assert match_rule("user unknown", rules, status=None, command="data") is UNKNOWN_USER_RULE
    verdict = qualify(failure("5.2.0", command="DATA"), "user unknown", rules=rules)
    assert verdict is not None and str(verdict.qualified_by) == "rule:5"


def test_a_list_of_rules_works_like_a_tuple() -> None:
    verdict = qualify(failure(), "mailbox full", rules=list(RULES))
    assert verdict is not None and verdict.reason is Reason.MAILBOX_FULL


@pytest.mark.parametrize(
    ("rendered", "source", "ref"),
    [("table:7", QualifiedBySource.TABLE, "7"), ("rule:10001", QualifiedBySource.RULE, "10001"),
     ("status:5.1.1", QualifiedBySource.STATUS, "5.1.1"), ("kind", QualifiedBySource.KIND, None),
     ("none", QualifiedBySource.NONE, None)],
)
def test_qualified_by_renders_and_parses_back(
    rendered: str, source: QualifiedBySource, ref: str | None
) -> None:
    assert str(QualifiedBy(source, ref)) == rendered
    assert QualifiedBy.parse(rendered) == QualifiedBy(source, ref)


# ------------------------------------------- operator steering before shipped knowledge


STRONG = "550 5.1.1 <jane@example.org>: Recipient address rejected: User unknown"


def test_shipped_knowledge_decides_when_no_table_row_and_no_rule_do() -> None:
    verdict = qualify(failure("5.1.1", command="RCPT"), STRONG, rules=())
    assert verdict is not None
    assert verdict.failure_type is FailureType.HARD
    assert verdict.qualified_by.source is QualifiedBySource.STATUS


def test_an_operator_keep_and_ignore_win_over_shipped_knowledge() -> None:
    keep = entry(QualificationStatus.KEEP, FailureType.SOFT, Reason.REFUSED)
    verdict = qualify(failure("5.1.1", command="RCPT"), STRONG, entry=keep, rules=())
    assert verdict == Qualification(
        FailureType.SOFT, Reason.REFUSED, QualifiedBy(QualifiedBySource.TABLE, "7"))
    ignore = entry(QualificationStatus.IGNORE, FailureType.HARD, Reason.USER_UNKNOWN)
    verdict = qualify(failure("5.1.1", command="RCPT"), STRONG, entry=ignore, rules=())
    assert verdict is not None and verdict.failure_type is FailureType.IGNORED


def test_an_operator_rule_wins_over_shipped_knowledge() -> None:
    from bounced.core.qualify import load_default_rules, order_rules

    own = Rule(id=10_010, pattern=r"recipient address rejected", priority=100,
               failure_type=FailureType.SOFT, reason=Reason.REFUSED)
    rules = order_rules((*load_default_rules(), own))
    verdict = qualify(failure("5.1.1", command="RCPT"), STRONG, rules=rules)
    assert verdict == Qualification(
        FailureType.SOFT, Reason.REFUSED, QualifiedBy(QualifiedBySource.RULE, "10010"))
