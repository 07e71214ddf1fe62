"""Test harness: ``bounced serve`` as a real process, its JSON log, the database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tests.harness import database
from tests.harness.database import Database
from tests.harness.waiting import eventually


class ServerProcess:
    """``python -m bounced serve ...`` with its JSON log in a file we can read."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        log: Path,
        env: dict[str, str] | None = None,
        wrapper: Sequence[str] = (),
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.log_path = log
        self.log_file = log.open("ab")
        environment = dict(os.environ, **(env or {}))
        environment.pop("JOURNAL_STREAM", None)
        self.process = subprocess.Popen(
            [*wrapper, sys.executable, "-m", "bounced", "serve", *args],
            cwd=cwd,
            stdout=self.log_file,
            stderr=subprocess.STDOUT,
            env=environment,
            pass_fds=tuple(pass_fds),
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            if not line.startswith("{"):
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if name is None or event.get("event") == name:
                found.append(event)
        return found

    def wait_event(self, name: str, count: int = 1, deadline_s: float = 60.0) -> dict[str, Any]:
        end = time.monotonic() + deadline_s
        while time.monotonic() < end:
            found = self.events(name)
            if len(found) >= count:
                return found[count - 1]
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        tail = self.log_path.read_text(errors="replace")[-3000:]
        raise AssertionError(f"no {name!r} event (exit={self.process.poll()}); log tail:\n{tail}")

    def ready(self) -> ServerProcess:
        self.wait_event("serve.ready")
        return self

    def port(self, kind: str = "smtp") -> int:
        for address in self.wait_event("serve.ready")["listen"]:
            if address.startswith(f"{kind}://"):
                return int(address.rsplit(":", 1)[1])
        raise LookupError(kind)

    def signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    def wait(self, timeout: float = 120.0) -> int:
        try:
            return self.process.wait(timeout)
        finally:
            self.log_file.close()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(30)
        self.log_file.close()


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); look at its state
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def query(db: Database, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
    return database.query(db, sql, params)


def wait_until_processed(db: Database, deadline_s: float = 120.0) -> None:
    if not eventually(lambda: query(
            db, "SELECT count(*) FROM messages WHERE state = 'pending'")[0][0] == 0,
            seconds=deadline_s, every=0.1):
        raise AssertionError("messages still pending")
