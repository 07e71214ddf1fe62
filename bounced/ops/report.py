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
import sqlite3
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any

from bounced.core.tables import render_table
from bounced.core.times import format_time, parse_time
from bounced.model import Reason
from bounced.ops.dns import DnsCache, DnsStatus, DomainEvidence

#: How many domains a report may look up in DNS (the most bounced first); the others
#: use cached answers only, so a report never waits on thousands of look-ups.
DEFAULT_DNS_LIMIT = 200
NOT_LOOKED_UP = "(not looked up)"
_DOMAIN = "lower(substr(b.recipient, instr(b.recipient, '@') + 1))"


class GroupBy(StrEnum):
    TYPE = "type"
    REASON = "reason"
    DOMAIN = "domain"
    PROVIDER = "provider"
    DAY = "day"


@dataclass(frozen=True, slots=True)
class Totals:
    """The window at a glance. ``bounces`` counts recipient verdicts (rows of
    ``bounces``), ``messages`` the received messages they came from."""

    bounces: int
    addresses: int
    messages: int
    by_kind: dict[str, int]
    by_type: dict[str, int]
    quarantined: int
    denylisted: int
    released: int

    def rate(self, failure_type: str) -> float:
        return self.by_type.get(failure_type, 0) / self.bounces if self.bounces else 0.0


@dataclass(frozen=True, slots=True)
class Group:
    """One line of the breakdown: its share of the window's bounces and its hard rate."""

    key: str
    bounces: int
    addresses: int
    hard: int
    soft: int
    ignored: int
    undefined: int
    share: float
    hard_rate: float


@dataclass(frozen=True, slots=True)
class WaitingText:
    id: int
    text: str
    in_window: int
    occurrences: int
    last_seen: str | None
    current: str


@dataclass(frozen=True, slots=True)
class Day:
    day: str
    quarantined: int
    denylisted: int
    released: int


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


# --------------------------------------------------------------------------- building


def _totals(conn: sqlite3.Connection, since: str, until: str) -> Totals:
    row = conn.execute(
        "SELECT count(*), count(DISTINCT recipient), count(DISTINCT message_id) "
        "FROM bounces WHERE at >= ? AND at < ?", (since, until)).fetchone()
    kinds = dict(conn.execute(
        "SELECT kind, count(*) FROM bounces WHERE at >= ? AND at < ? GROUP BY kind",
        (since, until)).fetchall())
    types = dict(conn.execute(
        "SELECT failure_type, count(*) FROM bounces WHERE at >= ? AND at < ? "
        "AND failure_type IS NOT NULL GROUP BY failure_type", (since, until)).fetchall())
    events = conn.execute(
        "SELECT coalesce(sum(new_state = 'quarantine'), 0), "
        "coalesce(sum(new_state = 'denylisted'), 0), "
        "coalesce(sum(old_state = 'quarantine' AND new_state <> 'quarantine'), 0) "
        "FROM address_events WHERE at >= ? AND at < ?", (since, until)).fetchone()
    return Totals(int(row[0]), int(row[1]), int(row[2]), kinds, types,
                  int(events[0]), int(events[1]), int(events[2]))


def _key_sql(by: GroupBy) -> str:
    if by is GroupBy.TYPE:
        return "coalesce(b.failure_type, '(' || b.kind || ')')"
    if by is GroupBy.REASON:
        return "coalesce(r.label, '(' || b.kind || ')')"
    if by is GroupBy.DAY:
        return "substr(b.at, 1, 10)"
    return _DOMAIN


def _group_rows(conn: sqlite3.Connection, by: GroupBy, since: str, until: str
                ) -> list[tuple[str, int, int, int, int, int, int]]:
    key = _key_sql(by)
    return [
        (str(r[0]), *map(int, r[1:]))  # type: ignore[misc]
        for r in conn.execute(
            f"SELECT {key} AS key, count(*), count(DISTINCT b.recipient), "
            "coalesce(sum(b.failure_type = 'hard'), 0), coalesce(sum(b.failure_type = 'soft'), 0), "
            "coalesce(sum(b.failure_type = 'ignored'), 0), "
            "coalesce(sum(b.failure_type = 'undefined'), 0) "
            "FROM bounces b LEFT JOIN reasons r ON r.code = b.reason_code "
            "WHERE b.at >= ? AND b.at < ? GROUP BY key", (since, until)).fetchall()
    ]


Resolve = Callable[[list[str]], dict[str, DomainEvidence]]


def _providers(domains: list[str], resolve: Resolve | None, cached: Resolve | None,
               limit: int) -> dict[str, str]:
    """Provider label per domain: looked up for the first ``limit`` domains (they come
    most bounced first), cached answers only for the rest."""
    found: dict[str, DomainEvidence] = {}
    if resolve is not None and limit > 0:
        found.update(resolve(domains[:limit]))
    if cached is not None:
        found.update({k: v for k, v in cached(
            [d for d in domains if d not in found]).items()})
    return {d: found[d].provider if d in found else NOT_LOOKED_UP for d in domains}


def _groups(rows: list[tuple[str, int, int, int, int, int, int]], total: int,
            by: GroupBy) -> tuple[Group, ...]:
    groups = [
        Group(key, n, addresses, hard, soft, ignored, undefined,
              n / total if total else 0.0, hard / n if n else 0.0)
        for key, n, addresses, hard, soft, ignored, undefined in rows
    ]
    if by is GroupBy.DAY:
        groups.sort(key=lambda g: g.key)
    else:
        groups.sort(key=lambda g: (-g.bounces, g.key))
    return tuple(groups)


def _merge_by_provider(rows: list[tuple[str, int, int, int, int, int, int]],
                       providers: dict[str, str]) -> list[tuple[str, int, int, int, int, int, int]]:
    merged: dict[str, list[int]] = {}
    for domain, *counts in rows:
        slot = merged.setdefault(providers.get(domain, NOT_LOOKED_UP), [0] * 6)
        for index, value in enumerate(counts):
            slot[index] += value  # addresses add up: one address has one domain
    return [(key, *values) for key, values in merged.items()]  # type: ignore[misc]


def _waiting(conn: sqlite3.Connection, since: str, until: str, limit: int
             ) -> tuple[WaitingText, ...]:
    rows = conn.execute(
        "SELECT q.id, q.text, w.n, q.occurrences, q.last_seen, q.failure_type, "
        "q.reason_code, q.qualified_by FROM (SELECT qualification_id AS id, count(*) AS n "
        "FROM bounces WHERE at >= ? AND at < ? AND qualification_id IS NOT NULL "
        "GROUP BY qualification_id) w JOIN qualification q ON q.id = w.id "
        "WHERE q.status = 'to_qualify' ORDER BY w.n DESC, q.occurrences DESC, q.id LIMIT ?",
        (since, until, limit)).fetchall()
    return tuple(
        WaitingText(int(r[0]), r[1], int(r[2]), int(r[3]), r[4],
                    f"{r[5]}/{Reason(r[6]).label} by {r[7]}" if r[5] and r[6] is not None
                    else "-")
        for r in rows
    )


def _days(conn: sqlite3.Connection, since: str, until: str) -> tuple[Day, ...]:
    rows = conn.execute(
        "SELECT substr(at, 1, 10) AS day, coalesce(sum(new_state = 'quarantine'), 0), "
        "coalesce(sum(new_state = 'denylisted'), 0), "
        "coalesce(sum(old_state = 'quarantine' AND new_state <> 'quarantine'), 0) "
        "FROM address_events WHERE at >= ? AND at < ? GROUP BY day ORDER BY day",
        (since, until)).fetchall()
    return tuple(Day(r[0], int(r[1]), int(r[2]), int(r[3])) for r in rows)


def _invalid_domains(conn: sqlite3.Connection, since: str, until: str,
                     resolve: Resolve | None, cached: Resolve | None, limit: int
                     ) -> tuple[DomainCheck, ...]:
    """Invalid-domain bounces by DNS status: the evidence recorded on the bounce when
    there is a definite one, else the domain's cached or fresh DNS answer."""
    rows = conn.execute(
        f"SELECT {_DOMAIN} AS domain, b.dns_status, count(*) FROM bounces b "
        "WHERE b.at >= ? AND b.at < ? AND b.reason_code = ? GROUP BY domain, b.dns_status "
        "ORDER BY count(*) DESC",
        (since, until, int(Reason.INVALID_DOMAIN))).fetchall()
    # a recorded "unknown" (DNS was down then) is asked again: it may be known by now
    unchecked = list(dict.fromkeys(
        domain for domain, status, _ in rows if status in (None, DnsStatus.UNKNOWN.value)))
    looked: dict[str, DomainEvidence] = {}
    if resolve is not None and limit > 0:
        looked.update(resolve(unchecked[:limit]))
    if cached is not None:
        looked.update(cached([d for d in unchecked if d not in looked]))
    domains: dict[str, set[str]] = {}
    counts: Counter[str] = Counter()
    for domain, status, n in rows:
        if status in (None, DnsStatus.UNKNOWN.value) and domain in looked:
            label = looked[domain].status.value
        else:
            label = status or "not checked"
        domains.setdefault(label, set()).add(domain)
        counts[label] += int(n)
    order = [s.value for s in DnsStatus] + ["not checked"]
    return tuple(
        DomainCheck(label, len(domains[label]), counts[label],
                    tuple(sorted(domains[label])[:3]))
        for label in sorted(domains, key=order.index)
    )


def build_report(
    conn: sqlite3.Connection,
    *,
    since: datetime,
    until: datetime,
    by: GroupBy = GroupBy.TYPE,
    dns: DnsCache | None = None,
    dns_limit: int = DEFAULT_DNS_LIMIT,
    top: int = 10,
) -> Report:
    """The report for ``[since, until)``. ``dns`` (optional) answers provider and
    domain questions; without it, only answers already in ``dns_cache`` are used."""
    start, end = format_time(since), format_time(until)
    totals = _totals(conn, start, end)
    resolve: Resolve | None = dns.resolve_many if dns is not None else None
    cached: Resolve | None = None
    if dns is not None:
        def cached(domains: list[str]) -> dict[str, DomainEvidence]:
            return {d: e for d in domains if (e := dns.cached(d)) is not None}
    else:
        cached = _cache_reader(conn)
    rows = _group_rows(conn, by, start, end)
    if by is GroupBy.PROVIDER:
        rows.sort(key=lambda row: -row[1])
        providers = _providers([row[0] for row in rows], resolve, cached, dns_limit)
        rows = _merge_by_provider(rows, providers)
    return Report(
        since=since, until=until, by=by, totals=totals,
        groups=_groups(rows, totals.bounces, by),
        waiting=_waiting(conn, start, end, top),
        days=_days(conn, start, end),
        invalid_domains=_invalid_domains(conn, start, end, resolve, cached, dns_limit),
    )


def _cache_reader(conn: sqlite3.Connection) -> Resolve:
    """Read-only access to ``dns_cache`` (expired answers included: better an old
    answer than none when DNS is not to be used)."""
    def read(domains: list[str]) -> dict[str, DomainEvidence]:
        found: dict[str, DomainEvidence] = {}
        for domain in domains:
            row = conn.execute(
                "SELECT status, mx, detail, checked_at FROM dns_cache WHERE domain = ?",
                (domain,)).fetchone()
            if row is not None:
                found[domain] = DomainEvidence(
                    domain, DnsStatus(row[0]), tuple(row[1].split()), row[2],
                    parse_time(row[3]) or datetime.min)
        return found
    return read


# --------------------------------------------------------------------------- rendering


def _pct(value: float) -> str:
    return f"{100 * value:.1f}%"


def to_json(report: Report) -> str:
    """The report as one JSON document (times as ISO-8601 strings)."""
    data: dict[str, Any] = asdict(report)
    data["since"], data["until"] = format_time(report.since), format_time(report.until)
    data["by"] = report.by.value
    data["totals"]["rates"] = {t: round(report.totals.rate(t), 4)
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
          f"{t.by_type.get('hard', 0)} ({_pct(t.rate('hard'))})",
          f"{t.by_type.get('soft', 0)} ({_pct(t.rate('soft'))})",
          str(t.by_type.get("ignored", 0)), str(t.by_type.get("undefined", 0)),
          str(t.quarantined), str(t.denylisted), str(t.released))]))
    if t.by_kind:
        kinds = ", ".join(f"{kind} {n}" for kind, n in sorted(t.by_kind.items()))
        out.append(f"by kind: {kinds}")
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
    return "\n".join(out) + "\n"
