"""``GET /metrics`` after a known run, read by prometheus-client's own text parser and
compared with what the database says of the same run."""

from __future__ import annotations

import smtplib
from collections import Counter

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.daemon.api.conftest import SEED, ApiServer, send

pytestmark = pytest.mark.slow


def samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """Sample name -> (labels, value) for every sample of the exposition."""
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((dict(sample.labels), sample.value))
    return found


def by(series: list[tuple[dict[str, str], float]], *labels: str) -> Counter[tuple[str, ...]]:
    totals: Counter[tuple[str, ...]] = Counter()
    for values, value in series:
        totals[tuple(values[label] for label in labels)] += int(value)
    return +totals


def test_the_counters_match_the_database_after_a_known_run(fresh: ApiServer) -> None:
    fresh.seed()
    with smtplib.SMTP("127.0.0.1", fresh.smtp_port, timeout=60) as client:
        client.ehlo("c.test")
        client.mail("")
        assert client.rcpt("someone@not-ours.test")[0] == 550  # not a bounce address
    # A duplicate: the same bytes again, stored once.
    send(fresh.smtp_port, SEED[0])

    metrics = samples(fresh.client("reader").get("/metrics").text)

    messages = fresh.query("SELECT count(*) FROM messages")[0][0]
    assert by(metrics["bounced_messages_received_total"], "protocol", "duplicate") == {
        ("smtp", "false"): messages, ("smtp", "true"): 1}
    assert by(metrics["bounced_smtp_replies_refused_total"], "code") == {("550",): 1}
    assert by(metrics["bounced_messages_processed_total"], "outcome") == {
        ("processed",): messages}
    verdicts = Counter({(kind, failure_type or "none", reason or "none"): count
                        for kind, failure_type, reason, count in fresh.query(
                            "SELECT b.kind, b.failure_type, r.label, count(*) FROM bounces b "
                            "LEFT JOIN reasons r ON r.code = b.reason_code GROUP BY 1, 2, 3")})
    assert by(metrics["bounced_verdicts_total"], "kind", "failure_type", "reason") == verdicts
    providers = by(metrics["bounced_verdicts_total"], "provider")
    assert providers == {("other",): sum(verdicts.values())}  # rcpt.test, example.net
    changes = Counter({(state,): count for state, count in fresh.query(
        "SELECT new_state, count(*) FROM address_events GROUP BY 1")})
    assert by(metrics["bounced_address_state_changes_total"], "state") == changes
    assert changes[("quarantine",)] == 4 and changes[("denylisted",)] == 1
    [(_, commits)] = metrics["bounced_commit_seconds_count"]
    assert commits == messages + 1
    [(_, latencies)] = metrics["bounced_processing_seconds_count"]
    assert latencies == messages
    [(_, pending)] = metrics["bounced_pending_messages"]
    [(_, to_qualify)] = metrics["bounced_texts_to_qualify"]
    assert pending == 0
    assert to_qualify == fresh.query("SELECT count(*) FROM to_qualify")[0][0]
    [(_, outbox)] = metrics["bounced_webhook_outbox_pending"]
    assert outbox == 0  # no endpoint configured: nothing written


def test_http_requests_are_counted_by_route_and_status(fresh: ApiServer) -> None:
    reader = fresh.client("reader")
    reader.get("/v1/addresses/a@x.test")
    reader.get("/v1/addresses/b@x.test")
    fresh.client(None).get("/v1/suppressions")
    metrics = samples(reader.get("/metrics").text)
    counted = by(metrics["bounced_http_requests_total"], "route", "status")
    assert counted[("/v1/addresses/{address}", "200")] == 2
    assert counted[("/v1/suppressions", "401")] == 1
