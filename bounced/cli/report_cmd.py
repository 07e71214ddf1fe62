"""``bounced report``: counts and rates over a time window, the top texts waiting for
qualification, quarantines per day, and DNS evidence on Invalid-domain bounces.

``--since`` takes a duration back from now (``1d``, ``12h``) or an ISO-8601 time;
``--by`` picks the breakdown (type, reason, domain, provider, day, channel: e-mail, SMS,
push; an SMS's "domain" is ``sms``, a push token's ``push:APP``). ``provider`` groups
recipient domains by their MX hosts, looked up with dnspython (``[dns]`` settings, or
``--dns-server``) and cached in ``dns_cache``; ``--no-dns`` (or ``[dns] enabled =
false``) uses cached answers only.
Output is aligned text tables (long texts cut to the terminal's width on a TTY), or one
JSON document with ``--json``.
"""

from __future__ import annotations

import argparse
import shutil
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import TextIO

from bounced.cli import common
from bounced.core.times import parse_duration
from bounced.ops.dns import cache_for
from bounced.ops.report import DEFAULT_DNS_LIMIT, GroupBy, build_report, render_text, to_json


def _since(value: str) -> timedelta | datetime:
    try:
        return parse_duration(value)
    except ValueError:
        pass
    try:
        return common.instant(value)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"expected a duration (1d, 12h) or an ISO-8601 time, got {value!r}") from None


def _seconds(value: str) -> float:
    try:
        seconds = parse_duration(value).total_seconds() if value[-1:].isalpha() else float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {value!r}") from None
    if seconds <= 0:
        raise argparse.ArgumentTypeError("expected a time > 0")
    return seconds


#: The one-line summary in ``bounced --help``.
HELP = "counts, rates, waiting texts, quarantines per day"
#: What ``bounced report --help`` says first.
DESCRIPTION = "Report on the bounces of a time window."


def register(parser: argparse.ArgumentParser) -> None:
    common.add_db(parser)
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--since", type=_since, default=timedelta(days=7),
                        metavar="DURATION|ISO-8601", help="window start (default: 7d)")
    common.add_at(parser, "window end, the time the report is made as of (default: now)")
    parser.add_argument("--by", type=GroupBy, choices=list(GroupBy), default=GroupBy.TYPE,
                        help="breakdown (default: type)")
    common.add_json(parser, "one JSON document")
    parser.add_argument("--top", type=int, default=10, help="waiting texts shown (default 10)")
    parser.add_argument("--no-dns", action="store_true",
                        help="no DNS queries: use answers cached in dns_cache only")
    parser.add_argument("--dns-server", action="append", metavar="IP[:PORT]",
                        help="resolver to ask (repeatable; default: [dns] nameservers, "
                        "else the system's)")
    parser.add_argument("--dns-timeout", type=_seconds, metavar="SECONDS",
                        help="time allowed per domain (default: [dns] timeout)")
    parser.add_argument("--dns-limit", type=int, default=DEFAULT_DNS_LIMIT,
                        help=f"domains looked up at most (default {DEFAULT_DNS_LIMIT})")
    parser.set_defaults(handler=run)


@common.command("report")
def run(args: argparse.Namespace, out: TextIO) -> int:
    dns_config = common.config_of(args).dns
    if args.dns_server:
        dns_config = replace(dns_config, nameservers=tuple(args.dns_server))
    if args.dns_timeout:
        dns_config = replace(dns_config, timeout=timedelta(seconds=args.dns_timeout))
    until = args.at or datetime.now(UTC)
    since = until - args.since if isinstance(args.since, timedelta) else args.since
    if since >= until:
        raise common.UsageError(f"--since {format(since)} is not before the window end")
    # Read-write: answers looked up now are kept in dns_cache for the next report.
    with common.open_store(args.db) as store:
        offline = args.no_dns or not dns_config.enabled
        dns = None if offline else cache_for(store, dns_config, clock=lambda: until)
        report = build_report(store, since=since, until=until, by=args.by, dns=dns,
                              dns_limit=args.dns_limit, top=args.top)
    if args.json:
        print(to_json(report), file=out)
    else:
        width = shutil.get_terminal_size().columns if out.isatty() else None
        out.write(render_text(report, width))
    return 0
