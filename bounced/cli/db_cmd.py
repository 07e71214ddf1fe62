"""``bounced db``: create, check and maintain the database.

- ``init``: create (or migrate) the database, seed reasons and default rules;
- ``check``: integrity, schema version, WAL mode, pending and failed messages; exits 1
  when something needs an operator (corruption, a failed message, an old schema);
- ``retry``: process failed messages again (after a fix).

The periodic job (release due quarantines, reset stale counters, retention) is
``bounced cleanup``.

Errors an operator can fix (bad config value, unusable path) print one line naming the
culprit and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from bounced.config import Config, ConfigError, load_config
from bounced.model import MessageState
from bounced.store import (
    PROCESSING_BTREES,
    SCHEMA_VERSION,
    STORING_BTREES,
    Store,
    StoreError,
    btree_mib,
)

#: Exit status for a usage problem an operator must fix (same as argparse's).
USAGE_ERROR = 2

PUBLIC_NAMES = (
    "messages", "bounces", "qualification", "rules", "reasons", "addresses",
    "address_events", "suppression_list", "daily_summary", "to_qualify",
)


class UsageError(Exception):
    """A problem with the command line or its inputs; the message names the culprit."""


def parse_at(value: str) -> datetime:
    """``--at``: an ISO-8601 time (UTC when no offset is given)."""
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected an ISO-8601 time such as 2026-11-22T13:05:00Z, got {value!r}"
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def load_config_or_fail(path: str | None) -> Config:
    try:
        return load_config(path)
    except ConfigError as error:
        raise UsageError(f"configuration: {error}") from None
    except OSError as error:
        raise UsageError(f"configuration {path}: {error.strerror or error}") from None


def open_store_or_fail(path: str, *, cache_mb: int | None = None) -> Store:
    target = Path(path)
    if target.is_dir():
        raise UsageError(f"--db {path}: is a directory")
    if not target.parent.exists():
        raise UsageError(f"--db {path}: directory {target.parent} does not exist")
    try:
        return Store.open(target, cache_mb=cache_mb)
    except StoreError as error:
        raise UsageError(f"--db {path}: {error}") from None
    except sqlite3.Error as error:
        raise UsageError(f"--db {path}: {error}") from None


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "db",
        help="create, check and maintain the database",
        description="Create, check and maintain the bounced SQLite database.",
    )
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)

    init = actions.add_parser("init", help="create or migrate the database")
    check = actions.add_parser("check", help="integrity, schema version, stuck messages")
    retry = actions.add_parser("retry", help="process failed messages again")
    for sub in (init, check, retry):
        sub.add_argument("--db", required=True, metavar="PATH", help="SQLite database file")
    retry.add_argument("--config", metavar="FILE", help="TOML configuration file")
    init.set_defaults(handler=run_init)
    check.set_defaults(handler=run_check)
    retry.set_defaults(handler=run_retry)


def _guarded(function: Any, args: argparse.Namespace, out: TextIO) -> int:
    try:
        return int(function(args, out))
    except UsageError as error:
        print(f"bounced db {args.db_action}: {error}", file=sys.stderr)
        return USAGE_ERROR


def run_init(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    def body(args: argparse.Namespace, out: TextIO) -> int:
        with open_store_or_fail(args.db) as store:
            print(f"{args.db}: ready, schema version {store.schema_version()}", file=out)
        return 0

    return _guarded(body, args, out)


def check_database(path: str) -> tuple[list[str], list[str]]:
    """``(facts, problems)`` about the database at ``path``, without changing it."""
    target = Path(path)
    if not target.is_file():
        raise UsageError(f"--db {path}: no such database file")
    try:
        conn = sqlite3.connect(f"file:{target}?mode=ro", uri=True)
    except sqlite3.Error as error:
        raise UsageError(f"--db {path}: {error}") from None
    facts: list[str] = []
    problems: list[str] = []
    try:
        conn.execute("PRAGMA busy_timeout = 30000")
        try:
            integrity = [row[0] for row in conn.execute("PRAGMA integrity_check").fetchall()]
        except sqlite3.DatabaseError as error:
            raise UsageError(f"--db {path}: not an SQLite database ({error})") from None
        if integrity == ["ok"]:
            facts.append("integrity: ok")
        else:
            problems.extend(f"integrity: {line}" for line in integrity)
        problems.extend(
            f"foreign key: {row[0]} row {row[1]} references a missing {row[2]}"
            for row in conn.execute("PRAGMA foreign_key_check").fetchall()
        )
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
        if version == SCHEMA_VERSION:
            facts.append(f"schema version: {version}")
        else:
            problems.append(
                f"schema version: {version}, expected {SCHEMA_VERSION} "
                "(run `bounced db init` to migrate)"
            )
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        (facts if mode == "wal" else problems).append(f"journal mode: {mode}")
        names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        missing = [name for name in PUBLIC_NAMES if name not in names]
        if missing:
            problems.append(f"missing tables/views: {', '.join(missing)}")
            return facts, problems
        counts = dict(conn.execute("SELECT state, count(*) FROM messages GROUP BY state"))
        for state in MessageState:
            facts.append(f"messages {state.value}: {counts.get(state.value, 0)}")
        processing = btree_mib(conn, tuple(PROCESSING_BTREES))
        storing = btree_mib(conn, tuple(STORING_BTREES))
        if processing is not None and storing is not None:
            facts.append(
                f"b-trees read at random: {processing:.1f} MiB to process bounces "
                f"({', '.join(PROCESSING_BTREES)}), {storing:.1f} MiB to store messages; "
                f"database.cache_mb >= {int(max(processing, storing)) + 1} lets the "
                "daemon prewarm them"
            )
        failed = counts.get(MessageState.FAILED.value, 0)
        if failed:
            problems.append(
                f"{failed} failed message(s) (see messages.error; `bounced db retry` after a fix)"
            )
    finally:
        conn.close()
    return facts, problems


def run_check(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    def body(args: argparse.Namespace, out: TextIO) -> int:
        facts, problems = check_database(args.db)
        for fact in facts:
            print(fact, file=out)
        for problem in problems:
            print(f"PROBLEM: {problem}", file=out)
        print(f"{args.db}: {'NOT OK' if problems else 'ok'}", file=out)
        return 1 if problems else 0

    return _guarded(body, args, out)


def run_retry(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    from bounced.cli.ingest_cmd import print_result
    from bounced.ops.processing import process_messages

    def body(args: argparse.Namespace, out: TextIO) -> int:
        config = load_config_or_fail(args.config)
        with open_store_or_fail(args.db) as store:
            ids = store.failed_message_ids(limit=1_000_000_000)
            results = process_messages(store, ids, config=config, rules=store.load_rules())
        failed = 0
        for result in results:
            print_result(f"#{result.message_id}", result, out)
            failed += result.state is MessageState.FAILED
        print(f"retried {len(results)}, still failed {failed}", file=out)
        return 1 if failed else 0

    return _guarded(body, args, out)
