"""systemd integration: the unit files, the notify protocol, socket activation."""

from __future__ import annotations

import os
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bounced.daemon import sdnotify
from tests.harness.process import ServerProcess, query
from tests.harness.services import require
from tests.paths import ROOT

UNITS = ROOT / "systemd"


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A real AF_UNIX datagram socket standing in for systemd's notify socket."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(30)
    yield sock, path
    sock.close()


def received(sock: socket.socket) -> str:
    return sock.recv(4096).decode()


def test_systemd_analyze_verify_accepts_the_units() -> None:
    require(None if shutil.which("systemd-analyze") else "systemd-analyze is not installed")
    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            str(UNITS / "bounced.service"),
            str(UNITS / "bounced.socket"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "bounced." not in result.stderr, result.stderr  # no warning about our units


def test_the_service_is_a_hardened_notify_service_with_a_watchdog() -> None:
    text = (UNITS / "bounced.service").read_text()
    settings = {
        line.split("=", 1)[0]: line.split("=", 1)[1]
        for line in text.splitlines()
        if "=" in line and not line.startswith("#")
    }
    assert settings["Type"] == "notify"
    assert settings["WatchdogSec"]
    for key, value in {
        "DynamicUser": "yes",
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "StateDirectory": "bounced",
        "ConfigurationDirectory": "bounced",
        "KillMode": "mixed",
    }.items():
        assert settings[key] == value, key
    socket_unit = (UNITS / "bounced.socket").read_text()
    assert "ListenStream=25" in socket_unit and "FileDescriptorName=smtp" in socket_unit


def test_notifier_sends_state_lines_to_a_real_datagram_socket(
    notify_socket: tuple[socket.socket, str],
) -> None:
    sock, path = notify_socket
    notifier = sdnotify.Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("listening")
    assert received(sock) == "READY=1\nSTATUS=listening"
    assert notifier.watchdog()
    assert received(sock) == "WATCHDOG=1"
    assert notifier.stopping()
    assert received(sock) == "STOPPING=1"
    notifier.close()


def test_notifier_reaches_an_abstract_namespace_socket() -> None:
    name = f"bounced-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(b"\0" + name.encode())
    sock.settimeout(30)
    try:
        assert sdnotify.Notifier({"NOTIFY_SOCKET": f"@{name}"}).status("hello")
        assert received(sock) == "STATUS=hello"
    finally:
        sock.close()


def test_without_notify_socket_nothing_is_sent_and_nothing_fails() -> None:
    notifier = sdnotify.Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()


def test_watchdog_interval_is_half_of_watchdog_usec_and_only_for_our_pid() -> None:
    mine = sdnotify.Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": str(os.getpid())})
    other = sdnotify.Notifier({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"})
    assert mine.watchdog_interval == 15.0
    assert other.watchdog_interval is None


def test_listen_fds_reads_only_sockets_meant_for_this_process() -> None:
    env = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "smtp:lmtp"}
    assert sdnotify.listen_fds(env) == [
        sdnotify.InheritedSocket(3, "smtp"),
        sdnotify.InheritedSocket(4, "lmtp"),
    ]
    assert sdnotify.listen_fds(dict(env, LISTEN_PID="1")) == []


def test_the_daemon_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, notify_socket: tuple[socket.socket, str]
) -> None:
    sock, path = notify_socket
    server = ServerProcess(
        ["--db", str(tmp_path / "n.db"), "--smtp", "127.0.0.1:0"],
        cwd=tmp_path,
        log=tmp_path / "serve.log",
        env={"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"},
    )
    try:
        messages = [received(sock)]
        assert messages[0].startswith("READY=1\nSTATUS=listening on smtp://127.0.0.1:")
        while "WATCHDOG=1" not in messages:
            messages.append(received(sock))
        server.signal(signal.SIGTERM)
        while not messages[-1].startswith("STOPPING=1"):
            messages.append(received(sock))
        assert server.wait() == 0
    finally:
        server.kill()


def test_the_daemon_serves_on_a_socket_passed_by_systemd(tmp_path: Path) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    fd = listener.fileno()
    # What systemd does: the socket as fd 3, LISTEN_PID set to the service's own pid.
    wrapper = [
        sys.executable,
        "-c",
        "import os, sys\n"
        f"os.dup2({fd}, 3)\n"
        f"os.close({fd}) if {fd} != 3 else None\n"
        "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='smtp')\n"
        "os.execv(sys.argv[1], sys.argv[1:])\n",
    ]
    db = tmp_path / "activated.db"
    server = ServerProcess(
        ["--db", str(db), "--smtp", ""],
        cwd=tmp_path,
        log=tmp_path / "serve.log",
        wrapper=wrapper,
        pass_fds=[fd],
    )
    listener.close()  # only the daemon holds it now
    try:
        ready = server.wait_event("serve.ready")
        assert ready["listen"] == ["smtp://fd:3(smtp)"]
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("c.test")
            client.sendmail("", ["bounces@bounce.example"], b"Subject: hi\r\n\r\nnot a bounce\r\n")
        server.signal(signal.SIGTERM)
        assert server.wait() == 0
    finally:
        server.kill()
    assert query(db, "SELECT count(*) FROM messages") == [(1,)]
