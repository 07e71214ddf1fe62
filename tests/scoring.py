"""Accuracy metrics of ``bounced parse --json`` output against a labelled corpus.

The metrics are those of the corpus's reference scorer (shared/corpus/sisimai/score.py),
written anew here so the project's tests stand on their own:

- recipients: emails whose set of reported recipients equals the expected set;
- status: expected rows found with the same enhanced status code (rows whose expected
  code is empty or one of Sisimai's invented X.0.9NN codes are skipped);
- type: expected rows found with the same failure type (a row the labels call "delayed"
  also counts when reported as kind delay / type ignored);
- reason: expected rows found with the same reason code;
- kind: feedback, autoreply and delivered rows reported with that kind;
- false hards: type rows whose expected type is soft or ignored (a delay included) but
  that we called hard, the costliest error (an address quarantined at once for a failure
  that was not its own), as a share of the type rows: lower is better.

A feedback report that names no recipient is expected as Sisimai's stand-in address
(:data:`NO_RECIPIENT`); a ``kind: feedback`` record with no recipient answers it, as in
the reference scorer.

Run it as a script to see the figures and every miss while working on the parser::

    python tests/scoring.py [--misses]
"""

from __future__ import annotations

import json
import re
import sys
import tomllib
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CORPUS = Path(__file__).parent / "data" / "corpus" / "sisimai"
ERRATA = Path(__file__).parent / "data" / "corpus" / "sisimai-errata.toml"
INVENTED_STATUS = re.compile(r"^\d\.0\.9\d\d$")
METRICS = ("recipients", "status", "type", "reason", "kind")
NO_RECIPIENT = "undisclosed-recipient-in-headers@libsisimai.org.invalid"
"""Sisimai's stand-in for a feedback report that names no recipient."""

SISIMAI_REASONS: dict[str, tuple[str, str | None, int | None]] = {
    **dict.fromkeys(("userunknown", "hasmoved"), ("failure", "hard", 1)),
    **dict.fromkeys(("hostunknown", "notaccept"), ("failure", "soft", 2)),
    "mailboxfull": ("failure", "soft", 5),
    "suspend": ("failure", "soft", 4),
    **dict.fromkeys(
        ("expired", "networkerror", "systemerror", "systemfull", "mailererror",
         "syntaxerror", "failedstarttls"), ("failure", "soft", 3)),
    **dict.fromkeys(
        ("blocked", "badreputation", "requireptr", "rejected", "spamdetected",
         "virusdetected", "policyviolation", "contenterror", "securityerror", "authfailure",
         "norelaying", "notcompliantrfc", "emailtoolarge", "mesgtoobig", "exceedlimit",
         "filtered", "toomanyconn", "speeding", "ratelimited"), ("failure", "soft", 20)),
    "suppressed": ("failure", "hard", 9),
    **dict.fromkeys(("undefined", "onhold"), ("failure", None, None)),
}
"""Sisimai's reasons in our vocabulary (docs/accuracy.md): kind, type, reason code. An
erratum that corrects a ``reason`` label re-derives the row's ``ours`` with it."""


@dataclass
class Score:
    counts: Counter[str] = field(default_factory=Counter)
    misses: list[str] = field(default_factory=list)

    def percent(self, metric: str) -> float:
        total_key = {"recipients": "emails", "status": "status_rows", "type": "type_rows",
                     "reason": "reason_rows", "kind": "kind_rows"}[metric]
        total = self.counts[total_key]
        return 100.0 * self.counts[f"{metric}_ok"] / total if total else 100.0

    @property
    def false_hard_percent(self) -> float:
        total = self.counts["type_rows"]
        return 100.0 * self.counts["false_hard"] / total if total else 0.0

    def summary(self) -> str:
        figures = " ".join(f"{m} {self.percent(m):.1f}%" for m in METRICS)
        return (f"{figures} false-hard {self.counts['false_hard']} "
                f"({self.false_hard_percent:.1f}%)")


def group_by_file(records: Iterable[Mapping[str, Any]]) -> dict[str, list[Mapping[str, Any]]]:
    grouped: dict[str, list[Mapping[str, Any]]] = {}
    for record in records:
        grouped.setdefault(Path(str(record.get("file", ""))).name, []).append(record)
    return grouped


def score(expected: list[dict[str, Any]], output: Mapping[str, list[Mapping[str, Any]]]) -> Score:
    result = Score()
    counts, misses = result.counts, result.misses
    for email in expected:
        name = email["file"]
        counts["emails"] += 1
        got = output.get(name)
        if got is None:
            misses.append(f"{name}: no output")
            got = []
        by_recipient: dict[str, Mapping[str, Any]] = {}
        for record in got:
            if record.get("recipient"):
                by_recipient.setdefault(str(record["recipient"]).strip().lower(), record)
            elif record.get("kind") == "feedback":
                by_recipient.setdefault(NO_RECIPIENT, record)
        wanted = {row["recipient"].strip().lower() for row in email["expected"]}
        if set(by_recipient) == wanted:
            counts["recipients_ok"] += 1
        else:
            misses.append(f"{name}: recipients {sorted(by_recipient)} != {sorted(wanted)}")
        for row in email["expected"]:
            _score_row(name, row, by_recipient.get(row["recipient"].strip().lower()), result)
    return result


def _score_row(
    name: str, row: dict[str, Any], got: Mapping[str, Any] | None, result: Score
) -> None:
    counts, misses = result.counts, result.misses
    ours = row["ours"]
    if ours["kind"] in ("feedback", "autoreply", "delivered"):
        counts["kind_rows"] += 1
        if got and got.get("kind") == ours["kind"]:
            counts["kind_ok"] += 1
        else:
            misses.append(f"{name}: kind {got and got.get('kind')} != {ours['kind']}")
    if row["status"] and not INVENTED_STATUS.match(row["status"]):
        counts["status_rows"] += 1
        if got and got.get("status") == row["status"]:
            counts["status_ok"] += 1
        else:
            misses.append(f"{name}: status {got and got.get('status')} != {row['status']}")
    if ours["failure_type"]:
        counts["type_rows"] += 1
        failure_type = got and got.get("failure_type")
        counted_delay = bool(
            got and ours.get("delay_ok") and got.get("kind") == "delay"
            and failure_type == "ignored"
        )
        if failure_type == ours["failure_type"] or counted_delay:
            counts["type_ok"] += 1
        else:
            misses.append(f"{name}: type {failure_type} != {ours['failure_type']}")
        if failure_type == "hard" and ours["failure_type"] in ("soft", "ignored"):
            counts["false_hard"] += 1
            misses.append(
                f"{name}: false-hard {row['recipient']} by {got and got.get('qualified_by')} "
                f"text={got and got.get('text')!r}"
            )
    if ours["reason_code"] is not None:
        counts["reason_rows"] += 1
        reason = got and got.get("reason_code")
        if reason == ours["reason_code"]:
            counts["reason_ok"] += 1
        else:
            misses.append(
                f"{name}: reason {reason} != {ours['reason_code']} ({row['reason']}) "
                f"text={got and got.get('text')!r}"
            )


def load_expected(corpus: Path = CORPUS, errata: Path | None = ERRATA) -> list[dict[str, Any]]:
    """The corpus labels, with the documented corrections of ``errata`` applied.

    A correction must name the label's value it replaces: if the labels change under it,
    it fails loudly instead of silently correcting something else. Correcting ``reason``
    re-derives the row's ``ours`` (:data:`SISIMAI_REASONS`); correcting ``action`` to
    ``delayed`` lets a delay count as right, as for Sisimai's own delayed rows.
    """
    expected = json.loads((corpus / "expected.json").read_text(encoding="utf-8"))
    if errata is None:
        return expected
    by_file = {email["file"]: email for email in expected}
    for fix in tomllib.loads(errata.read_text(encoding="utf-8"))["fix"]:
        labels = by_file[fix["file"]]["expected"]
        rows = [row for row in labels if row[fix["field"]] == fix["label"]
                and fix.get("recipient", row["recipient"]) == row["recipient"]]
        if len(rows) != 1:
            raise ValueError(f"erratum for {fix['file']} matches {len(rows)} label rows")
        row = rows[0]
        row[fix["field"]] = fix["mail"]
        if fix["field"] == "reason":
            kind, failure_type, code = SISIMAI_REASONS[fix["mail"]]
            row["ours"] = {**row["ours"], "kind": kind, "failure_type": failure_type,
                           "reason_code": code}
        elif fix["field"] == "action":
            row["ours"] = {**row["ours"], "delay_ok": fix["mail"] == "delayed"}
    return expected


def parse_corpus(corpus: Path = CORPUS) -> list[dict[str, Any]]:
    """Run every corpus email through what ``bounced parse --json`` runs, in-process."""
    from bounced.cli.parse_cmd import Unreadable, records

    paths = sorted(str(p) for p in (corpus / "eml").glob("*.eml"))
    output = []
    for record in records(paths):
        if isinstance(record, Unreadable):
            raise RuntimeError(f"{record.path}: {record.error}")
        output.append(record)
    return output


def main(argv: list[str]) -> int:
    result = score(load_expected(), group_by_file(parse_corpus()))
    if "--misses" in argv:
        print("\n".join(result.misses))
    print(result.summary())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
