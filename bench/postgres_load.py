"""PostgreSQL against SQLite, and two daemons on one PostgreSQL, in the same run.

    python bench/postgres_load.py [--messages 4000] [--connections 16] [--repeat 3]

Three set-ups, each on a fresh database, medians of ``--repeat`` runs:

1. **sqlite**: one ``bounced serve`` on a SQLite file (durable group commit,
   ``synchronous=FULL``);
2. **postgresql**: one ``bounced serve`` on a local PostgreSQL server started here
   (``fsync=on``, ``synchronous_commit=on``: a ``250`` means the message is on disk);
3. **postgresql x2**: two ``bounced serve`` on that one database, the connections split
   between them (what two MX hosts do; here both on this machine's two cores).

Each gets N real Postfix DSNs over K connections (``bench/smtp_load.py``'s client).
Reported: SMTP acceptance (messages/s and p99 time from the end of DATA to ``250``),
and end to end (messages/s until every message has its verdicts), with the ratios to
SQLite. Target: PostgreSQL end to end >= 0.5x SQLite on one host.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from smtp_load import ClientResult, load, percentile, start_daemon  # noqa: E402

from bounced.store import Store  # noqa: E402
from tests.harness.database import query  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402


@dataclass
class Figures:
    accept_rate: float
    p99_ms: float
    end_to_end_rate: float


def processed(db: str) -> int:
    return int(query(db, "SELECT count(*) FROM messages WHERE state <> 'pending'")[0][0])


def run(workdir: Path, db: str, messages: int, connections: int, daemons: int) -> Figures:
    servers = []
    for index in range(daemons):
        home = workdir / f"d{index}"
        home.mkdir(parents=True, exist_ok=True)
        servers.append(start_daemon(home, db))  # type: ignore[arg-type]
    try:
        start = time.perf_counter()
        per = [messages // daemons] * daemons
        per[0] += messages - sum(per)

        async def together() -> list[ClientResult]:
            first = 0
            jobs = []
            for server, count in zip(servers, per, strict=True):
                jobs.append(load(server.port, count, connections // daemons, first))
                first += count
            return list(await asyncio.gather(*jobs))

        results = asyncio.run(together())
        accepted = time.perf_counter() - start
        sent = sum(result.sent for result in results)
        deadline = time.monotonic() + 600
        while processed(db) < sent:
            if time.monotonic() > deadline:
                raise RuntimeError("processing did not finish")
            time.sleep(0.05)
        total = time.perf_counter() - start
    finally:
        for server in servers:
            server.stop()
    latencies = [value for result in results for value in result.latencies]
    return Figures(sent / accepted, percentile(latencies, 0.99) * 1000, sent / total)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=4000)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    server = PostgresServer(durable=True).start()
    figures: dict[str, list[Figures]] = {"sqlite": [], "postgresql": [], "postgresql x2": []}
    try:
        with tempfile.TemporaryDirectory(prefix="bounced-pg-bench-") as tmp:
            workdir = Path(tmp)
            for round_ in range(args.repeat):
                sqlite_db = workdir / f"r{round_}.db"
                figures["sqlite"].append(run(workdir / f"s{round_}", str(sqlite_db),
                                             args.messages, args.connections, 1))
                for name, daemons in (("postgresql", 1), ("postgresql x2", 2)):
                    url = server.create_database(name=f"bench_{round_}_{daemons}")
                    Store.open(url, migrate=True).close()
                    figures[name].append(run(workdir / f"p{round_}{daemons}", url,
                                             args.messages, args.connections, daemons))
    finally:
        server.destroy()
    base = {key: statistics.median(getattr(f, key) for f in figures["sqlite"])
            for key in ("accept_rate", "end_to_end_rate")}
    print(f"{args.messages} messages, {args.connections} connections, median of "
          f"{args.repeat} runs")
    print(f"{'set-up':<15} {'accept msg/s':>13} {'p99 to 250':>11} {'end to end msg/s':>17}"
          f" {'accept vs sqlite':>17} {'e2e vs sqlite':>14}")
    for name, runs in figures.items():
        accept = statistics.median(f.accept_rate for f in runs)
        p99 = statistics.median(f.p99_ms for f in runs)
        e2e = statistics.median(f.end_to_end_rate for f in runs)
        print(f"{name:<15} {accept:>13.0f} {p99:>9.1f}ms {e2e:>17.0f}"
              f" {accept / base['accept_rate']:>16.2f}x {e2e / base['end_to_end_rate']:>13.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
