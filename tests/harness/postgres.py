"""A throw-away PostgreSQL server for the tests and the benches, started from the
binaries on this machine (``initdb``, ``pg_ctl``), as an unprivileged user.

Debian's ``postgresql`` package puts them in ``/usr/lib/postgresql/VERSION/bin`` (not on
``PATH``); other systems put them on ``PATH``. ``initdb`` refuses to run as root, so
when the tests run as root (CI) the cluster belongs to the ``postgres`` user the
package creates, and every command runs as that user (``runuser``).

Each test gets a database of its own, ``CREATE DATABASE ... TEMPLATE`` of one that
holds the migrated schema (a few milliseconds), dropped afterwards.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg

#: Where Debian (and Ubuntu) install the server binaries, newest version first.
DEBIAN_GLOB = "/usr/lib/postgresql/*/bin"
#: The role the tests connect as (a superuser of the throw-away cluster).
ROLE = "bounced"
#: The user that owns the cluster when the tests run as root.
SERVICE_USER = "postgres"


def find_binaries() -> Path | None:
    """The directory with ``initdb``, ``pg_ctl`` and ``postgres``, or None."""
    candidates: list[Path] = []
    found = shutil.which("pg_ctl")
    if found:
        candidates.append(Path(found).resolve().parent)
    candidates.extend(sorted(Path("/").glob(DEBIAN_GLOB.lstrip("/")),
                             key=lambda path: _version(path), reverse=True))
    for directory in candidates:
        if all((directory / name).exists() for name in ("initdb", "pg_ctl", "postgres")):
            return directory
    return None


def _version(path: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in path.parent.name.split("."))
    except ValueError:
        return (0,)


def unavailable() -> str | None:
    """Why a PostgreSQL server cannot be started here (None: it can)."""
    if find_binaries() is None:
        return ("PostgreSQL server binaries not found (apt-get install postgresql; "
                ".ci/run does it as root)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(SERVICE_USER)
        except KeyError:
            return f"running as root and there is no {SERVICE_USER!r} user to run initdb as"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One cluster in a temporary directory, listening on 127.0.0.1:PORT.

    ``fsync`` is off by default: the tests kill daemons, never the machine, and a test
    suite needs no durability across a power cut. The benches pass ``durable=True``.
    """

    def __init__(self, *, durable: bool = False, settings: dict[str, str] | None = None) -> None:
        binaries = find_binaries()
        if binaries is None:
            raise RuntimeError(unavailable() or "no PostgreSQL")
        self.bin = binaries
        self.durable = durable
        self.settings = dict(settings or {})
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="bounced-pg-"))
        self.data = self.root / "data"
        self.sockets = self.root / "run"
        self.log = self.root / "server.log"
        self._user: pwd.struct_passwd | None = (
            pwd.getpwnam(SERVICE_USER) if os.geteuid() == 0 else None)
        self._names = itertools.count(1)

    # -- running commands as the cluster's owner

    def _run(self, *command: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        argv = list(command)
        if self._user is not None:
            argv = ["runuser", "-u", SERVICE_USER, "--", *argv]
        return subprocess.run(argv, check=check, capture_output=True, text=True,
                              cwd=self.root)

    def _own(self, path: Path) -> None:
        if self._user is not None:
            os.chown(path, self._user.pw_uid, self._user.pw_gid)

    # -- life cycle

    def _options(self) -> str:
        settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.sockets),
            "max_connections": "300",
            "fsync": "on" if self.durable else "off",
            "full_page_writes": "on" if self.durable else "off",
            "shared_buffers": "128MB",
            **self.settings,
        }
        return " ".join(f"-c {key}={value}" for key, value in settings.items())

    def start(self) -> PostgresServer:
        """Create the cluster on first use, then start the server (again)."""
        self.sockets.mkdir(exist_ok=True)
        for path in (self.root, self.sockets):
            self._own(path)
        if not self.data.exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", ROLE,
                      "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync")
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.log),
                  "-o", self._options(), "-w", "-t", "60", "start")
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast``: roll back the open transactions, close every
        connection), as an outage would."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w",
                  "-t", "60", "stop", check=False)

    def destroy(self) -> None:
        self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)

    # -- databases

    def url(self, database: str = "postgres") -> str:
        return f"postgresql://{ROLE}@127.0.0.1:{self.port}/{database}"

    def admin(self) -> psycopg.Connection:
        return psycopg.connect(self.url(), autocommit=True)

    def create_database(self, template: str | None = None, name: str | None = None) -> str:
        """A new database (a copy of ``template`` if given); returns its URL."""
        database = name or f"t{os.getpid()}_{next(self._names)}"
        clause = f" TEMPLATE {template}" if template else ""
        with self.admin() as conn:
            conn.execute(f"CREATE DATABASE {database}{clause}")
        return self.url(database)

    def drop_database(self, url: str) -> None:
        database = url.rsplit("/", 1)[1]
        with contextlib.suppress(psycopg.Error), self.admin() as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")

    def wait_ready(self, deadline_s: float = 30.0) -> None:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            try:
                with self.admin():
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise TimeoutError("PostgreSQL did not come back")


@contextlib.contextmanager
def running(**kwargs: object) -> Iterator[PostgresServer]:
    server = PostgresServer(**kwargs).start()  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.destroy()
