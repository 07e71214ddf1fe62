"""Helpers for the operator-workflow tests: a real database file in tmp_path, bounces fed
through ``bounced ingest --at`` from sample mails, every command run through
``bounced.cli.main`` and checked with SQL on the public schema."""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from bounced.cli import main
from tests.harness.database import Database, query
from tests.paths import DATA

MAILS = DATA / "operations"
TEMPLATE_ADDRESS = b"rcpt@example.org"
T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

_DATE = re.compile(rb"^Date:[^\r\n]*", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^Message-I[Dd]:[^\r\n]*", re.IGNORECASE | re.MULTILINE)
_serial = count(1)

#: An operator's rule making the lab's "User unknown in virtual mailbox table" a hard
#: User unknown, whatever the shipped defaults say this week.
USER_UNKNOWN_RULE = (10_003, "User unknown in virtual mailbox table", "hard", 1, 1)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def day(number: float) -> datetime:
    return T0 + timedelta(days=number)


@dataclass(frozen=True)
class Run:
    status: int
    out: str
    err: str

    def lines_with(self, needle: str) -> list[str]:
        return [line for line in self.out.splitlines() if needle in line]


class Ops:
    """One test database and the commands an operator runs on it."""

    def __init__(self, directory: Path, db: Database) -> None:
        self.directory = directory
        self.db = db
        self.mails = directory / "mails"
        self.mails.mkdir()

    def run(self, *args: str) -> Run:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                status = main([*args])
            except SystemExit as exit_:
                status = exit_.code if isinstance(exit_.code, int) else 1
        return Run(status, out.getvalue(), err.getvalue())

    def cmd(self, *args: str) -> Run:
        """A command on the test database that must succeed (exit 0)."""
        result = self.run(*args, "--db", str(self.db))
        assert result.status == 0, f"{args}: {result.status}\n{result.out}\n{result.err}"
        return result

    def mail(self, template: str, address: str) -> Path:
        raw = (MAILS / f"{template}.eml").read_bytes().replace(TEMPLATE_ADDRESS, address.encode())
        serial = next(_serial)
        raw = _DATE.sub(f"Date: Sun, 1 Nov 2026 09:00:{serial % 60:02d} +0000".encode(), raw,
                        count=1)
        raw = _MESSAGE_ID.sub(f"Message-ID: <ops-{serial}@test.example>".encode(), raw, count=1)
        path = self.mails / f"{template}-{serial}.eml"
        path.write_bytes(raw)
        return path

    def ingest(self, at: datetime, *mails: tuple[str, str]) -> Run:
        """``bounced ingest --at`` of variants ``(template, address)``, in one call."""
        paths = [str(self.mail(template, address)) for template, address in mails]
        result = self.run("ingest", "--db", str(self.db), "--at", iso(at), *paths)
        assert result.status == 0, result.out + result.err
        return result

    def sql(self, statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return query(self.db, statement, params)

    def add_rule(self, rule_id: int, pattern: str, failure_type: str, reason: int,
                 priority: int = 1) -> None:
        """What an operator does with sqlite3 (or ``bounced rules add``): a user rule."""
        self.cmd("db", "init")
        self.sql("INSERT INTO rules (id, pattern, failure_type, reason_code, priority, origin, "
                 "enabled) VALUES (?, ?, ?, ?, ?, 'user', 1)",
                 (rule_id, pattern, failure_type, reason, priority))

    def state(self, address: str) -> tuple[Any, ...] | None:
        rows = self.sql("SELECT state, error_count, reason_code FROM addresses "
                        "WHERE address = ?", (address,))
        return rows[0] if rows else None

    def history(self, address: str) -> list[tuple[Any, ...]]:
        return self.sql("SELECT old_state, new_state, cause FROM address_events "
                        "WHERE address = ? ORDER BY id", (address,))


@pytest.fixture
def ops(tmp_path: Path, db: Database) -> Ops:
    """A test database of either engine (the ``db`` fixture) and its commands."""
    operations = Ops(tmp_path, db)
    operations.add_rule(*USER_UNKNOWN_RULE)
    return operations
