"""The ``bounced`` command line.

Each subcommand lives in its own module exposing ``register(subparsers)``; the module
adds its parser and sets ``handler`` to a function ``(args) -> int`` (the exit status).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from bounced import __version__
from bounced.cli import (
    check_cmd,
    cleanup_cmd,
    db_cmd,
    explain_cmd,
    ingest_cmd,
    parse_cmd,
    quarantine_cmd,
    report_cmd,
    reprocess_cmd,
    rules_cmd,
    serve_cmd,
    verp_cmd,
)

COMMANDS = (
    parse_cmd, ingest_cmd, db_cmd, serve_cmd, verp_cmd, rules_cmd, report_cmd,
    check_cmd, quarantine_cmd, explain_cmd, reprocess_cmd, cleanup_cmd,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bounced",
        description="Bounce processor: parse, qualify and store asynchronous bounces.",
    )
    parser.add_argument("--version", action="version", version=f"bounced {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args))
    except BrokenPipeError:
        # `bounced parse ... | head` closes stdout early: not an error worth a traceback.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
