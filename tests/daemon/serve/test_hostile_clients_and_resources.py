"""``bounced serve`` as a process against hostile input and scarce resources: idle
connections, commands that deliver nothing, a full disk, a reader pinning the WAL. What
the clients are told, what is stored, and what the JSON log says."""

from __future__ import annotations

import os
import signal
import smtplib
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path

from tests.conftest import run_bounced
from tests.harness.daemon import unique_dsn
from tests.harness.process import ServerProcess, query, wait_until_processed

BOUNCE = "bounces+tok@bounce.example"
OTHER_CLIENT = ("127.0.0.2", 0)


def start(serve: Callable[..., ServerProcess], tmp_path: Path, toml: str) -> tuple[
        ServerProcess, Path, Path, int]:
    """A daemon with ``toml`` as its configuration: ``(server, config, db, SMTP port)``."""
    config = tmp_path / "bounced.toml"
    config.write_text(toml)
    db = tmp_path / "bounced.db"
    server = serve("--config", str(config), "--db", str(db), "--smtp", "127.0.0.1:0")
    return server, config, db, server.ready().port()


def stop(server: ServerProcess) -> None:
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_200_idle_connections_from_one_client_leave_room_for_another(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """With the defaults (200 connections, 50 per client) an idle client gets its 50,
    every further connection a 421 naming the limit; a second client still delivers."""
    server, _config, db, port = start(serve, tmp_path, "")
    idle: list[socket.socket] = []
    banners: list[bytes] = []
    try:
        for _ in range(200):
            sock = socket.create_connection(("127.0.0.1", port), timeout=30)
            idle.append(sock)
            banners.append(sock.makefile("rb").readline())
        with smtplib.SMTP("127.0.0.1", port, timeout=30, source_address=OTHER_CLIENT) as client:
            client.ehlo("other.test")
            client.mail("")
            client.rcpt(BOUNCE)
            code, _text = client.data(unique_dsn(1))
    finally:
        for sock in idle:
            sock.close()
    assert sum(b.startswith(b"220") for b in banners) == 50
    refused = [b for b in banners if not b.startswith(b"220")]
    assert len(refused) == 150
    assert all(b.startswith(b"421 4.7.0 Too many connections from 127.0.0.1 (at most 50 at a "
                            b"time)") for b in refused), refused[0]
    assert code == 250
    assert query(db, "SELECT count(*) FROM messages") == [(1,)]
    events = server.events("smtp.refused_connection")
    assert len(events) == 150
    assert {(e["reason"], e["reply"], e["peer"].split(":")[0]) for e in events} == {
        ("max_connections_per_client", "421 4.7.0", "127.0.0.1")}
    stop(server)


def test_sessions_that_deliver_nothing_are_cut_and_the_log_says_why(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server, _config, _db, port = start(
        serve, tmp_path, '[smtp]\nmax_junk_commands = 2\ntimeout = "2s"\n')
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("c.test")
        replies = [client.noop()[0], client.rset()[0]]
        code, text = client.docmd("VRFY", "someone@example.org")
    assert replies == [250, 250]
    assert (code, text[:5]) == (421, b"4.7.0")
    (rejected,) = server.events("smtp.rejected")
    assert (rejected["reason"], rejected["stage"], rejected["reply"]) == (
        "max_junk_commands", "vrfy", "421 4.7.0")
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        silent = reader.readline()  # nothing sent: the 2 s silence limit
    assert silent.startswith(b"421 4.4.2")
    timeout = server.wait_event("smtp.timeout")
    assert (timeout["limit"], timeout["stage"], timeout["reply"]) == (
        "timeout", "command", "421 4.4.2")
    stop(server)


def test_below_the_free_space_reserve_mail_gets_452_4_3_1_and_db_check_says_so(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """No disk is filled: the reserve is set 1 GiB above what the file system has free."""
    stats = os.statvfs(tmp_path)
    reserve = int(stats.f_bavail * stats.f_frsize / (1024 * 1024)) + 1024
    toml = f"[storage]\nmin_free_mb = {reserve}\n"
    server, config, db, port = start(serve, tmp_path, toml)
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("c.test")
        code, text = client.mail("")
        assert client.noop()[0] == 250  # the session goes on: the MTA may retry later
    assert (code, text) == (452, b"4.3.1 Insufficient system storage, try again later")
    assert query(db, "SELECT count(*) FROM messages") == [(0,)]
    (event,) = server.events("smtp.backpressure")
    assert (event["reason"], event["stage"], event["reply"]) == ("disk", "mail", "452 4.3.1")
    reached = server.wait_event("storage.reserve_reached")
    assert reached["min_free_mb"] == reserve and reached["free_mib"] < reserve
    check = run_bounced(["db", "check", "--db", str(db), "--config", str(config)])
    assert check.status == 1
    (line,) = [line for line in check.out.splitlines() if "free space" in line]
    assert line.startswith("PROBLEM: free space: ")
    assert f"reserve storage.min_free_mb = {reserve} MiB: below the reserve" in line
    assert "452 4.3.1" in line
    stop(server)


def test_a_reader_pinning_the_wal_is_logged_and_the_wal_shrinks_back_after_it(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """An operator's sqlite3 session left in a read transaction: the checkpoints cannot
    copy the WAL back while it lasts, the WAL grows with every message and the log says
    so; once it ends, the WAL goes back under database.wal_limit_mb."""
    toml = "[database]\nwal_limit_mb = 1\nwal_warn_mb = 1\n"
    server, config, db, port = start(serve, tmp_path, toml)
    wal = Path(f"{db}-wal")
    reader = sqlite3.connect(db, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM messages").fetchone()  # the snapshot is held
    try:
        senders = [threading.Thread(target=send_many, args=(port, range(n * 100, n * 100 + 100)))
                   for n in range(4)]
        for sender in senders:
            sender.start()
        for sender in senders:
            sender.join()
        wait_until_processed(db)
        pinned = server.wait_event("database.wal_pinned")
        grown = wal.stat().st_size
    finally:
        reader.close()
    assert pinned["wal_mib"] >= 1 and pinned["wal_warn_mb"] == 1
    assert pinned["pinned_seconds"] >= 0 and "reader" in pinned["hint"]
    assert grown > 2 * 1024 * 1024
    released = server.wait_event("database.wal_released")
    deadline = time.monotonic() + 30
    while wal.stat().st_size > 1024 * 1024 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert wal.stat().st_size <= 1024 * 1024
    assert released["pinned_seconds"] >= pinned["pinned_seconds"]
    check = run_bounced(["db", "check", "--db", str(db), "--config", str(config)])
    assert any(line.startswith("WAL: ") and line.endswith(f"MiB ({db.name}-wal)")
               for line in check.out.splitlines()), check.out
    assert query(db, "SELECT count(*) FROM messages") == [(400,)]
    stop(server)


def send_many(port: int, serials: range) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        for serial in serials:
            client.sendmail("", [BOUNCE], unique_dsn(serial))
