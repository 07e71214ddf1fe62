"""``bounced cleanup [--at T]``: the maintenance job by hand or from cron.

1. Release ``Mailbox full`` quarantines older than ``policy.mailbox_full_release_after``
   (30 days) and reset soft-error counters whose last counted error is older than
   ``policy.counter_reset_after`` (10 days): :func:`bounced.ops.processing.run_cleanup`,
   the same job the daemon runs, each change written to the history.
2. Purge what is older than ``database.retention`` (:mod:`bounced.store.retention` says
   what is kept as evidence), in batches of ``--batch`` messages per transaction so the
   daemon's writer is never blocked for long. The daemon runs the same purge.
"""

from __future__ import annotations

import argparse
from typing import Any, TextIO

from bounced.cli.common import add_at, add_db, command, config_of, now_of, open_store
from bounced.core.times import format_time
from bounced.ops.processing import run_cleanup
from bounced.store.retention import DEFAULT_BATCH


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "cleanup",
        help="release due quarantines, reset stale counters, purge past retention",
        description="Release Mailbox-full quarantines after 30 days, reset soft-error "
        "counters after 10 days, purge raw messages and bounces past database.retention.",
    )
    add_db(parser)
    add_at(parser)
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="N",
                        help=f"messages per purge transaction (default {DEFAULT_BATCH})")
    parser.set_defaults(handler=run)


@command("cleanup")
def run(args: argparse.Namespace, out: TextIO) -> int:
    config = config_of(args)
    at = now_of(args)
    cutoff = at - config.database.retention
    with open_store(args.db) as store:
        events = run_cleanup(store, config=config, at=at)
        purged = store.retention.purge(cutoff, max(1, args.batch))
    for event in events:
        old = event.old_state.value if event.old_state else "new"
        print(f"{event.address}: {old} -> {event.new_state.value} ({event.cause})", file=out)
    print(f"{len(events)} address(es) changed", file=out)
    print(f"purged before {format_time(cutoff)}: {purged.messages_deleted} message(s) and "
          f"{purged.bounces_deleted} bounce(s) deleted, raw bytes dropped from "
          f"{purged.raw_dropped} message(s) kept as evidence of the history", file=out)
    return 0
