"""DNS evidence for recipient domains: the network edge and the cache (dnspython).

- :class:`DnsPythonQuery` is the only code that talks to the network (dnspython with a
  total time budget per domain, any exception becoming an ``error`` outcome);
  :func:`bounced.core.dns.lookup` chains MX -> A -> AAAA through it (tests use a real DNS
  server on loopback) and :mod:`bounced.core.dns` decides what the outcomes mean;
- :class:`DnsCache` keeps answers in the ``dns_cache`` table;
- :func:`backfill_evidence` writes the evidence on the ``Invalid domain`` bounces,
  looking domains up outside any transaction, so DNS can never hold the database's
  write lock.

DNS never blocks processing: timeouts, SERVFAIL and missing resolvers all become the
status ``unknown``, which is cached only briefly (``dns.failure_ttl``).
"""


from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import dns.exception
import dns.name
import dns.nameserver
import dns.rdatatype
import dns.resolver

from bounced.config import DnsConfig
from bounced.core.addresses import domain_of
from bounced.core.dns import (
    DnsStatus,
    DomainEvidence,
    Outcome,
    OutcomeKind,
    Query,
    lookup,
    parse_nameserver,
)
from bounced.core.times import format_time
from bounced.model import Reason
from bounced.store import DatabaseError

if TYPE_CHECKING:
    from bounced.store import Store

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


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


class DnsCache:
    """Domain evidence kept in the ``dns_cache`` table.

    Definite answers are kept ``cache_ttl``, ``unknown`` ones ``failure_ttl``, so that a
    resolver outage is retried soon but does not cost a timeout per bounce meanwhile.
    """

    def __init__(self, store: Store, query: Query, config: DnsConfig,
                 clock: Clock = utc_now) -> None:
        self.store = store
        self.query = query
        self.config = config
        self.clock = clock

    def cached(self, domain: str) -> DomainEvidence | None:
        """The cached answer, unless it has expired."""
        found = self.store.dns_cache.get(domain)
        if found is None or found.expires_at <= format_time(self.clock()):
            return None
        return found.evidence

    def remember(self, evidence: DomainEvidence) -> None:
        ttl: timedelta = (self.config.cache_ttl if evidence.status.definite
                          else self.config.failure_ttl)
        self.store.dns_cache.put(evidence, evidence.checked_at + ttl)

    def resolve(self, domain: str, *, write: bool = True) -> DomainEvidence:
        """The cached evidence, else a fresh look-up (stored when ``write``)."""
        found = self.cached(domain)
        if found is not None:
            return found
        evidence = lookup(domain, self.query, self.clock(),
                          budget=self.config.timeout.total_seconds(), monotonic=time.monotonic)
        if write:
            with self.store.atomic():
                self.remember(evidence)
        return evidence

    def resolve_many(self, domains: Iterable[str]) -> dict[str, DomainEvidence]:
        """Evidence for each domain: look-ups first (no transaction held), then one
        short write transaction for the cache."""
        results = {domain: self.resolve(domain, write=False) for domain in dict.fromkeys(domains)}
        fresh = [e for e in results.values() if self.cached(e.domain) is None]
        if fresh:
            with self.store.atomic():
                for evidence in fresh:
                    self.remember(evidence)
        return results


def cache_for(store: Store, config: DnsConfig, clock: Clock = utc_now) -> DnsCache:
    """A cache over the real network with the ``[dns]`` settings."""
    query = DnsPythonQuery(config.nameservers, config.timeout.total_seconds())
    return DnsCache(store, query, config, clock)


# --------------------------------------------------------------------------- evidence


def backfill_evidence(cache: DnsCache, *, limit: int = 20) -> int:
    """Record evidence on the most recent ``Invalid domain`` bounces that have none yet.

    This is how the daemon gets evidence without slowing processing: a periodic job of
    its worker calls it, ``limit`` bounces at a time, so a DNS outage (2 s per name)
    delays evidence, never verdicts. Returns how many bounces got evidence (0: nothing
    left to do).
    """
    rows = cache.store.bounces.waiting_for_evidence(Reason.INVALID_DOMAIN, limit)
    wanted: dict[int, str] = {}
    nothing_to_ask: list[tuple[int, str, str]] = []
    for bounce_id, recipient in rows:
        domain = domain_of(recipient or "")
        if domain:
            wanted[bounce_id] = domain
        else:  # say so, or the row would be picked again forever
            nothing_to_ask.append(
                (bounce_id, DnsStatus.UNKNOWN.value, "no domain in the address"))
    if nothing_to_ask:
        with cache.store.atomic():
            cache.store.bounces.set_evidence(nothing_to_ask)
    return _write_evidence(cache, wanted) + len(nothing_to_ask)


def _write_evidence(cache: DnsCache, wanted: dict[int, str]) -> int:
    """Look the domains up (no transaction held), then write all rows in one short one."""
    if not wanted:
        return 0
    try:
        evidence = cache.resolve_many(wanted.values())
        with cache.store.atomic():
            cache.store.bounces.set_evidence([
                (bounce_id, evidence[domain].status.value, evidence[domain].summary)
                for bounce_id, domain in wanted.items()
            ])
    except DatabaseError:
        # Evidence is an extra: a busy or failing database must not turn a batch that
        # is already committed into an error. The bounces simply carry no evidence.
        return 0
    return len(wanted)
