"""What ``GET /metrics`` says, in the Prometheus text format (prometheus-client).

The daemon is two processes: the listener (SMTP sessions, the commit writer, the HTTP
API, webhook deliveries) and the worker (processing). The metrics live in the
listener's process, in a registry of their own; the worker sends what it did after
each chunk (a :class:`WorkReport`, over a pipe), and the listener adds it up. Counters
count since the daemon started, as Prometheus expects (``rate()`` handles restarts).

Gauges that describe the database (the pending backlog, texts waiting for an
operator, the webhook outbox) are read from it when Prometheus scrapes, so they are
right whichever process changed it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client import Counter as PromCounter
from prometheus_client import Histogram as PromHistogram
from prometheus_client.core import GaugeMetricFamily, Metric

from bounced.core.evidence import provider_of
from bounced.model import MessageState

if TYPE_CHECKING:
    from bounced.store import Store

#: Seconds: from the end of DATA to the durable commit; from receipt to processed.
COMMIT_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                      60.0, 300.0)


@dataclass(slots=True)
class WorkReport:
    """What the worker did since its last report (sent to the listener's process)."""

    #: (kind, failure type, reason label, provider, channel) -> verdicts.
    verdicts: Counter[tuple[str, str, str, str, str]] = field(default_factory=Counter)
    #: new state -> changes of an address's state.
    state_changes: Counter[str] = field(default_factory=Counter)
    #: outcome (processed, failed) -> messages.
    messages: Counter[str] = field(default_factory=Counter)
    #: Messages with problems in their parse (broken MIME, bad charset, ...).
    parse_problems: int = 0
    #: Seconds from receipt to processed, one per processed message.
    latencies: list[float] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.verdicts or self.state_changes or self.messages or self.latencies)


@dataclass(frozen=True, slots=True)
class DatabaseGauges:
    """What the database says at scrape time."""

    pending: int
    failed: int
    to_qualify: int
    outbox_pending: int
    outbox_dead: int
    outbox_oldest_age_seconds: float


def database_gauges(store: Store, now: datetime) -> DatabaseGauges:
    """The gauges as ``store`` says now."""
    outbox = store.outbox.stats()
    oldest = outbox.oldest_pending_at
    return DatabaseGauges(
        pending=store.messages.count(MessageState.PENDING),
        failed=store.messages.count(MessageState.FAILED),
        to_qualify=store.qualification.waiting_count(),
        outbox_pending=outbox.pending,
        outbox_dead=outbox.dead,
        outbox_oldest_age_seconds=max(0.0, (now - oldest).total_seconds()) if oldest else 0.0,
    )


class Metrics:
    """The daemon's metrics, in a registry of their own (several daemons in one process,
    as in the tests, do not mix their counts)."""

    def __init__(self, gauges: Callable[[], DatabaseGauges | None] = lambda: None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.received = PromCounter(
            "bounced_messages_received", "Messages stored (a 250, a deliver_sm_resp or an "
            "HTTP 2xx was sent), by protocol (smtp, lmtp, smpp, http) and channel (email, sms, "
            "push).", ["protocol", "duplicate", "channel"], registry=registry)
        self.refused = PromCounter(
            "bounced_smtp_replies_refused", "4xx and 5xx replies sent to SMTP/LMTP clients.",
            ["code"], registry=registry)
        self.commit_seconds = PromHistogram(
            "bounced_commit_seconds", "From the end of DATA to the durable commit.",
            buckets=COMMIT_BUCKETS, registry=registry)
        self.processed = PromCounter(
            "bounced_messages_processed", "Messages processed by the worker, by outcome.",
            ["outcome"], registry=registry)
        self.verdicts = PromCounter(
            "bounced_verdicts", "Recipient verdicts written to the delivery log, by the "
            "mail provider of the recipient's domain (the shipped knowledge's, or other; the "
            "SMSC account of an SMS, apns or fcm for push) and channel.",
            ["kind", "failure_type", "reason", "provider", "channel"], registry=registry)
        self.state_changes = PromCounter(
            "bounced_address_state_changes", "Changes of an address's state, by new state.",
            ["state"], registry=registry)
        self.parse_problems = PromCounter(
            "bounced_parse_problems", "Messages whose parse noted a problem (broken MIME, "
            "bad charset, ...).", registry=registry)
        self.processing_seconds = PromHistogram(
            "bounced_processing_seconds", "From receipt to processed.",
            buckets=PROCESSING_BUCKETS, registry=registry)
        self.deliveries = PromCounter(
            "bounced_webhook_deliveries", "Webhook delivery attempts, by outcome.",
            ["outcome"], registry=registry)
        self.http_requests = PromCounter(
            "bounced_http_requests", "HTTP API requests, by route and status.",
            ["route", "status"], registry=registry)
        registry.register(_DatabaseCollector(gauges))

    def apply(self, report: WorkReport) -> None:
        """Add a report of the worker."""
        for (kind, failure_type, reason, provider, channel), count in report.verdicts.items():
            self.verdicts.labels(kind, failure_type, reason, provider, channel).inc(count)
        for state, count in report.state_changes.items():
            self.state_changes.labels(state).inc(count)
        for outcome, count in report.messages.items():
            self.processed.labels(outcome).inc(count)
        if report.parse_problems:
            self.parse_problems.inc(report.parse_problems)
        for seconds in report.latencies:
            self.processing_seconds.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _DatabaseCollector:
    """Gauges read from the database when Prometheus scrapes."""

    def __init__(self, gauges: Callable[[], DatabaseGauges | None]) -> None:
        self._gauges = gauges

    def describe(self) -> Iterable[Metric]:
        return ()

    def collect(self) -> Iterable[Metric]:
        values = self._gauges()
        if values is None:
            return
        for name, text, value in (
            ("bounced_pending_messages", "Messages stored, not processed yet.", values.pending),
            ("bounced_failed_messages", "Messages set aside as failed.", values.failed),
            ("bounced_texts_to_qualify", "Normalized texts no operator decided on.",
             values.to_qualify),
            ("bounced_webhook_outbox_pending", "Webhook deliveries not made yet.",
             values.outbox_pending),
            ("bounced_webhook_outbox_dead", "Webhook deliveries given up.",
             values.outbox_dead),
            ("bounced_webhook_outbox_oldest_age_seconds",
             "Age of the oldest event still owed to an endpoint.",
             values.outbox_oldest_age_seconds),
        ):
            yield GaugeMetricFamily(name, text, value=value)


def report_of(results: Iterable[Any], now_seconds: Callable[[Any], float | None]) -> WorkReport:
    """The report of processed results (:class:`bounced.ops.processing.ProcessResult`);
    ``now_seconds(result)`` gives a result's receipt-to-processed delay, if known."""
    report = WorkReport()
    for result in results:
        if result.skipped:
            continue
        report.messages[str(result.state)] += 1
        if result.problems:
            report.parse_problems += 1
        delay = now_seconds(result)
        if delay is not None:
            report.latencies.append(delay)
        for recipient in result.recipients:
            reason = recipient.reason.label if recipient.reason is not None else "none"
            channel = str(getattr(recipient, "channel", "email"))
            provider = (provider_of(None, recipient.recipient) or "other"
                        if channel == "email" else getattr(recipient, "remote", None) or channel)
            report.verdicts[(str(recipient.kind), recipient.failure_type or "none", reason,
                             provider, channel)] += 1
            if recipient.event is not None and recipient.address_state is not None:
                report.state_changes[str(recipient.address_state)] += 1
    return report
