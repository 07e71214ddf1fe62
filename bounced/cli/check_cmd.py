"""``bounced check ADDRESS...``: may these addresses be sent to?

For each address: its state and why (reason, since when, counted errors, the last
bounce's text). The exit status answers the question for scripts: 0 when every address
may be sent to, 1 when at least one may not (quarantine, denylisted), 2 for a usage
problem. An address never seen is ``valid`` and says so ("never seen"), since that is
also what a typo looks like.
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from bounced.cli import common
from bounced.core.tables import render_table
from bounced.core.times import format_optional
from bounced.ops.audit import AddressReport, check_address

#: The one-line summary in ``bounced --help``.
HELP = "may these addresses be sent to? (exit 0 yes, 1 no)"
#: What ``bounced check --help`` says first.
DESCRIPTION = ("Print each address's state and why; exit 0 when every address may "
        "be sent to, 1 when one may not (quarantine, denylisted).")


def register(parser: argparse.ArgumentParser) -> None:
    common.add_db(parser)
    common.add_config(parser)
    parser.add_argument("addresses", nargs="+", metavar="ADDRESS",
                        help="jane@example.org, tel:+33612345678 or push:APP_ID:TOKEN")
    common.add_json(parser, "one JSON object per address")
    parser.set_defaults(handler=run)


def _row(report: AddressReport) -> tuple[object, ...]:
    last = report.last_bounce
    return (
        report.address,
        report.state.value if report.known else "valid (never seen)",
        "yes" if report.deliverable else "NO",
        report.reason.label if report.reason is not None else None,
        format_optional(report.since),
        report.error_count,
        format_optional(last.at) if last is not None else None,
    )


@common.command("check")
def run(args: argparse.Namespace, out: TextIO) -> int:
    rules = common.address_rules(args)
    addresses = common.check_addresses(args.addresses, rules)
    with common.open_readonly(args.db) as store:
        reports = [check_address(store, address, rules) for address in addresses]
    if args.json:
        for report in reports:
            print(json.dumps(report.to_json()), file=out)
    else:
        print(render_table(
            ("ADDRESS", "STATE", "SEND", "REASON", "SINCE", "ERRORS", "LAST BOUNCE"),
            [_row(report) for report in reports]), file=out)
        # The last bounce's text in full, under the table: it is the "why", and
        # diagnostics are too long for a column.
        for report in reports:
            last = report.last_bounce
            if last is not None and last.diagnostic:
                print(f"{report.address}: {' '.join(last.diagnostic.split())}", file=out)
    return 0 if all(report.deliverable for report in reports) else 1
