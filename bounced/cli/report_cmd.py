"""``bounced report``: counts and rates over a time window, the top texts waiting for
qualification, quarantines per day, and DNS evidence on Invalid-domain bounces.

``--since`` takes a duration back from now (``1d``, ``12h``) or an ISO-8601 time;
``--by`` picks the breakdown (type, reason, domain, provider, day). ``provider`` groups
recipient domains by their MX hosts, looked up with dnspython (``[dns]`` settings, or
``--dns-server``) and cached in ``dns_cache``; ``--no-dns`` (or ``[dns] enabled =
false``) uses cached answers only.
Output is aligned text tables (long texts cut to the terminal's width on a TTY), or one
JSON document with ``--json``.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TextIO

from bounced.cli.db_cmd import (
    USAGE_ERROR,
    UsageError,
    load_config_or_fail,
    open_store_or_fail,
    parse_at,
)
from bounced.core.times import parse_duration
from bounced.ops.dns import cache_for
from bounced.ops.report import DEFAULT_DNS_LIMIT, GroupBy, build_report, render_text, to_json


def _since(value: str) -> timedelta | datetime:
    try:
        return parse_duration(value)
    except ValueError:
        pass
    try:
        return parse_at(value)
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


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "report",
        help="counts, rates, waiting texts, quarantines per day",
        description="Report on the bounces of a time window.",
    )
    parser.add_argument("--db", required=True, metavar="PATH", help="SQLite database file")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file")
    parser.add_argument("--since", type=_since, default=timedelta(days=7),
                        metavar="DURATION|ISO-8601", help="window start (default: 7d)")
    parser.add_argument("--at", type=parse_at, metavar="ISO-8601",
                        help="window end, the time the report is made as of (default: now)")
    parser.add_argument("--by", type=GroupBy, choices=list(GroupBy), default=GroupBy.TYPE,
                        help="breakdown (default: type)")
    parser.add_argument("--json", action="store_true", help="one JSON document")
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


def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
    out = out or sys.stdout
    try:
        config = load_config_or_fail(args.config)
        dns_config = config.dns
        if args.dns_server:
            dns_config = replace(dns_config, nameservers=tuple(args.dns_server))
        if args.dns_timeout:
            dns_config = replace(dns_config, timeout=timedelta(seconds=args.dns_timeout))
        until = args.at or datetime.now(UTC)
        since = until - args.since if isinstance(args.since, timedelta) else args.since
        if since >= until:
            raise UsageError(f"--since {format(since)} is not before the window end")
        with open_store_or_fail(args.db) as store:
            offline = args.no_dns or not dns_config.enabled
            dns = None if offline else cache_for(store.conn, dns_config,
                                                      clock=lambda: until)
            report = build_report(store.conn, since=since, until=until, by=args.by, dns=dns,
                                  dns_limit=args.dns_limit, top=args.top)
    except UsageError as error:
        print(f"bounced report: {error}", file=sys.stderr)
        return USAGE_ERROR
    if args.json:
        print(to_json(report), file=out)
    else:
        width = shutil.get_terminal_size().columns if out.isatty() else None
        out.write(render_text(report, width))
    return 0
