"""Fixtures: a real daemon per test (see ``tests/serve/bounced_harness.py``)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "serve"))

from bounced_harness import RunningDaemon, daemon_config

from bounced.config import Config


@pytest.fixture
def start_daemon(tmp_path: Path) -> Iterator[Callable[..., RunningDaemon]]:
    """``start_daemon(**smtp_settings)`` -> a running daemon, stopped at teardown."""
    running: list[RunningDaemon] = []

    def start(config: Config | None = None, **smtp: Any) -> RunningDaemon:
        daemon = RunningDaemon(config or daemon_config(tmp_path, **smtp)).start()
        running.append(daemon)
        return daemon

    yield start
    for daemon in running:
        daemon.stop()


@pytest.fixture
def server(start_daemon: Callable[..., RunningDaemon]) -> RunningDaemon:
    return start_daemon()
