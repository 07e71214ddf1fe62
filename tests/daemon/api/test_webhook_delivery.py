"""Signed webhooks from a running ``bounced serve`` to a real receiver on loopback.

Signatures are checked with the ``standardwebhooks`` library, as a receiver would; the
set of events that arrive is compared with the outbox the daemon wrote.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.daemon.api.conftest import (
    SEED,
    WEBHOOK_SECRET,
    ApiServer,
    config_text,
    send,
    start_server,
    webhook_table,
)
from tests.harness.http import Received, WebhookReceiver
from tests.harness.process import wait_until_processed
from tests.harness.waiting import eventually

pytestmark = pytest.mark.slow


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver(fail_first=3).start()
    yield started
    started.close()


def wait_for(condition: Callable[[], bool]) -> None:
    assert eventually(condition), "condition not met in time"


def event_ids(server: ApiServer) -> set[str]:
    return {str(row[0]) for row in server.query("SELECT id FROM webhook_events")}


def verified(request: Received) -> dict:
    """The event, if its signature verifies (the library raises otherwise)."""
    return dict(Webhook(WEBHOOK_SECRET).verify(request.body, request.headers))


def test_events_arrive_once_each_signed_after_three_failed_deliveries(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    server = start_server(tmp_path, config_text(webhooks=[webhook_table(receiver.url)]))
    try:
        for path in SEED[:3]:  # user unknown (quarantined), mailbox full, blocked
            send(server.smtp_port, path)
        wait_until_processed(server.db)
        written = event_ids(server)
        wait_for(lambda: len(receiver.accepted()) >= len(written))
        accepted = receiver.accepted()
    finally:
        server.close()

    assert [request.answered for request in receiver.requests[:3]] == [500, 500, 500]
    first = receiver.requests[0].headers["webhook-id"]
    assert [r.headers["webhook-id"] for r in receiver.requests[:4]] == [first] * 4
    ids = [request.headers["webhook-id"] for request in accepted]
    assert sorted(ids) == sorted(written) and len(set(ids)) == len(ids)
    events = [verified(request) for request in receiver.requests]
    assert all(event["id"] == request.headers["webhook-id"]
               for event, request in zip(events, receiver.requests, strict=True))
    types = sorted(verified(request)["type"] for request in accepted)
    assert types == ["address.quarantined", "bounce.verdict", "bounce.verdict",
                     "bounce.verdict"]
    quarantined = next(verified(r) for r in accepted
                       if verified(r)["type"] == "address.quarantined")
    assert quarantined["data"]["address"] == "unknown-user@rcpt.test"
    assert (quarantined["data"]["new_state"], quarantined["data"]["reason"]) == (
        "quarantine", "User unknown")
    assert server.query("SELECT attempts FROM webhook_deliveries WHERE event_id = ?",
                        (first,)) == [(4,)]


def test_a_forged_or_altered_event_does_not_verify(tmp_path: Path,
                                                   receiver: WebhookReceiver) -> None:
    receiver.fail_first = 0
    server = start_server(tmp_path, config_text(webhooks=[webhook_table(receiver.url)]))
    try:
        send(server.smtp_port, SEED[0])
        wait_for(lambda: len(receiver.accepted()) >= 2)
    finally:
        server.close()
    request = receiver.accepted()[0]
    verified(request)
    with pytest.raises(WebhookVerificationError):
        verified(Received(request.headers, request.body.replace(b"hard", b"soft"), 204))
    other = Webhook("whsec_" + "QUJD" * 8)
    with pytest.raises(WebhookVerificationError):
        other.verify(request.body, request.headers)


def test_kill_9_with_events_in_the_outbox_loses_none(tmp_path: Path) -> None:
    receiver = WebhookReceiver().start()
    port = receiver.port
    receiver.stop()  # the endpoint is down: deliveries fail and wait in the outbox
    text = config_text(webhooks=[webhook_table(receiver.url, retry_after="0.5s")])
    server = start_server(tmp_path / "daemon", text)
    try:
        for path in SEED[:6]:
            send(server.smtp_port, path)
        wait_until_processed(server.db)
        written = event_ids(server)
        wait_for(lambda: server.query(
            "SELECT count(*) FROM webhook_deliveries WHERE attempts > 0")[0][0] > 0)
        server.process.kill()  # SIGKILL: no shutdown of any kind
        assert server.query("SELECT count(*) FROM webhook_deliveries "
                            "WHERE state = 'pending'")[0][0] == len(written)

        receiver.start(port)
        server = start_server(tmp_path / "daemon", text)
        wait_for(lambda: {r.headers["webhook-id"] for r in receiver.accepted()} >= written)
        assert server.query("SELECT count(*) FROM webhook_deliveries "
                            "WHERE state != 'delivered'") == [(0,)]
    finally:
        server.close()
        receiver.close()
    bodies: dict[str, bytes] = {}
    for request in receiver.accepted():
        event = verified(request)
        event_id = request.headers["webhook-id"]
        assert bodies.setdefault(event_id, request.body) == request.body  # a repeat is equal
        assert event["id"] == event_id
    assert set(bodies) == written and len(written) >= 6


def test_replay_sends_the_same_events_again_with_the_same_ids(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.fail_first = 0
    server = start_server(tmp_path, config_text(webhooks=[webhook_table(
        receiver.url, events=["address.quarantined", "address.denylisted"])]))
    try:
        send(server.smtp_port, SEED[0])
        send(server.smtp_port, SEED[-1])  # the ARF complaint: denylisted
        wait_until_processed(server.db)
        written = event_ids(server)
        wait_for(lambda: len(receiver.accepted()) == len(written) == 2)
        done = subprocess.run([sys.executable, "-m", "bounced", "webhooks", "replay", "--db",
                    str(server.db), "--since", "1h"], capture_output=True, text=True,
                   check=True)
        assert done.stdout.strip() == "2 deliveries due again"
        wait_for(lambda: len(receiver.accepted()) == 4)
    finally:
        server.close()
    ids = [request.headers["webhook-id"] for request in receiver.accepted()]
    assert sorted(ids) == sorted(list(written) * 2)
    assert sorted(verified(r)["type"] for r in receiver.accepted()[:2]) == [
        "address.denylisted", "address.quarantined"]


def test_an_endpoint_added_by_a_reload_receives_the_events_after_it(
        tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.fail_first = 0
    server = start_server(tmp_path, config_text())
    try:
        crm = server.client("crm")
        crm.put("/v1/suppressions/before@x.test")
        (tmp_path / "bounced.toml").write_text(
            config_text(webhooks=[webhook_table(receiver.url)]))
        server.process.signal(signal.SIGHUP)
        server.process.wait_event("serve.reloaded")
        crm.put("/v1/suppressions/after@x.test")
        wait_for(lambda: len(receiver.accepted()) == 1)
    finally:
        server.close()
    [event] = [verified(request) for request in receiver.accepted()]
    assert (event["type"], event["data"]["address"]) == ("address.denylisted", "after@x.test")
