"""``bounced reprocess [--since T] [--dry-run]``: re-qualify stored bounces with today's
rules.

Prints the addresses that would leave or enter quarantine (and any other change of
state), then applies, unless ``--dry-run``. Applying twice is harmless: the second run
finds nothing to change. The history is kept: changed verdicts are recorded in
``verdict_changes``, changed states in ``address_events``.
"""

from __future__ import annotations

import argparse
from typing import TextIO

from bounced.cli import common
from bounced.core.tables import render_table
from bounced.core.times import format_optional
from bounced.ops.quarantine import AddressChange
from bounced.ops.reprocess import apply_plan, plan

#: The one-line summary in ``bounced --help``.
HELP = "re-qualify stored bounces with today's rules, show and apply the changes"
#: What ``bounced reprocess --help`` says first.
DESCRIPTION = ("Parse and qualify the stored raw messages again with today's rules "
        "and qualification table, print the addresses that would leave or enter "
        "quarantine, then apply (unless --dry-run).")


def register(parser: argparse.ArgumentParser) -> None:
    common.add_db(parser)
    common.add_at(parser)
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--since", metavar="TIME",
                        help="only bounces since: ISO-8601 or relative (7d, 24h)")
    parser.add_argument("--dry-run", action="store_true", help="show what would change")
    parser.set_defaults(handler=run)


def _table(changes: tuple[AddressChange, ...]) -> str:
    return render_table(("ADDRESS", "FROM", "TO", "EFFECT"),
                        [(c.address, c.old.value, c.new.value, c.direction) for c in changes])


@common.command("reprocess")
def run(args: argparse.Namespace, out: TextIO) -> int:
    config = common.config_of(args)
    now = common.now_of(args)
    since = common.when(args.since, now, "--since")
    with common.open_store(args.db, config=config) as store:
        planned = plan(store, since=since, config=config)
        window = f" since {format_optional(since)}" if since is not None else ""
        print(f"{planned.messages} message(s){window} re-qualified: "
              f"{len(planned.bounces)} bounce(s) get another verdict", file=out)
        if planned.unmatched:
            print(f"{planned.unmatched} stored bounce(s) no longer match the parsed "
                  "message: left as they are", file=out)
        if planned.changes:
            print(_table(planned.changes), file=out)
        leave = sum(c.direction == "leaves quarantine" for c in planned.changes)
        enter = sum(c.direction == "enters quarantine" for c in planned.changes)
        if args.dry_run:
            print(f"would change {len(planned.changes)} address(es): {leave} leave "
                  f"quarantine, {enter} enter quarantine (dry run, nothing written)",
                  file=out)
            return 0
        applied = apply_plan(store, planned, config=config, at=now, actor=common.actor())
    print(f"applied: {len(applied)} address(es) changed state", file=out)
    return 0

