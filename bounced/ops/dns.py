"""DNS evidence for recipient domains, and mail-provider classification (dnspython).

Why: an ``Invalid domain`` verdict comes from the remote MTA's words ("Host or domain
name not found"), which are sometimes a transient resolver failure on *its* side. The
DNS says whether the domain really does not exist (NXDOMAIN), exists but refuses all
mail (RFC 7505 null MX ``MX 0 .``), or is fine (it has an MX, or an address record that
serves as implicit MX, RFC 5321 §5.1). That fact is recorded on the bounce so an
operator can tell a dead domain from a hiccup, and the report counts dead domains. The
same MX look-up says who hosts a domain's mail (Google, Microsoft, Yahoo, ...), which is
how the report groups by provider: deliverability problems are usually per provider.

Structure (pure core, I/O at the edge):

- :func:`evidence_from` turns query outcomes (:class:`Outcome`) into evidence: pure;
- :func:`provider_of` names the provider of a list of MX hosts: pure;
- :class:`DnsPythonQuery` is the only code that talks to the network (dnspython with a
  total time budget per domain, any exception becoming an ``error`` outcome);
- :func:`lookup` chains MX -> A -> AAAA through any query function (tests use a real DNS
  server on loopback); :class:`DnsCache` keeps answers in the ``dns_cache`` table;
- :func:`record_dns_evidence` is the pipeline hook: after a batch is committed, it looks
  up the domains of its ``Invalid domain`` bounces (outside any transaction, so DNS can
  never hold the database's write lock) and writes the evidence on those rows.

DNS never blocks processing: timeouts, SERVFAIL and missing resolvers all become the
status ``unknown``, which is cached only briefly (``dns.failure_ttl``).
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any, Protocol

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from bounced.config import DnsConfig
from bounced.core.addresses import domain_of
from bounced.core.times import format_time, parse_time
from bounced.model import Reason


class DnsStatus(StrEnum):
    """What the DNS says about a domain as a mail destination."""

    MX = "mx"  #: has MX records: accepts mail
    NO_MX = "no_mx"  #: no MX but an A/AAAA record, the implicit MX (RFC 5321 §5.1)
    NULL_MX = "null_mx"  #: ``MX 0 .``: declares it accepts no mail (RFC 7505)
    NO_MAIL = "no_mail"  #: exists, but no MX and no address record: mail cannot go there
    NXDOMAIN = "nxdomain"  #: the domain does not exist at all
    UNKNOWN = "unknown"  #: no answer (timeout, SERVFAIL, no resolver): nothing learned

    @property
    def definite(self) -> bool:
        return self is not DnsStatus.UNKNOWN

    @property
    def accepts_mail(self) -> bool:
        return self in (DnsStatus.MX, DnsStatus.NO_MX)


class OutcomeKind(StrEnum):
    ANSWER = "answer"  #: records of the type asked
    NODATA = "nodata"  #: the name exists, no record of that type
    NXDOMAIN = "nxdomain"  #: the name does not exist
    ERROR = "error"  #: timeout, SERVFAIL, refused, no nameserver...


@dataclass(frozen=True, slots=True)
class Outcome:
    """The result of one DNS query, as plain data. ``records`` are presentation
    strings: ``"10 mx.example.org."`` for MX, addresses for A/AAAA."""

    kind: OutcomeKind
    records: tuple[str, ...] = ()
    error: str = ""


#: ``query(domain, rdtype, seconds_left) -> Outcome``; must not raise.
Query = Callable[[str, str, float], Outcome]


@dataclass(frozen=True, slots=True)
class DomainEvidence:
    """What the DNS said about a domain, and when."""

    domain: str
    status: DnsStatus
    mx: tuple[str, ...]
    detail: str
    checked_at: datetime

    @property
    def provider(self) -> str:
        return provider_for(self.status, self.mx)

    @property
    def summary(self) -> str:
        """The text recorded in ``bounces.dns_detail``."""
        return f"{self.detail} (checked {format_time(self.checked_at)})"


# --------------------------------------------------------------------------- pure core


def _mx_pairs(records: Iterable[str]) -> list[tuple[int, str]]:
    pairs = []
    for record in records:
        preference, _, host = record.strip().partition(" ")
        try:
            pairs.append((int(preference), host.strip().rstrip(".").lower()))
        except ValueError:
            continue
    return sorted(pairs)


def evidence_from(
    domain: str,
    mx: Outcome,
    a: Outcome | None,
    aaaa: Outcome | None,
    at: datetime,
) -> DomainEvidence:
    """Decide a domain's :class:`DnsStatus` from its MX, A and AAAA query outcomes.

    ``a``/``aaaa`` are only needed when MX gave no usable answer (``None`` = not asked).
    Order: NXDOMAIN on any query is final; an MX answer is a null MX when its only
    record is ``0 .`` (RFC 7505 §3), else mail goes to the MX hosts; without MX, an
    address record is the implicit MX; an error anywhere leaves the answer unknown,
    since "no record" must not be concluded from a query that did not finish.
    """
    outcomes = [o for o in (mx, a, aaaa) if o is not None]
    if any(o.kind is OutcomeKind.NXDOMAIN for o in outcomes):
        return DomainEvidence(domain, DnsStatus.NXDOMAIN, (), "NXDOMAIN: no such domain", at)
    if mx.kind is OutcomeKind.ANSWER:
        pairs = _mx_pairs(mx.records)
        if pairs and all(host in ("", ".") for _, host in pairs):
            return DomainEvidence(domain, DnsStatus.NULL_MX, (), "MX 0 . (RFC 7505 null MX)", at)
        hosts = tuple(host for _, host in pairs if host not in ("", "."))
        if hosts:
            listed = ", ".join(f"{pref} {host}" for pref, host in pairs if host)
            return DomainEvidence(domain, DnsStatus.MX, hosts, f"MX {listed}", at)
    if mx.kind is OutcomeKind.ERROR:
        return DomainEvidence(domain, DnsStatus.UNKNOWN, (), f"MX query failed: {mx.error}", at)
    addresses = [o for o in (a, aaaa) if o is not None]
    found = [record for o in addresses if o.kind is OutcomeKind.ANSWER for record in o.records]
    if found:
        return DomainEvidence(
            domain, DnsStatus.NO_MX, (), f"no MX, address {', '.join(found[:3])}", at
        )
    failed = [o for o in addresses if o.kind is OutcomeKind.ERROR]
    if failed or not addresses:
        why = failed[0].error if failed else "address records not asked"
        return DomainEvidence(domain, DnsStatus.UNKNOWN, (), f"no MX; {why}", at)
    return DomainEvidence(domain, DnsStatus.NO_MAIL, (), "no MX, no A/AAAA record", at)


#: MX host suffix -> provider. Checked in order; the first suffix that ends a host wins.
PROVIDERS: tuple[tuple[str, str], ...] = (
    ("google.com", "Google"),
    ("googlemail.com", "Google"),
    ("outlook.com", "Microsoft"),
    ("hotmail.com", "Microsoft"),
    ("outlook.cn", "Microsoft"),
    ("yahoodns.net", "Yahoo"),
    ("yahoo.com", "Yahoo"),
    ("icloud.com", "Apple"),
    ("me.com", "Apple"),
    ("protonmail.ch", "Proton"),
    ("proton.me", "Proton"),
    ("yandex.net", "Yandex"),
    ("yandex.ru", "Yandex"),
    ("mail.ru", "Mail.ru"),
    ("gmx.net", "GMX/Web.de"),
    ("web.de", "GMX/Web.de"),
    ("kundenserver.de", "IONOS"),
    ("ionos.com", "IONOS"),
    ("zoho.com", "Zoho"),
    ("zoho.eu", "Zoho"),
    ("messagingengine.com", "Fastmail"),
    ("orange.fr", "Orange"),
    ("free.fr", "Free"),
    ("comcast.net", "Comcast"),
    ("mimecast.com", "Mimecast"),
    ("pphosted.com", "Proofpoint"),
    ("ppe-hosted.com", "Proofpoint"),
    ("iphmx.com", "Cisco"),
    ("barracudanetworks.com", "Barracuda"),
)
OTHER = "other"


def provider_of(mx_hosts: Sequence[str]) -> str:
    """The provider hosting mail for these MX hosts (the most preferred one that is
    recognised), or ``"other"``."""
    for host in mx_hosts:
        name = host.lower().rstrip(".")
        for suffix, provider in PROVIDERS:
            if name == suffix or name.endswith("." + suffix):
                return provider
    return OTHER


def provider_for(status: DnsStatus, mx_hosts: Sequence[str]) -> str:
    """The report's provider label: a provider name, ``other``, or why there is none."""
    if status is DnsStatus.MX:
        return provider_of(mx_hosts)
    return {
        DnsStatus.NO_MX: OTHER,
        DnsStatus.NULL_MX: "(no mail: null MX)",
        DnsStatus.NO_MAIL: "(no mail: no MX/A)",
        DnsStatus.NXDOMAIN: "(no such domain)",
        DnsStatus.UNKNOWN: "(DNS unknown)",
    }[status]


def evidence_needed(reason: Reason | None) -> bool:
    """Which verdicts get DNS evidence: ``Invalid domain`` ones (issue 4, item 9)."""
    return reason is Reason.INVALID_DOMAIN


# --------------------------------------------------------------------------- the edge


def lookup(domain: str, query: Query, at: datetime, *, budget: float = 2.0,
           monotonic: Callable[[], float] = time.monotonic) -> DomainEvidence:
    """MX, then (only without a usable MX) A and AAAA, within ``budget`` seconds."""
    start = monotonic()

    def left() -> float:
        return max(budget - (monotonic() - start), 0.0)

    mx = query(domain, "MX", left())
    if mx.kind in (OutcomeKind.NXDOMAIN, OutcomeKind.ERROR) or (
            mx.kind is OutcomeKind.ANSWER and _mx_pairs(mx.records)):
        return evidence_from(domain, mx, None, None, at)
    a = query(domain, "A", left()) if left() > 0 else Outcome(OutcomeKind.ERROR, (), "timeout")
    if a.kind is OutcomeKind.ANSWER or a.kind is OutcomeKind.NXDOMAIN:
        return evidence_from(domain, mx, a, None, at)
    aaaa = query(domain, "AAAA", left()) if left() > 0 else Outcome(
        OutcomeKind.ERROR, (), "timeout")
    return evidence_from(domain, mx, a, aaaa, at)


def parse_nameserver(text: str) -> tuple[str, int]:
    """``"IP"``, ``"IP:PORT"`` or ``"[IPv6]:PORT"`` -> ``(ip, port)``."""
    value = text.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        return host, int(rest.lstrip(":") or 53)
    if value.count(":") == 1:
        host, _, port = value.partition(":")
        return host, int(port)
    return value, 53


class DnsPythonQuery:
    """A :data:`Query` over dnspython's stub resolver (the network edge).

    ``nameservers`` empty means the system's configuration. Every exception is turned
    into an outcome: a look-up can fail, processing must not.
    """

    def __init__(self, nameservers: Sequence[str] = (), timeout: float = 2.0) -> None:
        if nameservers:
            resolver = dns.resolver.Resolver(configure=False)
            resolver.nameservers = [
                dns.nameserver.Do53Nameserver(host, port)
                for host, port in map(parse_nameserver, nameservers)
            ]
        else:
            try:
                resolver = dns.resolver.Resolver()
            except Exception:  # no /etc/resolv.conf: every answer will be unknown
                resolver = dns.resolver.Resolver(configure=False)
        resolver.timeout = min(timeout, 1.0)
        resolver.lifetime = timeout
        self.resolver = resolver

    def __call__(self, domain: str, rdtype: str, seconds_left: float) -> Outcome:
        if seconds_left <= 0:
            return Outcome(OutcomeKind.ERROR, (), "timeout")
        if not self.resolver.nameservers:
            return Outcome(OutcomeKind.ERROR, (), "no nameserver configured")
        try:
            name = dns.name.from_text(domain)
            answer = self.resolver.resolve(
                name, dns.rdatatype.from_text(rdtype), search=False, lifetime=seconds_left
            )
        except dns.resolver.NXDOMAIN:
            return Outcome(OutcomeKind.NXDOMAIN)
        except dns.resolver.NoAnswer:
            return Outcome(OutcomeKind.NODATA)
        except dns.exception.Timeout:
            return Outcome(OutcomeKind.ERROR, (), f"timeout after {seconds_left:.1f}s")
        except dns.resolver.NoNameservers as error:
            return Outcome(OutcomeKind.ERROR, (), f"no usable answer ({_short(error)})")
        except Exception as error:  # a broken name, a socket error, ...
            return Outcome(OutcomeKind.ERROR, (), f"{type(error).__name__}: {_short(error)}")
        return Outcome(OutcomeKind.ANSWER, tuple(record.to_text() for record in answer))


def _short(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0][:120] if text else type(error).__name__


# --------------------------------------------------------------------------- the cache


class Clock(Protocol):
    def __call__(self) -> datetime: ...


def utc_now() -> datetime:
    return datetime.now(UTC)


class DnsCache:
    """Domain evidence kept in the ``dns_cache`` table (migration 2 of the store).

    Definite answers are kept ``cache_ttl``, ``unknown`` ones ``failure_ttl``, so that a
    resolver outage is retried soon but does not cost a timeout per bounce meanwhile.
    """

    def __init__(self, conn: sqlite3.Connection, query: Query, config: DnsConfig,
                 clock: Clock = utc_now) -> None:
        self.conn = conn
        self.query = query
        self.config = config
        self.clock = clock

    def cached(self, domain: str) -> DomainEvidence | None:
        row = self.conn.execute(
            "SELECT status, mx, detail, checked_at, expires_at FROM dns_cache WHERE domain = ?",
            (domain,),
        ).fetchone()
        if row is None or row[4] <= format_time(self.clock()):
            return None
        return DomainEvidence(domain, DnsStatus(row[0]), tuple(row[1].split()), row[2],
                              parse_time(row[3]) or self.clock())

    def store(self, evidence: DomainEvidence) -> None:
        ttl: timedelta = (self.config.cache_ttl if evidence.status.definite
                          else self.config.failure_ttl)
        self.conn.execute(
            "INSERT INTO dns_cache (domain, status, mx, provider, detail, checked_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(domain) DO UPDATE SET "
            "status = excluded.status, mx = excluded.mx, provider = excluded.provider, "
            "detail = excluded.detail, checked_at = excluded.checked_at, "
            "expires_at = excluded.expires_at",
            (evidence.domain, evidence.status.value, " ".join(evidence.mx), evidence.provider,
             evidence.detail, format_time(evidence.checked_at),
             format_time(evidence.checked_at + ttl)),
        )

    def resolve(self, domain: str, *, write: bool = True) -> DomainEvidence:
        """The cached evidence, else a fresh look-up (stored when ``write``)."""
        found = self.cached(domain)
        if found is not None:
            return found
        evidence = lookup(domain, self.query, self.clock(),
                          budget=self.config.timeout.total_seconds())
        if write:
            self.store(evidence)
        return evidence

    def resolve_many(self, domains: Iterable[str]) -> dict[str, DomainEvidence]:
        """Evidence for each domain: look-ups first (no transaction held), then one
        short write transaction for the cache."""
        results = {domain: self.resolve(domain, write=False) for domain in dict.fromkeys(domains)}
        fresh = [e for e in results.values() if self.cached(e.domain) is None]
        if fresh:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                for evidence in fresh:
                    self.store(evidence)
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise
        return results


def cache_for(conn: sqlite3.Connection, config: DnsConfig, clock: Clock = utc_now) -> DnsCache:
    """A cache over the real network with the ``[dns]`` settings."""
    query = DnsPythonQuery(config.nameservers, config.timeout.total_seconds())
    return DnsCache(conn, query, config, clock)


# --------------------------------------------------------------------------- the hook


def record_dns_evidence(cache: DnsCache, results: Iterable[Any]) -> int:
    """Write DNS evidence on the ``Invalid domain`` bounces of processed results.

    ``results`` are :class:`bounced.ops.processing.ProcessResult` (anything with
    ``recipients`` holding ``bounce_id``, ``recipient``, ``reason``). Call it after the
    batch's transaction is committed. Never raises for a DNS problem; returns how many
    bounces got evidence.
    """
    wanted: dict[int, str] = {}
    for result in results:
        for recipient in getattr(result, "recipients", ()):
            domain = domain_of(recipient.recipient or "")
            if recipient.bounce_id and domain and evidence_needed(recipient.reason):
                wanted[int(recipient.bounce_id)] = domain
    return _write_evidence(cache, wanted)


def backfill_evidence(cache: DnsCache, *, limit: int = 20) -> int:
    """Record evidence on the most recent ``Invalid domain`` bounces that have none yet.

    This is how the daemon gets evidence without slowing processing: its worker calls
    it from a thread of its own, ``limit`` bounces at a time, so a DNS outage (2 s per
    name) delays evidence, never verdicts. A partial index keeps the search cheap on a
    large table. Returns how many bounces got evidence (0: nothing left to do).
    """
    rows = cache.conn.execute(
        "SELECT id, recipient FROM bounces WHERE reason_code = ? AND dns_status IS NULL "
        "ORDER BY id DESC LIMIT ?",
        (int(Reason.INVALID_DOMAIN), limit),
    ).fetchall()
    wanted: dict[int, str] = {}
    for bounce_id, recipient in rows:
        domain = domain_of(recipient or "")
        if domain:
            wanted[int(bounce_id)] = domain
        else:  # nothing to look up: say so, or the row would be picked again forever
            cache.conn.execute(
                "UPDATE bounces SET dns_status = ?, dns_detail = ? WHERE id = ?",
                (DnsStatus.UNKNOWN.value, "no domain in the address", bounce_id),
            )
    return _write_evidence(cache, wanted) + (len(rows) - len(wanted))


def _write_evidence(cache: DnsCache, wanted: dict[int, str]) -> int:
    """Look the domains up (no transaction held), then write all rows in one short one."""
    if not wanted:
        return 0
    conn = cache.conn
    try:
        evidence = cache.resolve_many(wanted.values())
        conn.execute("BEGIN IMMEDIATE")
        for bounce_id, domain in wanted.items():
            found = evidence[domain]
            conn.execute(
                "UPDATE bounces SET dns_status = ?, dns_detail = ? WHERE id = ?",
                (found.status.value, found.summary, bounce_id),
            )
        conn.execute("COMMIT")
    except sqlite3.Error:
        # Evidence is an extra: a busy or failing database must not turn a batch that
        # is already committed into an error. The bounces simply carry no evidence.
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        return 0
    return len(wanted)
