#!/usr/bin/env python3
"""Parse time of hostile bounces (issue #9): does it grow linearly with their size?

Each hostile shape of ``tests/harness/hostile.py`` (the three of the issue, placed in a
DSN ``Diagnostic-Code`` and in the human-readable part, and the others found since) is
parsed and judged as the pipeline does (``parse_message`` + ``judge`` with the default
rules, i.e. normalize + qualify) at each size. Printed: the seconds (best of ``--runs``)
and the ratio of each size to the previous one. With sizes 4x apart, linear code gives
ratios of about 4 and a quadratic pattern about 16.

    python bench/adversarial.py [--sizes 64K,256K,1M] [--runs 3] [--only TEXT]
    python bench/adversarial.py --root /path/to/an/older/checkout --sizes 16K,32K,64K

``--root`` measures the ``bounced`` package of another checkout (the code before a
fix) with the shapes of this one; a quadratic shape takes minutes there at 64 KB.
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.hostile import CASES, size_of  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="64K,256K,1M",
                        help="comma-separated sizes of the hostile text (K, M suffixes)")
    parser.add_argument("--runs", type=int, default=3, help="best of this many runs")
    parser.add_argument("--only", default="", help="cases whose shape or place contains this")
    parser.add_argument("--root", type=Path, default=None,
                        help="checkout whose bounced package is measured (default: this one)")
    args = parser.parse_args()
    if args.root is not None:
        sys.path.insert(0, str(args.root.resolve()))

    from bounced.core.judge import judge
    from bounced.core.parse import parse_message
    from bounced.core.qualify import load_default_rules

    rules = load_default_rules()
    import bounced

    labels = [label.strip() for label in args.sizes.split(",") if label.strip()]
    sizes = [size_of(label) for label in labels]
    print(f"bounced from {Path(bounced.__file__).parent}; best of {args.runs} run(s)")
    ratios = [f"{b}/{a}" for a, b in itertools.pairwise(labels)]
    header = f"{'shape':34s} {'place':15s} " + " ".join(f"{label:>9s}" for label in labels)
    print(header + "  " + " ".join(f"{r:>9s}" for r in ratios))
    for case in CASES:
        if args.only and args.only not in case.shape and args.only not in case.place:
            continue
        seconds = []
        for size in sizes:
            raw = case.build(size)
            best = float("inf")
            for _ in range(args.runs):
                started = time.perf_counter()
                judge(parse_message(raw), rules)
                best = min(best, time.perf_counter() - started)
            seconds.append(best)
        growth = [later / earlier if earlier else float("nan")
                  for earlier, later in itertools.pairwise(seconds)]
        print(f"{case.shape:34s} {case.place:15s} "
              + " ".join(f"{s:9.4f}" for s in seconds) + "  "
              + " ".join(f"{g:9.1f}" for g in growth), flush=True)
    print("linear: each ratio about the ratio of the sizes (4 for 64K,256K,1M)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
