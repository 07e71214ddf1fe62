"""``bounced verp``: make and check signed VERP return paths (docs/correlation.md).

Senders call ``bounced verp encode jane@example.org`` (or :func:`bounced.core.verp.encode_address`
from Python) to get the envelope sender of the mail they send to jane; a bounce to that
address then names jane in a way nobody without the secret can forge.
"""

from __future__ import annotations

import argparse
import json
import sys

#: The one-line summary in ``bounced --help``.
HELP = "encode or decode signed VERP return paths"
#: What ``bounced verp --help`` says first.
DESCRIPTION = "Make the VERP envelope sender for a recipient, or check one."


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config", metavar="FILE", help="TOML configuration (verp.secret, verp.separator)"
    )
    parser.add_argument(
        "--secret", help="HMAC secret (overrides verp.secret; prefer the config file)"
    )
    actions = parser.add_subparsers(dest="verp_action", metavar="ACTION", required=True)
    encode = actions.add_parser("encode", help="recipient address -> VERP return path (or token)")
    encode.add_argument("address", help="the recipient the mail is sent to")
    encode.add_argument(
        "--return-path",
        metavar="ADDRESS",
        help="plain bounce address to extend (default: first smtp.bounce_addresses entry, "
        "else prints the bare token)",
    )
    decode = actions.add_parser("decode", help="VERP return path or token -> recipient and verdict")
    decode.add_argument("value", help="bounces+TOKEN@domain or TOKEN")
    decode.add_argument("--json", action="store_true", help="print a JSON object")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from bounced.config import ConfigError, load_config
    from bounced.core.verp import encode_address, encode_token, token_of, verify_token

    try:
        config = load_config(args.config)
    except ConfigError as error:
        print(f"bounced verp: {error}", file=sys.stderr)
        return 2
    secret = args.secret if args.secret is not None else config.verp.secret
    separator = config.verp.separator
    if args.verp_action == "encode":
        return_path = args.return_path or (
            config.smtp.bounce_addresses[0] if config.smtp.bounce_addresses else None
        )
        try:
            if return_path:
                print(encode_address(args.address, return_path, secret=secret, separator=separator))
            else:
                print(encode_token(args.address, secret))
        except ValueError as error:
            print(f"bounced verp: {error}", file=sys.stderr)
            return 2
        if not secret:
            print(
                "bounced verp: warning: no verp.secret configured, the token is not signed",
                file=sys.stderr,
            )
        return 0
    value = args.value
    token = token_of(value, separator) if "@" in value else value
    if token is None:
        print(f"bounced verp: no {separator}TOKEN in {value!r}", file=sys.stderr)
        return 1
    check = verify_token(token, secret)
    if args.json:
        print(
            json.dumps(
                {
                    "token": token,
                    "recipient": check.recipient,
                    "verified": check.verified,
                    "problem": check.reason,
                }
            )
        )
    else:
        state = "verified" if check.verified else f"NOT verified ({check.reason})"
        print(f"{check.recipient or '-'}\t{state}")
    return 0 if check.verified or (not secret and check.recipient) else 1
