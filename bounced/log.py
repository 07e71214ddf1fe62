"""Logging set-up: structlog events, JSON under systemd, readable on a terminal.

Why JSON when not on a TTY: under systemd stdout goes to the journal, and one JSON object
per line is what ``journalctl -o cat | jq 'select(.event=="bounce.verdict")'`` and log
shippers read without a parser per message. On a terminal, the operator reads it.

Event names are stable, dotted and greppable (``message.received``, ``bounce.verdict``,
``smtp.rejected``, ``serve.ready``...); fields are flat key/values so ``grep
recipient=jane@example.org`` works on the console format too.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any, TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}


def use_json(fmt: str, stream: TextIO, environ: dict[str, str] | None = None) -> bool:
    """``auto`` means JSON under systemd (``JOURNAL_STREAM``/``INVOCATION_ID``) or off a TTY."""
    if fmt == "json":
        return True
    if fmt == "console":
        return False
    env = os.environ if environ is None else environ
    if env.get("JOURNAL_STREAM") or env.get("INVOCATION_ID"):
        return True
    return not (hasattr(stream, "isatty") and stream.isatty())


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog (and the stdlib ``logging`` used by aiosmtpd) once per process.

    Safe to call again (SIGHUP reload): it replaces the configuration.
    """
    out = stream if stream is not None else sys.stdout
    json_output = use_json(fmt, out)
    numeric = _LEVELS.get(level, logging.INFO)
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    if json_output:
        processors += [structlog.processors.format_exc_info, structlog.processors.JSONRenderer()]
    else:
        processors.append(
            structlog.dev.ConsoleRenderer(colors=out.isatty() if hasattr(out, "isatty") else False)
        )
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # aiosmtpd logs every connection at INFO through stdlib logging ("mail.log"): keep its
    # warnings, drop its chatter, and send it through the same stream.
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("mail.log").setLevel(max(numeric, logging.WARNING))


def get_logger(name: str = "bounced") -> Any:
    return structlog.get_logger(name)
