"""Two ``bounced serve`` processes on one PostgreSQL database, over real SMTP: what an
ESP gets by pointing its bounce domain's MX records at two hosts (README "Several
hosts"). And PostgreSQL itself going away under load.
"""

from __future__ import annotations

import hashlib
import signal
import smtplib
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.conftest import TEMPLATE, variant
from tests.harness.daemon import BOUNCE_ADDRESS, unique_dsn
from tests.harness.postgres import PostgresServer, unavailable
from tests.harness.process import ServerProcess, query, wait_until_processed
from tests.harness.services import require

#: Soft errors count separately when this far apart (24 h in production): the five
#: bounces of the test come this far apart in real time, alternately to each host.
INTERVAL_S = 1.0


def write_config(directory: Path, url: str) -> Path:
    path = directory / "bounced.toml"
    path.write_text(
        f'[database]\nurl = "{url}"\n'
        '[smtp]\nlisten = "127.0.0.1:0"\nhostname = "bounced.test"\n'
        'bounce_domains = ["bounce.example"]\nbounce_addresses = ["returns@mail.example"]\n'
        'timeout = "5s"\n'
        # Every MTA of these tests is 127.0.0.1: the per-client limits of the listener
        # (hardening) would count them as one client flooding it.
        'max_connections_per_client = 0\nconnection_rate_per_client = 0\n'
        f'[policy]\nsoft_error_interval = "{INTERVAL_S:g}s"\n'
        '[maintenance]\ninterval = "2s"\n'
        '[dns]\nenabled = false\n'
        '[logging]\nformat = "json"\n')
    return path


def start_host(directory: Path, config: Path, name: str) -> ServerProcess:
    home = directory / name
    home.mkdir(exist_ok=True)
    return ServerProcess(["--config", str(config)], cwd=home, log=home / "log.jsonl").ready()


def send(port: int, raw: bytes, timeout: float = 10.0) -> tuple[int, bytes]:
    """One SMTP transaction; the reply to DATA (or the error that ended it)."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as client:
        client.ehlo("mta.test")
        client.mail("<>")
        client.rcpt(BOUNCE_ADDRESS)
        return client.data(raw)


@pytest.fixture
def hosts(tmp_path: Path, pg_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    config = write_config(tmp_path, pg_url)
    first = start_host(tmp_path, config, "a")
    second = start_host(tmp_path, config, "b")
    try:
        yield first, second
    finally:
        for host in (first, second):
            host.kill()


def test_soft_bounces_sent_alternately_to_two_hosts_count_as_one_address(
        hosts: tuple[ServerProcess, ServerProcess], pg_url: str) -> None:
    ports = [host.port() for host in hosts]
    address = "full@example.org"
    for index in range(5):
        raw = variant("soft-mailbox-full", address=address,
                      date=f"Sun, {index + 1} Nov 2026 09:00:00 +0000")
        code, reply = send(ports[index % 2], raw)
        assert code == 250, reply
        wait_until_processed(pg_url)
        time.sleep(INTERVAL_S * 1.2)
    assert query(pg_url, "SELECT state, error_count FROM addresses WHERE address = ?",
                 (address,)) == [("quarantine", 5)]
    assert query(pg_url, "SELECT count(*) FROM bounces WHERE recipient = ?",
                 (address,)) == [(5,)]
    assert query(pg_url, "SELECT address, reason FROM suppression_list") == [
        (address, "Mailbox full")]


def test_a_bounce_re_sent_to_the_other_host_is_one_message(
        hosts: tuple[ServerProcess, ServerProcess], pg_url: str) -> None:
    raw = unique_dsn(1)
    first = send(hosts[0].port(), raw)
    again = send(hosts[1].port(), raw)
    assert first[0] == again[0] == 250
    assert b"already stored" in again[1]
    wait_until_processed(pg_url)
    assert query(pg_url, "SELECT count(*) FROM messages") == [(1,)]
    assert query(pg_url, "SELECT count(*) FROM bounces") == [(1,)]


def test_kill_9_of_one_host_mid_stream_loses_and_doubles_nothing(
        tmp_path: Path, pg_url: str) -> None:
    config = write_config(tmp_path, pg_url)
    first = start_host(tmp_path, config, "a")
    second = start_host(tmp_path, config, "b")
    ports = {"a": first.port(), "b": second.port()}
    acknowledged: dict[str, bytes] = {}  # sha256 -> the raw message a host said 250 to
    lock = threading.Lock()
    killed = threading.Event()

    def deliver(serial: int) -> None:
        """As an MTA does: the first MX, then the other one if the first fails."""
        raw = unique_dsn(serial)
        order = ("a", "b") if serial % 2 else ("b", "a")
        for name in order:
            if name == "a" and killed.is_set():
                continue
            try:
                code, _reply = send(ports[name], raw)
            except (OSError, smtplib.SMTPException):
                continue
            if code == 250:
                with lock:
                    acknowledged[hashlib.sha256(raw).hexdigest()] = raw
                return

    try:
        with ThreadPoolExecutor(8) as pool:
            futures = [pool.submit(deliver, serial) for serial in range(2_000)]
            while sum(future.done() for future in futures) < 700:
                time.sleep(0.01)
            first.process.send_signal(signal.SIGKILL)   # kill -9, mid-stream
            first.process.wait(30)
            killed.set()
            for future in futures:
                future.result()
        wait_until_processed(pg_url, deadline_s=180)
    finally:
        first.kill()
        second.kill()
    stored = dict(query(pg_url, "SELECT sha256, state FROM messages"))
    assert set(acknowledged) <= set(stored)          # nothing acknowledged is lost
    assert len(acknowledged) >= 1_900                # the survivor took the rest
    assert set(stored.values()) == {"processed"}
    # Exactly once: one verdict per message, one quarantine per address.
    assert query(pg_url, "SELECT count(*), count(DISTINCT message_id) FROM bounces") == [
        (len(stored), len(stored))]
    assert query(pg_url, "SELECT count(*) FROM address_events") == query(
        pg_url, "SELECT count(DISTINCT address) FROM address_events")


def test_postgresql_down_for_ten_seconds_gets_451_and_the_daemon_recovers_by_itself(
        tmp_path: Path) -> None:
    require(unavailable())
    server = PostgresServer().start()  # its own: this test stops it
    hosts: list[ServerProcess] = []
    try:
        url = server.create_database(name=TEMPLATE)
        from bounced.store import Store

        Store.open(url, migrate=True).close()
        host = start_host(tmp_path, write_config(tmp_path, url), "a")
        hosts.append(host)
        port = host.port()
        replies: list[tuple[float, int, bytes]] = []
        acknowledged: list[bytes] = []
        down: list[float] = []
        stop = threading.Event()

        def load() -> None:
            serial = 0
            while not stop.is_set():
                serial += 1
                raw = unique_dsn(100_000 + serial)
                try:
                    code, reply = send(port, raw)
                except (OSError, smtplib.SMTPException) as error:
                    code, reply = 0, str(error).encode()
                replies.append((time.monotonic(), code, reply))
                if code == 250:
                    acknowledged.append(raw)
                time.sleep(0.02)

        sender = threading.Thread(target=load)
        sender.start()
        try:
            time.sleep(2)
            server.stop("fast")
            down.append(time.monotonic())      # stopped: every answer must be 451
            time.sleep(10)
            down.append(time.monotonic())      # starting again: 250 from here on
            server.start()
            time.sleep(5)
        finally:
            stop.set()
            sender.join(60)
        outage = [(code, reply) for at, code, reply in replies if down[0] < at < down[1]]
        assert outage, "no transaction during the outage"
        assert {code for code, _ in outage} == {451}
        assert all(b"4.3.0" in reply for _, reply in outage)
        after = [code for at, code, _ in replies if at > down[1] + 3]
        assert after and set(after) == {250}, "the daemon did not recover by itself"
        wait_until_processed(url)
        stored = {row[0] for row in query(url, "SELECT sha256 FROM messages")}
        assert {hashlib.sha256(raw).hexdigest() for raw in acknowledged} <= stored
        host.signal(signal.SIGTERM)
        assert host.wait() == 0
    finally:
        for each in hosts:
            each.kill()
        server.destroy()
