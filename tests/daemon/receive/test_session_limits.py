"""Hostile and slow clients against the real daemon, over loopback: per-client connection
limits, silence and DATA-rate timeouts, stress timeouts, commands that deliver nothing.

Two clients are two loopback source addresses (127.0.0.1 and 127.0.0.2): Linux routes
the whole of 127.0.0.0/8 to the loopback interface.
"""

from __future__ import annotations

import contextlib
import smtplib
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

import pytest

from tests.harness.daemon import (
    BOUNCE_ADDRESS,
    RunningDaemon,
    daemon_config,
    unique_dsn,
)

OTHER_CLIENT = ("127.0.0.2", 0)


def greeting(sock: socket.socket) -> bytes:
    """The first reply line of a new connection."""
    return sock.makefile("rb").readline()


def connect(port: int, source: tuple[str, int] | None = None) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=30, source_address=source)


class Session:
    """A raw SMTP session: send a line, read a (multi-line) reply."""

    def __init__(self, port: int, source: tuple[str, int] | None = None) -> None:
        self.sock = connect(port, source)
        self.reader = self.sock.makefile("rb")
        self.banner = self.reply()

    def reply(self) -> bytes:
        lines = []
        while True:
            line = self.reader.readline()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    def command(self, line: bytes) -> bytes:
        self.sock.sendall(line + b"\r\n")
        return self.reply()

    def start_data(self) -> None:
        for line in (b"EHLO client.test", b"MAIL FROM:<>", f"RCPT TO:<{BOUNCE_ADDRESS}>".encode()):
            assert self.command(line)[:1] == b"2", line
        assert self.command(b"DATA").startswith(b"354")

    def closed_within(self, seconds: float) -> tuple[bytes, float]:
        """Everything the server says until it closes the connection, and how long that
        took; fails if it is still open after ``seconds``."""
        started = time.monotonic()
        self.sock.settimeout(seconds)
        received = b""
        try:
            while True:
                chunk = self.sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except TimeoutError:
            pytest.fail(f"still open after {seconds} s; received {received!r}")
        except ConnectionResetError:
            pass
        return received, time.monotonic() - started

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.close()


@pytest.fixture
def sessions() -> Iterator[list[Session]]:
    opened: list[Session] = []
    yield opened
    for session in opened:
        session.close()


def deliver(port: int, serial: int, source: tuple[str, int] | None = None) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=source) as client:
        client.ehlo("client.test")
        client.mail("")
        client.rcpt(BOUNCE_ADDRESS)
        return client.data(unique_dsn(serial))


# ----------------------------------------------------------------------- per client


def test_a_client_over_its_connection_rate_gets_421_and_another_client_does_not(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    server = start_daemon(connection_rate_per_client=5)
    replies = []
    for _ in range(7):
        with connect(server.smtp_port) as sock:
            replies.append(greeting(sock))
    assert [r[:3] for r in replies] == [b"220"] * 5 + [b"421"] * 2
    assert replies[-1].startswith(b"421 4.7.0 Too many connections from 127.0.0.1")
    assert b"5 a minute" in replies[-1]
    assert deliver(server.smtp_port, 1, OTHER_CLIENT)[0] == 250


def test_unix_socket_peers_are_not_held_to_per_client_limits(
    start_daemon: Callable[..., RunningDaemon], tmp_path: Path, sessions: list[Session]
) -> None:
    """A local MTA on the LMTP socket is one "client" with no IP: the per-IP limits do
    not apply to it (the socket file's permissions say who may connect)."""
    path = tmp_path / "lmtp.sock"
    config = daemon_config(tmp_path, max_connections_per_client=2, connection_rate_per_client=2)
    start_daemon(replace(config, lmtp=replace(config.lmtp, listen=f"unix:{path}")))
    banners = []
    for _ in range(5):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(30)
        sock.connect(str(path))
        banners.append(greeting(sock))
        sock.close()
    assert [b[:3] for b in banners] == [b"220"] * 5


# ----------------------------------------------------------------------- silence, DATA


@pytest.mark.slow
def test_a_steady_100_kb_s_sender_delivers_5_mb_with_a_10_s_timeout(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    """The timeout is a silence limit: a DATA phase of ~50 s is fine while bytes flow
    (aiosmtpd's timer cut this sender at 10 s: it ran from the DATA command)."""
    server = start_daemon(timeout=timedelta(seconds=10), max_message_size=8 * 1024 * 1024)
    line = b"x" * 98 + b"\r\n"
    body = b"Subject: slow\r\n\r\n" + line * (5 * 1024 * 1024 // len(line))
    session = Session(server.smtp_port)
    try:
        session.start_data()
        started = time.monotonic()
        block = 10 * 1024  # 10 KB every 0.1 s: 100 KB/s
        for n, offset in enumerate(range(0, len(body), block)):
            pause = started + n * 0.1 - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            session.sock.sendall(body[offset:offset + block])
        session.sock.sendall(b".\r\n")
        reply = session.reply()
        elapsed = time.monotonic() - started
    finally:
        session.close()
    assert reply.startswith(b"250 2.0.0"), reply
    assert elapsed > 40  # it really was slow: four times the timeout
    assert server.query("SELECT size FROM messages") == [(len(body),)]


def test_a_sender_silent_mid_data_for_longer_than_the_timeout_is_cut_with_421(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    server = start_daemon(timeout=timedelta(seconds=2))
    session = Session(server.smtp_port)
    try:
        session.start_data()
        session.sock.sendall(unique_dsn(2)[:2000])
        said, _ = session.closed_within(20)
    finally:
        session.close()
    assert said.startswith(b"421 4.4.2 Timeout: nothing received for 2")
    assert server.query("SELECT count(*) FROM messages") == [(0,)]


def test_a_sender_slower_than_min_data_rate_is_cut_though_never_silent(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    """20 KB/s against a floor of 50 KB/s, a block every 0.25 s (the 2 s silence limit
    never runs out): DATA may last 2 s + received / 50,000 s, which this sender loses."""
    server = start_daemon(timeout=timedelta(seconds=2), min_data_rate=50_000)
    session = Session(server.smtp_port)
    said = b""
    try:
        session.start_data()
        session.sock.settimeout(0.25)
        for _ in range(200):  # 50 s at most
            try:
                session.sock.sendall(b"y" * 4998 + b"\r\n")
                chunk = session.sock.recv(4096)
            except TimeoutError:
                continue
            except (BrokenPipeError, ConnectionResetError):
                break
            said += chunk
            if not chunk:
                break
        else:
            pytest.fail("the slow sender was never cut")
    finally:
        session.close()
    assert said.startswith(b"421 4.4.2 Timeout: DATA slower than 50000 bytes/s"), said
    assert server.query("SELECT count(*) FROM messages") == [(0,)]


def test_under_stress_idle_connections_get_the_short_timeout(
    start_daemon: Callable[..., RunningDaemon], sessions: list[Session]
) -> None:
    """Past 80% of max_connections, silence is limited to stress_timeout (1 s here)
    instead of timeout (60 s), for the connections already open too, until the table
    is back under 70%: 9 idle connections of 10 lose at least 3 of theirs."""
    server = start_daemon(max_connections=10, max_connections_per_client=0,
                          timeout=timedelta(seconds=60), stress_timeout=timedelta(seconds=1))
    for _ in range(9):
        sessions.append(Session(server.smtp_port))
    time.sleep(5)
    cut = []
    for session in sessions:
        session.sock.settimeout(0.1)
        try:
            said = session.sock.recv(4096)
        except TimeoutError:
            continue
        assert said.startswith(b"421 4.4.2 Timeout: nothing received for 1"), said
        cut.append(session)
    assert len(cut) >= 3


def test_without_stress_idle_connections_keep_the_long_timeout(
    start_daemon: Callable[..., RunningDaemon], sessions: list[Session]
) -> None:
    """The control for the test above: 5 of 10 slots is no stress."""
    server = start_daemon(max_connections=10, max_connections_per_client=0,
                          timeout=timedelta(seconds=60), stress_timeout=timedelta(seconds=1))
    for _ in range(5):
        sessions.append(Session(server.smtp_port))
    time.sleep(3)
    for session in sessions:
        assert session.command(b"NOOP").startswith(b"250")


# ----------------------------------------------------------------------- delivering nothing


def test_noop_every_second_is_cut_when_the_junk_budget_runs_out(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    server = start_daemon(max_junk_commands=3, timeout=timedelta(seconds=3))
    session = Session(server.smtp_port)
    replies = []
    try:
        for _ in range(4):
            replies.append(session.command(b"NOOP"))
            time.sleep(1)  # under the 3 s silence limit: only the budget can cut it
        said, _ = session.closed_within(10)
    finally:
        session.close()
    assert [r[:3] for r in replies] == [b"250", b"250", b"250", b"421"]
    assert replies[-1].startswith(b"421 4.7.0 Too many commands that deliver nothing")
    assert said == b""


def test_a_delivered_message_gives_the_junk_budget_back(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    server = start_daemon(max_junk_commands=3)
    with smtplib.SMTP("127.0.0.1", server.smtp_port, timeout=30) as client:
        client.ehlo("client.test")
        for serial in (3, 4, 5):
            assert [client.noop()[0], client.rset()[0], client.noop()[0]] == [250] * 3
            client.mail("")
            client.rcpt(BOUNCE_ADDRESS)
            assert client.data(unique_dsn(serial))[0] == 250
        assert client.noop()[0] == 250


def test_a_session_that_delivers_nothing_is_cut_at_the_idle_session_limit(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    """EHLO is not junk, and sent every 0.5 s it keeps the silence limit away: the
    session idle limit (3 s) still ends it."""
    server = start_daemon(idle_session_limit=timedelta(seconds=3), timeout=timedelta(seconds=30))
    session = Session(server.smtp_port)
    said = b""
    started = time.monotonic()
    try:
        while time.monotonic() - started < 20:
            try:
                said = session.command(b"EHLO client.test")
            except (BrokenPipeError, ConnectionResetError):
                break
            if not said.startswith(b"250"):
                break
            time.sleep(0.5)
    finally:
        session.close()
    assert said.startswith(b"421 4.7.0 No message delivered for 3 s"), said


@pytest.mark.parametrize(("peer", "key"), [
    (("192.0.2.7", 25), "192.0.2.7"),
    (("::ffff:192.0.2.7", 25, 0, 0), "192.0.2.7"),  # a dual-stack listener's IPv4 client
    (("2001:db8::1", 25, 0, 0), "2001:db8::/84"),
    (("2001:db8::ffff:1234", 25, 0, 0), "2001:db8::/84"),  # same host, another address
    (("2001:db8:0:1::1", 25, 0, 0), "2001:db8:0:1::/84"),
    ("", None),  # a Unix-socket peer
])
def test_clients_are_counted_by_ipv4_address_or_ipv6_network(peer: object, key: str | None) -> None:
    from bounced.daemon.receive import client_key

    assert client_key(peer) == key
