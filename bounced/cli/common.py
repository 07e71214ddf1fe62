"""What every command shares: its options, opening the database, and one error wrapper.

Each command module adds a parser and a handler ``(args, out) -> exit status``; the
handler is wrapped by :func:`command`, the one place that turns an error an operator
can fix into one line on stderr and an exit status, never a traceback:

- 2: a usage problem (a bad option, a configuration value, an unusable ``--db``);
- 1: the request could not be carried out (no such rule, a failed message, the
  database failed while working).

Times on the command line are ISO-8601 or relative to ``--at`` / now (``7d``, ``24h``),
read by :mod:`bounced.core.times`; ``--at`` is the one place commands read the clock.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import getpass
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TextIO

from bounced.config import Config, ConfigError, load_config
from bounced.core.addresses import (
    NO_FOLDING,
    AddressRules,
    address_problem,
    channel_of,
    rules_from_config,
)
from bounced.core.times import parse_instant, parse_when
from bounced.model import Channel
from bounced.ops import RequestError
from bounced.ops.webhooks import subscribe
from bounced.store import DatabaseError, Location, Store, StoreError

#: Exit status for a usage problem an operator must fix (the same as argparse's).
USAGE_ERROR = 2
#: Exit status when the request could not be carried out.
FAILED = 1

Handler = Callable[[argparse.Namespace, TextIO], int]


class UsageError(Exception):
    """A problem with the command line or its inputs; the message names the culprit."""


# --------------------------------------------------------------------------- options


def add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", required=True, metavar="PATH|URL",
                        help="SQLite database file (or sqlite:///PATH), or a PostgreSQL "
                             "URL postgresql://USER@HOST/DB")


def add_config(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE",
                        help="TOML configuration file ([addresses] folding, retention, ...)")


def add_at(parser: argparse.ArgumentParser, help_text: str | None = None) -> None:
    parser.add_argument("--at", type=instant, metavar="ISO-8601",
                        help=help_text or "the time the action happens at (default: now)")


def add_json(parser: argparse.ArgumentParser, help_text: str = "JSON for a machine") -> None:
    parser.add_argument("--json", action="store_true", help=help_text)


def instant(value: str) -> datetime:
    """The argparse type of ``--at``: an ISO-8601 time (UTC when no offset is given)."""
    try:
        return parse_instant(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


# --------------------------------------------------------------------------- values


def config_of(args: argparse.Namespace) -> Config:
    """``--config`` (or the embedded defaults), every key validated."""
    path = getattr(args, "config", None)
    try:
        return load_config(path)
    except ConfigError as error:
        raise UsageError(f"configuration: {error}") from None
    except OSError as error:
        raise UsageError(f"configuration {path}: {error.strerror or error}") from None


def address_rules(args: argparse.Namespace) -> AddressRules:
    """The ``[addresses]`` folding of ``--config``, so an operator's address finds the
    key the pipeline stored (``Jane+News@Gmail.com`` -> ``jane@gmail.com`` if folded)."""
    return rules_from_config(config_of(args).addresses) if args.config else NO_FOLDING


def check_addresses(values: list[str], rules: AddressRules) -> list[str]:
    """The addresses an operator typed, each an e-mail address, ``tel:NUMBER`` or
    ``push:APP_ID:TOKEN``; a phone number or push token that cannot be read is a usage
    error (an e-mail address is taken as typed: its key is still well defined)."""
    for value in values:
        if channel_of(value) is not Channel.EMAIL:
            problem = address_problem(value, rules)
            if problem is not None:
                raise UsageError(problem)
    return values


def actor() -> str:
    """Who is acting, as written in the history of what a command changes."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = "unknown"
    return f"cli:{user}"


def now_of(args: argparse.Namespace) -> datetime:
    """``--at`` or the clock: the one place commands read the time."""
    at = getattr(args, "at", None)
    return at if at is not None else datetime.now(UTC)


def when(text: str | None, now: datetime, option: str) -> datetime | None:
    """A time option (``--since``, ``--until``): ISO-8601 or relative to ``now``."""
    if text is None:
        return None
    try:
        return parse_when(text, now)
    except ValueError as error:
        raise UsageError(f"{option}: {error}") from None


# --------------------------------------------------------------------------- the database


def open_store(path: str, *, cache_mb: int | None = None, config: Config | None = None,
               migrate: bool | None = None) -> Store:
    """The database at ``path`` (a file or a URL) for writing: a SQLite file is created
    and migrated if needed, a PostgreSQL database must have the current schema
    (``bounced db migrate``) unless ``migrate``; with a ``config``, the changes
    commands make are published to its ``[[webhooks]]``."""
    try:
        location = Location.parse(path)
    except StoreError as error:
        raise UsageError(f"--db {path}: {error}") from None
    target = location.path
    if target is not None and target.is_dir():
        raise UsageError(f"--db {path}: is a directory")
    if target is not None and not target.parent.exists():
        raise UsageError(f"--db {path}: directory {target.parent} does not exist")
    try:
        store = Store.open(path, cache_mb=cache_mb, migrate=migrate)
        return subscribe(store, config) if config is not None else store
    except StoreError as error:
        raise UsageError(f"--db {path}: {error}") from None
    except DatabaseError as error:
        raise UsageError(f"--db {path}: {error}") from None


def open_readonly(path: str, *, require_schema: bool = True) -> Store:
    """The database at ``path`` for reading only; it must exist (a typo must not look
    like an empty database where every address is fine)."""
    try:
        return Store.open_readonly(path, require_schema=require_schema)
    except StoreError as error:
        message = str(error)
        with contextlib.suppress(StoreError):
            message = message.removeprefix(f"{Location.parse(path)}: ")
        raise UsageError(f"--db {path}: {message}") from None


# --------------------------------------------------------------------------- the wrapper


def command(name: str | Callable[[argparse.Namespace], str]
            ) -> Callable[[Handler], Callable[..., int]]:
    """Wrap a handler ``(args, out) -> status`` so that operator errors become one line
    on stderr (``bounced NAME: ...``) and an exit status; ``out`` defaults to stdout.
    ``name`` may be computed from the arguments (one handler for several actions)."""
    def wrap(handler: Handler) -> Callable[..., int]:
        @functools.wraps(handler)
        def run(args: argparse.Namespace, out: TextIO | None = None) -> int:
            try:
                return int(handler(args, out or sys.stdout))
            except UsageError as error:
                status, message = USAGE_ERROR, str(error)
            except RequestError as error:
                status, message = FAILED, str(error)
            except DatabaseError as error:
                # The database itself failed (locked beyond busy_timeout, disk full, ...):
                # what was committed stays.
                status, message = FAILED, f"database {getattr(args, 'db', None)}: {error}"
            label = name(args) if callable(name) else name
            print(f"bounced {label}: {message}", file=sys.stderr)
            return status
        return run
    return wrap
