"""The webhook outbox: events written in the transaction of their change, the delivery
states operators steer, and the retention purge of settled events."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bounced.core.decisions import denied, released
from bounced.model import EventType
from bounced.ops.quarantine import act
from bounced.store import Rollback, Store

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
URL = "https://platform.example/hooks"
OTHER = "https://other.example/hooks"


@pytest.fixture
def store(db: Path) -> Store:
    opened = Store.open(db)
    opened.outbox.subscribe({
        EventType.ADDRESS_DENYLISTED.value: [URL, OTHER],
        EventType.ADDRESS_RELEASED.value: [URL],
    })
    return opened


def events(store: Store) -> list[tuple[str, dict]]:
    return [(kind, json.loads(body)) for kind, body in store.conn.execute(
        "SELECT type, body FROM webhook_events e ORDER BY (SELECT min(d.id) "
        "FROM webhook_deliveries d WHERE d.event_id = e.id)")]


def test_an_event_is_written_with_one_delivery_per_subscribed_endpoint(store: Store) -> None:
    act(store, denied, ["a@x.test"], T0, "asked", actor="api:crm")
    [(kind, body)] = events(store)
    assert kind == "address.denylisted" and body["type"] == kind
    assert body["id"].startswith("evt_") and body["timestamp"] == "2026-11-30T12:00:00Z"
    data = body["data"]
    assert (data["address"], data["old_state"], data["new_state"], data["actor"]) == (
        "a@x.test", None, "denylisted", "api:crm")
    assert sorted(row[0] for row in store.conn.execute(
        "SELECT endpoint FROM webhook_deliveries")) == sorted([URL, OTHER])


def test_an_event_is_undone_with_the_change_it_describes(store: Store) -> None:
    with store.atomic():
        act(store, denied, ["a@x.test"], T0, None)
        assert len(events(store)) == 1
        raise Rollback
    assert events(store) == []
    assert store.conn.execute("SELECT count(*) FROM addresses").fetchone() == (0,)
    assert store.conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == (0,)


def test_nothing_is_written_for_events_nobody_subscribed_to(tmp_path: Path) -> None:
    with Store.open(tmp_path / "b.db") as bare:
        act(bare, denied, ["a@x.test"], T0, None)
        assert events(bare) == []
    with Store.open(tmp_path / "c.db") as other:
        other.outbox.subscribe({EventType.ADDRESS_RELEASED.value: [URL]})
        act(other, denied, ["a@x.test"], T0, None)
        act(other, released, ["a@x.test"], T0, None)
        assert [kind for kind, _ in events(other)] == ["address.released"]


def test_a_change_that_is_no_change_publishes_nothing(store: Store) -> None:
    act(store, denied, ["a@x.test"], T0, None)
    act(store, denied, ["a@x.test"], T0 + timedelta(minutes=1), None)
    assert len(events(store)) == 1


def test_dead_deliveries_come_back_with_retry_and_events_with_replay(store: Store) -> None:
    act(store, denied, ["a@x.test"], T0, None)
    act(store, released, ["a@x.test"], T0 + timedelta(hours=2), None)
    with store.atomic():
        for delivery in store.outbox.due(T0 + timedelta(hours=3), 10):
            if delivery.endpoint == OTHER:
                store.outbox.failed(delivery.id, status=500, error="HTTP 500", retry_at=None)
            else:
                store.outbox.delivered(delivery.id, 204, T0 + timedelta(hours=3))
    assert {d.state for d in store.outbox.listing(state=None, since=None, limit=10)} == {
        "delivered", "dead"}
    [dead] = store.outbox.listing(state="dead", since=None, limit=10)
    assert (dead.endpoint, dead.last_status, dead.last_error) == (OTHER, 500, "HTTP 500")
    now = T0 + timedelta(hours=4)
    with store.atomic():
        assert store.outbox.retry_dead(now) == 1
    assert [d.endpoint for d in store.outbox.due(now, 10)] == [OTHER]
    with store.atomic():
        assert store.outbox.replay(T0 + timedelta(hours=1), now, URL) == 1  # the release
    assert sorted((d.event_type, d.endpoint) for d in store.outbox.due(now, 10)) == [
        ("address.denylisted", OTHER), ("address.released", URL)]


def test_the_purge_deletes_settled_events_and_keeps_those_still_owed(store: Store) -> None:
    act(store, denied, ["a@x.test", "b@x.test"], T0, None)
    with store.atomic():
        for delivery in store.outbox.due(T0, 10):
            if "a@x.test" in delivery.body:
                store.outbox.delivered(delivery.id, 200, T0)
    stats = store.outbox.stats()
    assert (stats.pending, stats.dead, stats.oldest_pending_at) == (2, 0, T0)
    result = store.retention.purge(T0 + timedelta(days=1))
    assert result.webhook_events_deleted == 1
    [(_, body)] = events(store)
    assert body["data"]["address"] == "b@x.test"
    assert store.conn.execute("SELECT count(*) FROM webhook_deliveries").fetchone() == (2,)
