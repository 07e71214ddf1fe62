"""``bounced explain ADDRESS``: why an address is where it is.

Every bounce that touched the address, in time order, with its normalized text, the
qualification-table row and its status, what decided the verdict (which rule, which
table row, which status code), any later re-qualification, and each change of state
with its cause. ``--json`` gives the same timeline to a machine.
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from bounced.cli import common
from bounced.core.times import format_optional
from bounced.ops.audit import BounceStep, explain

#: The one-line summary in ``bounced --help``.
HELP = "every bounce and state change of an address, and what qualified it"
#: What ``bounced explain --help`` says first.
DESCRIPTION = ("Show every bounce that touched ADDRESS (normalized text, the rule or "
        "table row that qualified it) and each state change, in time order.")


def register(parser: argparse.ArgumentParser) -> None:
    common.add_db(parser)
    common.add_config(parser)
    parser.add_argument("address", metavar="ADDRESS",
                        help="jane@example.org, tel:+33612345678 or push:APP_ID:TOKEN")
    common.add_json(parser, "the timeline as JSON")
    parser.set_defaults(handler=run)


def _print_bounce(step: BounceStep, out: TextIO) -> None:
    verdict = (f"{step.failure_type.value}/{step.reason.label} ({int(step.reason)})"
               if step.failure_type is not None and step.reason is not None else "no verdict")
    status = f" {step.status}" if step.status else ""
    print(f"{format_optional(step.at)}  bounce #{step.bounce_id} (message #{step.message_id}) "
          f"{step.kind}{status}: {verdict}", file=out)
    if step.diagnostic:
        print(f"    diagnostic: {' '.join(step.diagnostic.split())}", file=out)
    if step.text_id is not None:
        state = step.text_status.value if step.text_status else "?"
        print(f"    text #{step.text_id} [{state}]: {step.text}", file=out)
    print(f"    qualified by {step.qualified_by or '-'}: {step.decided_by}", file=out)
    for change in step.changes:
        print(f"    {format_optional(change.at)} {change.cause}: {change.old} -> {change.new}",
              file=out)


@common.command("explain")
def run(args: argparse.Namespace, out: TextIO) -> int:
    rules = common.address_rules(args)
    [address] = common.check_addresses([args.address], rules)
    with common.open_readonly(args.db) as store:
        story = explain(store, address, rules)
    if args.json:
        print(json.dumps(story.to_json(), indent=2), file=out)
        return 0
    current = story.current
    reason = f", {current.reason.label}" if current.reason is not None else ""
    known = "" if current.known else " (never seen)"
    send = "may be sent to" if current.deliverable else "may NOT be sent to"
    print(f"{current.address}: {current.state.value}{reason}{known}, {send}", file=out)
    for step in story.steps:
        if isinstance(step, BounceStep):
            _print_bounce(step, out)
        else:
            old = step.old_state.value if step.old_state else "new"
            print(f"{format_optional(step.at)}  state {old} -> {step.new_state.value}: "
                  f"{step.cause}", file=out)
    if not story.steps:
        print("no bounce and no state change recorded", file=out)
    return 0
