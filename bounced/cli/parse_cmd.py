"""``bounced parse``: what would bounced make of this mail? (no database)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TextIO

from bounced.core.judge import judge
from bounced.core.parse import parse_message
from bounced.core.qualify import load_default_rules
from bounced.model import BounceReport, Verdict
from bounced.ops.sources import read_messages

#: The one-line summary in ``bounced --help``.
HELP = "parse bounce files and print their verdicts (no database)"
#: What ``bounced parse --help`` says first.
DESCRIPTION = ("Parse messages (files, mbox files, maildirs, - for stdin) and print "
        "one verdict per recipient, qualified with the default rules.")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="FILE")
    parser.add_argument("--json", action="store_true", help="JSON Lines, one object per recipient")
    parser.set_defaults(handler=run)


def verdict_record(name: str, report: BounceReport, verdict: Verdict) -> dict[str, Any]:
    """The JSON object of one verdict (documented in the README)."""
    recipient = verdict.recipient
    reason = verdict.reason
    return {
        "file": name,
        "kind": recipient.kind.value,
        "recipient": recipient.address,
        "action": recipient.action.value if recipient.action else None,
        "status": recipient.status,
        "reply_code": recipient.reply_code,
        "diagnostic": recipient.diagnostic,
        "text": verdict.text,
        "failure_type": verdict.failure_type.value if verdict.failure_type else None,
        "reason_code": int(reason) if reason is not None else None,
        "failure_reason": reason.label if reason is not None else None,
        "qualified_by": str(verdict.qualification.qualified_by) if verdict.qualification else None,
        "remote_mta": recipient.remote_mta,
        "original_message_id": report.original_message_id,
        "verp_token": report.verp_token,
        "problems": list(report.problems),
    }


@dataclass(frozen=True, slots=True)
class Unreadable:
    """A path that could not be read (missing, no permission): reported, the rest goes on."""

    path: str
    error: str


def records(paths: list[str]) -> Iterator[dict[str, Any] | Unreadable]:
    """One JSON-ready record per verdict of every message under ``paths``."""
    rules = load_default_rules()
    for path in paths:
        try:
            for message in read_messages(path):
                report = parse_message(message.raw)
                for verdict in judge(report, rules):
                    yield verdict_record(message.name, report, verdict)
        except OSError as error:
            yield Unreadable(path, error.strerror or str(error))


def _table_row(record: dict[str, Any]) -> str:
    return (
        f"{record['file']}\t{record['kind']}\t{record['recipient'] or '-'}\t"
        f"{record['status'] or '-'}\t{record['failure_type'] or '-'}\t"
        f"{record['failure_reason'] or '-'}\t{record['qualified_by'] or '-'}\t{record['text']}"
    )


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    failed = False
    if not args.json:
        print("file\tkind\trecipient\tstatus\ttype\treason\tqualified_by\ttext", file=out)
    for record in records(args.paths):
        if isinstance(record, Unreadable):
            print(f"bounced parse: {record.path}: {record.error}", file=sys.stderr)
            failed = True
        elif args.json:
            print(json.dumps(record, ensure_ascii=False), file=out)
        else:
            print(_table_row(record), file=out)
    return 1 if failed else 0
