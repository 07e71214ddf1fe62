"""``bounced quarantine``: look at and steer address states (issue 4, items 1, 2, 6).

- ``list``: addresses in quarantine / denylisted (or any ``--state``);
- ``show ADDRESS``: the current state and the full history from ``address_events``;
- ``release|allow|deny ADDRESS...``: operator decisions, each written to the history
  with its cause (``--note`` adds the why: a ticket number, a customer call);
- ``import FILE``: denylist the addresses of a CSV exported by another system; bad
  lines are reported by number (exit 1) and the good ones imported;
- ``export [--format csv|json]``: the suppression list for a sending platform;
- ``rollback --since T (--text ID | --rule ID) [--dry-run]``: undo the state changes
  one normalized text or one rule caused in a time window (an ISP outage).

Times: ISO-8601 or relative to now / ``--at`` (``7d``, ``24h``). Exit status 2 for a
usage problem (bad option, missing database), with one line naming the culprit.
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
from collections.abc import Callable
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
from bounced.core.addresses import NO_FOLDING, AddressRules, rules_from_config
from bounced.core.tables import render_table
from bounced.core.times import format_time, parse_when
from bounced.model import QuarantineState
from bounced.ops.audit import check_address, history
from bounced.ops.quarantine import (
    ActionResult,
    Decision,
    act,
    allowed,
    denied,
    import_denylist,
    parse_import,
    plan_rollback,
    released,
    rollback,
)
from bounced.store import BUSY_TIMEOUT_MS, SCHEMA_VERSION

# --------------------------------------------------------------------------- shared helpers


def add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, metavar="PATH", help="SQLite database file")


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="TOML configuration file ([addresses] folding, retention, ...)")


def address_rules(args: argparse.Namespace) -> AddressRules:
    """The ``[addresses]`` folding of ``--config``, so an operator's address finds the
    key the pipeline stored (``Jane+News@Gmail.com`` -> ``jane@gmail.com`` if folded)."""
    path = getattr(args, "config", None)
    return rules_from_config(load_config_or_fail(path).addresses) if path else NO_FOLDING


def add_at(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--at", type=parse_at, metavar="ISO-8601",
                        help="the time the action happens at (default: now)")


def now_of(args: argparse.Namespace) -> datetime:
    """``--at`` or the clock: the one place operator commands read the time."""
    at = getattr(args, "at", None)
    return at if at is not None else datetime.now(UTC)


def when(text: str | None, now: datetime, option: str) -> datetime | None:
    if text is None:
        return None
    try:
        return parse_when(text, now)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None


class ReadOnly:
    """A read-only connection for commands that only look (check, explain, list, show,
    export): no write lock, no migration, no seeding, so a sender's ``check`` never
    waits behind the daemon's writer nor slows it down (WAL readers see the last
    commit)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> ReadOnly:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.conn.close()


def open_existing(path: str) -> ReadOnly:
    """Open ``path`` read-only; a missing file is an error (a typo must not create an
    empty database that says every address is fine), so is a schema this code does
    not know (``bounced db init`` migrates it)."""
    target = Path(path)
    if not target.is_file():
        raise UsageError(f"--db {path}: no such database file")
    try:
        conn = sqlite3.connect(f"{target.resolve().as_uri()}?mode=ro", uri=True,
                               check_same_thread=False)
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        version = int(conn.execute("PRAGMA user_version").fetchone()[0])
    except sqlite3.Error as error:
        raise UsageError(f"--db {path}: not a usable bounced database: {error}") from None
    if version != SCHEMA_VERSION:
        conn.close()
        raise UsageError(f"--db {path}: schema version {version}, this bounced needs "
                         f"{SCHEMA_VERSION} (run `bounced db init --db {path}`)")
    return ReadOnly(conn)


def guarded(name: str, body: Callable[[argparse.Namespace, TextIO], int],
            args: argparse.Namespace, out: TextIO | None) -> int:
    try:
        return int(body(args, out or sys.stdout))
    except UsageError as error:
        print(f"bounced {name}: {error}", file=sys.stderr)
        return USAGE_ERROR


def iso(moment: datetime | None) -> str | None:
    return format_time(moment) if moment is not None else None


# --------------------------------------------------------------------------- parser


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "quarantine",
        help="list, show, release, allow, deny, import, export, roll back addresses",
        description="Look at and steer the quarantine state of addresses. Every change "
        "is written to the address's history (address_events) with its cause.",
    )
    actions = parser.add_subparsers(dest="quarantine_action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="addresses in quarantine or denylisted")
    add_db(listing)
    listing.add_argument("--state", action="append", choices=[s.value for s in QuarantineState],
                         help="states to list, repeatable (default: quarantine, denylisted)")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many rows")
    listing.add_argument("--json", action="store_true", help="JSON lines for a machine")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="an address's state and full history")
    add_db(show)
    add_config(show)
    show.add_argument("address", metavar="ADDRESS")
    show.add_argument("--json", action="store_true", help="JSON for a machine")
    show.set_defaults(handler=run_show)

    for name, help_text, decide in (
        ("release", "back to valid, counters at zero", released),
        ("allow", "put on the allowlist: errors ignored with reason 25", allowed),
        ("deny", "put on the denylist", denied),
    ):
        sub = actions.add_parser(name, help=help_text)
        add_db(sub)
        add_config(sub)
        add_at(sub)
        sub.add_argument("addresses", nargs="+", metavar="ADDRESS")
        sub.add_argument("--note", help="why (kept in the history's cause)")
        sub.set_defaults(handler=_decision_handler(name, decide))

    imp = actions.add_parser("import", help="denylist the addresses of a CSV file")
    add_db(imp)
    add_config(imp)
    add_at(imp)
    imp.add_argument("file", metavar="FILE", help="CSV file (address column or first column), "
                     "- for standard input")
    imp.add_argument("--dry-run", action="store_true", help="check the file, change nothing")
    imp.set_defaults(handler=run_import)

    export = actions.add_parser("export", help="the suppression list")
    add_db(export)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.set_defaults(handler=run_export)

    back = actions.add_parser(
        "rollback", help="undo the state changes of one text or rule in a time window"
    )
    add_db(back)
    add_config(back)
    add_at(back)
    back.add_argument("--since", required=True, metavar="TIME",
                      help="start of the window: ISO-8601 or relative (24h, 7d)")
    back.add_argument("--until", metavar="TIME", help="end of the window (default: now)")
    which = back.add_mutually_exclusive_group(required=True)
    which.add_argument("--text", type=int, metavar="ID", help="qualification (text) id")
    which.add_argument("--rule", type=int, metavar="ID", help="rule id (qualified_by rule:ID)")
    back.add_argument("--dry-run", action="store_true", help="show what would change")
    back.set_defaults(handler=run_rollback)


# --------------------------------------------------------------------------- list / show


def run_list(args: argparse.Namespace, out: TextIO | None = None) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        states = args.state or [QuarantineState.QUARANTINE.value,
                                QuarantineState.DENYLISTED.value]
        with open_existing(args.db) as store:
            rows = store.conn.execute(
                "SELECT a.address, a.state, r.label, COALESCE(a.quarantined_at, a.updated_at), "
                "a.error_count, a.release_at FROM addresses a "
                "LEFT JOIN reasons r ON r.code = a.reason_code "
                f"WHERE a.state IN ({','.join('?' * len(states))}) "
                "ORDER BY COALESCE(a.quarantined_at, a.updated_at) DESC, a.address LIMIT ?",
                (*states, args.limit),
            ).fetchall()
        if args.json:
            for row in rows:
                print(json.dumps(dict(zip(
                    ("address", "state", "reason", "since", "error_count", "release_at"),
                    row, strict=True))), file=out)
            return 0
        print(render_table(("ADDRESS", "STATE", "REASON", "SINCE", "ERRORS", "RELEASE AT"),
                           rows), file=out)
        print(f"{len(rows)} address(es)", file=out)
        return 0

    return guarded("quarantine list", body, args, out)


def run_show(args: argparse.Namespace, out: TextIO | None = None) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        with open_existing(args.db) as store:
            rules = address_rules(args)
            report = check_address(store.conn, args.address, rules)
            events = history(store.conn, args.address, rules)
        if args.json:
            print(json.dumps({"current": report.to_json(),
                              "history": [e.to_json() for e in events]}, indent=2), file=out)
            return 0
        reason = f", {report.reason.label}" if report.reason is not None else ""
        known = "" if report.known else " (never seen)"
        print(f"{report.address}: {report.state.value}{reason}{known}, "
              f"{report.error_count} counted error(s)", file=out)
        if report.release_at is not None:
            print(f"automatic release due at {iso(report.release_at)}", file=out)
        print(render_table(
            ("AT", "FROM", "TO", "CAUSE", "BOUNCE"),
            [(iso(e.at), e.old_state.value if e.old_state else None, e.new_state.value,
              e.cause, f"#{e.bounce_id}" if e.bounce_id is not None else None)
             for e in events],
        ), file=out)
        return 0

    return guarded("quarantine show", body, args, out)


# --------------------------------------------------------------------------- decisions


def print_actions(results: list[ActionResult], out: TextIO) -> None:
    for result in results:
        old = result.old.value if result.old else "new"
        if result.changed:
            print(f"{result.address}: {old} -> {result.new.value}", file=out)
        else:
            print(f"{result.address}: already {result.new.value}, unchanged", file=out)


def _decision_handler(name: str, decide: Decision) -> Callable[..., int]:
    def handler(args: argparse.Namespace, out: TextIO | None = None) -> int:
        def body(args: argparse.Namespace, out: TextIO) -> int:
            with open_store_or_fail(args.db) as store:
                results = act(store, decide, args.addresses, now_of(args), args.note,
                              address_rules(args))
            print_actions(results, out)
            return 0

        return guarded(f"quarantine {name}", body, args, out)

    return handler


def run_import(args: argparse.Namespace, out: TextIO | None = None) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        try:
            data = sys.stdin.read() if args.file == "-" else \
                Path(args.file).read_text(encoding="utf-8-sig")
        except (OSError, UnicodeDecodeError) as error:
            raise UsageError(f"{args.file}: {getattr(error, 'strerror', None) or error}") \
                from None
        plan = parse_import(data, address_rules(args))
        for bad in plan.bad:
            print(f"{args.file}:{bad.line}: {bad.problem}", file=sys.stderr)
        source = "stdin" if args.file == "-" else Path(args.file).name
        if args.dry_run:
            print(f"{len(plan.addresses)} address(es) to denylist, {len(plan.bad)} bad "
                  f"line(s), {plan.duplicates} duplicate(s); nothing changed", file=out)
            return 1 if plan.bad else 0
        with open_store_or_fail(args.db) as store:
            result = import_denylist(store, plan, now_of(args), source)
        for address in result.kept_allowlisted:
            print(f"{address}: on the allowlist, kept (use `quarantine deny` to override)",
                  file=out)
        print(f"denylisted {result.denylisted}, already denylisted {result.already}, "
              f"kept on the allowlist {len(result.kept_allowlisted)}, "
              f"bad line(s) {len(plan.bad)}, duplicate(s) {plan.duplicates}", file=out)
        return 1 if plan.bad else 0

    return guarded("quarantine import", body, args, out)


# --------------------------------------------------------------------------- export

EXPORT_COLUMNS = ("address", "state", "reason", "since")


def run_export(args: argparse.Namespace, out: TextIO | None = None) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        with open_existing(args.db) as store:
            rows = store.conn.execute(
                "SELECT address, state, reason, since FROM suppression_list ORDER BY address"
            ).fetchall()
        if args.format == "json":
            json.dump([dict(zip(EXPORT_COLUMNS, row, strict=True)) for row in rows], out,
                      indent=2)
            print(file=out)
            return 0
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(EXPORT_COLUMNS)
        writer.writerows(rows)
        return 0

    return guarded("quarantine export", body, args, out)


# --------------------------------------------------------------------------- rollback


def run_rollback(args: argparse.Namespace, out: TextIO | None = None) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        config = load_config_or_fail(args.config)
        now = now_of(args)
        since = when(args.since, now, "--since")
        until = when(args.until, now, "--until")
        assert since is not None
        with open_store_or_fail(args.db) as store:
            if args.dry_run:
                plan = plan_rollback(store.conn, since=since, until=until, text_id=args.text,
                                     rule_id=args.rule, config=config)
            else:
                plan = rollback(store, since=since, until=until, text_id=args.text,
                                rule_id=args.rule, config=config, at=now)
        if plan.changes:
            print(render_table(("ADDRESS", "FROM", "TO", "EFFECT"),
                               [(c.address, c.old.value, c.new.value, c.direction)
                                for c in plan.changes]), file=out)
        if args.dry_run:
            summary = (f"{len(plan.bounces)} bounce(s) would no longer count, "
                       f"{len(plan.changes)} address(es) would change (dry run)")
        else:
            summary = (f"{len(plan.bounces)} bounce(s) no longer count, "
                       f"{len(plan.changes)} address(es) changed")
        print(f"{plan.selector} since {iso(plan.since)}: {summary}", file=out)
        return 0

    return guarded("quarantine rollback", body, args, out)
