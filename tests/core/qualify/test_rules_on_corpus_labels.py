"""The qualify stage measured on the corpus labels alone, independently of the parser.

Every labelled recipient of ``tests/data/corpus/sisimai/expected.json`` carries what the
email said (Sisimai's ``diagnosticcode``, ``status``, ``replycode``, ``action``) and what
we should conclude (``ours``: kind, type, reason). Feeding the former through normalize +
qualify with the default rules and comparing with the latter measures the rules, the
status-code table and the order, whatever state the parser is in.

Honesty rules of the harness:

- Sisimai's invented ``X.0.9NN`` status codes are dropped: no email carries them, they
  are Sisimai's own verdict in disguise;
- Sisimai writes ``Action: delayed`` for every expired recipient; the emails mostly say
  the MTA gave up, so those rows are qualified as the *failures* they are and must come
  out soft/Unreachable on their own (stricter than the corpus scorer, which would also
  accept kind delay / type ignored for them).

Run it as a script to see every miss: ``python tests/core/qualify/test_rules_on_corpus_labels.py``.
"""

from __future__ import annotations

import json
import re
import sys
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest

from bounced.core.normalize import normalize
from bounced.core.qualify import load_default_rules, qualify
from bounced.model import Action, Kind, Qualification, RecipientReport
from tests.paths import DATA

EXPECTED = (
    DATA / "corpus" / "sisimai" / "expected.json"
)
INVENTED_STATUS = re.compile(r"^\d\.0\.9\d\d$")

TYPE_FLOOR = 95.5
REASON_FLOOR = 95.0


@dataclass
class LabelScore:
    counts: Counter[str] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)

    def percent(self, metric: str) -> float:
        total = self.counts[f"{metric}_rows"]
        return 100.0 * self.counts[f"{metric}_ok"] / total if total else 100.0


def report_of(row: dict[str, Any]) -> RecipientReport:
    """The recipient as an email would state it (see the module docstring)."""
    kind = Kind(row["ours"]["kind"])
    status = row["status"] or None
    if status and INVENTED_STATUS.match(status):
        status = None
    action = Action.FAILED if kind is Kind.FAILURE else None
    if kind is Kind.DELIVERED:
        action = Action.DELIVERED
    return RecipientReport(
        address=row["recipient"],
        kind=kind,
        action=action,
        status=status,
        reply_code=row["replycode"] or None,
        diagnostic=row["diagnosticcode"],
        smtp_command=row["smtpcommand"] or None,
    )


def score_labels() -> LabelScore:
    rules = load_default_rules()
    result = LabelScore()
    for email in json.loads(EXPECTED.read_text(encoding="utf-8")):
        for row in email["expected"]:
            report = report_of(row)
            text = normalize(report.diagnostic)
            verdict = qualify(report, text, rules=rules)
            _compare(email["file"], row, text, verdict, result)
    return result


def _compare(
    name: str, row: dict[str, Any], text: str, verdict: Qualification | None, result: LabelScore
) -> None:
    ours = row["ours"]
    got_type = verdict.failure_type.value if verdict else None
    got_reason = int(verdict.reason) if verdict else None
    by = str(verdict.qualified_by) if verdict else "-"
    if ours["failure_type"]:
        result.counts["type_rows"] += 1
        if got_type == ours["failure_type"]:
            result.counts["type_ok"] += 1
        else:
            result.misses.append(
                f"{name}: type {got_type} != {ours['failure_type']} ({row['reason']}) "
                f"by={by} status={row['status']} text={text[:160]!r}"
            )
    if ours["reason_code"] is not None:
        result.counts["reason_rows"] += 1
        if got_reason == ours["reason_code"]:
            result.counts["reason_ok"] += 1
        else:
            result.misses.append(
                f"{name}: reason {got_reason} != {ours['reason_code']} ({row['reason']}) "
                f"by={by} status={row['status']} text={text[:160]!r}"
            )


@pytest.fixture(scope="module")
def label_score() -> LabelScore:
    return score_labels()


def test_failure_type_from_labels_reaches_the_floor(label_score: LabelScore) -> None:
    assert label_score.counts["type_rows"] > 300
    assert label_score.percent("type") >= TYPE_FLOOR, "\n".join(label_score.misses)


def test_failure_reason_from_labels_reaches_the_floor(label_score: LabelScore) -> None:
    assert label_score.counts["reason_rows"] > 300
    assert label_score.percent("reason") >= REASON_FLOOR, "\n".join(label_score.misses)


if __name__ == "__main__":
    score = score_labels()
    print("\n".join(sorted(score.misses)))
    print(
        f"type {score.percent('type'):.1f}% ({score.counts['type_ok']}/"
        f"{score.counts['type_rows']}) reason {score.percent('reason'):.1f}% "
        f"({score.counts['reason_ok']}/{score.counts['reason_rows']})"
    )
    sys.exit(0)
