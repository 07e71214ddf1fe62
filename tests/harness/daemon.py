"""Test harness: a real bounced daemon in this process: real listeners on loopback, the real
group-commit writer, the real worker process, a real database file in tmp_path.

Tests talk to it with ``smtplib`` (or raw sockets for malformed input) and read the
database with plain SQL, the way an operator would.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

from bounced.config import Config
from bounced.daemon.serve import Daemon, ListenAddress, ServeOptions
from tests.harness.database import is_postgresql, query
from tests.harness.waiting import eventually
from tests.paths import DATA

SAMPLES = DATA / "mta-lab"
BOUNCE_DOMAIN = "bounce.example"
BOUNCE_ADDRESS = "returns@mail.example"


def sample(name: str = "postfix-01-user-unknown-failed") -> bytes:
    return (SAMPLES / f"{name}.eml").read_bytes()


def unique_dsn(serial: int, name: str = "postfix-01-user-unknown-failed") -> bytes:
    """A real Postfix DSN made unique (identical bytes would be stored once)."""
    return f"X-Test-Serial: {serial}\r\n".encode() + sample(name)


class RunningDaemon:
    """A :class:`Daemon` on its own event loop thread."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.daemon = Daemon(ServeOptions(), config=config)
        self.loop = asyncio.new_event_loop()
        self.exit_code: int | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_until_complete(self.daemon.start())
            self.exit_code = self.loop.run_until_complete(self.daemon.serve())
        except BaseException as error:  # surfaced by start()/stop()
            self.error = error
            self.daemon.ready.set()
        finally:
            self.loop.close()

    def start(self) -> RunningDaemon:
        self.thread.start()
        self.daemon.ready.wait(60)
        if self.error is not None:
            raise self.error
        return self

    def stop(self) -> int | None:
        if self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.daemon.request_stop)
            self.thread.join(120)
        return self.exit_code

    def port(self, kind: str) -> int:
        for address in self.daemon.addresses:
            if address.startswith(f"{kind}://"):
                parsed = ListenAddress.parse(address.split("://", 1)[1])
                assert parsed.port is not None
                return parsed.port
        raise LookupError(kind)

    @property
    def smtp_port(self) -> int:
        return self.port("smtp")

    @property
    def lmtp_port(self) -> int:
        return self.port("lmtp")

    @property
    def db(self) -> Path:
        return Path(self.config.database.path)

    def query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        location = self.config.database.location
        return query(location if is_postgresql(location) else self.db, sql, params)

    def wait_processed(self, deadline_s: float = 60.0) -> None:
        """Until no message is pending (processing is asynchronous by design)."""
        if not eventually(lambda: self.query(
                "SELECT count(*) FROM messages WHERE state = 'pending'")[0][0] == 0,
                seconds=deadline_s):
            raise AssertionError("messages still pending")


def daemon_config(tmp_path: Path, **smtp: Any) -> Config:
    base = Config()
    return replace(
        base,
        database=replace(base.database, path=str(tmp_path / "bounced.db")),
        smtp=replace(
            base.smtp,
            **{
                "listen": "127.0.0.1:0",
                "hostname": "bounced.test",
                "bounce_domains": (BOUNCE_DOMAIN,),
                "bounce_addresses": (BOUNCE_ADDRESS,),
                "max_message_size": 256 * 1024,
                "timeout": timedelta(seconds=2),
                **smtp,
            },
        ),
        lmtp=replace(base.lmtp, listen="127.0.0.1:0"),
        # Hermetic: no test daemon asks the machine's resolver (tests that want DNS
        # evidence point it at the loopback server of tests/dns).
        dns=replace(base.dns, enabled=False),
    )
