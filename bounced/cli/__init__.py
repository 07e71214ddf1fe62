"""The ``bounced`` command line.

Each subcommand lives in its own module exposing ``HELP``, ``DESCRIPTION`` and
``register(parser)``; ``register`` adds the command's arguments and sets ``handler`` to a
function ``(args) -> int`` (the exit status), wrapped by :func:`bounced.cli.common.command`.
What commands share (options, opening the database, errors) is :mod:`bounced.cli.common`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from bounced import __version__

#: Subcommand name -> the module that registers it. Modules are imported only when
#: their command runs (or for ``--help``), so ``bounced check`` does not pay for the
#: parser's or the daemon's imports.
COMMANDS: dict[str, str] = {
    "parse": "bounced.cli.parse_cmd",
    "ingest": "bounced.cli.ingest_cmd",
    "db": "bounced.cli.db_cmd",
    "serve": "bounced.cli.serve_cmd",
    "verp": "bounced.cli.verp_cmd",
    "rules": "bounced.cli.rules_cmd",
    "report": "bounced.cli.report_cmd",
    "check": "bounced.cli.check_cmd",
    "quarantine": "bounced.cli.quarantine_cmd",
    "explain": "bounced.cli.explain_cmd",
    "reprocess": "bounced.cli.reprocess_cmd",
    "cleanup": "bounced.cli.cleanup_cmd",
    "webhooks": "bounced.cli.webhooks_cmd",
}


def _requested_command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line, if it is a known one."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg if arg in COMMANDS else None
    return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argument parser; with ``only``, just that subcommand is registered."""
    parser = argparse.ArgumentParser(
        prog="bounced",
        description="Bounce processor: parse, qualify and store asynchronous bounces.",
    )
    parser.add_argument("--version", action="version", version=f"bounced {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, module_name in COMMANDS.items():
        if only is None or name == only:
            module = importlib.import_module(module_name)
            module.register(
                subparsers.add_parser(name, help=module.HELP, description=module.DESCRIPTION))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_requested_command(arguments))
    args = parser.parse_args(arguments)
    try:
        return int(args.handler(args))
    except BrokenPipeError:
        # `bounced parse ... | head` closes stdout early: not an error worth a traceback.
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130
