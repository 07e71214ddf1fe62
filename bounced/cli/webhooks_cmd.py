"""``bounced webhooks``: look at and steer the webhook outbox (``docs/webhooks.md``).

- ``list``: deliveries, newest event first, with their state, attempts and last error;
- ``retry``: every ``dead`` delivery (retries gave up) due again;
- ``replay --since T``: every event since ``T`` sent again, delivered or not, with the
  same ids (a receiver that lost its data gets it back).

The running daemon sends what these make due within a second.
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from bounced.cli import common
from bounced.core.times import format_optional

#: The one-line summary in ``bounced --help``.
HELP = "list, retry and replay webhook deliveries"
#: What ``bounced webhooks --help`` says first.
DESCRIPTION = ("The webhook outbox: what each endpoint was sent or is still owed; "
               "retry given-up deliveries, replay events since a time.")
STATES = ("pending", "delivered", "dead")


def register(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="webhooks_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="deliveries, newest first")
    retry = actions.add_parser("retry", help="dead deliveries due again")
    replay = actions.add_parser("replay", help="send every event since a time again")
    for sub in (listing, retry, replay):
        common.add_db(sub)
        common.add_at(sub)
    listing.add_argument("--state", choices=STATES, help="only deliveries in this state")
    listing.add_argument("--since", metavar="WHEN", help="events since (ISO-8601 or 7d, 24h)")
    listing.add_argument("--limit", type=int, default=100, metavar="N",
                         help="at most N deliveries (default 100)")
    common.add_json(listing, "one JSON object per line")
    replay.add_argument("--since", metavar="WHEN", required=True,
                        help="events since (ISO-8601 or 7d, 24h)")
    replay.add_argument("--endpoint", metavar="URL", help="only this endpoint's deliveries")
    listing.set_defaults(handler=run_list)
    retry.set_defaults(handler=run_retry)
    replay.set_defaults(handler=run_replay)


@common.command("webhooks list")
def run_list(args: argparse.Namespace, out: TextIO) -> int:
    since = common.when(args.since, common.now_of(args), "--since")
    if args.limit < 1:
        raise common.UsageError(f"--limit: expected a positive number, got {args.limit}")
    with common.open_readonly(args.db) as store:
        deliveries = store.outbox.listing(state=args.state, since=since, limit=args.limit)
    for delivery in deliveries:
        row = {
            "event_id": delivery.event_id, "type": delivery.event_type,
            "created_at": format_optional(delivery.created_at),
            "endpoint": delivery.endpoint, "state": delivery.state,
            "attempts": delivery.attempts,
            "next_attempt_at": format_optional(delivery.next_attempt_at),
            "last_status": delivery.last_status, "last_error": delivery.last_error,
        }
        if args.json:
            print(json.dumps(row), file=out)
            continue
        error = f"  last: {delivery.last_status or '-'} {delivery.last_error}" \
            if delivery.last_error else ""
        print(f"{row['created_at']}  {delivery.event_id}  {delivery.event_type:<20} "
              f"{delivery.state:<9} attempts={delivery.attempts}  {delivery.endpoint}{error}",
              file=out)
    if not args.json:
        print(f"{len(deliveries)} deliver{'y' if len(deliveries) == 1 else 'ies'}", file=out)
    return 0


@common.command("webhooks retry")
def run_retry(args: argparse.Namespace, out: TextIO) -> int:
    with common.open_store(args.db) as store, store.atomic():
        count = store.outbox.retry_dead(common.now_of(args))
    print(f"{count} dead deliver{'y' if count == 1 else 'ies'} due again", file=out)
    return 0


@common.command("webhooks replay")
def run_replay(args: argparse.Namespace, out: TextIO) -> int:
    now = common.now_of(args)
    since = common.when(args.since, now, "--since")
    assert since is not None
    with common.open_store(args.db) as store, store.atomic():
        count = store.outbox.replay(since, now, args.endpoint)
    print(f"{count} deliver{'y' if count == 1 else 'ies'} due again", file=out)
    return 0
