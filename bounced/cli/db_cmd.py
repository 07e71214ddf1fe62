"""``bounced db``: create, check and maintain the database.

- ``init``: create (or migrate) the database, seed reasons and default rules;
- ``migrate``: the same, said explicitly: the step an operator runs on a PostgreSQL
  database shared by several hosts after upgrading bounced (daemons refuse to start
  on a schema they do not know, and never migrate a shared database themselves);
- ``check``: integrity, schema version, WAL mode and size, free space against
  ``storage.min_free_mb`` (``--config``; a SQLite file's, PostgreSQL's are the
  server's), pending and failed messages; exits 1 when something needs an operator
  (corruption, a failed message, an old schema, a full disk);
- ``retry``: process failed messages again (after a fix);
- ``copy``: every row of one database into another (a host's SQLite file into the
  PostgreSQL database several hosts will share), resumable, verified by counts.

The periodic job (release due quarantines, reset stale counters, retention) is
``bounced cleanup``.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from bounced.cli import common
from bounced.cli.ingest_cmd import print_result
from bounced.daemon.serve import unsigned_exposure
from bounced.model import MessageState
from bounced.ops.processing import process_messages, trust_policy
from bounced.store import DatabaseError
from bounced.store.copy import copy_database

#: The one-line summary in ``bounced --help``.
HELP = "create, check and maintain the database"
#: What ``bounced db --help`` says first.
DESCRIPTION = "Create, check and maintain the bounced database (SQLite or PostgreSQL)."


def register(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="db_action", metavar="ACTION", required=True)
    init = actions.add_parser("init", help="create or migrate the database")
    migrate = actions.add_parser("migrate", help="bring the schema to this version's "
                                                 "(the explicit step on PostgreSQL)")
    check = actions.add_parser("check", help="integrity, schema version, stuck messages")
    retry = actions.add_parser("retry", help="process failed messages again")
    copy = actions.add_parser("copy", help="copy every row into another database "
                                           "(e.g. SQLite to PostgreSQL), resumable")
    copy.add_argument("--from", dest="source", required=True, metavar="PATH|URL",
                      help="the database to read (its schema current: db migrate first)")
    copy.add_argument("--to", dest="target", required=True, metavar="PATH|URL",
                      help="the database to fill (created and migrated if needed)")
    copy.set_defaults(handler=run_copy)
    for sub in (init, migrate, check, retry):
        common.add_db(sub)
    retry.add_argument("--config", metavar="FILE", help="TOML configuration file")
    check.add_argument("--config", metavar="FILE",
                       help="also check the configuration the daemon runs with (exposure, "
                            "disk reserve, WAL warning size)")
    init.set_defaults(handler=run_init)
    migrate.set_defaults(handler=run_migrate)
    check.set_defaults(handler=run_check)
    retry.set_defaults(handler=run_retry)


@common.command("db init")
def run_init(args: argparse.Namespace, out: TextIO) -> int:
    with common.open_store(args.db, migrate=True) as store:
        print(f"{args.db}: ready, schema version {store.health.schema_version()}", file=out)
    return 0


@common.command("db migrate")
def run_migrate(args: argparse.Namespace, out: TextIO) -> int:
    try:
        with common.open_readonly(args.db, require_schema=False) as store:
            before = store.health.schema_version()
    except common.UsageError:  # a SQLite file not created yet
        before = 0
    with common.open_store(args.db, migrate=True) as store:
        after = store.health.schema_version()
    if before == after:
        print(f"{args.db}: schema version {after}, nothing to migrate", file=out)
    else:
        print(f"{args.db}: schema version {before} -> {after}", file=out)
    return 0


@common.command("db check")
def run_check(args: argparse.Namespace, out: TextIO) -> int:
    config = common.config_of(args)
    with common.open_readonly(args.db, require_schema=False) as store:
        try:
            result = store.health.check(min_free_mb=config.storage.min_free_mb,
                                        wal_warn_mb=config.database.wal_warn_mb)
        except DatabaseError as error:
            raise common.UsageError(f"--db {args.db}: not a bounced database ({error})") from None
    for fact in result.facts:
        print(fact, file=out)
    if args.config is not None:
        exposure = unsigned_exposure(config)
        if exposure is not None:
            print(f"WARNING: {exposure}", file=out)
    for problem in result.problems:
        print(f"PROBLEM: {problem}", file=out)
    print(f"{args.db}: {'NOT OK' if result.problems else 'ok'}", file=out)
    return 1 if result.problems else 0


@common.command("db copy")
def run_copy(args: argparse.Namespace, out: TextIO) -> int:
    with common.open_readonly(args.source) as source, \
            common.open_store(args.target, migrate=True) as target:
        results = copy_database(source, target)
    for result in results:
        state = "ok" if result.verified else "MISMATCH"
        print(f"{result.table:<20} copied {result.copied:>9}  rows {result.source_rows:>9} "
              f"-> {result.target_rows:>9}  {state}", file=out)
    bad = [result.table for result in results if not result.verified]
    if bad:
        print(f"counts differ in {', '.join(bad)}: is a daemon still writing to "
              f"{args.source}? Stop it and run the copy again (it resumes).", file=out)
        return 1
    print(f"{args.target}: verified, every table has the rows of {args.source}", file=out)
    return 0


@common.command("db retry")
def run_retry(args: argparse.Namespace, out: TextIO) -> int:
    config = common.config_of(args)
    with common.open_store(args.db, config=config) as store:
        ids = store.messages.ids(MessageState.FAILED, limit=1_000_000_000)
        # Retried by hand: past processing.max_attempts too (the operator fixed the cause).
        results = process_messages(store, ids, config=config, rules=store.rules.enabled(),
                                   trust=trust_policy(config), attempt_limit=False)
    failed = 0
    for result in results:
        print_result(f"#{result.message_id}", result, out)
        failed += result.state is MessageState.FAILED
    print(f"retried {len(results)}, still failed {failed}", file=out)
    return 1 if failed else 0
