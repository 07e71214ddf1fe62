"""``bounced parse``: accuracy on the Sisimai corpus, and the command's output contract.

The accuracy floors are the issue's: recipients 99%, status 98.5%, type 97%, reason 96%,
kind 100%, and at most 0.5% of the type rows called hard when the failure was soft (a
false hard quarantines an address at once for a failure that was not its own), with
zero crashes. They are floors: the same metrics are measured on emails nobody here has
seen. The labels are scored with the corrections documented in
tests/data/corpus/sisimai-errata.toml (labels the mails themselves contradict).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bounced.cli import main
from tests.paths import DATA, ROOT
from tests.scoring import CORPUS, group_by_file, load_expected, score

SHARED_SCORER = ROOT.parent / "shared" / "corpus" / "sisimai" / "score.py"
FLOORS = {"recipients": 99.0, "status": 98.5, "type": 97.0, "reason": 96.0, "kind": 100.0}
FALSE_HARD_CEILING = 0.5  # percent of the type rows
REQUIRED_KEYS = {
    "file", "kind", "recipient", "action", "status", "reply_code", "diagnostic", "text",
    "failure_type", "reason_code", "failure_reason", "qualified_by", "original_message_id",
}


@pytest.fixture(scope="module")
def corpus_output(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``bounced parse --json`` over the whole corpus, through the real entry point."""
    out = tmp_path_factory.mktemp("parse") / "corpus.jsonl"
    files = sorted(str(p) for p in (CORPUS / "eml").glob("*.eml"))
    with out.open("w", encoding="utf-8") as handle:
        completed = subprocess.run(
            [sys.executable, "-m", "bounced", "parse", "--json", *files],
            stdout=handle, stderr=subprocess.PIPE, text=True, check=False,
        )
    assert completed.returncode == 0, completed.stderr
    assert "Traceback" not in completed.stderr
    return out


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


@pytest.mark.parametrize("metric", list(FLOORS))
def test_corpus_accuracy_meets_the_floor(corpus_output: Path, metric: str) -> None:
    result = score(load_expected(), group_by_file(_records(corpus_output)))
    misses = "\n".join(m for m in result.misses if f": {metric} " in m)
    assert result.percent(metric) >= FLOORS[metric], f"{result.summary()}\n{misses[:4000]}"


def test_false_hards_stay_under_the_ceiling(corpus_output: Path) -> None:
    result = score(load_expected(), group_by_file(_records(corpus_output)))
    assert result.counts["type_rows"] > 300
    misses = "\n".join(m for m in result.misses if ": false-hard " in m)
    assert result.false_hard_percent <= FALSE_HARD_CEILING, f"{result.summary()}\n{misses}"


def test_every_corpus_email_gives_output(corpus_output: Path) -> None:
    produced = set(group_by_file(_records(corpus_output)))
    expected = {email["file"] for email in load_expected()}
    assert expected - produced == set()


def test_every_record_has_the_documented_keys(corpus_output: Path) -> None:
    for record in _records(corpus_output):
        assert REQUIRED_KEYS - set(record) == set(), record


@pytest.mark.skipif(
    not SHARED_SCORER.exists(), reason=f"reference scorer not found: {SHARED_SCORER}"
)
def test_our_scorer_agrees_with_the_reference_scorer(corpus_output: Path) -> None:
    ours = score(load_expected(errata=None), group_by_file(_records(corpus_output)))
    reference = subprocess.run(
        [sys.executable, str(SHARED_SCORER), str(CORPUS / "expected.json"), str(corpus_output)],
        capture_output=True, text=True, check=True,
    ).stdout.strip().splitlines()[-1]
    for metric in FLOORS:
        assert f"{metric} {ours.percent(metric):.1f}%" in reference, (ours.summary(), reference)


def test_a_message_with_no_recipient_gives_one_record_with_null_recipient(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    human = DATA / "messages" / "human-reply.eml"
    assert main(["parse", "--json", str(human)]) == 0
    [record] = _records_from(capsys.readouterr().out)
    assert record["recipient"] is None
    assert record["kind"] == "not_bounce"


def test_without_json_a_readable_table_is_printed(capsys: pytest.CaptureFixture[str]) -> None:
    sample = DATA / "mta-lab" / "postfix-01-user-unknown-failed.eml"
    assert main(["parse", str(sample)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["file", "kind", "recipient", "status"]
    assert "unknown-user@rcpt.test" in lines[1]
    assert "hard" in lines[1]


def test_an_unreadable_path_is_reported_and_the_others_still_parsed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sample = DATA / "mta-lab" / "postfix-02-mailbox-full-failed.eml"
    status = main(["parse", "--json", str(tmp_path / "missing.eml"), str(sample)])
    captured = capsys.readouterr()
    assert status == 1
    assert "missing.eml" in captured.err
    assert [r["recipient"] for r in _records_from(captured.out)] == ["full@rcpt.test"]


def _records_from(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line]
