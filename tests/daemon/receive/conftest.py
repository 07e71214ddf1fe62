"""Fixtures: a real daemon per test (see ``tests/harness/daemon.py``)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from bounced.config import Config
from tests.harness.daemon import RunningDaemon, daemon_config


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
