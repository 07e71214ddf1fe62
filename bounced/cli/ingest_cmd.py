"""``bounced ingest``: PLACEHOLDER, being written."""

from __future__ import annotations

import argparse
from typing import Any


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("ingest", help="(not written yet)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    raise SystemExit("bounced ingest: not written yet")
