"""Fixtures running ``bounced serve`` as a real process (signals, kill -9, systemd, HTTP)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.harness.process import ServerProcess


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """``serve(*args, env=..., wrapper=..., pass_fds=...)``: a started server process."""
    started: list[ServerProcess] = []

    def start(*args: str, **kwargs: Any) -> ServerProcess:
        server = ServerProcess(
            args, cwd=tmp_path, log=tmp_path / f"serve-{len(started)}.log", **kwargs
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.kill()
