"""SMTP load on the daemon, against the ceiling of the stack, in the same run.

    python bench/smtp_load.py [--messages 5000] [--connections 16] [--drain 10000]
                              [--flood 20000] [--repeat 3]

Phases (each on a fresh database, servers restarted, medians of ``--repeat`` runs):

1. **ingest**: N real Postfix DSNs (made unique by one header line, else the store
   would recognise duplicates) over K persistent connections, once into a bare aiosmtpd
   that answers 250 and stores nothing (``bench/bare_aiosmtpd.py``), once into
   ``bounced serve`` (durable group commit, ``synchronous=FULL``, processing in its
   worker process). Reported: messages/s, p50/p99 time from the end of DATA to the
   ``250``, time until every message has its verdicts, peak RSS of each process.
2. **drain**: M messages stored ``pending`` before the daemon starts (what a crash or
   a flood leaves); time until the worker has processed them all -> bounces/s.
3. **flood**: a backlog above ``processing.max_pending`` plus K*4 connections sending:
   new transactions get ``451 4.3.2`` until the worker catches up, memory stays flat.

The client is asyncio, one coroutine per connection, in this process: it costs CPU on
the same two cores as the servers, equally for both servers. Speed lives here, not in
the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "tests" / "data" / "mta-lab" / "postfix-01-user-unknown-failed.eml"
RCPT = "bounces+bench@bounce.bench.test"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def message(serial: int, template: bytes) -> bytes:
    """One unique DSN, dot-stuffed and terminated for the DATA phase."""
    raw = f"X-Bench-Serial: {serial}\r\n".encode() + template
    if not raw.endswith(b"\r\n"):
        raw += b"\r\n"
    return raw.replace(b"\r\n.", b"\r\n..") + b".\r\n"


# --------------------------------------------------------------------------- client


@dataclass
class ClientResult:
    sent: int = 0
    refused_451: int = 0
    other_errors: int = 0
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0


async def read_reply(reader: asyncio.StreamReader) -> int:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return int(line[:3])


async def session(
    port: int, serials: list[int], template: bytes, result: ClientResult, retry: bool = False
) -> None:
    """One connection sending until ``serials`` is empty; with ``retry`` a message refused
    with 451 goes back in the list (what an MTA does with its queue), else it is dropped."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        await read_reply(reader)
        writer.write(b"EHLO client.bench.test\r\n")
        await read_reply(reader)
        while serials:
            serial = serials.pop()
            writer.write(b"MAIL FROM:<>\r\n")
            code = await read_reply(reader)
            if code != 250:
                result.refused_451 += code == 451
                result.other_errors += code != 451
                writer.write(b"RSET\r\n")
                await read_reply(reader)
                if retry:
                    serials.insert(0, serial)
                await asyncio.sleep(0.05)  # a real MTA would wait minutes; we are in a hurry
                continue
            writer.write(f"RCPT TO:<{RCPT}>\r\n".encode())
            await read_reply(reader)
            writer.write(b"DATA\r\n")
            await read_reply(reader)
            writer.write(message(serial, template))
            start = time.perf_counter()
            code = await read_reply(reader)
            if code == 250:
                result.latencies.append(time.perf_counter() - start)
                result.sent += 1
            else:
                result.refused_451 += code == 451
                result.other_errors += code != 451
        writer.write(b"QUIT\r\n")
        await read_reply(reader)
    finally:
        writer.close()


async def load(
    port: int, messages: int, connections: int, first_serial: int, retry: bool = False
) -> ClientResult:
    template = SAMPLE.read_bytes()
    result = ClientResult()
    serials = list(range(first_serial + messages - 1, first_serial - 1, -1))
    start = time.perf_counter()
    await asyncio.gather(
        *(session(port, serials, template, result, retry) for _ in range(connections))
    )
    result.seconds = time.perf_counter() - start
    return result


# --------------------------------------------------------------------------- servers


def peak_rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return float("nan")


def wait_port(port: int, deadline_s: float = 30.0) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"server on {port} did not start")


class Server:
    def __init__(self, argv: list[str], port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.handle = log.open("wb")
        self.process = subprocess.Popen(
            argv, stdout=self.handle, stderr=subprocess.STDOUT, cwd=ROOT
        )
        wait_port(port)

    def worker_pid(self) -> int | None:
        """The processing worker: the child process with the largest peak memory
        (multiprocessing also starts a small resource tracker)."""
        children: list[int] = []
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            with (task / "children").open() as handle:
                children.extend(int(pid) for pid in handle.read().split())
        return max(children, key=peak_rss_mb, default=None)

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(300)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.handle.close()


def start_bare(workdir: Path, protocol: str = "stock") -> Server:
    port = free_port()
    return Server(
        [sys.executable, str(ROOT / "bench" / "bare_aiosmtpd.py"), "--port", str(port),
         "--protocol", protocol],
        port,
        workdir / f"bare-{protocol}.log",
    )


def start_daemon(workdir: Path, db: Path, *, max_pending: int = 50_000) -> Server:
    port = free_port()
    config = workdir / "bench.toml"
    config.write_text(
        f'[smtp]\nbounce_domains = ["bounce.bench.test"]\nmax_connections = 1000\n'
        # every bench client is 127.0.0.1: the per-client limits would measure themselves
        "max_connections_per_client = 1000\nconnection_rate_per_client = 0\n"
        f"[processing]\nmax_pending = {max_pending}\n"
        '[logging]\nformat = "json"\nlevel = "info"\n'
    )
    argv = [
        sys.executable,
        "-m",
        "bounced",
        "serve",
        "--config",
        str(config),
        "--db",
        str(db),
        "--smtp",
        f"127.0.0.1:{port}",
    ]
    return Server(argv, port, workdir / "daemon.log")


def count(db: Path, sql: str) -> int:
    conn = sqlite3.connect(db, timeout=60)
    try:
        return int(conn.execute(sql).fetchone()[0])
    finally:
        conn.close()


def wait_processed(db: Path, expected: int, deadline_s: float = 600.0) -> float:
    start = time.perf_counter()
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        done = count(db, "SELECT count(*) FROM messages WHERE state != 'pending'")
        if done >= expected:
            return time.perf_counter() - start
        time.sleep(0.02)
    raise RuntimeError("processing did not finish")


def preload(db: Path, messages: int, first_serial: int) -> None:
    """Store ``messages`` pending DSNs directly (what a crash or flood leaves behind)."""
    sys.path.insert(0, str(ROOT))
    from bounced.model import IncomingMessage
    from bounced.store import Store

    template = SAMPLE.read_bytes()
    with Store.open(db) as store:
        batch = []
        for serial in range(first_serial, first_serial + messages):
            raw = f"X-Bench-Serial: {serial}\r\n".encode() + template
            batch.append(IncomingMessage(datetime.now(UTC), "", (RCPT,), raw))
            if len(batch) == 1000:
                store.messages.insert(batch)
                batch = []
        if batch:
            store.messages.insert(batch)


# --------------------------------------------------------------------------- phases


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class IngestFigures:
    rate: float
    p50_ms: float
    p99_ms: float
    verdicts_s: float | None
    rss_server_mb: float
    rss_worker_mb: float | None
    errors: int

    @classmethod
    def of(cls, result: ClientResult, rss_server_mb: float, *,
           verdicts_s: float | None = None,
           rss_worker_mb: float | None = None) -> IngestFigures:
        """The figures of one load run against one server."""
        return cls(
            result.sent / result.seconds,
            percentile(result.latencies, 0.5) * 1000,
            percentile(result.latencies, 0.99) * 1000,
            verdicts_s,
            rss_server_mb,
            rss_worker_mb,
            result.refused_451 + result.other_errors,
        )


def ingest_bare(
    workdir: Path, messages: int, connections: int, protocol: str = "stock"
) -> IngestFigures:
    server = start_bare(workdir, protocol)
    try:
        result = asyncio.run(load(server.port, messages, connections, 0))
        rss = peak_rss_mb(server.process.pid)
    finally:
        server.stop()
    return IngestFigures.of(result, rss)


def ingest_daemon(workdir: Path, messages: int, connections: int) -> IngestFigures:
    db = workdir / "ingest.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    server = start_daemon(workdir, db)
    try:
        start = time.perf_counter()
        result = asyncio.run(load(server.port, messages, connections, 0))
        wait_processed(db, result.sent)
        verdicts_s = time.perf_counter() - start
        worker = server.worker_pid()
        rss = peak_rss_mb(server.process.pid)
        rss_worker = peak_rss_mb(worker) if worker else float("nan")
    finally:
        server.stop()
    return IngestFigures.of(result, rss, verdicts_s=verdicts_s, rss_worker_mb=rss_worker)


def drain(workdir: Path, messages: int) -> float:
    db = workdir / "drain.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    preload(db, messages, 10_000_000)
    server = start_daemon(workdir, db)
    try:
        seconds = wait_processed(db, messages)
    finally:
        server.stop()
    return messages / seconds


def flood(workdir: Path, backlog: int, connections: int, messages: int) -> dict[str, float]:
    """A backlog twice ``max_pending``, then ``messages`` more from many connections that
    retry after each 451, until all are in: refused, then accepted as the worker drains."""
    db = workdir / "flood.db"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    preload(db, backlog, 20_000_000)
    limit = backlog // 2
    server = start_daemon(workdir, db, max_pending=limit)
    peak_pending = 0
    stop = False

    def watch() -> None:
        nonlocal peak_pending
        while not stop:
            pending = count(db, "SELECT count(*) FROM messages WHERE state = 'pending'")
            peak_pending = max(peak_pending, pending)
            time.sleep(0.2)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        result = asyncio.run(load(server.port, messages, connections, 30_000_000, retry=True))
        stop = True
        watcher.join()
        worker = server.worker_pid()
        figures = {
            "max_pending": limit,
            "accepted": result.sent,
            "refused_451": result.refused_451,
            "other_errors": result.other_errors,
            "seconds": result.seconds,
            "peak_pending": peak_pending,
            "rss_server_mb": peak_rss_mb(server.process.pid),
            "rss_worker_mb": peak_rss_mb(worker) if worker else float("nan"),
        }
    finally:
        stop = True
        server.stop()
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=5000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--drain", type=int, default=10_000, help="pending messages for the drain phase (0: skip)"
    )
    parser.add_argument(
        "--flood", type=int, default=20_000, help="backlog for the flood phase (0: skip)"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bounced-bench-"))
    print(
        f"# {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} messages={args.messages} "
        f"connections={args.connections} repeat={args.repeat} nproc={os.cpu_count()} "
        f"message={SAMPLE.name} ({SAMPLE.stat().st_size} B)"
    )
    bare: list[IngestFigures] = []
    bare_ours: list[IngestFigures] = []
    daemon: list[IngestFigures] = []
    for _ in range(args.repeat):  # interleaved, so all see the same machine noise
        bare.append(ingest_bare(workdir, args.messages, args.connections))
        bare_ours.append(ingest_bare(workdir, args.messages, args.connections, "bounced"))
        daemon.append(ingest_daemon(workdir, args.messages, args.connections))

    def med(rows: list[IngestFigures], name: str) -> float:
        values = [getattr(r, name) for r in rows if getattr(r, name) is not None]
        return statistics.median(values) if values else float("nan")

    print(
        f"\n{'server':<24}{'msg/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'verdicts s':>12}"
        f"{'RSS MB':>9}{'worker MB':>11}{'errors':>8}"
    )
    for name, rows in (
        ("bare aiosmtpd (250)", bare),
        ("bare bounced SMTP (250)", bare_ours),
        ("bounced serve", daemon),
    ):
        print(
            f"{name:<24}{med(rows, 'rate'):>9.0f}"
            f"{med(rows, 'p50_ms'):>9.2f}{med(rows, 'p99_ms'):>9.2f}"
            f"{med(rows, 'verdicts_s'):>12.2f}{med(rows, 'rss_server_mb'):>9.1f}"
            f"{med(rows, 'rss_worker_mb'):>11.1f}{med(rows, 'errors'):>8.0f}"
        )
    ratio = med(daemon, "rate") / med(bare, "rate")
    own = med(daemon, "rate") / med(bare_ours, "rate")
    print(
        f"bounced / bare aiosmtpd = {ratio:.0%} (target >= 70%); "
        f"bounced / bare bounced SMTP = {own:.0%} (the cost of durability alone); runs: "
        f"bare {[round(r.rate) for r in bare]}, bare ours {[round(r.rate) for r in bare_ours]}, "
        f"bounced {[round(r.rate) for r in daemon]}"
    )
    if args.drain:
        rates = [drain(workdir, args.drain) for _ in range(max(1, args.repeat))]
        print(
            f"\ndrain: {args.drain} pending bounces processed at {statistics.median(rates):.0f}/s "
            f"(target >= 1000/s); runs {[round(r) for r in rates]}"
        )
    if args.flood:
        figures = flood(workdir, args.flood, args.connections * 4, args.messages)
        print(
            f"\nflood: backlog {args.flood} > max_pending {figures['max_pending']}, "
            f"{args.connections * 4} connections retrying: {figures['accepted']} accepted in "
            f"{figures['seconds']:.1f} s after {figures['refused_451']} x 451 4.3.2, "
            f"other errors {figures['other_errors']}, peak backlog {figures['peak_pending']}, "
            f"peak RSS server {figures['rss_server_mb']:.1f} MB, "
            f"worker {figures['rss_worker_mb']:.1f} MB"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
