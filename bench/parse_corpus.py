#!/usr/bin/env python3
"""Throughput of ``bounced parse`` and ``bounced ingest`` over the Sisimai corpus.

One process, the corpus read into memory first (so disk speed does not count), each
measurement repeated and reported as the median. Printed alongside, measured in the same
run, is flufl.bounce alone (recipient addresses only, no codes, no qualification): the
machine is shared and noisy, so the ratio to that baseline is the steadier figure.

    python bench/parse_corpus.py [--runs 5] [--corpus DIR]

Targets (issue "bounce analysis core"): parse >= 1,500 emails/s, ingest >= 1,000 emails/s.
"""

from __future__ import annotations

import argparse
import contextlib
import email
import io
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from flufl.bounce import scan_message  # noqa: E402

from bounced.cli import main as bounced_main  # noqa: E402
from bounced.cli.parse_cmd import verdict_record  # noqa: E402
from bounced.core.judge import judge  # noqa: E402
from bounced.core.parse import parse_message  # noqa: E402
from bounced.core.qualify import load_default_rules  # noqa: E402
from bounced.ops.sources import read_messages  # noqa: E402

DEFAULT_CORPUS = ROOT / "tests" / "data" / "corpus" / "sisimai" / "eml"


def load_corpus(directory: Path) -> list[tuple[str, bytes]]:
    messages = []
    for path in sorted(directory.glob("*.eml")):
        messages.extend((m.name, m.raw) for m in read_messages(str(path)))
    return messages


def median_rate(run: Callable[[], int], runs: int) -> tuple[float, list[float]]:
    """Messages per second of ``run`` (which returns how many it handled), median of runs."""
    rates = []
    for _ in range(runs):
        start = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - start))
    return statistics.median(rates), rates


def bench_flufl(messages: list[tuple[str, bytes]]) -> int:
    for _name, raw in messages:
        scan_message(email.message_from_bytes(raw))
    return len(messages)


def bench_parse(messages: list[tuple[str, bytes]]) -> int:
    rules = load_default_rules()
    for name, raw in messages:
        report = parse_message(raw)
        for verdict in judge(report, rules):
            verdict_record(name, report, verdict)
    return len(messages)


def bench_ingest(corpus: Path) -> int:
    files = sorted(str(p) for p in corpus.glob("*.eml"))
    with tempfile.TemporaryDirectory() as directory, contextlib.redirect_stdout(io.StringIO()):
        status = bounced_main(["ingest", "--db", str(Path(directory) / "bench.db"), *files])
    if status not in (0, 1):
        raise SystemExit(f"ingest exited with {status}")
    return len(load_corpus(corpus))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--corpus", type=Path, default=DEFAULT_CORPUS)
    args = parser.parse_args()

    messages = load_corpus(args.corpus)
    print(f"corpus: {len(messages)} messages from {args.corpus}")
    bench_parse(messages)  # warm-up: imports, regex compilation, rule loading

    baseline, _ = median_rate(lambda: bench_flufl(messages), args.runs)
    parse, parse_runs = median_rate(lambda: bench_parse(messages), args.runs)
    ingest, ingest_runs = median_rate(lambda: bench_ingest(args.corpus), args.runs)

    print(f"flufl.bounce alone (addresses only): {baseline:8.0f} emails/s")
    for label, rate, runs in (
        ("bounced parse (parse+normalize+qualify)", parse, parse_runs),
        ("bounced ingest (fresh SQLite file, WAL)", ingest, ingest_runs),
    ):
        each = ", ".join(f"{r:.0f}" for r in runs)
        print(f"{label}: {rate:8.0f} emails/s ({rate / baseline:.2f}x flufl.bounce; runs {each})")
    print("targets: parse >= 1500 emails/s, ingest >= 1000 emails/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
