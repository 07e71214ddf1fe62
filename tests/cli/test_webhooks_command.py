"""``bounced webhooks list|retry|replay`` over an outbox written by real processing
(``bounced ingest --config`` with a ``[[webhooks]]`` table)."""

from __future__ import annotations

import json
from pathlib import Path

from tests.conftest import query
from tests.paths import DATA

URL = "https://platform.example/hooks"
SAMPLE = DATA / "mta-lab" / "postfix-01-user-unknown-failed.eml"


def configured(tmp_path: Path) -> Path:
    path = tmp_path / "bounced.toml"
    path.write_text(f'[[webhooks]]\nurl = "{URL}"\n'
                    'secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"\n')
    return path


def test_processing_writes_the_events_the_webhooks_want(db, bounced, tmp_path):
    config = configured(tmp_path)
    assert bounced(["ingest", "--db", str(db), "--config", str(config), str(SAMPLE)]).status == 0
    rows = query(db, "SELECT e.type, e.body, d.endpoint, d.state FROM webhook_events e "
                     "JOIN webhook_deliveries d ON d.event_id = e.id ORDER BY d.id")
    assert sorted((kind, endpoint, state) for kind, _, endpoint, state in rows) == [
        ("address.quarantined", URL, "pending"), ("bounce.verdict", URL, "pending")]
    [verdict] = [json.loads(body)["data"] for kind, body, _, _ in rows
                 if kind == "bounce.verdict"]
    assert (verdict["recipient"], verdict["failure_type"], verdict["reason"]) == (
        "unknown-user@rcpt.test", "hard", "User unknown")
    assert verdict["applied"] is True


def test_list_shows_deliveries_and_retry_makes_dead_ones_due(db, bounced, tmp_path):
    bounced(["ingest", "--db", str(db), "--config", str(configured(tmp_path)), str(SAMPLE)])
    listed = bounced(["webhooks", "list", "--db", str(db)])
    assert listed.status == 0 and listed.out.rstrip().endswith("2 deliveries")
    assert "address.quarantined" in listed.out and "pending" in listed.out
    query(db, "UPDATE webhook_deliveries SET state = 'dead', attempts = 9, "
              "last_status = 503, last_error = 'HTTP 503 Service Unavailable' "
              "WHERE id = (SELECT min(id) FROM webhook_deliveries)")
    dead = bounced(["webhooks", "list", "--db", str(db), "--state", "dead", "--json"])
    [row] = [json.loads(line) for line in dead.out.splitlines()]
    assert (row["state"], row["attempts"], row["last_status"], row["endpoint"]) == (
        "dead", 9, 503, URL)
    retried = bounced(["webhooks", "retry", "--db", str(db)])
    assert retried.out.strip() == "1 dead delivery due again"
    assert query(db, "SELECT state FROM webhook_deliveries") == [("pending",), ("pending",)]


def test_replay_takes_a_time_and_names_a_bad_one(db, bounced, tmp_path):
    bounced(["ingest", "--db", str(db), "--config", str(configured(tmp_path)), str(SAMPLE)])
    replayed = bounced(["webhooks", "replay", "--db", str(db), "--since", "1h"])
    assert replayed.status == 0 and replayed.out.strip() == "2 deliveries due again"
    none = bounced(["webhooks", "replay", "--db", str(db), "--since", "2999-01-01"])
    assert none.out.strip() == "0 deliveries due again"
    bad = bounced(["webhooks", "replay", "--db", str(db), "--since", "yesterday-ish"])
    assert bad.status == 2 and "--since" in bad.err
