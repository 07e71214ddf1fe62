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
from typing import TextIO

from bounced.cli import common
from bounced.core.times import format_time
from bounced.ops.processing import run_cleanup
from bounced.store.retention import DEFAULT_BATCH

#: The one-line summary in ``bounced --help``.
HELP = "release due quarantines, reset stale counters, purge past retention"
#: What ``bounced cleanup --help`` says first.
DESCRIPTION = ("Release Mailbox-full quarantines after 30 days, reset soft-error "
        "counters after 10 days, purge raw messages and bounces past database.retention.")


def register(parser: argparse.ArgumentParser) -> None:
    common.add_db(parser)
    common.add_at(parser)
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--batch", type=int, default=DEFAULT_BATCH, metavar="N",
                        help=f"messages per purge transaction (default {DEFAULT_BATCH})")
    parser.set_defaults(handler=run)


@common.command("cleanup")
def run(args: argparse.Namespace, out: TextIO) -> int:
    config = common.config_of(args)
    at = common.now_of(args)
    cutoff = at - config.database.retention
    with common.open_store(args.db, config=config) as store:
        events = run_cleanup(store, config=config, at=at)
        purged = store.retention.purge(cutoff, max(1, args.batch))
    for event in events:
        old = event.old_state.value if event.old_state else "new"
        print(f"{event.address}: {old} -> {event.new_state.value} ({event.cause})", file=out)
    print(f"{len(events)} address(es) changed", file=out)
    print(f"purged before {format_time(cutoff)}: {purged.messages_deleted} message(s) and "
          f"{purged.bounces_deleted} bounce(s) deleted, raw bytes dropped from "
          f"{purged.raw_dropped} message(s) kept as evidence of the history, "
          f"{purged.webhook_events_deleted} webhook event(s) deleted", file=out)
    return 0
