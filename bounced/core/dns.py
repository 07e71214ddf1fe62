"""What the DNS says about a recipient domain, decided from query outcomes (pure).

Why it matters: an ``Invalid domain`` verdict comes from the remote MTA's words ("Host
or domain name not found"), which are sometimes a transient resolver failure on *its*
side. The DNS says whether the domain really does not exist (NXDOMAIN), exists but
refuses all mail (RFC 7505 null MX ``MX 0 .``), or is fine (it has an MX, or an address
record that serves as implicit MX, RFC 5321 section 5.1). The same MX look-up says who
hosts a domain's mail (Google, Microsoft, Yahoo, ...), which is how reports group by
provider: deliverability problems are usually per provider.

Everything here works on plain outcomes; :mod:`bounced.ops.dns` asks the network
(dnspython) and keeps answers in the ``dns_cache`` table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from bounced.core.times import format_time


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


def lookup(domain: str, query: Query, at: datetime, *, budget: float,
           monotonic: Callable[[], float]) -> DomainEvidence:
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
