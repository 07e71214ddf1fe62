"""``bounced quarantine``: look at and steer address states.

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
import dataclasses
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from bounced.cli import common
from bounced.core.decisions import Decision, allowed, denied, released
from bounced.core.tables import render_table
from bounced.core.times import format_optional
from bounced.model import QuarantineState
from bounced.ops.audit import check_address, history
from bounced.ops.quarantine import (
    ActionResult,
    act,
    import_denylist,
    parse_import,
    plan_rollback,
    rollback,
    write_suppressions_csv,
)

# --------------------------------------------------------------------------- parser


#: The one-line summary in ``bounced --help``.
HELP = "list, show, release, allow, deny, import, export, roll back addresses"
#: What ``bounced quarantine --help`` says first.
DESCRIPTION = ("Look at and steer the quarantine state of addresses. Every change "
        "is written to the address's history (address_events) with its cause.")


def register(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="quarantine_action", metavar="ACTION", required=True)

    listing = actions.add_parser("list", help="addresses in quarantine or denylisted")
    common.add_db(listing)
    listing.add_argument("--state", action="append", choices=[s.value for s in QuarantineState],
                         help="states to list, repeatable (default: quarantine, denylisted)")
    listing.add_argument("--limit", type=int, default=1000, help="at most this many rows")
    listing.add_argument("--json", action="store_true", help="JSON lines for a machine")
    listing.set_defaults(handler=run_list)

    show = actions.add_parser("show", help="an address's state and full history")
    common.add_db(show)
    common.add_config(show)
    show.add_argument("address", metavar="ADDRESS")
    show.add_argument("--json", action="store_true", help="JSON for a machine")
    show.set_defaults(handler=run_show)

    for name, help_text, decide in (
        ("release", "back to valid, counters at zero", released),
        ("allow", "put on the allowlist: errors ignored with reason 25", allowed),
        ("deny", "put on the denylist", denied),
    ):
        sub = actions.add_parser(name, help=help_text)
        common.add_db(sub)
        common.add_config(sub)
        common.add_at(sub)
        sub.add_argument("addresses", nargs="+", metavar="ADDRESS")
        sub.add_argument("--note", help="why (kept in the history's cause)")
        sub.set_defaults(handler=_decision_handler(name, decide))

    imp = actions.add_parser("import", help="denylist the addresses of a CSV file")
    common.add_db(imp)
    common.add_config(imp)
    common.add_at(imp)
    imp.add_argument("file", metavar="FILE", help="CSV file (address column or first column), "
                     "- for standard input")
    imp.add_argument("--dry-run", action="store_true", help="check the file, change nothing")
    imp.set_defaults(handler=run_import)

    export = actions.add_parser("export", help="the suppression list")
    common.add_db(export)
    export.add_argument("--format", choices=("csv", "json"), default="csv")
    export.set_defaults(handler=run_export)

    back = actions.add_parser(
        "rollback", help="undo the state changes of one text or rule in a time window"
    )
    common.add_db(back)
    common.add_config(back)
    common.add_at(back)
    back.add_argument("--since", required=True, metavar="TIME",
                      help="start of the window: ISO-8601 or relative (24h, 7d)")
    back.add_argument("--until", metavar="TIME", help="end of the window (default: now)")
    which = back.add_mutually_exclusive_group(required=True)
    which.add_argument("--text", type=int, metavar="ID", help="qualification (text) id")
    which.add_argument("--rule", type=int, metavar="ID", help="rule id (qualified_by rule:ID)")
    back.add_argument("--dry-run", action="store_true", help="show what would change")
    back.set_defaults(handler=run_rollback)


# --------------------------------------------------------------------------- list / show


@common.command("quarantine list")
def run_list(args: argparse.Namespace, out: TextIO) -> int:
    states = [QuarantineState(state) for state in args.state or (
        QuarantineState.QUARANTINE.value, QuarantineState.DENYLISTED.value)]
    with common.open_readonly(args.db) as store:
        rows = store.addresses.listing(states, args.limit)
    if args.json:
        for row in rows:
            print(json.dumps(dataclasses.asdict(row)), file=out)
        return 0
    print(render_table(("ADDRESS", "STATE", "REASON", "SINCE", "ERRORS", "RELEASE AT"),
                       [dataclasses.astuple(row) for row in rows]), file=out)
    print(f"{len(rows)} address(es)", file=out)
    return 0


@common.command("quarantine show")
def run_show(args: argparse.Namespace, out: TextIO) -> int:
    rules = common.address_rules(args)
    common.check_addresses([args.address], rules)
    with common.open_readonly(args.db) as store:
        report = check_address(store, args.address, rules)
        events = history(store, args.address, rules)
    if args.json:
        print(json.dumps({"current": report.to_json(),
                          "history": [e.to_json() for e in events]}, indent=2), file=out)
        return 0
    reason = f", {report.reason.label}" if report.reason is not None else ""
    known = "" if report.known else " (never seen)"
    print(f"{report.address}: {report.state.value}{reason}{known}, "
          f"{report.error_count} counted error(s)", file=out)
    if report.release_at is not None:
        print(f"automatic release due at {format_optional(report.release_at)}", file=out)
    print(render_table(
        ("AT", "FROM", "TO", "CAUSE", "BOUNCE"),
        [(format_optional(e.at), e.old_state.value if e.old_state else None,
          e.new_state.value, e.cause, f"#{e.bounce_id}" if e.bounce_id is not None else None)
         for e in events],
    ), file=out)
    return 0


# --------------------------------------------------------------------------- decisions


def print_actions(results: list[ActionResult], out: TextIO) -> None:
    for result in results:
        old = result.old.value if result.old else "new"
        if result.changed:
            print(f"{result.address}: {old} -> {result.new.value}", file=out)
        else:
            print(f"{result.address}: already {result.new.value}, unchanged", file=out)


def _decision_handler(name: str, decide: Decision) -> Callable[..., int]:
    @common.command(f"quarantine {name}")
    def handler(args: argparse.Namespace, out: TextIO) -> int:
        rules = common.address_rules(args)
        addresses = common.check_addresses(args.addresses, rules)
        with common.open_store(args.db, config=common.config_of(args)) as store:
            results = act(store, decide, addresses, common.now_of(args), args.note, rules,
                          common.actor())
        print_actions(results, out)
        return 0

    return handler


@common.command("quarantine import")
def run_import(args: argparse.Namespace, out: TextIO) -> int:
    try:
        data = sys.stdin.read() if args.file == "-" else \
            Path(args.file).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise common.UsageError(f"{args.file}: {getattr(error, 'strerror', None) or error}") \
            from None
    plan = parse_import(data, common.address_rules(args))
    for bad in plan.bad:
        print(f"{args.file}:{bad.line}: {bad.problem}", file=sys.stderr)
    source = "stdin" if args.file == "-" else Path(args.file).name
    if args.dry_run:
        print(f"{len(plan.addresses)} address(es) to denylist, {len(plan.bad)} bad "
              f"line(s), {plan.duplicates} duplicate(s); nothing changed", file=out)
        return 1 if plan.bad else 0
    with common.open_store(args.db, config=common.config_of(args)) as store:
        result = import_denylist(store, plan, common.now_of(args), source, common.actor())
    for address in result.kept_allowlisted:
        print(f"{address}: on the allowlist, kept (use `quarantine deny` to override)",
              file=out)
    print(f"denylisted {result.denylisted}, already denylisted {result.already}, "
          f"kept on the allowlist {len(result.kept_allowlisted)}, "
          f"bad line(s) {len(plan.bad)}, duplicate(s) {plan.duplicates}", file=out)
    return 1 if plan.bad else 0


# --------------------------------------------------------------------------- export

@common.command("quarantine export")
def run_export(args: argparse.Namespace, out: TextIO) -> int:
    with common.open_readonly(args.db) as store:
        rows = store.addresses.suppression_list()
    if args.format == "json":
        json.dump([dataclasses.asdict(row) for row in rows], out, indent=2)
        print(file=out)
        return 0
    write_suppressions_csv(rows, out)
    return 0


# --------------------------------------------------------------------------- rollback


@common.command("quarantine rollback")
def run_rollback(args: argparse.Namespace, out: TextIO) -> int:
    config = common.config_of(args)
    now = common.now_of(args)
    since = common.when(args.since, now, "--since")
    until = common.when(args.until, now, "--until")
    assert since is not None
    with common.open_store(args.db, config=config) as store:
        if args.dry_run:
            plan = plan_rollback(store, since=since, until=until, text_id=args.text,
                                 rule_id=args.rule, config=config)
        else:
            plan = rollback(store, since=since, until=until, text_id=args.text,
                            rule_id=args.rule, config=config, at=now, actor=common.actor())
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
    print(f"{plan.selector} since {format_optional(plan.since)}: {summary}", file=out)
    return 0
