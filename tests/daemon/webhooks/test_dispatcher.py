"""The webhook dispatcher's schedule, on a clock the test moves, against a real receiver
and a real database: backoff doubling, the endpoint resting, giving up, retrying."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from bounced.config import Config, WebhookConfig
from bounced.core.decisions import denied
from bounced.core.times import parse_time
from bounced.daemon.metrics import Metrics
from bounced.daemon.webhooks import LONGEST_RETRY, WebhookDispatcher, retry_delay
from bounced.ops.quarantine import act
from bounced.ops.webhooks import subscribe
from bounced.store import Store
from tests.harness.http import WebhookReceiver

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def config_for(tmp_path: Path, url: str) -> Config:
    base = Config()
    webhook = WebhookConfig(url=url, secret=SECRET, retry_after=timedelta(seconds=10),
                            give_up_after=timedelta(seconds=60))
    return replace(base, database=replace(base.database, path=str(tmp_path / "b.db")),
                   webhooks=(webhook,))


def counts(metrics: Metrics) -> dict[str, float]:
    return {outcome: metrics.registry.get_sample_value(
                "bounced_webhook_deliveries_total", {"outcome": outcome}) or 0.0
            for outcome in ("delivered", "failed", "dead")}


def deliveries(store: Store) -> list[tuple[str, int, str]]:
    return [(state, attempts, next_at) for state, attempts, next_at in store.conn.execute(
        "SELECT state, attempts, next_attempt_at FROM webhook_deliveries ORDER BY id")]


def test_retry_delays_double_up_to_an_hour() -> None:
    ten = timedelta(seconds=10)
    assert [retry_delay(ten, n).total_seconds() for n in (1, 2, 3, 4)] == [10, 20, 40, 80]
    assert retry_delay(ten, 30) == LONGEST_RETRY


def test_failures_back_off_then_give_up_and_retry_makes_them_due(tmp_path: Path) -> None:
    receiver = WebhookReceiver(fail_first=3).start()
    config = config_for(tmp_path, receiver.url)
    store = subscribe(Store.open(config.database.path), config)
    act(store, denied, ["a@x.test", "b@x.test"], T0, "test", actor="cli:test")
    clock = [T0]
    metrics = Metrics()
    dispatcher = WebhookDispatcher(config, metrics=metrics, clock=lambda: clock[0])

    async def run() -> list[int]:
        await dispatcher.open()
        attempted = []
        for seconds in (0, 5, 10, 30):  # fails at 0 (+10s), 10 (+20s), 30 (+40s > 60s)
            clock[0] = T0 + timedelta(seconds=seconds)
            attempted.append(await dispatcher.deliver_due())
        clock[0] = T0 + timedelta(seconds=31)
        with store.atomic():
            assert store.outbox.retry_dead(clock[0]) == 1
        attempted.append(await dispatcher.deliver_due())
        await dispatcher.stop()
        return attempted

    try:
        attempted = asyncio.run(run())
    finally:
        receiver.close()
        store.close()
    # Each round the first delivery fails and the endpoint rests: the second waits; at 30s
    # the first is given up, and once due again both arrive.
    assert attempted == [1, 0, 1, 1, 2]
    assert [r.answered for r in receiver.requests] == [500, 500, 500, 204, 204]
    ids = [r.headers["webhook-id"] for r in receiver.requests]
    assert ids[:4] == [ids[0]] * 4 and ids[4] != ids[0]
    with Store.open(config.database.path) as check:
        assert [(state, attempts) for state, attempts, _ in deliveries(check)] == [
            ("delivered", 4), ("delivered", 1)]
    assert counts(metrics) == {"delivered": 2, "failed": 2, "dead": 1}


def test_the_schedule_is_written_to_the_database(tmp_path: Path) -> None:
    receiver = WebhookReceiver(fail_first=100).start()
    config = config_for(tmp_path, receiver.url)
    store = subscribe(Store.open(config.database.path), config)
    act(store, denied, ["a@x.test"], T0, None, actor="cli:test")
    clock = [T0]
    dispatcher = WebhookDispatcher(config, metrics=Metrics(), clock=lambda: clock[0])
    schedule = []

    async def run() -> None:
        await dispatcher.open()
        for seconds in (0, 10, 30):
            clock[0] = T0 + timedelta(seconds=seconds)
            await dispatcher.deliver_due()
            [(state, attempts, next_at)] = deliveries(store)
            schedule.append((state, attempts, parse_time(next_at)))
        await dispatcher.stop()

    try:
        asyncio.run(run())
    finally:
        receiver.close()
        store.close()
    assert schedule == [
        ("pending", 1, T0 + timedelta(seconds=10)),
        ("pending", 2, T0 + timedelta(seconds=30)),
        ("dead", 3, T0 + timedelta(seconds=30)),  # 30 + 40 is past give_up_after
    ]


def test_deliveries_of_an_endpoint_no_longer_configured_are_given_up(tmp_path: Path) -> None:
    receiver = WebhookReceiver().start()
    config = config_for(tmp_path, receiver.url)
    store = subscribe(Store.open(config.database.path), config)
    act(store, denied, ["a@x.test"], T0, None, actor="cli:test")
    dispatcher = WebhookDispatcher(replace(config, webhooks=()), metrics=Metrics(),
                                   clock=lambda: T0)

    async def run() -> None:
        await dispatcher.open()
        await dispatcher.deliver_due()
        await dispatcher.stop()

    try:
        asyncio.run(run())
    finally:
        receiver.close()
    assert receiver.requests == []
    assert store.conn.execute("SELECT state, last_error FROM webhook_deliveries").fetchall() == [
        ("dead", "endpoint no longer configured")]
    store.close()
