"""Shared fixtures: sample mails as files, their variants, and running ``bounced``.

Identical bytes are deduplicated by the store, so a test that needs the same bounce
twice makes variants of a template (another address, Date and Message-ID).
"""

from __future__ import annotations

import contextlib
import io
import re
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from bounced.cli import main

POLICY_MAILS = Path(__file__).parent / "data" / "policy"
#: The recipient every template in tests/data/policy names.
TEMPLATE_ADDRESS = b"rcpt@example.org"

_DATE = re.compile(rb"^Date:[^\r\n]*", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^Message-I[Dd]:[^\r\n]*", re.IGNORECASE | re.MULTILINE)
_serial = count(1)


def variant(template: str, *, address: str = "rcpt@example.org",
            date: str = "Sun, 22 Nov 2026 13:30:00 +0000", message_id: str | None = None) -> bytes:
    """The bytes of ``tests/data/policy/<template>.eml`` for another address, with its
    own top-level Date and Message-ID (so it is not a duplicate of another variant)."""
    raw = (POLICY_MAILS / f"{template}.eml").read_bytes()
    raw = raw.replace(TEMPLATE_ADDRESS, address.encode())
    ident = message_id or f"<variant-{next(_serial)}-{address}@test.example>"
    raw = _DATE.sub(b"Date: " + date.encode(), raw, count=1)
    return _MESSAGE_ID.sub(b"Message-ID: " + ident.encode(), raw, count=1)


@dataclass(frozen=True)
class Run:
    """The outcome of one ``bounced`` command run in-process."""

    status: int
    out: str
    err: str


def run_bounced(args: Sequence[str]) -> Run:
    """``bounced.cli.main(args)`` with stdout/stderr captured; SystemExit -> status."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(list(args))
        except SystemExit as exit_:
            status = exit_.code if isinstance(exit_.code, int) else 1
    return Run(status, out.getvalue(), err.getvalue())


def query(db: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the database the way an operator does: plain SQL on the public schema."""
    conn = sqlite3.connect(db)
    try:
        return conn.execute(sql, params).fetchall()
    finally:
        conn.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "bounced.db"


@pytest.fixture
def mail_file(tmp_path: Path) -> Callable[..., Path]:
    """Write a variant of a template into tmp_path and return its path."""
    directory = tmp_path / "mails"
    directory.mkdir(exist_ok=True)

    def write(template: str, **kwargs: str) -> Path:
        path = directory / f"{template}-{next(_serial)}.eml"
        path.write_bytes(variant(template, **kwargs))
        return path

    return write


@pytest.fixture
def bounced() -> Callable[[Sequence[str]], Run]:
    """Run a ``bounced`` command in-process: ``bounced(["ingest", ...]) -> Run``."""
    return run_bounced


@pytest.fixture
def sql(db: Path) -> Callable[..., list[tuple[Any, ...]]]:
    """Query the test database: ``sql("SELECT ...", params)``."""

    def run(statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return query(db, statement, params)

    return run
