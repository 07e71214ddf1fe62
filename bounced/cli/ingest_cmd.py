"""``bounced ingest``: store messages, then process them into the database.

Sources are files, maildirs, mbox files, or ``-`` for standard input, so that the
command also works as a Postfix ``pipe(8)`` transport::

    bounces unix - n n - - pipe flags=Rq user=bounced
      argv=/usr/bin/bounced ingest --db /var/lib/bounced/bounced.db
           --mail-from ${sender} --rcpt-to ${recipient} -

One line per recipient verdict is printed (or ``duplicate of #N``, or ``failed:
<error>``). The exit status is 1 if any message failed to process (after processing all
the others), 2 for a bad option, configuration or path, 0 otherwise.

``--at`` sets the time bounces count at for the quarantine policy: an ISO-8601 time, or
``header`` for each message's own ``Date`` (replaying an archive in its real order).
"""

from __future__ import annotations

import argparse
import itertools
import sys
from datetime import datetime
from pathlib import Path
from typing import TextIO

from bounced.cli import common
from bounced.model import MessageState
from bounced.ops.ingest import Envelope, Named, incoming, ingest_batch
from bounced.ops.processing import ProcessResult

#: ``--at header``: each message counts at its own Date.
AT_HEADER = "header"


#: The one-line summary in ``bounced --help``.
HELP = "store and process bounce messages into the database"
#: What ``bounced ingest --help`` says first.
DESCRIPTION = ("Store messages (files, maildirs, mbox files, - for stdin) in the "
        "database, then parse, qualify and apply the quarantine policy to them.")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--db", required=True, metavar="PATH", help="SQLite database file")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--at", type=_at_argument, metavar="ISO-8601|header",
        help="time the bounces count at: an ISO-8601 time, or 'header' for each "
        "message's Date header (default: when received, i.e. now)",
    )
    parser.add_argument("--mail-from", metavar="ADDRESS",
                        help="envelope sender (default: the Return-Path header, if any)")
    parser.add_argument(
        "--rcpt-to", action="append", metavar="ADDRESS",
        help="envelope recipient, repeatable (default: Delivered-To / X-Original-To headers)",
    )
    parser.set_defaults(handler=run)


def _at_argument(value: str) -> datetime | str:
    return AT_HEADER if value.strip().lower() == AT_HEADER else common.instant(value)


def _describe_recipient(result: ProcessResult, index: int) -> str:
    verdict = result.recipients[index]
    parts = [f"{verdict.recipient or '(no recipient)'}: {verdict.kind.value}"]
    if verdict.failure_type is not None and verdict.reason is not None:
        parts.append(
            f"{verdict.failure_type}/{verdict.reason.label} ({verdict.reason.value}) "
            f"by {verdict.qualified_by}"
        )
    if verdict.address_state is not None:
        parts.append(f"-> address {verdict.address_state.value}")
    if verdict.event:
        parts.append(f"[{verdict.event}]")
    return " ".join(parts)


def print_result(name: str, result: ProcessResult, out: TextIO) -> None:
    """One line per recipient verdict (or one line for the message)."""
    head = f"{name}: #{result.message_id}"
    if result.state is MessageState.FAILED:
        print(f"{head} failed: {result.error}", file=out)
        return
    kind = result.kind.value if result.kind else "?"
    untrusted = "" if result.trusted else " (untrusted VERP: no address change)"
    if result.skipped:
        print(f"{head} already processed", file=out)
    elif not result.recipients:
        problems = f" ({'; '.join(result.problems)})" if result.problems else ""
        print(f"{head} {kind}, no verdict{problems}", file=out)
    for index in range(len(result.recipients)):
        print(f"{head} {_describe_recipient(result, index)}{untrusted}", file=out)


def _check_paths(paths: list[str]) -> None:
    for path in paths:
        if path == "-":
            continue
        target = Path(path)
        if not target.exists():
            raise common.UsageError(f"{path}: no such file or directory")
        if target.is_file():
            try:
                with target.open("rb"):
                    pass
            except OSError as error:
                raise common.UsageError(f"{path}: {error.strerror or error}") from None


@common.command("ingest")
def run(args: argparse.Namespace, out: TextIO) -> int:
    config = common.config_of(args)
    _check_paths(args.paths)
    at = args.at if isinstance(args.at, datetime) else None
    envelope = Envelope(args.mail_from, tuple(args.rcpt_to or ()))
    errors: list[str] = []
    failures = 0
    with common.open_store(args.db, cache_mb=config.database.cache_mb, config=config) as store, \
            store.checkpoint_in_background(wal_limit_mb=config.database.wal_limit_mb):
        rules = store.rules.enabled()
        batch: list[Named] = []
        messages = incoming(args.paths, envelope, config.verp.separator, errors)
        for item in itertools.chain(messages, [None]):  # None: the end, flush
            if item is not None:
                batch.append(item)
            if batch and (item is None or len(batch) >= config.processing.batch_size):
                for done in ingest_batch(store, batch, config=config, rules=rules, at=at,
                                         at_from_header=args.at == AT_HEADER):
                    if done.result is None:
                        print(f"{done.name}: duplicate of #{done.accepted.id}", file=out)
                        continue
                    print_result(done.name, done.result, out)
                    failures += done.result.state is MessageState.FAILED
                batch = []
    for problem in errors:
        print(f"bounced ingest: {problem}", file=sys.stderr)
    if errors:
        return common.USAGE_ERROR
    return 1 if failures else 0
