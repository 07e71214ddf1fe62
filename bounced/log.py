"""Logging set-up: structlog events, JSON under systemd, readable on a terminal.

Why JSON when not on a TTY: under systemd stdout goes to the journal, and one JSON object
per line is what ``journalctl -o cat | jq 'select(.event=="bounce.verdict")'`` and log
shippers read without a parser per message. On a terminal, the operator reads it.

Event names are stable, dotted and greppable (``message.received``, ``bounce.verdict``,
``smtp.rejected``, ``serve.ready``...); fields are flat key/values so ``grep
recipient=jane@example.org`` works on the console format too.

In JSON, **every line is one whole JSON object**, whoever writes it:

- the daemon and its worker process share one stdout (a pipe, the journal's socket, a
  file). structlog's ``PrintLogger`` wrote the text and its newline in two writes, and a
  line longer than ``PIPE_BUF`` (4096 bytes) is not written atomically: lines of the two
  processes spliced (32 of 30,445 unparseable under load). Here each line is one
  ``os.write()`` of at most :data:`MAX_LINE_BYTES`, long values cut to
  :data:`MAX_FIELD_CHARS` (a 1,000-recipient envelope, a traceback), the names of the
  cut fields in ``truncated``;
- the libraries' own ``logging`` records (aiosmtpd's ``mail.log`` warnings such as
  ``unrecognised: GARBAGE``, asyncio, Python warnings, uncaught exceptions in threads)
  go through the same renderer, with the same fields: ``event`` (their message),
  ``level``, ``timestamp``, ``logger``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
from collections.abc import Callable, Mapping, MutableMapping
from types import TracebackType
from typing import Any, TextIO

import structlog

_LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}

#: Longest JSON line written, newline included: under Linux's PIPE_BUF (4096 bytes), so
#: one write() of it is atomic on a pipe and two processes' lines never splice.
MAX_LINE_BYTES = 4000
#: Longest value of one field, in characters, before it is cut.
MAX_FIELD_CHARS = 1024
#: Tighter caps tried, in turn, when a line with many long fields is still too long.
_TIGHTER_CAPS = (256, 64)
#: Fields every line keeps (the rest may be cut or, at worst, dropped).
CORE_FIELDS = ("event", "level", "timestamp", "logger")
#: What ends a cut string value.
ELLIPSIS = "…"


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


# --------------------------------------------------------------------------- bounded JSON


def _cut(value: Any, cap: int) -> tuple[Any, bool]:
    """``value`` made to fit ``cap`` characters of JSON; True when something was cut.
    Strings keep their start; lists keep their first items (each cut too); anything
    else that is too long becomes its cut ``str()``."""
    if isinstance(value, str):
        return (value, False) if len(value) <= cap else (value[:cap] + ELLIPSIS, True)
    if value is None or isinstance(value, bool | int | float):
        return value, False
    if isinstance(value, list | tuple):
        kept: list[Any] = []
        used = 2
        for item in value:
            item, _ = _cut(item, cap)
            size = len(json.dumps(item, default=str)) + 2
            if used + size > cap:
                return kept, True
            kept.append(item)
            used += size
        return kept, False
    text = json.dumps(value, default=str)
    if len(text) <= cap:
        return value, False
    return text[:cap] + ELLIPSIS, True


def _bounded(event_dict: Mapping[str, Any], cap: int) -> dict[str, Any]:
    """The event with every value cut to ``cap``; the core fields first (a reader of the
    raw file sees what happened before the details)."""
    out: dict[str, Any] = {}
    cut: list[str] = list(event_dict.get("truncated") or ())
    keys = [key for key in CORE_FIELDS if key in event_dict]
    keys += [key for key in event_dict if key not in CORE_FIELDS and key != "truncated"]
    for key in keys:
        value = event_dict[key]
        out[key], was_cut = _cut(value, cap)
        if was_cut and key not in cut:
            cut.append(key)
    if cut:
        out["truncated"] = cut
    return out


def render_line(event_dict: Mapping[str, Any]) -> str:
    """The event as one JSON line of at most :data:`MAX_LINE_BYTES` (newline included).

    Values longer than :data:`MAX_FIELD_CHARS` are cut and named in ``truncated``; if the
    line is still too long, tighter caps are tried, and at last only the
    :data:`CORE_FIELDS` stay (the others named in ``truncated``). Never split: a line
    cut short is still a whole object that says what it lost.
    """
    ordered = {key: event_dict[key] for key in CORE_FIELDS if key in event_dict}
    ordered.update(event_dict)
    line = json.dumps(ordered, default=str)
    if len(line) <= MAX_FIELD_CHARS:  # the common case: no value can be too long
        return line
    for cap in (MAX_FIELD_CHARS, *_TIGHTER_CAPS):
        line = json.dumps(_bounded(event_dict, cap), default=str)
        if len(line.encode()) < MAX_LINE_BYTES:
            return line
    core = {key: event_dict[key] for key in CORE_FIELDS if key in event_dict}
    core["truncated"] = [key for key in event_dict if key not in CORE_FIELDS]
    return json.dumps(_bounded(core, _TIGHTER_CAPS[-1]), default=str)


def _render(_logger: Any, _method: str, event_dict: MutableMapping[str, Any]) -> str:
    return render_line(event_dict)


def _add_logger_name(
    logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    name = getattr(logger, "name", None)
    if name is not None:
        event_dict.setdefault("logger", name)
    return event_dict


class LineWriter:
    """Writes whole lines with one ``os.write()`` each on the stream's file descriptor
    (its Python buffer would split them, and the other process writes the same fd)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        try:
            self.fd: int | None = stream.fileno()
        except (AttributeError, OSError, ValueError):  # StringIO, pytest's capture
            self.fd = None
        self._lock = threading.Lock()

    def write_line(self, line: str) -> None:
        if self.fd is None:
            with self._lock:
                self.stream.write(line + "\n")
                self.stream.flush()
            return
        data = (line + "\n").encode("utf-8", "backslashreplace")
        try:
            written = os.write(self.fd, data)
            while written < len(data):  # interrupted: finish it (rare, may splice)
                data = data[written:]
                written = os.write(self.fd, data)
        except OSError:  # stdout closed or full: the daemon goes on without its log
            pass


class LineLogger:
    """structlog's logger for JSON lines: the rendered event goes to a :class:`LineWriter`."""

    def __init__(self, writer: LineWriter, name: str) -> None:
        self.writer = writer
        self.name = name

    def msg(self, message: str) -> None:
        self.writer.write_line(message)

    log = debug = info = warn = warning = error = critical = exception = fatal = failure = msg
    err = msg


class LineHandler(logging.Handler):
    """The stdlib ``logging`` handler of JSON mode: one rendered line, one write."""

    def __init__(self, writer: LineWriter) -> None:
        super().__init__()
        self.writer = writer

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.writer.write_line(self.format(record))
        except Exception:  # logging must never take the daemon down
            self.handleError(record)


def _json_processors() -> list[Any]:
    return [
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _log_uncaught(logger: Any) -> None:
    """Uncaught exceptions (main thread, other threads) as JSON lines, not plain text."""

    def excepthook(kind: type[BaseException], value: BaseException,
                   traceback: TracebackType | None) -> None:
        logger.error("uncaught_exception", exc_info=(kind, value, traceback))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is None:
            return
        logger.error("thread.uncaught_exception",
                     thread=args.thread.name if args.thread else None,
                     exc_info=(args.exc_type, args.exc_value, args.exc_traceback))

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook


def configure(fmt: str = "auto", level: str = "info", stream: TextIO | None = None) -> None:
    """Configure structlog (and the stdlib ``logging`` used by aiosmtpd) once per process.

    Safe to call again (SIGHUP reload): it replaces the configuration.
    """
    out = stream if stream is not None else sys.stdout
    json_output = use_json(fmt, out)
    numeric = _LEVELS.get(level, logging.INFO)
    handler: logging.Handler
    if json_output:
        writer = LineWriter(out)
        factory: Callable[..., Any] = lambda *args: LineLogger(  # noqa: E731
            writer, str(args[0]) if args else "bounced")
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                *_json_processors(),
                _add_logger_name,
                structlog.processors.format_exc_info,
                _render,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=factory,
            cache_logger_on_first_use=False,
        )
        handler = LineHandler(writer)
        handler.setFormatter(structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*_json_processors(), structlog.stdlib.add_logger_name],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                _render,
            ],
        ))
        logging.captureWarnings(True)
        _log_uncaught(get_logger("bounced"))
    else:
        structlog.configure(
            processors=[
                structlog.contextvars.merge_contextvars,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                structlog.dev.ConsoleRenderer(
                    colors=out.isatty() if hasattr(out, "isatty") else False),
            ],
            wrapper_class=structlog.make_filtering_bound_logger(numeric),
            logger_factory=structlog.PrintLoggerFactory(out),
            cache_logger_on_first_use=False,
        )
        handler = logging.StreamHandler(out)
        handler.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))
    # aiosmtpd logs every connection at INFO through stdlib logging ("mail.log"): keep its
    # warnings, drop its chatter, and send it through the same stream.
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(numeric)
    logging.getLogger("mail.log").setLevel(max(numeric, logging.WARNING))


def get_logger(name: str = "bounced") -> Any:
    return structlog.get_logger(name)
