"""Reading messages from where they are kept: single files, mbox files, maildirs, stdin.

PLACEHOLDER: being written.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class SourceMessage:
    """One message and where it came from (``name`` is what reports show)."""

    name: str
    raw: bytes


def read_messages(path: str) -> Iterator[SourceMessage]:
    """Yield every message under ``path`` (``-`` is standard input)."""
    if path == "-":
        yield SourceMessage("-", sys.stdin.buffer.read())
        return
    yield SourceMessage(path, Path(path).read_bytes())
