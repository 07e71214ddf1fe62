"""``bounced serve`` as a process: durability across kill -9, SIGTERM, SIGHUP, the CLI."""

from __future__ import annotations

import contextlib
import hashlib
import signal
import smtplib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from bounced.daemon.serve import ServeOptions, effective_config
from tests.harness.daemon import sample, unique_dsn
from tests.harness.process import ServerProcess, pid_alive, query, wait_until_processed

BOUNCE = "bounces+tok@bounce.example"


def rcpt_reply(port: int, recipient: str) -> int:
    """The reply code the daemon gives to ``RCPT TO:<recipient>`` after a null sender."""
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
        client.ehlo("c.test")
        client.mail("")
        return int(client.rcpt(recipient)[0])


def wire_bytes(raw: bytes) -> bytes:
    """What the server stores for ``raw`` sent by smtplib (it ends the data with CRLF)."""
    return raw if raw.endswith(b"\r\n") else raw + b"\r\n"


def test_with_no_arguments_it_serves_smtp_on_loopback_2525_into_bounced_db() -> None:
    config = effective_config(ServeOptions())
    assert config.smtp.listen == "127.0.0.1:2525"
    assert config.database.path == "bounced.db"
    assert config.lmtp.listen == ""


def test_command_line_options_override_the_configuration_file(tmp_path: Path) -> None:
    path = tmp_path / "bounced.toml"
    path.write_text('[smtp]\nlisten = "0.0.0.0:25"\n[database]\npath = "/var/lib/x.db"\n')
    config = effective_config(
        ServeOptions(config_path=str(path), db="y.db", lmtp="unix:/run/l.sock")
    )
    assert (config.smtp.listen, config.database.path, config.lmtp.listen) == (
        "0.0.0.0:25",
        "y.db",
        "unix:/run/l.sock",
    )


def test_a_bad_configuration_file_stops_the_start_with_the_key_named(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text("[smtp]\nmax_message_size = 'big'\n")
    server = serve("--config", str(path), "--smtp", "127.0.0.1:0")
    assert server.wait(60) == 2
    assert "smtp.max_message_size" in server.log_path.read_text()


class Sender(threading.Thread):
    """A client sending distinct DSNs on one connection until told to stop or cut off."""

    def __init__(self, port: int, serials: range) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.serials = serials
        self.acked: list[int] = []
        self.unknown: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        pending = list(self.serials)
        try:
            client = smtplib.SMTP("127.0.0.1", self.port, timeout=30)
            client.ehlo("client.test")
        except OSError:
            self.unknown.extend(pending)
            return
        while pending and not self.stop.is_set():
            serial = pending[0]
            try:
                client.sendmail("", [BOUNCE], unique_dsn(serial))
            except (smtplib.SMTPException, OSError):
                self.unknown.extend(pending)
                return
            pending.pop(0)
            self.acked.append(serial)
        self.unknown.extend(pending)
        with contextlib.suppress(smtplib.SMTPException, OSError):
            client.quit()


def send_all(port: int, serials: list[int]) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.ehlo("client.test")
        for serial in serials:
            client.sendmail("", [BOUNCE], unique_dsn(serial))


def test_kill_9_loses_no_acknowledged_message_and_counts_none_twice(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    db = tmp_path / "crash.db"
    args = ("--db", str(db), "--smtp", "127.0.0.1:0")
    acked: set[int] = set()
    unsure: set[int] = set()
    next_serial = 0
    for _round in range(3):
        server = serve(*args).ready()
        worker_pid = int(server.wait_event("worker.started")["pid"])
        senders = []
        for _ in range(8):
            senders.append(Sender(server.port(), range(next_serial, next_serial + 10_000)))
            next_serial += 10_000
        for sender in senders:
            sender.start()
        # Let a few hundred messages through, then pull the plug mid-stream.
        while sum(len(s.acked) for s in senders) < 150:
            time.sleep(0.01)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait(30)
        for sender in senders:
            sender.join(60)
            acked.update(sender.acked)
            unsure.update(sender.unknown[:1])  # at most the one in flight may be stored
        # The worker dies with the daemon: no orphan goes on writing.
        end = time.monotonic() + 30
        while pid_alive(worker_pid) and time.monotonic() < end:
            time.sleep(0.05)
        assert not pid_alive(worker_pid)
        server.kill()

    # Restart: pending work is recovered; the MTA re-sends what was not acknowledged.
    server = serve(*args).ready()
    send_all(server.port(), sorted(unsure))
    wait_until_processed(db)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0

    rows = query(db, "SELECT id, raw, state FROM messages")
    by_serial = {}
    for message_id, raw, state in rows:
        first = bytes(raw).split(b"\r\n", 1)[0]
        serial = int(first.split(b": ")[1])
        assert serial not in by_serial, f"message {serial} stored twice"
        by_serial[serial] = (message_id, bytes(raw), state)
    assert acked <= set(by_serial), (
        f"lost acknowledged messages: {sorted(acked - set(by_serial))[:10]}"
    )
    assert set(by_serial) <= acked | unsure
    for serial in acked:
        assert by_serial[serial][1] == wire_bytes(unique_dsn(serial))
    assert {state for _, _, state in by_serial.values()} == {"processed"}
    verdicts = dict(query(db, "SELECT message_id, count(*) FROM bounces GROUP BY message_id"))
    # Each of these DSNs reports exactly one recipient: exactly one verdict per message.
    assert {message_id: verdicts.get(message_id) for message_id, _, _ in by_serial.values()} == {
        message_id: 1 for message_id, _, _ in by_serial.values()
    }


def test_sigterm_finishes_the_transaction_in_flight_and_the_backlog_then_exits_0(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    db = tmp_path / "term.db"
    server = serve("--db", str(db), "--smtp", "127.0.0.1:0").ready()
    port = server.port()
    raw = unique_dsn(1)
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for command in (b"EHLO c.test", b"MAIL FROM:<>", f"RCPT TO:<{BOUNCE}>".encode(), b"DATA"):
            sock.sendall(command + b"\r\n")
            while (line := reader.readline())[3:4] == b"-":
                pass
        sock.sendall(raw[:1000])
        server.signal(signal.SIGTERM)
        server.wait_event("serve.stopping")
        with pytest.raises(OSError):  # no longer accepting
            socket.create_connection(("127.0.0.1", port), timeout=5).close()
        sock.sendall(raw[1000:] + b".\r\n")
        line = reader.readline()
    assert line.startswith(b"250 2.0.0")
    assert server.wait() == 0
    assert query(db, "SELECT state FROM messages") == [("processed",)]
    assert query(db, "SELECT count(*) FROM bounces") == [(1,)]


def serve_configured(
    serve: Callable[..., ServerProcess], tmp_path: Path, toml: str, db_name: str
) -> tuple[ServerProcess, Path, int]:
    """A daemon on a free loopback port with ``toml`` as its configuration file:
    ``(server, config path, SMTP port)``."""
    config = tmp_path / "bounced.toml"
    config.write_text(toml)
    server = serve(
        "--config", str(config), "--db", str(tmp_path / db_name), "--smtp", "127.0.0.1:0"
    )
    return server, config, server.ready().port()


def test_sighup_reloads_the_recipient_policy_without_a_restart(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server, config, port = serve_configured(
        serve, tmp_path, '[smtp]\nbounce_domains = ["a.example"]\n', "hup.db"
    )
    assert rcpt_reply(port, "x@b.example") == 550
    config.write_text('[smtp]\nbounce_domains = ["a.example", "b.example"]\n')
    server.signal(signal.SIGHUP)
    server.wait_event("serve.reloaded")
    assert rcpt_reply(port, "x@b.example") == 250
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_a_broken_configuration_on_sighup_keeps_the_previous_one(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server, config, port = serve_configured(
        serve, tmp_path, '[smtp]\nbounce_domains = ["a.example"]\n', "hup.db"
    )
    config.write_text("[smtp]\nbounce_domains = 'oops'\n")
    server.signal(signal.SIGHUP)
    assert "smtp.bounce_domains" in server.wait_event("serve.reload_failed")["error"]
    assert rcpt_reply(port, "x@a.example") == 250
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_pending_messages_left_by_a_crash_are_processed_at_start(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from bounced.model import IncomingMessage
    from bounced.store import Store

    db = tmp_path / "recover.db"
    with Store.open(db) as store:
        store.messages.insert(
            [
                IncomingMessage(datetime.now(UTC), "", (BOUNCE,), wire_bytes(unique_dsn(n)))
                for n in range(5)
            ]
        )
    server = serve("--db", str(db), "--smtp", "127.0.0.1:0").ready()
    assert server.wait_event("worker.started")["pending"] == 5
    wait_until_processed(db)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    assert query(db, "SELECT count(*) FROM bounces") == [(5,)]


def test_both_processes_prewarm_the_btrees_they_read_at_random(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """The worker loads what processing reads (address, bounces and history by address),
    the SMTP writer what storing reads (the duplicate index), each into its own cache."""
    from bounced.store import PROCESSING_BTREES, STORING_BTREES

    server = serve("--db", str(tmp_path / "warm.db"), "--smtp", "127.0.0.1:0").ready()
    first, second = server.wait_event("database.prewarm"), server.wait_event(
        "database.prewarm", count=2)
    by_btrees = {event["btrees"]: event for event in (first, second)}
    assert set(by_btrees) == {",".join(PROCESSING_BTREES), ",".join(STORING_BTREES)}
    for event in by_btrees.values():
        assert event["loaded"] is True and event["cache_mib"] == 16
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_the_worker_copies_the_wal_into_the_database_file_in_the_background(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Neither the SMTP writer nor the worker's commits checkpoint (0 and 20,000 pages):
    verdicts reach the database file itself only through the worker's checkpoint thread."""
    import sqlite3
    from datetime import UTC, datetime

    from bounced.model import IncomingMessage
    from bounced.store import Store

    db = tmp_path / "ckpt.db"
    with Store.open(db) as store:
        store.messages.insert([
            IncomingMessage(datetime.now(UTC), "", (BOUNCE,), wire_bytes(unique_dsn(n)))
            for n in range(5)
        ])
    server = serve("--db", str(db), "--smtp", "127.0.0.1:0").ready()
    wait_until_processed(db)
    copy = tmp_path / "file-alone.db"
    deadline = time.monotonic() + 30
    in_file = 0
    while time.monotonic() < deadline:
        copy.write_bytes(db.read_bytes())  # the main file without its -wal
        conn = sqlite3.connect(copy)
        in_file = conn.execute("SELECT count(*) FROM bounces").fetchone()[0]
        conn.close()
        if in_file == 5:
            break
        time.sleep(0.1)
    assert in_file == 5
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_a_100_mb_message_is_refused_with_552_without_being_buffered(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server, _config, port = serve_configured(
        serve, tmp_path, "[smtp]\nmax_message_size = 1048576\n", "big.db"
    )
    line = b"x" * 998 + b"\r\n"
    chunk = line * 1024  # ~1 MB
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for command in (b"EHLO c.test", b"MAIL FROM:<>", f"RCPT TO:<{BOUNCE}>".encode(), b"DATA"):
            sock.sendall(command + b"\r\n")
            while reader.readline()[3:4] == b"-":
                pass
        for _ in range(100):
            sock.sendall(chunk)
        sock.sendall(b".\r\n")
        reply = reader.readline()
        sock.sendall(b"NOOP\r\n")
        noop = reader.readline()
    assert reply.startswith(b"552 5.3.4")
    assert noop.startswith(b"250")
    peak_kb = int(
        next(
            line.split()[1]
            for line in Path(f"/proc/{server.pid}/status").read_text().splitlines()
            if line.startswith("VmHWM:")
        )
    )
    assert peak_kb < 90 * 1024, f"server peaked at {peak_kb} kB for a 100 MB message"
    assert query(tmp_path / "big.db", "SELECT count(*) FROM messages") == [(0,)]
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_the_log_has_one_event_per_message_received_and_per_verdict(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = serve("--db", str(tmp_path / "log.db"), "--smtp", "127.0.0.1:0")
    send_all(server.ready().port(), [1, 2])
    server.wait_event("bounce.verdict", count=2)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    received = server.events("message.received")
    verdicts = server.events("bounce.verdict")
    assert len(received) == 2 and len(verdicts) == 2
    assert {"message_id", "mail_from", "rcpt_to", "size", "peer"} <= set(received[0])
    assert {"message_id", "recipient", "kind", "failure_type", "reason", "qualified_by"} <= set(
        verdicts[0]
    )
    assert verdicts[0]["recipient"] == "unknown-user@rcpt.test"
    assert len(server.events("serve.open_recipients")) == 1


def test_sample_helper_is_a_real_postfix_dsn() -> None:
    assert b"Content-Type: multipart/report" in sample() or b"multipart/report" in sample()
    assert hashlib.sha256(unique_dsn(1)).digest() != hashlib.sha256(unique_dsn(2)).digest()


def test_the_daemon_purges_what_is_past_retention(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """Old processed messages go, with their bounces; the bounce the history cites stays
    (its raw bytes dropped); recent ones and unprocessed ones are untouched."""
    from datetime import UTC, datetime, timedelta

    from bounced.model import IncomingMessage
    from bounced.store import Store

    db = tmp_path / "retention.db"
    long_ago = datetime.now(UTC) - timedelta(days=30)
    with Store.open(db) as store:
        store.messages.insert(
            [IncomingMessage(long_ago, "", (BOUNCE,), wire_bytes(unique_dsn(n))) for n in range(3)]
        )
    config = tmp_path / "bounced.toml"
    config.write_text('[database]\nretention = "7d"\n[maintenance]\ninterval = "1s"\n'
                      '[dns]\nenabled = false\n')
    server = serve("--config", str(config), "--db", str(db), "--smtp", "127.0.0.1:0").ready()
    wait_until_processed(db)
    server.wait_event("retention.purged")
    with smtplib.SMTP("127.0.0.1", server.port(), timeout=30) as client:
        client.sendmail("", [BOUNCE], unique_dsn(99))
    wait_until_processed(db)
    server.wait_event("retention.purged", count=3)  # a round after the recent one is in
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    # The old bounces (one recipient, user unknown) quarantined it once: the first one is
    # cited by the history, so it stays with its message, whose raw bytes are dropped;
    # the other two old ones are gone. The recent message is whole.
    cited = query(db, "SELECT bounce_id FROM address_events WHERE bounce_id IS NOT NULL")
    assert len(cited) == 1
    assert query(db, "SELECT b.id, length(m.raw) > 0 FROM bounces b "
                     "JOIN messages m ON m.id = b.message_id ORDER BY b.id") == [
        (cited[0][0], False), (query(db, "SELECT max(id) FROM bounces")[0][0], True)]
    assert query(db, "SELECT count(*) FROM messages") == [(2,)]


def test_a_damaged_page_in_the_middle_of_the_file_is_reported_after_start(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    """The daemon reads the whole file once after start: a page that no query of the
    start reaches is found now, not weeks later."""
    from datetime import UTC, datetime

    from bounced.model import IncomingMessage
    from bounced.store import Store

    db = tmp_path / "damaged.db"
    with Store.open(db) as store:
        store.messages.insert([IncomingMessage(datetime.now(UTC), "", (BOUNCE,),
                                               wire_bytes(unique_dsn(n))) for n in range(300)])
    server = serve("--db", str(db), "--smtp", "127.0.0.1:0").ready()
    wait_until_processed(db)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0
    leaves = query(db, "SELECT pageno FROM dbstat WHERE name = 'bounces' AND pagetype = 'leaf' "
                       "ORDER BY pageno")
    page_size = query(db, "PRAGMA page_size")[0][0]
    victim = leaves[len(leaves) // 2][0]
    with db.open("r+b") as handle:  # a b-tree page header overwritten, as a bad sector would
        handle.seek((victim - 1) * page_size)
        handle.write(b"\xff" * 16)
    server = serve("--db", str(db), "--smtp", "127.0.0.1:0").ready()
    damaged = server.wait_event("database.damaged")
    assert damaged["path"] == str(db) and damaged["problems"]
    server.signal(signal.SIGTERM)
    server.wait()


def test_a_sound_file_is_reported_checked(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    server = serve("--db", str(tmp_path / "sound.db"), "--smtp", "127.0.0.1:0").ready()
    assert server.wait_event("database.checked")["path"] == str(tmp_path / "sound.db")
    assert server.events("database.damaged") == []
    server.signal(signal.SIGTERM)
    assert server.wait() == 0


def test_without_a_verp_secret_a_listener_beyond_loopback_is_warned_about(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    exposed = serve("--db", str(tmp_path / "e.db"), "--smtp", "0.0.0.0:0").ready()
    assert "verp.secret" in exposed.wait_event("serve.unsigned_bounces")["hint"]
    exposed.signal(signal.SIGTERM)
    assert exposed.wait() == 0
    config = tmp_path / "signed.toml"
    config.write_text('[verp]\nsecret = "s3cret"\n')
    signed = serve("--config", str(config), "--db", str(tmp_path / "s.db"),
                   "--smtp", "0.0.0.0:0").ready()
    signed.wait_event("worker.started")
    assert signed.events("serve.unsigned_bounces") == []
    signed.signal(signal.SIGTERM)
    assert signed.wait() == 0
    loopback = serve("--db", str(tmp_path / "l.db"), "--smtp", "127.0.0.1:0").ready()
    loopback.wait_event("worker.started")
    assert loopback.events("serve.unsigned_bounces") == []
    loopback.signal(signal.SIGTERM)
    assert loopback.wait() == 0
