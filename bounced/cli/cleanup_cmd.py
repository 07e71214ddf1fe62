"""``bounced cleanup [--at T]``: the maintenance job by hand or from cron (issue 4, item 7).

1. Release ``Mailbox full`` quarantines older than ``policy.mailbox_full_release_after``
   (30 days) and reset soft-error counters whose last counted error is older than
   ``policy.counter_reset_after`` (10 days): :func:`bounced.ops.processing.run_cleanup`, the
   same job the daemon runs, each change written to the history.
2. Purge what is older than ``database.retention``: raw messages and bounce rows, in
   batches of ``--batch`` messages per transaction so the daemon's writer is never
   blocked for long.

What the purge keeps, on purpose:

- messages still ``pending`` or ``failed``: nothing accepted is lost before it was
  processed (SPEC §8);
- bounce rows that caused a state change: ``address_events`` is the append-only history
  and its ``bounce_id`` must keep pointing at the evidence. Their message row stays
  too (the bounce references it) but its raw bytes are dropped (``raw`` emptied,
  ``size`` and ``sha256`` kept), which is where the space is.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from bounced.cli.db_cmd import load_config_or_fail, open_store_or_fail
from bounced.cli.quarantine_cmd import add_at, add_db, guarded, iso, now_of
from bounced.core.times import format_time
from bounced.ops.processing import run_cleanup
from bounced.store import Store

#: Messages handled per purge transaction.
DEFAULT_BATCH = 500


@dataclass(frozen=True, slots=True)
class PurgeResult:
    messages_deleted: int
    raw_dropped: int
    bounces_deleted: int
    batches: int


def purge_expired(store: Store, cutoff: datetime, batch: int = DEFAULT_BATCH) -> PurgeResult:
    """Delete processed messages received before ``cutoff`` and their bounce rows, keeping
    the bounces the history points at (see the module docstring). One short transaction
    per ``batch`` messages; walks by id so every message is looked at once."""
    deleted = dropped = bounces = batches = 0
    last_id = 0
    limit = format_time(cutoff)
    while True:
        with store.transaction() as conn:
            ids = [int(row[0]) for row in conn.execute(
                "SELECT id FROM messages WHERE id > ? AND received_at < ? "
                "AND state = 'processed' ORDER BY id LIMIT ?",
                (last_id, limit, batch),
            )]
            if not ids:
                break
            batches += 1
            last_id = ids[-1]
            marks = ",".join("?" * len(ids))
            bounces += conn.execute(
                f"DELETE FROM bounces WHERE message_id IN ({marks}) AND NOT EXISTS "
                "(SELECT 1 FROM address_events e WHERE e.bounce_id = bounces.id)",
                ids,
            ).rowcount
            deleted += conn.execute(
                f"DELETE FROM messages WHERE id IN ({marks}) AND NOT EXISTS "
                "(SELECT 1 FROM bounces b WHERE b.message_id = messages.id)",
                ids,
            ).rowcount
            dropped += conn.execute(
                f"UPDATE messages SET raw = X'' WHERE id IN ({marks}) AND length(raw) > 0",
                ids,
            ).rowcount
    return PurgeResult(deleted, dropped, bounces, batches)


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


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    def body(args: argparse.Namespace, out: TextIO) -> int:
        config = load_config_or_fail(args.config)
        at = now_of(args)
        cutoff = at - config.database.retention
        with open_store_or_fail(args.db) as store:
            events = run_cleanup(store, config=config, at=at)
            purged = purge_expired(store, cutoff, max(1, args.batch))
        for event in events:
            old = event.old_state.value if event.old_state else "new"
            print(f"{event.address}: {old} -> {event.new_state.value} ({event.cause})",
                  file=out)
        print(f"{len(events)} address(es) changed", file=out)
        print(f"purged before {iso(cutoff)}: {purged.messages_deleted} message(s) and "
              f"{purged.bounces_deleted} bounce(s) deleted, raw bytes dropped from "
              f"{purged.raw_dropped} message(s) kept as evidence of the history", file=out)
        return 0

    return guarded("cleanup", body, args, out)
