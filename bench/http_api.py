"""The HTTP API on a large database: what a sending platform waits for.

Builds the database of ``bench/large_db.py`` (default: 1 million addresses; bounces
matter little here, so 1 million by default too) or reuses one (``--db``), starts a real
``bounced serve`` process on it with the HTTP listener, and measures over loopback:

- ``POST /v1/check`` of 1,000 addresses (half known, half never seen): median and p99
  latency of ``--check-requests`` calls, one at a time;
- ``GET /v1/addresses/{a}``: requests per second with ``--clients`` concurrent clients
  (aiohttp, keep-alive) during ``--seconds``, and their median / p99 latency.

The client runs on the same 2-core machine as the daemon: the figures are what one
host does for both, a floor for a daemon with the host to itself.

``python bench/http_api.py --addresses 20000 --bounces 20000`` for a quick run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.large_db import Shape, build  # noqa: E402
from tests.harness.process import ServerProcess  # noqa: E402

TOKEN = "bench-token-0123456789abcdef"


def percentile(values: Sequence[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def start_daemon(work: Path, db: Path) -> ServerProcess:
    config = work / "bench.toml"
    config.write_text(
        f'[database]\npath = "{db}"\n[smtp]\nlisten = "127.0.0.1:0"\n[dns]\nenabled = false\n'
        f'[http]\nlisten = "127.0.0.1:0"\n[[http.tokens]]\nname = "bench"\n'
        f'secret = "{TOKEN}"\nscopes = ["read"]\n')
    return ServerProcess(["--config", str(config)], cwd=work, log=work / "serve.log").ready()


async def check_latency(base: str, addresses: Sequence[str], requests: int,
                        rng: random.Random) -> list[float]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timings = []
    async with aiohttp.ClientSession(base, headers=headers) as session:
        for index in range(requests + 2):
            batch = rng.sample(addresses, 500) + [f"never{index}-{n}@nowhere.example"
                                                  for n in range(500)]
            started = time.perf_counter()
            async with session.post("/v1/check", json={"addresses": batch}) as response:
                body = await response.json()
            elapsed = time.perf_counter() - started
            assert response.status == 200 and len(body["results"]) == 1000, body
            if index >= 2:  # the first two warm the connection and the caches
                timings.append(elapsed)
    return timings


async def single_gets(base: str, addresses: Sequence[str], clients: int, seconds: float,
                      rng: random.Random) -> tuple[int, list[float]]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    timings: list[float] = []
    end = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < end:
            address = rng.choice(addresses)
            started = time.perf_counter()
            async with session.get(f"/v1/addresses/{address}") as response:
                await response.read()
            assert response.status == 200
            timings.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(base, headers=headers, connector=connector) as session:
        await asyncio.gather(*(client(session) for _ in range(clients)))
    return len(timings), timings


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--bounces", type=int, default=1_000_000)
    parser.add_argument("--db", help="reuse a database built by bench/large_db.py")
    parser.add_argument("--check-requests", type=int, default=50)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="bounced-http-bench-"))
    server = None
    try:
        if args.db:
            import sqlite3

            db = Path(args.db).resolve()
            with sqlite3.connect(db) as conn:
                addresses = [row[0] for row in conn.execute("SELECT address FROM addresses")]
        else:
            db = work / "large.db"
            shape = Shape(args.addresses, args.bounces, 90, 3000,
                          datetime.now(UTC).replace(microsecond=0))
            print(f"building {db}: {shape.addresses:,} addresses, {shape.bounces:,} bounces",
                  flush=True)
            started = time.perf_counter()
            addresses = build(db, shape, lambda line: print(line, flush=True))
            print(f"  built in {time.perf_counter() - started:.0f}s", flush=True)
        server = start_daemon(work, db)
        base = f"http://127.0.0.1:{server.port('http')}"
        rng = random.Random(5)
        print(f"POST /v1/check, 1,000 addresses, {args.check_requests} requests "
              f"({len(addresses):,} addresses in the database)", flush=True)
        timings = asyncio.run(check_latency(base, addresses, args.check_requests, rng))
        print(f"  median {1000 * statistics.median(timings):.1f} ms, "
              f"p99 {1000 * percentile(timings, 0.99):.1f} ms, "
              f"max {1000 * max(timings):.1f} ms", flush=True)
        print(f"GET /v1/addresses/{{a}}, {args.clients} concurrent clients, "
              f"{args.seconds:g} s", flush=True)
        count, gets = asyncio.run(single_gets(base, addresses, args.clients, args.seconds, rng))
        print(f"  {count / args.seconds:,.0f} requests/s, median "
              f"{1000 * statistics.median(gets):.1f} ms, "
              f"p99 {1000 * percentile(gets, 0.99):.1f} ms", flush=True)
    finally:
        if server is not None:
            server.kill()
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main())
