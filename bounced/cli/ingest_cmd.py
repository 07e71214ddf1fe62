"""``bounced ingest``: store messages, then process them into the database.

Sources are files, maildirs, mbox files, or ``-`` for standard input, so that the
command also works as a Postfix ``pipe(8)`` transport::

    bounces unix - n n - - pipe flags=Rq user=bounced
      argv=/usr/bin/bounced ingest --db /var/lib/bounced/bounced.db
           --mail-from ${sender} --rcpt-to ${recipient} -

Each raw message is committed to ``messages`` FIRST (in batches, one transaction per
batch), then processed: a crash in between leaves it ``pending``, never lost. One line per
recipient verdict is printed (or ``duplicate of #N``, or ``failed: <error>``). The exit
status is 1 if any message failed to process (after processing all the others), 2 for
a bad option, configuration or path, 0 otherwise.

``--at`` sets the time bounces count at for the quarantine policy: an ISO-8601 time, or
``header`` for each message's own ``Date`` (replaying an archive in its real order).
"""

from __future__ import annotations

import argparse
import re
import sqlite3
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bounced.cli.db_cmd import (
    USAGE_ERROR,
    UsageError,
    load_config_or_fail,
    open_store_or_fail,
    parse_at,
)
from bounced.config import Config
from bounced.core.verp import envelope_token, trust_check
from bounced.model import AcceptedMessage, IncomingMessage, MessageState, Rule
from bounced.ops.processing import ProcessResult, process_messages
from bounced.ops.sources import read_messages
from bounced.store import Store

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_ENVELOPE_HEADER = re.compile(
    rb"^(delivered-to|x-original-to|return-path):[ \t]*<?([^\s<>]*)>?", re.IGNORECASE | re.M
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "ingest",
        help="store and process bounce messages into the database",
        description="Store messages (files, maildirs, mbox files, - for stdin) in the "
        "database, then parse, qualify and apply the quarantine policy to them.",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH")
    parser.add_argument("--db", required=True, metavar="PATH", help="SQLite database file")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument(
        "--at",
        type=_at_argument,
        metavar="ISO-8601|header",
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


@dataclass(frozen=True)
class _AtHeader:
    """Marker for ``--at header``."""


AT_HEADER = _AtHeader()


def _at_argument(value: str) -> datetime | _AtHeader:
    return AT_HEADER if value.strip().lower() == "header" else parse_at(value)


def envelope_from_headers(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """``(mail_from, rcpt_to)`` as local delivery recorded them in the headers.

    A message delivered to a maildir or mbox by the MTA carries its envelope in
    ``Return-Path`` and ``Delivered-To`` / ``X-Original-To``; these (not ``To:``) are
    where the VERP token of the bounce address survives.
    """
    match = _HEADER_END.search(raw)
    head = raw[: match.start()] if match else raw[:65536]
    mail_from = ""
    rcpt: list[str] = []
    for name, value in _ENVELOPE_HEADER.findall(head):
        text = value.decode("utf-8", "replace")
        if name.lower() == b"return-path":
            mail_from = mail_from or text
        elif text and text not in rcpt:
            rcpt.append(text)
    return mail_from, tuple(rcpt)


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


@dataclass(frozen=True)
class _Named:
    name: str
    message: IncomingMessage


def _messages(
    paths: Sequence[str], args: argparse.Namespace, errors: list[str], separator: str
) -> Iterator[_Named]:
    for path in paths:
        try:
            for source in read_messages(path):
                header_from, header_rcpt = envelope_from_headers(source.raw)
                rcpt = tuple(args.rcpt_to) if args.rcpt_to else header_rcpt
                yield _Named(
                    source.name,
                    IncomingMessage(
                        received_at=datetime.now(UTC),
                        mail_from=args.mail_from if args.mail_from is not None else header_from,
                        rcpt_to=rcpt,
                        raw=source.raw,
                        peer=None,
                        verp_token=envelope_token(rcpt, separator),
                    ),
                )
        except OSError as error:
            errors.append(f"{path}: {error.strerror or error}")


def _check_paths(paths: Sequence[str]) -> None:
    for path in paths:
        if path == "-":
            continue
        target = Path(path)
        if not target.exists():
            raise UsageError(f"{path}: no such file or directory")
        if target.is_file():
            try:
                with target.open("rb"):
                    pass
            except OSError as error:
                raise UsageError(f"{path}: {error.strerror or error}") from None


def _ingest_batch(
    store: Store,
    batch: list[_Named],
    args: argparse.Namespace,
    config: Config,
    rules: Sequence[Rule],
    out: TextIO,
) -> int:
    """Store the batch (committed), then process what needs it; returns failures."""
    stored: list[AcceptedMessage] = store.insert_messages([item.message for item in batch])
    to_process: dict[int, None] = {}  # ordered, and the same bytes twice count once
    for result in stored:
        if result.id in to_process:
            continue
        if not result.duplicate:
            to_process[result.id] = None
            continue
        # A duplicate of a message never processed successfully (crash, failure) gets
        # its chance now; a processed one is not counted twice.
        if store.message_state(result.id) not in (None, MessageState.PROCESSED):
            to_process[result.id] = None
    at = args.at if isinstance(args.at, datetime) else None
    results = process_messages(
        store, list(to_process), config=config, rules=rules, at=at,
        at_from_header=args.at is AT_HEADER, trust=trust_check(config.verp.secret),
    )
    by_id = {result.message_id: result for result in results}
    failures = 0
    printed: set[int] = set()
    for item, result in zip(batch, stored, strict=True):
        processed = by_id.get(result.id)
        if processed is None or result.id in printed:
            print(f"{item.name}: duplicate of #{result.id}", file=out)
            continue
        printed.add(result.id)
        print_result(item.name, processed, out)
        failures += processed.state is MessageState.FAILED
    return failures


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        config = load_config_or_fail(args.config)
        _check_paths(args.paths)
        store = open_store_or_fail(args.db, cache_mb=config.database.cache_mb)
    except UsageError as error:
        print(f"bounced ingest: {error}", file=sys.stderr)
        return USAGE_ERROR
    errors: list[str] = []
    failures = 0
    try:
        with store, store.checkpoint_in_background():
            rules = store.load_rules()
            batch: list[_Named] = []
            for item in _messages(args.paths, args, errors, config.verp.separator):
                batch.append(item)
                if len(batch) >= config.processing.batch_size:
                    failures += _ingest_batch(store, batch, args, config, rules, out)
                    batch = []
            if batch:
                failures += _ingest_batch(store, batch, args, config, rules, out)
    except sqlite3.Error as error:
        # The database itself failed (locked beyond busy_timeout, disk full, ...): what
        # was committed stays (stored messages are pending and will be processed later).
        print(f"bounced ingest: database {args.db}: {error}", file=sys.stderr)
        return 1
    for problem in errors:
        print(f"bounced ingest: {problem}", file=sys.stderr)
    if errors:
        return USAGE_ERROR
    return 1 if failures else 0
