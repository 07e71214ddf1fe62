"""Reading messages from where they are kept: single files, mbox files, maildirs, stdin.

Everything streams: an mbox is split while it is read, so a multi-gigabyte mailbox
never sits in memory whole, only one message at a time. A file whose first line is an
mbox ``From `` line is an mbox, whatever its name: a single bounce saved by a mail
client and a mailbox of a thousand look the same from outside. Every message of one
file carries that file's name, so reports group under it.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

MBOX_SEPARATOR = b"From "
_FROM_LINE = re.compile(rb"^From \S+ +\S")
_FROM_LINE_DATED = re.compile(
    rb"^From \S+ +(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) +"
    rb"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +\d{1,2} +\d{1,2}:\d{2}(?::\d{2})? "
)
MAILDIR_SUBDIRS = ("new", "cur")
STDIN_NAME = "-"


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message and where it came from (``name`` is what reports show)."""

    name: str
    raw: bytes


def read_messages(path: str) -> Iterator[SourceMessage]:
    """Yield every message under ``path`` (``-`` is standard input).

    Raises :class:`OSError` for a path that does not exist or cannot be read.
    """
    if path == STDIN_NAME:
        yield from read_stream(sys.stdin.buffer, STDIN_NAME)
        return
    target = Path(path)
    if target.is_dir():
        yield from _read_directory(target)
        return
    if not target.exists():
        raise FileNotFoundError(2, "no such file or directory", path)
    yield from _read_file(target, path)


def _read_directory(directory: Path) -> Iterator[SourceMessage]:
    """A maildir (its ``new/`` and ``cur/``, never ``tmp/``) or any directory tree."""
    if is_maildir(directory):
        for sub in MAILDIR_SUBDIRS:
            folder = directory / sub
            if folder.is_dir():
                for entry in _sorted_files(folder.iterdir()):
                    yield from _read_file(entry, str(entry))
        return
    for entry in _walk_files(directory):
        yield from _read_file(entry, str(entry))


def is_maildir(directory: Path) -> bool:
    """A maildir has ``cur`` and ``new`` (``tmp`` is often missing in copies)."""
    return all((directory / sub).is_dir() for sub in MAILDIR_SUBDIRS)


def _walk_files(directory: Path) -> Iterator[Path]:
    """Regular files under ``directory``, recursively, in sorted path order."""
    try:
        entries = sorted(directory.iterdir())
    except OSError as error:
        reason = f"cannot list directory ({error.strerror})"
        raise OSError(error.errno, reason, str(directory)) from error
    for entry in entries:
        if entry.is_dir() and not entry.is_symlink():
            yield from _walk_files(entry)
        elif entry.is_file():
            yield entry


def _sorted_files(entries: Iterable[Path]) -> list[Path]:
    return sorted(entry for entry in entries if entry.is_file())


def _read_file(file: Path, name: str) -> Iterator[SourceMessage]:
    with open(file, "rb") as stream:  # noqa: PTH123 - a stream, not a whole read
        yield from read_stream(stream, name)


def read_stream(stream: BinaryIO, name: str) -> Iterator[SourceMessage]:
    """The messages of a byte stream: several if it is an mbox, else exactly one."""
    first = stream.readline()
    if not first.startswith(MBOX_SEPARATOR):
        yield SourceMessage(name, first + stream.read())
        return
    yield from (SourceMessage(name, raw) for raw in split_mbox(_lines(first, stream)))


def _lines(first: bytes, stream: BinaryIO) -> Iterator[bytes]:
    yield first
    yield from stream


def split_mbox(lines: Iterable[bytes]) -> Iterator[bytes]:
    """Split mbox lines into messages, each starting with its ``From `` line.

    A ``From sender ...`` line starts a new message when it follows a blank line, as
    mbox writers guarantee. Concatenated files lack that blank line, so there a ``From ``
    line also counts when it carries the full ctime date of an envelope line
    (``From a@b Thu Jul  2 12:05:05 2020``), which a body line practically never does.
    """
    current: list[bytes] = []
    previous_blank = True
    for line in lines:
        if line.startswith(MBOX_SEPARATOR) and (
            (previous_blank and _FROM_LINE.match(line)) or _FROM_LINE_DATED.match(line)
        ):
            if current:
                yield b"".join(current)
            current = [line]
            previous_blank = False
            continue
        current.append(line)
        previous_blank = line in (b"\n", b"\r\n", b"\r")
    if current:
        yield b"".join(current)
