"""The scorer's own rules on hand-made labels and records: what counts as a false hard,
and the feedback report that names no recipient (as the reference scorer reads it)."""

from __future__ import annotations

from typing import Any

from tests.scoring import NO_RECIPIENT, group_by_file, score


def row(recipient: str, failure_type: str | None, reason_code: int | None,
        kind: str = "failure", delay_ok: bool = False) -> dict[str, Any]:
    return {"recipient": recipient, "status": "", "reason": "x",
            "ours": {"kind": kind, "failure_type": failure_type, "reason_code": reason_code,
                     "delay_ok": delay_ok}}


def record(name: str, recipient: str | None, failure_type: str | None,
           kind: str = "failure") -> dict[str, Any]:
    return {"file": name, "recipient": recipient, "kind": kind, "failure_type": failure_type,
            "reason_code": 1 if failure_type == "hard" else 20, "status": None,
            "qualified_by": "status:5.1.1", "text": "550 5.1.1 gone"}


def test_a_hard_verdict_on_a_soft_or_delayed_row_is_a_false_hard() -> None:
    expected = [
        {"file": "a.eml", "expected": [row("a@x.example", "soft", 20)]},
        {"file": "b.eml", "expected": [row("b@x.example", "hard", 1)]},
        {"file": "c.eml", "expected": [row("c@x.example", "ignored", None)]},
    ]
    output = group_by_file([record("a.eml", "a@x.example", "hard"),
                            record("b.eml", "b@x.example", "hard"),
                            record("c.eml", "c@x.example", "hard")])
    result = score(expected, output)
    assert result.counts["false_hard"] == 2
    assert round(result.false_hard_percent, 1) == 66.7
    assert sum(": false-hard " in miss for miss in result.misses) == 2
    assert "false-hard 2 (66.7%)" in result.summary()


def test_a_soft_verdict_on_a_hard_row_is_a_miss_but_no_false_hard() -> None:
    expected = [{"file": "a.eml", "expected": [row("a@x.example", "hard", 1)]}]
    result = score(expected, group_by_file([record("a.eml", "a@x.example", "soft")]))
    assert result.counts["false_hard"] == 0
    assert result.percent("type") == 0.0


def test_a_feedback_record_with_no_recipient_answers_the_stand_in_address() -> None:
    expected = [{"file": "f.eml",
                 "expected": [row(NO_RECIPIENT, "hard", 8, kind="feedback")]}]
    output = group_by_file([record("f.eml", None, "hard", kind="feedback")])
    result = score(expected, output)
    assert result.percent("recipients") == 100.0
    assert result.percent("kind") == 100.0
    # a failure with no recipient does not
    other = score(expected, group_by_file([record("f.eml", None, "hard")]))
    assert other.percent("recipients") == 0.0
