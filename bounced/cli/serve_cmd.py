"""``bounced serve``: run the SMTP/LMTP bounce daemon (see :mod:`bounced.daemon.serve`)."""

from __future__ import annotations

import argparse

#: The one-line summary in ``bounced --help``.
HELP = "run the SMTP/LMTP daemon that receives bounces"
#: What ``bounced serve --help`` says first.
DESCRIPTION = ("Receive bounces over SMTP and/or LMTP, store each raw message before answering "
            "250, and process it in the background. With no options: SMTP on 127.0.0.1:2525 "
            "into ./bounced.db, accepting every recipient (configure smtp.bounce_domains "
            "before exposing it). Command-line options override the configuration file. "
            "SIGTERM stops gracefully, SIGHUP reloads the configuration and rules.")


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration file (default: built-in defaults)"
    )
    parser.add_argument("--db", metavar="PATH|URL",
                        help="SQLite file or postgresql:// URL (overrides database.url "
                             "and database.path)")
    parser.add_argument(
        "--smtp", metavar="HOST:PORT", help="SMTP listener (overrides smtp.listen; '' disables it)"
    )
    parser.add_argument(
        "--lmtp",
        metavar="HOST:PORT|unix:PATH",
        help="LMTP listener (overrides lmtp.listen; '' disables it)",
    )
    parser.add_argument(
        "--http", metavar="HOST:PORT",
        help="HTTP API, /metrics and health checks (overrides http.listen; '' disables it)",
    )
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bounced.daemon.serve import ServeOptions
    from bounced.daemon.serve import run as serve

    return serve(ServeOptions(config_path=args.config, db=args.db, smtp=args.smtp, lmtp=args.lmtp,
                              http=args.http))
