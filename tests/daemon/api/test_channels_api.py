"""Push feedback, SMS receipts over HTTP and sent messages, against a running daemon.

Every row of the reference's push tables (``tests/data/push/reference-rows.toml``) goes
through ``POST /v1/feedback/push``: the answer (verdict, retry) and what SQL then shows
(the delivery log, the qualification table, the token's state) are what the row says.
"""

from __future__ import annotations

import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest

from tests.daemon.api.conftest import TOKENS, ApiServer, config_text, start_server
from tests.harness.process import wait_until_processed
from tests.paths import DATA

pytestmark = pytest.mark.slow

ROWS: list[dict[str, Any]] = tomllib.loads(
    (DATA / "push" / "reference-rows.toml").read_text())["row"]
#: The state a first verdict of each type leaves a new address in ("": no row at all).
STATE_AFTER = {"hard": "quarantine", "soft": "erroneous", "undefined": "valid",
               "ignored": "", "": ""}


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    server = start_server(tmp_path_factory.mktemp("channels"),
                          config_text(extra='[addresses]\nphone_region = "FR"\n'))
    try:
        yield server
    finally:
        server.close()


def token_of(index: int) -> str:
    return f"tok{index:02d}-dXNlcjE6APA91bHqfEXAMPLE"


@pytest.mark.parametrize("index", range(len(ROWS)),
                         ids=[f"{r['body']['provider']}: {r['scenario']}" for r in ROWS])
def test_every_reference_push_row_gives_its_verdict_and_retry(daemon: ApiServer,
                                                              index: int) -> None:
    row = ROWS[index]
    body = {**row["body"], "token": token_of(index)}
    address = f"push:{body['app']}:{body['token']}"
    answer = daemon.client("crm").post("/v1/feedback/push", json=body)
    assert answer.status_code == 200, answer.text
    verdict = answer.json()
    assert verdict["address"] == address
    assert verdict["retry"] is row["retry"]
    assert verdict["failure_type"] == (row["failure_type"] or None)
    assert verdict["reason_code"] == (row["reason"] if row["reason"] >= 0 else None)
    assert verdict["text"] == row["text"]
    expected_state = STATE_AFTER[row["failure_type"]]
    assert verdict["state"] == (expected_state or "valid")
    stored = daemon.query(
        "SELECT b.kind, b.failure_type, b.reason_code, b.qualified_by, b.channel, q.text, "
        "q.first_text FROM bounces b LEFT JOIN qualification q ON q.id = b.qualification_id "
        "WHERE b.recipient = ?", (address,))
    if not row["failure_type"]:
        assert stored == [] and verdict["message_id"] is None  # a success is not stored
    else:
        [(kind, failure_type, reason, qualified_by, channel, text, first)] = stored
        assert (kind, failure_type, reason, channel, text) == (
            "failure", row["failure_type"], row["reason"], "push", row["text"])
        assert qualified_by.startswith("reference:")
        assert first == row.get("first_text", first)
    assert daemon.query("SELECT state FROM addresses WHERE address = ?", (address,)) == (
        [(expected_state,)] if expected_state else [])


def test_an_unregistered_token_is_refused_by_check_and_the_api(daemon: ApiServer) -> None:
    body = {"provider": "apns", "app": "com.example.app", "status": 410,
            "reason": "Unregistered", "token": "A" * 64}
    assert daemon.client("crm").post("/v1/feedback/push", json=body).json()["state"] == \
        "quarantine"
    address = "push:com.example.app:" + "a" * 64  # APNs hex tokens are case-insensitive
    reader = daemon.client()
    answer = reader.get(f"/v1/addresses/{quote(address, safe='')}").json()
    assert (answer["state"], answer["deliverable"], answer["reason"]) == (
        "quarantine", False, "User unknown")
    both = reader.post("/v1/check", json={"addresses": [address, "push:com.example.app:new"]})
    assert both.json()["deliverable"] is False
    import subprocess
    import sys
    done = subprocess.run([sys.executable, "-m", "bounced", "check", "--db", str(daemon.db),
                           "push:com.example.app:" + "A" * 64], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 1 and "quarantine" in done.stdout and "NO" in done.stdout


def test_the_same_notification_posted_twice_counts_once(daemon: ApiServer) -> None:
    body = {"provider": "fcm", "app": "example-project", "token": "twice-token",
            "status": 429, "error": "QUOTA_EXCEEDED", "id": "notification-77"}
    writer = daemon.client("crm")
    first, again = writer.post("/v1/feedback/push", json=body).json(), \
        writer.post("/v1/feedback/push", json=body).json()
    assert (first["duplicate"], again["duplicate"]) == (False, True)
    assert first["message_id"] == again["message_id"]
    assert daemon.query("SELECT error_count FROM addresses WHERE address = ?",
                        ("push:example-project:twice-token",)) == [(1,)]


@pytest.mark.parametrize(("body", "field"), [
    ({"provider": "gcm", "app": "a", "token": "t", "status": 400}, "provider"),
    ({"provider": "fcm", "app": "a", "status": 400}, "token"),
    ({"provider": "fcm", "app": "a", "token": "t"}, "status"),
    ({"provider": "fcm", "app": "a", "token": "t", "status": "400"}, "status"),
    ({"provider": "fcm", "app": "a b", "token": "t", "status": 400}, "token"),
])
def test_a_bad_push_answer_is_refused_naming_the_field(daemon: ApiServer, body: dict[str, Any],
                                                        field: str) -> None:
    answer = daemon.client("crm").post("/v1/feedback/push", json=body)
    assert answer.status_code == 422 and answer.json()["field"] == field


def test_a_read_token_cannot_post_feedback(daemon: ApiServer) -> None:
    body = {"provider": "fcm", "app": "a", "token": "t", "error": "UNREGISTERED"}
    assert daemon.client("reader").post("/v1/feedback/push", json=body).status_code == 403


# --------------------------------------------------------------------------- SMS over HTTP


def test_a_kannel_dlr_url_call_is_stored_and_quarantines_the_number(daemon: ApiServer) -> None:
    """Kannel calls ``dlr-url`` with GET and its escapes filled in (%p, %d, %A)."""
    secret = TOKENS["crm"][0]
    report = (DATA / "sms" / "kannel-report.txt").read_text().strip()
    answer = httpx.get(f"{daemon.base_url}/v1/feedback/sms", params={
        "access_token": secret, "smsc": "Kannel", "to": "+33612340001", "type": "2",
        "report": report, "id": "kannel-1"})
    assert answer.status_code == 200, answer.text
    assert answer.json()["duplicate"] is False
    wait_until_processed(daemon.db)
    assert daemon.query(
        "SELECT b.failure_type, q.text FROM bounces b JOIN qualification q "
        "ON q.id = b.qualification_id WHERE b.recipient = 'tel:+33612340001'") == [
        ("hard", "SR Kannel UNDELIV 011|#MESSAGE#")]
    assert daemon.query("SELECT state FROM addresses WHERE address = 'tel:+33612340001'") \
        == [("quarantine",)]


def test_a_jasmin_dlr_is_answered_ack_and_finds_its_registered_number(
        daemon: ApiServer) -> None:
    writer = daemon.client("crm")
    registered = writer.post("/v1/messages", json={"messages": [
        {"id": "jasmin-5f3a", "channel": "sms", "recipient": "tel:06 12 34 00 02"}]})
    assert registered.json()["registered"] == 1
    fields = dict(line.split("=", 1) for line in
                  (DATA / "sms" / "jasmin-dlr.txt").read_text().split())
    answer = httpx.post(f"{daemon.base_url}/v1/feedback/sms",
                        params={"access_token": TOKENS["crm"][0]}, data=fields)
    assert answer.status_code == 200 and answer.text == "ACK/Jasmin"
    again = httpx.post(f"{daemon.base_url}/v1/feedback/sms",
                       headers={"Authorization": f"Bearer {TOKENS['crm'][0]}",
                                "Accept": "application/json"}, data=fields)
    assert again.json()["duplicate"] is True  # Jasmin's re-send counts once
    wait_until_processed(daemon.db)
    assert daemon.query(
        "SELECT b.recipient, b.failure_type, q.text FROM bounces b JOIN qualification q "
        "ON q.id = b.qualification_id WHERE b.original_message_id = 'jasmin-5f3a'") == [
        ("tel:+33612340002", "hard", "SR Generic EXPIRED 000|#MESSAGE#")]


def test_an_sms_receipt_without_a_receipt_is_refused(daemon: ApiServer) -> None:
    answer = daemon.client("crm", validate=False).post("/v1/feedback/sms",
                                                       json={"to": "+33612340003"})
    assert answer.status_code == 422 and answer.json()["field"] == "report"


def test_a_registration_names_a_valid_recipient(daemon: ApiServer) -> None:
    writer = daemon.client("crm")
    bad = writer.post("/v1/messages", json={"id": "x", "channel": "sms", "recipient": "tel:12"})
    assert bad.status_code == 422 and bad.json()["field"] == "recipient"
    wrong = writer.post("/v1/messages", json={"id": "x", "channel": "push",
                                              "recipient": "tel:+33612340004"})
    assert wrong.status_code == 422 and wrong.json()["field"] == "channel"


def test_raw_receipts_are_served_as_json(daemon: ApiServer, tmp_path: Path) -> None:
    message_id = daemon.query("SELECT max(id) FROM messages WHERE channel = 'sms'")[0][0]
    answer = daemon.client().get(f"/v1/messages/{message_id}/raw")
    assert answer.headers["content-type"].startswith("application/json")
    assert answer.json()["channel"] == "sms"
