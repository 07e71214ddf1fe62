"""Reports over the delivery log: counts, rates, the qualification queue, quarantines.

``bounced report`` answers the operator's morning questions for a time window: how
many bounces, of which type and reason, for which domains or mail providers (rates, not
only counts, since a provider's share is what points at a reputation problem), which
texts still wait for qualification, how many addresses entered quarantine each day, and
how many ``Invalid domain`` bounces name domains that do not exist at all.

Only indexed, windowed reads: bounces by ``at``, history by ``at`` (store migration 2),
so a report over the last day stays fast on a database of millions of rows. Building a
report (:func:`build_report`) returns plain frozen data; rendering it as text tables or
JSON is separate (:func:`render_text`, :func:`to_json`). Provider grouping needs DNS
(MX hosts), reached through a :class:`bounced.ops.dns.DnsCache` the caller passes in, or
none (then only cached answers are used).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bounced.core.dns import DnsStatus, DomainEvidence
from bounced.core.tables import render_table
from bounced.core.times import format_time
from bounced.model import Reason
from bounced.ops.dns import DnsCache
from bounced.store import Store
from bounced.store.reports import DayChanges, GroupCounts, Unreadable, WindowTotals

#: How many domains a report may look up in DNS (the most bounced first); the others
#: use cached answers only, so a report never waits on thousands of look-ups.
DEFAULT_DNS_LIMIT = 200
NOT_LOOKED_UP = "(not looked up)"


class GroupBy(StrEnum):
    TYPE = "type"
    REASON = "reason"
    DOMAIN = "domain"
    PROVIDER = "provider"
    DAY = "day"
    CHANNEL = "channel"


#: The window at a glance (``bounces`` counts recipient verdicts, ``messages`` the
#: received messages they came from).
Totals = WindowTotals
#: Quarantines, denylistings and releases of one day.
Day = DayChanges


def rate(totals: Totals, failure_type: str) -> float:
    """The share of the window's bounces of one type."""
    return totals.by_type.get(failure_type, 0) / totals.bounces if totals.bounces else 0.0


@dataclass(frozen=True, slots=True)
class Group(GroupCounts):
    """One line of the breakdown: its share of the window's bounces and its hard rate."""

    share: float = 0.0
    hard_rate: float = 0.0


@dataclass(frozen=True, slots=True)
class WaitingText:
    id: int
    text: str
    in_window: int
    occurrences: int
    last_seen: str | None
    current: str


@dataclass(frozen=True, slots=True)
class DomainCheck:
    """Invalid-domain bounces of the window by what the DNS says of their domain."""

    status: str
    domains: int
    bounces: int
    examples: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Report:
    since: datetime
    until: datetime
    by: GroupBy
    totals: Totals
    groups: tuple[Group, ...]
    waiting: tuple[WaitingText, ...]
    days: tuple[Day, ...]
    invalid_domains: tuple[DomainCheck, ...] = field(default_factory=tuple)
    #: Failures and delays whose recipient could not be read: how many, and the newest.
    unreadable_count: int = 0
    unreadable: tuple[Unreadable, ...] = field(default_factory=tuple)


# --------------------------------------------------------------------------- building


Resolve = Callable[[list[str]], dict[str, DomainEvidence]]


def _providers(domains: list[str], resolve: Resolve | None, cached: Resolve,
               limit: int) -> dict[str, str]:
    """Provider label per domain: looked up for the first ``limit`` domains (they come
    most bounced first), cached answers only for the rest."""
    found: dict[str, DomainEvidence] = {}
    if resolve is not None and limit > 0:
        found.update(resolve(domains[:limit]))
    found.update(cached([d for d in domains if d not in found]))
    return {d: found[d].provider if d in found else NOT_LOOKED_UP for d in domains}


def _groups(rows: list[GroupCounts], total: int, by: GroupBy) -> tuple[Group, ...]:
    groups = [
        Group(row.key, row.bounces, row.addresses, row.hard, row.soft, row.ignored,
              row.undefined, share=row.bounces / total if total else 0.0,
              hard_rate=row.hard / row.bounces if row.bounces else 0.0)
        for row in rows
    ]
    if by is GroupBy.DAY:
        groups.sort(key=lambda g: g.key)
    else:
        groups.sort(key=lambda g: (-g.bounces, g.key))
    return tuple(groups)


def _merge_by_provider(rows: list[GroupCounts], providers: dict[str, str]) -> list[GroupCounts]:
    merged: dict[str, list[int]] = {}
    for row in rows:
        slot = merged.setdefault(providers.get(row.key, NOT_LOOKED_UP), [0] * 6)
        counts = (row.bounces, row.addresses, row.hard, row.soft, row.ignored, row.undefined)
        for index, value in enumerate(counts):
            slot[index] += value  # addresses add up: one address has one domain
    return [GroupCounts(key, *values) for key, values in merged.items()]


def _waiting(store: Store, since: datetime, until: datetime, limit: int
             ) -> tuple[WaitingText, ...]:
    return tuple(
        WaitingText(row.id, row.text, row.in_window, row.occurrences, row.last_seen,
                    f"{row.failure_type}/{Reason(row.reason_code).label} by {row.qualified_by}"
                    if row.failure_type and row.reason_code is not None else "-")
        for row in store.reports.waiting(since, until, limit)
    )


def _invalid_domains(store: Store, since: datetime, until: datetime,
                     resolve: Resolve | None, cached: Resolve, limit: int
                     ) -> tuple[DomainCheck, ...]:
    """Invalid-domain bounces by DNS status: the evidence recorded on the bounce when
    there is a definite one, else the domain's cached or fresh DNS answer."""
    rows = store.reports.invalid_domains(since, until)
    # a recorded "unknown" (DNS was down then) is asked again: it may be known by now
    unchecked = list(dict.fromkeys(
        domain for domain, status, _ in rows if status in (None, DnsStatus.UNKNOWN.value)))
    looked: dict[str, DomainEvidence] = {}
    if resolve is not None and limit > 0:
        looked.update(resolve(unchecked[:limit]))
    looked.update(cached([d for d in unchecked if d not in looked]))
    domains: dict[str, set[str]] = {}
    counts: Counter[str] = Counter()
    for domain, status, n in rows:
        if status in (None, DnsStatus.UNKNOWN.value) and domain in looked:
            label = looked[domain].status.value
        else:
            label = status or "not checked"
        domains.setdefault(label, set()).add(domain)
        counts[label] += n
    order = [s.value for s in DnsStatus] + ["not checked"]
    return tuple(
        DomainCheck(label, len(domains[label]), counts[label],
                    tuple(sorted(domains[label])[:3]))
        for label in sorted(domains, key=order.index)
    )


def build_report(
    store: Store,
    *,
    since: datetime,
    until: datetime,
    by: GroupBy = GroupBy.TYPE,
    dns: DnsCache | None = None,
    dns_limit: int = DEFAULT_DNS_LIMIT,
    top: int = 10,
) -> Report:
    """The report for ``[since, until)``. ``dns`` (optional) answers provider and
    domain questions; without it, only answers already in ``dns_cache`` are used
    (expired ones included: better an old answer than none)."""
    totals = store.reports.totals(since, until)
    resolve: Resolve | None = dns.resolve_many if dns is not None else None
    if dns is not None:
        def cached(domains: list[str]) -> dict[str, DomainEvidence]:
            return {d: e for d in domains if (e := dns.cached(d)) is not None}
    else:
        cached = store.dns_cache.known
    if by is GroupBy.PROVIDER:
        rows = sorted(store.reports.groups("domain", since, until), key=lambda r: -r.bounces)
        providers = _providers([row.key for row in rows], resolve, cached, dns_limit)
        rows = _merge_by_provider(rows, providers)
    else:
        rows = store.reports.groups(by.value, since, until)
    unreadable_count, unreadable = store.reports.unreadable(since, until, top)
    return Report(
        since=since, until=until, by=by, totals=totals,
        groups=_groups(rows, totals.bounces, by),
        waiting=_waiting(store, since, until, top),
        days=tuple(store.reports.days(since, until)),
        invalid_domains=_invalid_domains(store, since, until, resolve, cached, dns_limit),
        unreadable_count=unreadable_count,
        unreadable=tuple(unreadable),
    )


# --------------------------------------------------------------------------- rendering


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def to_json(report: Report) -> str:
    """The report as one JSON document (times as ISO-8601 strings)."""
    data: dict[str, Any] = asdict(report)
    data["since"], data["until"] = format_time(report.since), format_time(report.until)
    data["by"] = report.by.value
    data["totals"]["rates"] = {t: round(rate(report.totals, t), 4)
                               for t in ("hard", "soft", "ignored", "undefined")}
    return json.dumps(data, ensure_ascii=False, indent=2)


def render_text(report: Report, width: int | None = None) -> str:
    """The report as plain-text tables; ``width`` (a terminal's) truncates long texts."""
    t = report.totals
    out = [f"bounced report {format_time(report.since)} .. {format_time(report.until)}", ""]
    out.append(render_table(
        ("bounces", "addresses", "messages", "hard", "soft", "ignored", "undefined",
         "quarantined", "denylisted", "released"),
        [(str(t.bounces), str(t.addresses), str(t.messages),
          f"{t.by_type.get('hard', 0)} ({_pct(rate(t, 'hard'))})",
          f"{t.by_type.get('soft', 0)} ({_pct(rate(t, 'soft'))})",
          str(t.by_type.get("ignored", 0)), str(t.by_type.get("undefined", 0)),
          str(t.quarantined), str(t.denylisted), str(t.released))]))
    if t.by_kind:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(t.by_kind.items()))
        out.append(f"by kind: {kinds}")
    if t.by_channel:
        channels = ", ".join(f"{channel} {n}" for channel, n in sorted(t.by_channel.items()))
        out.append(f"by channel: {channels}")
    out += ["", f"By {report.by.value}"]
    out.append(render_table(
        (report.by.value, "bounces", "share", "addresses", "hard", "soft", "ignored",
         "undefined", "hard rate"),
        [(g.key, str(g.bounces), _pct(g.share), str(g.addresses), str(g.hard), str(g.soft),
          str(g.ignored), str(g.undefined), _pct(g.hard_rate)) for g in report.groups]))
    out += ["", "Top texts waiting for qualification (bounced rules queue)"]
    if report.waiting:
        limit = max((width or 10_000) - 60, 30)
        out.append(render_table(
            ("id", "in window", "total", "now", "text"),
            [(str(w.id), str(w.in_window), str(w.occurrences), w.current,
              w.text if len(w.text) <= limit else w.text[: limit - 3] + "...")
             for w in report.waiting]))
    else:
        out.append("none")
    out += ["", "Quarantines per day"]
    out.append(render_table(
        ("day", "quarantined", "denylisted", "released"),
        [(d.day, str(d.quarantined), str(d.denylisted), str(d.released))
         for d in report.days]) if report.days else "none")
    out += ["", "Invalid domain bounces by DNS evidence"]
    out.append(render_table(
        ("dns", "domains", "bounces", "examples"),
        [(c.status, str(c.domains), str(c.bounces), ", ".join(c.examples))
         for c in report.invalid_domains]) if report.invalid_domains else "none")
    out += ["", f"Bounces with no readable recipient: {report.unreadable_count} (a layout "
            "the parser does not read; the raw message: GET /v1/messages/ID/raw or "
            "SELECT raw FROM messages WHERE id = ID)"]
    if report.unreadable:
        out.append(render_table(
            ("message", "received", "from", "kind"),
            [(str(u.message_id), u.received_at or "-", u.mail_from or "<>", u.kind)
             for u in report.unreadable]))
    return "\n".join(out) + "\n"
