"""The ``dns_cache`` table: what the DNS said about recipient domains, and until when.

Reports that group by mail provider, and the evidence recorded on ``Invalid domain``
bounces, would otherwise query the DNS again for every row (``bounced.ops.dns``
decides what to ask and how long an answer is trusted).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bounced.core.dns import DnsStatus, DomainEvidence
from bounced.core.times import format_time, parse_time

if TYPE_CHECKING:
    from bounced.store import Store


@dataclass(frozen=True, slots=True)
class CachedEvidence:
    """A cached answer and when it stops being trusted."""

    evidence: DomainEvidence
    expires_at: str


class DnsCacheTable:
    """One row per domain looked up."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def get(self, domain: str) -> CachedEvidence | None:
        """The cached answer for ``domain`` (expired ones too: the caller decides)."""
        row = self._store.conn.execute(
            "SELECT status, mx, detail, checked_at, expires_at FROM dns_cache WHERE domain = ?",
            (domain,),
        ).fetchone()
        if row is None:
            return None
        evidence = DomainEvidence(domain, DnsStatus(row[0]), tuple(row[1].split()), row[2],
                                  parse_time(row[3]) or datetime.min)
        return CachedEvidence(evidence, row[4])

    def put(self, evidence: DomainEvidence, expires_at: datetime) -> None:
        self._store.conn.execute(
            "INSERT INTO dns_cache (domain, status, mx, provider, detail, checked_at, "
            "expires_at) VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT(domain) DO UPDATE SET "
            "status = excluded.status, mx = excluded.mx, provider = excluded.provider, "
            "detail = excluded.detail, checked_at = excluded.checked_at, "
            "expires_at = excluded.expires_at",
            (evidence.domain, evidence.status.value, " ".join(evidence.mx), evidence.provider,
             evidence.detail, format_time(evidence.checked_at), format_time(expires_at)),
        )

    def known(self, domains: Iterable[str]) -> dict[str, DomainEvidence]:
        """The cached answers for ``domains``, expired ones included: better an old
        answer than none when the DNS is not to be asked."""
        found: dict[str, DomainEvidence] = {}
        for domain in domains:
            cached = self.get(domain)
            if cached is not None:
                found[domain] = cached.evidence
        return found
