"""Shared fixtures: sample mails as files, their variants, and running ``bounced``.

Identical bytes are deduplicated by the store, so a test that needs the same bounce
twice makes variants of a template (another address, Date and Message-ID).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest

from bounced.cli import main
from bounced.store import Store
from tests.harness import postgres
from tests.harness.database import Database, PostgresUrl
from tests.harness.database import query as _query
from tests.harness.services import require
from tests.paths import ROOT

#: The tests that run on both engines (storage, pipeline, policy, operator commands):
#: every test under these directories that uses the ``db`` fixture runs twice,
#: ``[sqlite]`` and ``[postgresql]``, but for those marked ``sqlite_only`` (what only
#: SQLite has: its file, WAL, pragmas, page cache).
BOTH_ENGINES = ("tests/store/", "tests/ops/", "tests/cli/")
#: The database every PostgreSQL test database is a copy of: the migrated schema.
TEMPLATE = "bounced_template"

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


def query(db: Database, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    """Read the database the way an operator does: plain SQL on the public schema
    (either engine, see :mod:`tests.harness.database`)."""
    return _query(db, sql, params)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Run the tests of :data:`BOTH_ENGINES` on SQLite and on PostgreSQL."""
    if "engine" not in metafunc.fixturenames:
        return
    where = Path(str(metafunc.definition.path)).resolve().relative_to(ROOT).as_posix()
    if where.startswith(BOTH_ENGINES) and metafunc.definition.get_closest_marker(
            "sqlite_only") is None:
        metafunc.parametrize("engine", ["sqlite", "postgresql"], indirect=True)


@pytest.fixture
def engine(request: pytest.FixtureRequest) -> str:
    """``sqlite`` or ``postgresql``: the engine of this test's ``db``."""
    return str(getattr(request, "param", "sqlite"))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[postgres.PostgresServer]:
    """One PostgreSQL server for the session (as an unprivileged user), with a template
    database that holds the migrated schema."""
    require(postgres.unavailable())
    server = postgres.PostgresServer().start()
    try:
        url = server.create_database(name=TEMPLATE)
        Store.open(url, migrate=True).close()
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_url(postgres_server: postgres.PostgresServer) -> Iterator[PostgresUrl]:
    """A fresh PostgreSQL database with the current schema, dropped afterwards."""
    url = PostgresUrl(postgres_server.create_database(template=TEMPLATE))
    yield url
    postgres_server.drop_database(url)


@pytest.fixture
def db(request: pytest.FixtureRequest, engine: str, tmp_path: Path) -> Database:
    """The test's database: a file in tmp_path (SQLite), or a fresh PostgreSQL
    database with the current schema."""
    if engine == "postgresql":
        return request.getfixturevalue("pg_url")  # type: ignore[no-any-return]
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
def sql(db: Database) -> Callable[..., list[tuple[Any, ...]]]:
    """Query the test database: ``sql("SELECT ...", params)``."""

    def run(statement: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return query(db, statement, params)

    return run
