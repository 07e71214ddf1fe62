"""Performance on a large database: ``check``, ``report --since 1d`` and ingest speed.

Builds a synthetic but realistically shaped database (default: 1 million addresses and
5 million bounce rows over 90 days), then measures, through the real CLI entry point
``bounced.cli.main`` (in-process, so interpreter start-up is not counted; it is printed
separately for ``check``):

- ``bounced check ADDRESS`` latency (target < 50 ms), median and worst of many calls;
- ``bounced report --since 1d`` time (target < 2 s), by type, domain and provider;
- ingest speed on that database vs an empty one (target: drop <= 20%), four ways:
  ``bounced ingest`` processes started on the database as built (page cache as the OS
  left it), the same right after reading the file once, and the daemon's own path
  (store, then process, in batches, in one long-lived process whose connections keep
  their page cache, checkpoints in a thread), once with the default configuration and
  once with ``database.cache_mb`` sized as ``config/bounced.toml`` advises for this
  database (``--cache-mb``, default 512) and ``database.prewarm``. Each line also says
  how many KiB per message were read from disk: on a host that drops idle page cache
  (this VM reclaims pages idle for ~60 s), that is where a large database loses speed.

Shapes: every bounce has its own original Message-ID (a random-key index, as in
production); recipient domains follow a heavy head (gmail.com, outlook.com, yahoo.com, ...)
and a long Zipf tail; bounces per address are Zipf-skewed; kinds, types and reasons
follow typical proportions (most failures soft, ~20% hard, delays and auto-replies);
normalized texts are a few thousand, most qualified (keep), some waiting. Rows are
written with ``executemany`` in large transactions with ``synchronous = OFF`` (a bench
database is disposable); the measurements then run with the product's own settings.

``--wal-pages`` then shows why ingest is slower on the large database: the tables and
indexes one ingest round writes there (each random-key index costs about one page per
message to write and to checkpoint) against an empty one.

Run small first: ``python bench/large_db.py --addresses 20000 --bounces 100000``.
Full size needs ~5 GB of disk in the chosen directory and a few minutes.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import itertools
import os
import random
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bounced.cli import main  # noqa: E402
from bounced.core.times import format_time  # noqa: E402
from bounced.store import Store  # noqa: E402

POLICY_MAILS = ROOT / "tests" / "data" / "policy"
TEMPLATE_ADDRESS = b"rcpt@example.org"
CHUNK = 100_000

#: (domain, share of addresses) for the head of the distribution.
HEAD_DOMAINS = (
    ("gmail.com", 0.28), ("outlook.com", 0.07), ("hotmail.com", 0.06), ("yahoo.com", 0.07),
    ("icloud.com", 0.03), ("aol.com", 0.015), ("orange.fr", 0.02), ("gmx.de", 0.015),
    ("web.de", 0.015), ("free.fr", 0.01), ("comcast.net", 0.01), ("proton.me", 0.005),
)
#: (text, type, reason) families; variants get a numbered suffix like real wordings.
TEXTS = (
    ("550 5.1.1 <*>: Recipient address rejected: User unknown in virtual mailbox table",
     "hard", 1),
    ("552 5.2.2 <*>: Mailbox full", "soft", 5),
    ("554 5.7.1 Service unavailable; Client host [#xxx#] blocked using #xxx#", "soft", 20),
    ("451 4.3.0 <*>: try again later", "soft", 3),
    ("550 5.2.1 <*>: Mailbox disabled, not accepting messages", "soft", 4),
    ("Host or domain name not found. Name service error for name=#xxx# type=MX", "soft", 2),
    ("421 4.7.0 [#xxx#] Our system has detected an unusual rate of mail", "soft", 20),
    ("550 5.7.1 Message rejected as spam by content filter", "soft", 20),
    ("550 zorglub frobnicated the envelope of <*>", "undefined", 0),
)
KINDS = (("failure", 0.75), ("delay", 0.15), ("autoreply", 0.05), ("delivered", 0.045),
         ("feedback", 0.005))
STATES = (("valid", 0.60), ("erroneous", 0.20), ("quarantine", 0.17), ("denylisted", 0.02),
          ("allowlisted", 0.01))
INGEST_MIX = (("hard-user-unknown", 0.3), ("soft-mailbox-full", 0.35), ("delay", 0.15),
              ("undefined", 0.1), ("autoreply", 0.05), ("arf", 0.05))


@dataclass(frozen=True)
class Shape:
    addresses: int
    bounces: int
    days: int
    texts: int
    end: datetime
    seed: int = 7


def _weighted(rng: random.Random, table: Sequence[tuple[str, float]], k: int) -> list[str]:
    names = [name for name, _ in table]
    weights = [weight for _, weight in table]
    return rng.choices(names, weights=weights, k=k)


def _domains(shape: Shape) -> list[str]:
    """One domain per address: the head's shares, then a Zipf tail of 50k domains."""
    rng = random.Random(shape.seed)
    tail = [f"corp{i}.example" for i in range(50_000)]
    tail_weights = [1 / (i + 1) ** 1.1 for i in range(len(tail))]
    head_share = sum(share for _, share in HEAD_DOMAINS)
    n_head = int(shape.addresses * head_share)
    head = _weighted(rng, HEAD_DOMAINS, n_head)
    return head + rng.choices(tail, weights=tail_weights, k=shape.addresses - n_head)


def address_of(index: int, domain: str) -> str:
    return f"user{index}@{domain}"


def _chunks(total: int) -> Iterator[range]:
    for start in range(0, total, CHUNK):
        yield range(start, min(start + CHUNK, total))


def build(path: Path, shape: Shape, log: Callable[[str], None]) -> list[str]:
    """Create the database at ``path``; returns the address list (for the probes)."""
    rng = random.Random(shape.seed)
    Store.open(path).close()  # the real schema, migrations, seeds
    import sqlite3

    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("PRAGMA cache_size = -1000000")
    conn.execute("PRAGMA temp_store = MEMORY")
    start_time = shape.end - timedelta(days=shape.days)
    span = (shape.end - start_time).total_seconds()
    domains = _domains(shape)
    addresses = [address_of(i, domain) for i, domain in enumerate(domains)]

    # qualification texts
    t0 = time.perf_counter()
    texts = []
    for i in range(shape.texts):
        base, ftype, reason = TEXTS[i % len(TEXTS)]
        status = "to_qualify" if ftype == "undefined" or rng.random() < 0.15 else "keep"
        text = base if i < len(TEXTS) else f"{base} (variant {i})"
        texts.append((i + 1, text, text, ftype, reason, "rule:300", status,
                      min(100_000, int(1000 / (i + 1)) + 1),
                      format_time(start_time), format_time(shape.end)))
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO qualification (id, text, first_text, failure_type, reason_code, "
        "qualified_by, status, occurrences, first_seen, last_seen) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", texts)
    conn.execute("COMMIT")
    text_weights = [1 / (i + 1) ** 0.9 for i in range(len(texts))]

    # addresses
    states = _weighted(rng, STATES, shape.addresses)
    conn.execute("BEGIN")
    for part in _chunks(shape.addresses):
        rows = []
        for i in part:
            state = states[i]
            moment = start_time + timedelta(seconds=rng.random() * span)
            quarantined = format_time(moment) if state == "quarantine" else None
            rows.append((addresses[i], state, 0 if state == "valid" else rng.randint(1, 5),
                         format_time(moment), format_time(moment), 1 if state != "valid"
                         else None, quarantined, None, format_time(moment), 0))
        conn.executemany(
            "INSERT INTO addresses (address, state, error_count, last_error_at, "
            "last_counted_error_at, reason_code, quarantined_at, release_at, updated_at, "
            "undefined_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    conn.execute("COMMIT")
    log(f"  addresses: {shape.addresses:,} in {time.perf_counter() - t0:.1f}s")

    # messages + bounces, in time order (ids grow with time, as in production)
    t0 = time.perf_counter()
    n_messages = max(1, int(shape.bounces / 1.25))
    hot = min(shape.addresses, 200_000)
    hot_cumulative = list(itertools.accumulate(1 / (i + 1) ** 0.6 for i in range(hot)))
    text_cumulative = list(itertools.accumulate(text_weights))
    step = span / n_messages
    message_id = 0
    bounce_id = 0
    for part in _chunks(shape.bounces):
        conn.execute("BEGIN")
        messages, bounces = [], []
        kinds = _weighted(rng, KINDS, len(part))
        text_ids = rng.choices(range(len(texts)), cum_weights=text_cumulative, k=len(part))
        hot_picks = rng.choices(range(hot), cum_weights=hot_cumulative, k=len(part))
        cold_picks = [rng.randrange(shape.addresses) for _ in part]
        for offset, i in enumerate(part):
            target = int(i / 1.25)
            if target >= message_id:
                message_id = target + 1
                moment = format_time(start_time + timedelta(seconds=target * step))
                raw = f"Synthetic bounce {message_id}\r\n".encode() + b"x" * 200
                messages.append((message_id, moment, "", '["bounces@bounce.example"]',
                                 len(raw), hashlib.sha256(raw).hexdigest(), raw, "processed",
                                 "failure"))
            # a third of the traffic goes to a hot set of addresses (repeat bouncers)
            who = hot_picks[offset] if rng.random() < 0.33 else cold_picks[offset]
            text_index = text_ids[offset]
            _, text, _, ftype, reason, *_ = texts[text_index]
            kind = kinds[offset]
            if kind == "delay":
                ftype = "ignored"
            elif kind in ("autoreply", "delivered"):
                ftype, reason = ("ignored", 0) if kind == "autoreply" else (None, None)
            elif kind == "feedback":
                ftype, reason = "hard", 8
            bounce_id += 1
            bounces.append((bounce_id, message_id, addresses[who], kind, text_index + 1,
                            ftype, reason, "rule:300" if ftype else None, moment, moment,
                            "5.0.0", text, f"<{rng.getrandbits(64):016x}@sender.example>"))
        conn.executemany(
            "INSERT INTO messages (id, received_at, mail_from, rcpt_to, size, sha256, raw, "
            "state, kind) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", messages)
        conn.executemany(
            "INSERT INTO bounces (id, message_id, recipient, kind, qualification_id, "
            "failure_type, reason_code, qualified_by, received_at, at, status, diagnostic, "
            "original_message_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", bounces)
        conn.execute("COMMIT")
        if (part.stop // CHUNK) % 10 == 0 or part.stop == shape.bounces:
            rate = part.stop / (time.perf_counter() - t0)
            log(f"  bounces: {part.stop:,} ({rate:,.0f}/s)")

    # history: one or two events per address that is not valid
    t0 = time.perf_counter()
    conn.execute("BEGIN")
    events = []
    for i, state in enumerate(states):
        if state == "valid":
            continue
        moment = start_time + timedelta(seconds=rng.random() * span)
        if state in ("quarantine", "denylisted"):
            events.append((addresses[i], format_time(moment - timedelta(days=2)), None,
                           "erroneous", "1st soft error"))
            events.append((addresses[i], format_time(moment), "erroneous", state,
                           "5th soft error" if state == "quarantine" else "complaint"))
        else:
            events.append((addresses[i], format_time(moment), None, state, "1st soft error"))
        if len(events) >= CHUNK:
            conn.executemany(
                "INSERT INTO address_events (address, at, old_state, new_state, cause) "
                "VALUES (?, ?, ?, ?, ?)", events)
            events = []
    conn.executemany(
        "INSERT INTO address_events (address, at, old_state, new_state, cause) "
        "VALUES (?, ?, ?, ?, ?)", events)
    conn.execute("COMMIT")
    count = conn.execute("SELECT count(*) FROM address_events").fetchone()[0]
    log(f"  address_events: {count:,} in {time.perf_counter() - t0:.1f}s")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return addresses


# --------------------------------------------------------------------------- measures


def run_cli(args: Sequence[str]) -> tuple[int, float]:
    """Run ``bounced ARGS`` in-process, output discarded; (status, seconds)."""
    sink = io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        status = main(list(args))
    return status, time.perf_counter() - started


def measure_check(path: Path, addresses: Sequence[str], rng: random.Random,
                  runs: int = 50) -> list[float]:
    timings = []
    for _ in range(runs):
        address = rng.choice(addresses) if rng.random() < 0.8 else "nobody@nowhere.example"
        status, seconds = run_cli(["check", "--db", str(path), address])
        if status not in (0, 1):
            raise SystemExit(f"check failed with status {status}")
        timings.append(seconds)
    return timings


def check_process_time(path: Path, address: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bounced", "check", "--db", str(path), address],
                   cwd=ROOT, capture_output=True, check=False)
    return time.perf_counter() - started


#: Part of every generated Message-ID: a reused database (``--db``) has seen the mails of
#: earlier runs, and identical bytes would only be recognised as duplicates.
RUN_TOKEN = f"{os.getpid()}.{time.time_ns()}"
_DATE = re.compile(rb"^Date:[^\r\n]*", re.IGNORECASE | re.MULTILINE)
_MESSAGE_ID = re.compile(rb"^Message-I[Dd]:[^\r\n]*", re.IGNORECASE | re.MULTILINE)


def ingest_mails(addresses: Sequence[str], count: int, rng: random.Random,
                 tag: str) -> Iterator[bytes]:
    """``count`` unique bounces (the policy sample mails of INGEST_MIX) for addresses
    picked at random among ``addresses``."""
    templates = {name: (POLICY_MAILS / f"{name}.eml").read_bytes() for name, _ in INGEST_MIX}
    for i, name in enumerate(_weighted(rng, INGEST_MIX, count)):
        address = rng.choice(addresses).encode()
        raw = templates[name].replace(TEMPLATE_ADDRESS, address)
        ident = b"Message-ID: <bench-%s-%s-%d@bench.example>" % (
            RUN_TOKEN.encode(), tag.encode(), i)
        raw = _MESSAGE_ID.sub(ident, raw, count=1)
        # the bounced mail's own Message-ID (the original's headers), unique as in
        # production, where it makes bounces(original_message_id) a random-key index
        original = b"Message-ID: <%016x@sender.example>" % rng.getrandbits(64)
        head, found, rest = raw.partition(ident)
        yield head + found + _MESSAGE_ID.sub(original, rest, count=1)


def write_ingest_files(directory: Path, addresses: Sequence[str], count: int,
                       rng: random.Random, tag: str) -> None:
    """``count`` unique bounce files for existing addresses (see :func:`ingest_mails`)."""
    directory.mkdir(parents=True, exist_ok=True)
    for i, raw in enumerate(ingest_mails(addresses, count, rng, tag)):
        (directory / f"{i:06d}.eml").write_bytes(raw)


def measure_ingest(path: Path, directory: Path, at: datetime,
                   config: str | None = None) -> float:
    """Messages per second for ``bounced ingest`` of every file in ``directory``."""
    files = sorted(directory.iterdir())
    extra = ["--config", config] if config else []
    status, seconds = run_cli(["ingest", "--db", str(path), "--at", format_time(at),
                               *extra, str(directory)])
    if status != 0:
        raise SystemExit(f"ingest failed with status {status}")
    return len(files) / seconds


def disk_read_bytes() -> int:
    """Bytes this process has read from the block device (Linux), 0 elsewhere."""
    try:
        for line in Path("/proc/self/io").read_text().splitlines():
            if line.startswith("read_bytes:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


@dataclass(frozen=True)
class Sample:
    """One measured segment: messages per second (wall clock), CPU milliseconds per
    message (not inflated by other processes on a shared host) and KiB read from disk
    per message (pages the OS cache did not have)."""

    rate: float
    cpu_ms: float
    disk_kib: float

    @classmethod
    def of(cls, run: Callable[[], object], messages: int) -> Sample:
        disk, cpu, wall = disk_read_bytes(), time.process_time(), time.perf_counter()
        run()
        wall = time.perf_counter() - wall
        return cls(messages / wall, 1000 * (time.process_time() - cpu) / messages,
                   (disk_read_bytes() - disk) / 1024 / messages)

    def describe(self) -> str:
        return (f"{self.rate:,.0f} msg/s, {self.cpu_ms:.2f} ms CPU/msg, "
                f"{self.disk_kib:.1f} KiB/msg from disk")

    @classmethod
    def median(cls, samples: Sequence[Sample]) -> Sample:
        return cls(statistics.median(s.rate for s in samples),
                   statistics.median(s.cpu_ms for s in samples),
                   statistics.median(s.disk_kib for s in samples))


def ingest_rounds(work: Path, big: Path, addresses: Sequence[str], args: argparse.Namespace,
                  end: datetime, label: str, log: Callable[[str], None]
                  ) -> tuple[Sample, Sample]:
    """Interleaved rounds (a fresh empty database, then the large one, with the same
    addresses and templates), so that load from other processes hits both alike."""
    samples: dict[str, list[Sample]] = {"empty": [], "large": []}
    for round_ in range(1, args.ingest_rounds + 1):
        seed = hash((label, round_)) & 0xFFFF
        for kind in ("empty", "large"):
            tag = f"{label.replace(' ', '')}-{kind}-{round_}"
            files = work / f"ingest-{tag}"
            write_ingest_files(files, addresses, args.ingest_messages, random.Random(seed), tag)
            target = big if kind == "large" else work / f"empty-{tag}.db"
            if kind == "empty":
                Store.open(target).close()
            sample = Sample.of(lambda t=target, f=files: measure_ingest(t, f, end, args.config),
                               args.ingest_messages)
            samples[kind].append(sample)
            log(f"  {label}, round {round_}, {kind}: {sample.describe()}")
    return Sample.median(samples["empty"]), Sample.median(samples["large"])


class SteadyIngest:
    """What the daemon does with a message, in one long-lived process: store it
    (``store.messages.insert``, committed), then process it
    (:func:`bounced.ops.processing.process_messages`), ``processing.batch_size`` at a time, on a
    connection opened once with ``database.cache_mb`` as ``bounced serve`` opens its own.
    A fresh ``bounced ingest`` starts with an empty page cache; the daemon does not.
    Checkpoints run in the background, as in the daemon's worker."""

    def __init__(self, path: Path, config_path: str | None, at: datetime) -> None:
        from bounced.config import load_config
        from bounced.store import PROCESSING_BTREES, STORING_BTREES

        self.config = load_config(config_path)
        self.store = Store.open(path, cache_mb=self.config.database.cache_mb)
        self._open = contextlib.ExitStack()
        self._open.enter_context(self.store)
        # the daemon's worker prewarms what processing reads, its SMTP writer what
        # storing reads; here one connection does both jobs
        self.prewarmed = (
            [self.store.prewarm(PROCESSING_BTREES), self.store.prewarm(STORING_BTREES)]
            if self.config.database.prewarm else [])
        self._open.enter_context(self.store.checkpoint_in_background())
        self.rules = self.store.rules.enabled()
        self.at = at

    def feed(self, mails: Sequence[bytes]) -> None:
        from bounced.model import IncomingMessage
        from bounced.ops.processing import process_messages

        size = self.config.processing.batch_size
        for start in range(0, len(mails), size):
            stored = self.store.messages.insert([
                IncomingMessage(self.at, "", ("bounces@bounce.example",), raw)
                for raw in mails[start:start + size]])
            process_messages(self.store, [m.id for m in stored if not m.duplicate],
                             config=self.config, rules=self.rules, at=self.at)

    def close(self) -> None:
        self._open.close()


def steady_rounds(work: Path, big: Path, addresses: Sequence[str], args: argparse.Namespace,
                  end: datetime, config: str | None, label: str, log: Callable[[str], None]
                  ) -> tuple[Sample, Sample]:
    """Both databases open at once with ``config``, each warmed with ``--steady-warmup``
    messages, then measured in alternating segments of ``--ingest-messages`` (so that a
    slow moment of a shared host hits both alike); medians over ``--steady-rounds``
    segments each."""
    empty_path = work / f"steady-empty-{label.replace(' ', '')}.db"
    Store.open(empty_path).close()
    feeders = {"empty": SteadyIngest(empty_path, config, end),
               "large": SteadyIngest(big, config, end)}
    for prewarmed in feeders["large"].prewarmed:
        log(f"  {label}: prewarm {'+'.join(prewarmed.btrees)}: {prewarmed.mib or 0:.0f} MiB "
            f"{'loaded' if prewarmed.loaded else 'NOT loaded (larger than the cache)'} "
            f"in {prewarmed.seconds:.1f} s")
    rng = random.Random(17)
    samples: dict[str, list[Sample]] = {"empty": [], "large": []}
    try:
        for kind, feeder in feeders.items():
            feeder.feed(list(ingest_mails(addresses, args.steady_warmup, rng, f"w{kind}")))
        for round_ in range(1, args.steady_rounds + 1):
            order = ("empty", "large") if round_ % 2 else ("large", "empty")
            for kind in order:
                mails = list(ingest_mails(addresses, args.ingest_messages, rng,
                                          f"s{label}{kind}{round_}"))
                sample = Sample.of(lambda f=feeders[kind], m=mails: f.feed(m), len(mails))
                samples[kind].append(sample)
                log(f"  {label}, round {round_}, {kind}: {sample.describe()}")
        log(f"  {label}: this process's RSS {rss_mib():.0f} MiB (both databases open)")
    finally:
        for feeder in feeders.values():
            feeder.close()
    return Sample.median(samples["empty"]), Sample.median(samples["large"])


def rss_mib() -> float:
    """Resident memory of this process now (Linux), 0 elsewhere."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return 0.0


def wal_pages(path: Path, directory: Path, at: datetime, config: str | None
              ) -> tuple[int, list[tuple[str, int, int]]]:
    """Which b-trees an ingest of ``directory`` writes: (frames, [(name, distinct pages,
    frames)]). Auto-checkpoints are off for that run and a second connection stays open
    (so closing the ingest does not checkpoint either): the WAL then holds every page
    the ingest wrote, and ``dbstat`` names the table or index each belongs to. A page
    written by several commits is one distinct page but several frames."""
    import sqlite3
    import struct

    import bounced.store as store_module

    original = store_module._connect

    def connect(target: Path) -> Any:
        conn = original(target)
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        return conn

    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    holder.execute("SELECT count(*) FROM sqlite_master").fetchall()
    store_module._connect = connect
    try:
        measure_ingest(path, directory, at, config)
    finally:
        store_module._connect = original
    try:
        wal = Path(f"{path}-wal")
        data = wal.read_bytes() if wal.exists() else b""
        if len(data) < 32:
            return 0, []
        page_size = struct.unpack(">I", data[8:12])[0]
        salt = data[16:24]
        frames: dict[int, int] = {}
        offset = 32
        while offset + 24 + page_size <= len(data) and data[offset + 8:offset + 16] == salt:
            page = struct.unpack(">I", data[offset:offset + 4])[0]
            frames[page] = frames.get(page, 0) + 1
            offset += 24 + page_size
        by_name: dict[str, list[int]] = {}
        for name, page in holder.execute("SELECT name, pageno FROM dbstat"):
            if page in frames:
                slot = by_name.setdefault(name, [0, 0])
                slot[0] += 1
                slot[1] += frames[page]
        holder.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        holder.close()
    rows = sorted(((name, d, f) for name, (d, f) in by_name.items()), key=lambda r: -r[2])
    return sum(frames.values()), rows


def read_file(path: Path) -> None:
    with path.open("rb") as handle:
        while handle.read(16 * 1024 * 1024):
            pass


def _apply_pragmas(pragmas: Sequence[str]) -> None:
    """Wrap the store's connection factory so every connection runs ``pragmas``."""
    import bounced.store as store_module

    original = store_module._connect

    def connect(path: Path) -> Any:
        conn = original(path)
        for pragma in pragmas:
            conn.execute(f"PRAGMA {pragma}")
        return conn

    store_module._connect = connect


def main_bench(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--addresses", type=int, default=1_000_000)
    parser.add_argument("--bounces", type=int, default=5_000_000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--texts", type=int, default=3000)
    parser.add_argument("--ingest-messages", type=int, default=500,
                        help="messages per ingest round (default 500)")
    parser.add_argument("--ingest-rounds", type=int, default=4,
                        help="interleaved rounds per database (default 4)")
    parser.add_argument("--steady-rounds", type=int, default=8,
                        help="alternating steady segments per database (default 8)")
    parser.add_argument("--cache-mb", type=int, default=512,
                        help="database.cache_mb of the sized daemon run (default 512, "
                        "what config/bounced.toml advises for this size)")
    parser.add_argument("--steady-warmup", type=int, default=2000,
                        help="messages fed to each database before the steady (daemon-like) "
                        "rounds are measured (default 2000)")
    parser.add_argument("--dir", help="work directory (default: a temporary one)")
    parser.add_argument("--db", help="reuse an existing bench database (skip the build)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--config", help="configuration file for the ingest runs")
    parser.add_argument("--skip-ingest", action="store_true", help="only check and report")
    parser.add_argument("--wal-pages", action="store_true",
                        help="diagnostic: after the ingest rounds, which tables and indexes "
                        "one ingest round writes, on the empty and the large database "
                        "(pages in the WAL, named with dbstat: a scan of the whole file)")
    parser.add_argument("--pragma", action="append", default=[], metavar="NAME=VALUE",
                        help="experiment: an extra PRAGMA on every connection bounced opens "
                        "(e.g. wal_autocheckpoint=10000), to measure a tuning before "
                        "proposing it")
    args = parser.parse_args(argv)

    if args.pragma:
        _apply_pragmas(args.pragma)
    work = Path(args.dir or tempfile.mkdtemp(prefix="bounced-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    end = datetime.now(UTC).replace(microsecond=0)
    shape = Shape(args.addresses, args.bounces, args.days, args.texts, end)

    def log(line: str) -> None:
        print(line, flush=True)

    try:
        big = Path(args.db) if args.db else work / "large.db"
        if args.db:
            import sqlite3

            conn = sqlite3.connect(big)
            addresses = [row[0] for row in conn.execute("SELECT address FROM addresses")]
            conn.close()
        else:
            log(f"building {big}: {shape.addresses:,} addresses, {shape.bounces:,} bounces "
                f"over {shape.days} days")
            t0 = time.perf_counter()
            addresses = build(big, shape, log)
            log(f"  built in {time.perf_counter() - t0:.0f}s, "
                f"{big.stat().st_size / 1e9:.2f} GB")
        rng = random.Random(11)
        at = end.isoformat()

        log("measuring check (in-process, 50 calls)")
        run_cli(["check", "--db", str(big), addresses[0]])  # warm the page cache
        timings = measure_check(big, addresses, rng)
        log(f"  check: median {1000 * statistics.median(timings):.1f} ms, "
            f"p95 {1000 * sorted(timings)[int(0.95 * len(timings)) - 1]:.1f} ms, "
            f"max {1000 * max(timings):.1f} ms (target < 50 ms)")
        log(f"  check as a new process (interpreter start-up included): "
            f"{1000 * check_process_time(big, addresses[1]):.0f} ms")

        log("measuring report --since 1d")
        for by in ("type", "domain", "provider", "reason"):
            args_ = ["report", "--db", str(big), "--since", "1d", "--at", at, "--by", by,
                     "--no-dns"]
            _, first = run_cli(args_)
            _, second = run_cli(args_)
            log(f"  report --since 1d --by {by}: {first:.2f} s (again: {second:.2f} s) "
                "(target < 2 s)")

        if args.skip_ingest:
            return 0
        log(f"measuring ingest: {args.ingest_rounds} rounds of {args.ingest_messages} "
            "messages, empty and large database interleaved")
        warm = work / "ingest-warm"
        write_ingest_files(warm, addresses, 100, random.Random(3), "warm")
        Store.open(work / "warm.db").close()
        measure_ingest(work / "warm.db", warm, end)  # imports, compiled rules
        cold = ingest_rounds(work, big, addresses, args, end, "as built", log)
        log(f"  reading {big.name} once (an OS page cache as warm as a running daemon's)")
        read_file(big)
        hot = ingest_rounds(work, big, addresses, args, end, "warm cache", log)
        log(f"measuring steady ingest (the daemon's path: one process, connections kept, "
            f"{args.steady_warmup} messages of warm-up per database)")
        default = steady_rounds(work, big, addresses, args, end, args.config,
                                "daemon, default config", log)
        sized_config = work / "sized.toml"
        sized_config.write_text(f"[database]\ncache_mb = {args.cache_mb}\nprewarm = true\n")
        sized = steady_rounds(work, big, addresses, args, end, str(sized_config),
                              f"daemon, cache_mb {args.cache_mb}", log)
        # The target is the daemon's, configured as config/bounced.toml advises for the
        # database's size: its process lives for weeks. A fresh `bounced ingest` of a
        # few hundred files starts cold every time (disk reads on the large database
        # when the OS has dropped its pages); it is printed for what a one-shot costs.
        log("ingest, empty vs large database (medians):")
        for name, (empty, large), target in (
            ("fresh `bounced ingest`, as built", cold, ""),
            ("fresh `bounced ingest`, file read just before", hot, ""),
            ("daemon, default config (cache_mb 16)", default, ""),
            (f"daemon, cache_mb {args.cache_mb} + prewarm", sized, " (target <= 20%)"),
        ):
            log(f"  {name}: drop {100 * (1 - large.rate / empty.rate):.1f}%{target}\n"
                f"      empty {empty.describe()}\n      large {large.describe()}")
        if args.wal_pages:
            log(f"pages written by one ingest of {args.ingest_messages} messages "
                "(distinct pages / WAL frames)")
            for kind in ("empty", "large"):
                files = work / f"ingest-walpages-{kind}"
                write_ingest_files(files, addresses, args.ingest_messages, random.Random(5),
                                   f"walpages-{kind}")
                target = big if kind == "large" else work / "empty-walpages.db"
                if kind == "empty":
                    Store.open(target).close()
                total, rows = wal_pages(target, files, end, args.config)
                log(f"  {kind}: {total:,} frames, "
                    f"{total / args.ingest_messages:.1f} per message")
                for name, distinct, frames in rows[:10]:
                    log(f"    {distinct:6,} / {frames:6,}  {name}")
    finally:
        if not args.keep and not args.dir:
            shutil.rmtree(work, ignore_errors=True)
        elif args.keep:
            log(f"work directory kept: {work}")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    raise SystemExit(main_bench())
