"""The other channels with ``database.url = "postgresql://..."``: one ``bounced serve``
(a real process) on a PostgreSQL database takes SMS receipts over a real SMPP session
(``tests/harness/smsc.py``), push feedback and sent messages over its HTTP API, and
delivers the verdicts as signed webhooks, as it does on SQLite
(``tests/daemon/smpp``, ``tests/daemon/api``).
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest
from standardwebhooks import Webhook

from tests.daemon.api.conftest import WEBHOOK_SECRET as SECRET

# The SMSC, the receiver (its first three POSTs refused: delivery is retried) and the
# receipts of the SQLite tests.
from tests.daemon.api.test_webhook_delivery import receiver, wait_for  # noqa: F401
from tests.daemon.smpp.test_smpp_receipts import RECEIPTS, deliver_sm, smsc  # noqa: F401
from tests.harness.http import WebhookReceiver
from tests.harness.process import ServerProcess, query, wait_until_processed
from tests.harness.smsc import LoopbackSmsc

pytestmark = pytest.mark.slow

TOKEN = "platform-token-0123456789abcdef"


def config_text(url: str, smsc_port: int, hooks: str) -> str:
    return (
        f'[database]\nurl = "{url}"\n'
        '[smtp]\nlisten = "127.0.0.1:0"\nhostname = "bounced.test"\n'
        '[dns]\nenabled = false\n'
        '[addresses]\nphone_region = "FR"\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
        f'[[http.tokens]]\nname = "platform"\nsecret = "{TOKEN}"\nscopes = ["read", "write"]\n'
        f'[[webhooks]]\nurl = "{hooks}"\nsecret = "{SECRET}"\nretry_after = "0.2s"\n'
        'events = ["bounce.verdict"]\n'
        '[[smpp]]\nname = "acme"\nhost = "127.0.0.1"\n'
        f"port = {smsc_port}\n"
        'system_id = "bounced"\npassword_file = "acme.password"\nsmsc = "Acme"\n'
        'bind = "transceiver"\nenquire_link = "0.5s"\nresponse_timeout = "2s"\n'
        'reconnect_min = "0.1s"\nreconnect_max = "1s"\n'
    )


def test_sms_receipts_push_feedback_and_webhooks_on_postgresql(
        tmp_path: Path, pg_url: str, smsc: LoopbackSmsc,  # noqa: F811
        receiver: WebhookReceiver) -> None:  # noqa: F811
    (tmp_path / "bounced.toml").write_text(config_text(pg_url, smsc.port, receiver.url))
    (tmp_path / "acme.password").write_text("secret\n")
    daemon = ServerProcess(["--config", "bounced.toml"], cwd=tmp_path,
                           log=tmp_path / "serve.log").ready()
    hard = next(r for r in RECEIPTS if r["name"] == "undelivered-012")
    registered = next(r for r in RECEIPTS if r.get("registered"))
    try:
        api = httpx.Client(base_url=f"http://127.0.0.1:{daemon.port('http')}",
                           headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        smsc.wait_bound(1)
        sent = api.post("/v1/messages", json={"messages": [
            {"id": registered["receipted_message_id"], "channel": "sms",
             "recipient": registered["number"]}]})
        assert sent.status_code == 200, sent.text
        for receipt in (hard, registered):
            smsc.send(receipt["name"], **deliver_sm(receipt))
        smsc.wait(lambda: smsc.acked(hard["name"]) and smsc.acked(registered["name"]),
                  what="answers")
        push = api.post("/v1/feedback/push", json={
            "provider": "apns", "app": "com.example.app", "status": 410,
            "reason": "Unregistered", "token": "b" * 64})
        assert push.status_code == 200, push.text
        answered = push.json()
        assert (answered["failure_type"], answered["state"]) == ("hard", "quarantine")
        wait_until_processed(pg_url)
        wait_for(lambda: len(receiver.accepted()) >= 3)
        token = "push:com.example.app:" + "b" * 64
        checked = api.post("/v1/check", json={"addresses": [hard["number"], token]})
        assert checked.status_code == 200, checked.text
        assert checked.json()["deliverable"] is False
    finally:
        daemon.kill()
    # What SQL shows: the receipts and the push answer, each stored once with its channel.
    assert sorted(query(pg_url, "SELECT channel, count(*) FROM messages GROUP BY channel")) == [
        ("push", 1), ("sms", 2)]
    assert query(pg_url, "SELECT recipient FROM sent_messages") == [(registered["number"],)]
    rows = {row[0]: row[1:] for row in query(
        pg_url, "SELECT b.recipient, b.failure_type, b.reason_code, q.text, b.channel "
                "FROM bounces b JOIN qualification q ON q.id = b.qualification_id")}
    for receipt in (hard, registered):
        assert rows[receipt["number"]] == (
            receipt["failure_type"], receipt["reason"], receipt["text"], "sms"), receipt["name"]
    assert rows[token][0] == "hard" and rows[token][3] == "push"
    assert sorted(query(pg_url, "SELECT address, channel FROM suppression_list")) == sorted(
        [(token, "push"), *((r["number"], "sms") for r in (hard, registered)
                            if r["state"] == "quarantine")])
    # Every verdict was POSTed once, signed, with its channel.
    events = [dict(Webhook(SECRET).verify(request.body, request.headers))
              for request in receiver.accepted()]
    assert sorted(json.dumps(event["data"]["channel"]) for event in events) == [
        '"push"', '"sms"', '"sms"']
    assert len({event["id"] for event in events}) == len(events)
