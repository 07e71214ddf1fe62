"""DNS evidence against a real DNS server on loopback (see conftest.py): existing
domain, NXDOMAIN, null MX, implicit MX, no mail, SERVFAIL and a timeout; the cache in
the database; provider classification; evidence recorded on Invalid-domain bounces."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from bounced.config import Config, DnsConfig
from bounced.core.dns import (
    DnsStatus,
    DomainEvidence,
    Outcome,
    OutcomeKind,
    Query,
    evidence_from,
    lookup,
    parse_nameserver,
    provider_of,
)
from bounced.model import IncomingMessage
from bounced.ops.dns import DnsCache, DnsPythonQuery, backfill_evidence
from bounced.ops.processing import process_messages
from bounced.store import Store
from tests.paths import DATA


def look_up(domain: str, query: Query, at: datetime, *, budget: float = 2.0) -> DomainEvidence:
    """The MX -> A -> AAAA chain on the real clock, as the daemon runs it."""
    return lookup(domain, query, at, budget=budget, monotonic=time.monotonic)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
MTA_LAB = DATA / "mta-lab"


def query_for(server, timeout: float = 1.0) -> DnsPythonQuery:
    return DnsPythonQuery([server.address], timeout=timeout)


@pytest.mark.parametrize(
    ("domain", "status", "mx"),
    [
        ("exists.test", DnsStatus.MX, ("mx1.exists.test", "mx2.exists.test")),
        ("gone.test", DnsStatus.NXDOMAIN, ()),
        ("nullmx.test", DnsStatus.NULL_MX, ()),
        ("aonly.test", DnsStatus.NO_MX, ()),
        ("nomail.test", DnsStatus.NO_MAIL, ()),
        ("broken.test", DnsStatus.UNKNOWN, ()),
    ],
)
def test_a_domain_is_classified_by_its_real_dns_answers(dns_server, domain, status, mx):
    evidence = look_up(domain, query_for(dns_server), NOW, budget=2.0)
    assert (evidence.domain, evidence.status, evidence.mx) == (domain, status, mx)
    assert evidence.checked_at == NOW


def test_the_details_say_what_the_dns_answered(dns_server):
    query = query_for(dns_server)
    assert look_up("exists.test", query, NOW).detail == (
        "MX 10 mx1.exists.test, 20 mx2.exists.test")
    assert look_up("nullmx.test", query, NOW).detail == "MX 0 . (RFC 7505 null MX)"
    assert look_up("aonly.test", query, NOW).detail == "no MX, address 192.0.2.20"
    assert look_up("gone.test", query, NOW).detail == "NXDOMAIN: no such domain"


def test_a_silent_server_gives_unknown_within_the_time_budget(dns_server):
    started = time.monotonic()
    evidence = look_up("slow.test", query_for(dns_server, timeout=0.5), NOW, budget=0.5)
    elapsed = time.monotonic() - started
    assert evidence.status is DnsStatus.UNKNOWN
    assert "timeout" in evidence.detail
    assert elapsed < 1.5
    assert dns_server.queries[("slow.test.", "MX")] >= 1


def test_no_address_lookup_is_made_when_the_domain_has_mx(dns_server):
    look_up("exists.test", query_for(dns_server), NOW)
    assert dns_server.queries[("exists.test.", "MX")] == 1
    assert dns_server.queries[("exists.test.", "A")] == 0


def test_an_unreachable_resolver_is_unknown_not_an_error():
    evidence = look_up("exists.test", DnsPythonQuery(["127.0.0.1:9"], timeout=0.3), NOW,
                      budget=0.3)
    assert evidence.status is DnsStatus.UNKNOWN


@pytest.mark.parametrize(
    ("domain", "provider"),
    [("gmail-hosted.test", "Google"), ("o365-hosted.test", "Microsoft"),
     ("yahoo-hosted.test", "Yahoo"), ("exists.test", "other"),
     ("gone.test", "(no such domain)"), ("nullmx.test", "(no mail: null MX)")],
)
def test_the_provider_comes_from_the_mx_hosts(dns_server, domain, provider):
    assert look_up(domain, query_for(dns_server), NOW).provider == provider


def test_provider_suffixes_match_whole_labels_only():
    assert provider_of(["mx.notgoogle.com"]) == "other"
    assert provider_of(["aspmx.l.google.com"]) == "Google"
    assert provider_of(["mx.example.org", "backup.mimecast.com"]) == "Mimecast"


def test_an_error_on_the_address_lookup_is_not_taken_for_no_mail():
    nodata = Outcome(OutcomeKind.NODATA)
    failed = Outcome(OutcomeKind.ERROR, (), "timeout")
    assert evidence_from("x.test", nodata, nodata, failed, NOW).status is DnsStatus.UNKNOWN
    assert evidence_from("x.test", nodata, nodata, nodata, NOW).status is DnsStatus.NO_MAIL


def test_nameservers_are_written_ip_or_ip_port():
    assert parse_nameserver("127.0.0.1") == ("127.0.0.1", 53)
    assert parse_nameserver("127.0.0.1:5353") == ("127.0.0.1", 5353)
    assert parse_nameserver("[::1]:5353") == ("::1", 5353)


# --------------------------------------------------------------------------- cache


def test_answers_are_cached_in_the_database_until_they_expire(dns_server, tmp_path):
    clock = [NOW]
    config = DnsConfig(cache_ttl=timedelta(hours=1), failure_ttl=timedelta(minutes=5))
    with Store.open(tmp_path / "b.db") as store:
        cache = DnsCache(store, query_for(dns_server), config, clock=lambda: clock[0])
        cache.resolve_many(["gone.test", "exists.test"])
        cache.resolve_many(["gone.test", "exists.test"])
        assert dns_server.queries[("gone.test.", "MX")] == 1
        rows = store.conn.execute(
            "SELECT domain, status, mx, provider, checked_at, expires_at FROM dns_cache "
            "ORDER BY domain").fetchall()
        assert rows == [
            ("exists.test", "mx", "mx1.exists.test mx2.exists.test", "other",
             "2026-11-22T12:00:00Z", "2026-11-22T13:00:00Z"),
            ("gone.test", "nxdomain", "", "(no such domain)",
             "2026-11-22T12:00:00Z", "2026-11-22T13:00:00Z"),
        ]
        clock[0] = NOW + timedelta(hours=2)
        cache.resolve_many(["gone.test"])
        assert dns_server.queries[("gone.test.", "MX")] == 2


def test_an_unknown_answer_is_kept_only_briefly(dns_server, tmp_path):
    config = DnsConfig(timeout=timedelta(seconds=0.4), failure_ttl=timedelta(minutes=5))
    with Store.open(tmp_path / "b.db") as store:
        cache = DnsCache(store, query_for(dns_server, 0.4), config, clock=lambda: NOW)
        assert cache.resolve_many(["slow.test"])["slow.test"].status is DnsStatus.UNKNOWN
        assert store.conn.execute(
            "SELECT status, expires_at FROM dns_cache WHERE domain = 'slow.test'"
        ).fetchall() == [("unknown", "2026-11-22T12:05:00Z")]


# --------------------------------------------------------------------------- the hook


def _process(store: Store, *names: str) -> list:
    """Store sample mails and process them the way the daemon does."""
    ids = [stored.id for stored in store.messages.insert([
        IncomingMessage(received_at=NOW, mail_from="", rcpt_to=("bounces@bounce.test",),
                        raw=(MTA_LAB / name).read_bytes())
        for name in names])]
    return process_messages(store, ids, config=Config(), rules=store.rules.enabled())


def test_invalid_domain_bounces_get_the_evidence_recorded(dns_server, tmp_path):
    """The evidence job on a real database: only Invalid-domain bounces are looked up,
    and their rows carry the DNS status and what it said."""
    with Store.open(tmp_path / "b.db") as store:
        _process(store, "postfix-09-nodomain-failed.eml",
                 "postfix-01-user-unknown-failed.eml")
        cache = DnsCache(store, query_for(dns_server), DnsConfig(), clock=lambda: NOW)
        # nodomain.test is not served: NXDOMAIN, like the real world's unknown domain
        assert backfill_evidence(cache) == 1
        rows = store.conn.execute(
            "SELECT recipient, reason_code, dns_status, dns_detail FROM bounces ORDER BY id"
        ).fetchall()
    assert rows == [
        ("nodomain@nodomain.test", 2, "nxdomain",
         "NXDOMAIN: no such domain (checked 2026-11-22T12:00:00Z)"),
        ("unknown-user@rcpt.test", 1, None, None),
    ]
    assert dns_server.queries[("rcpt.test.", "MX")] == 0


def test_a_dns_outage_records_unknown_and_never_fails_the_hook(tmp_path):
    with Store.open(tmp_path / "b.db") as store:
        _process(store, "postfix-09-nodomain-failed.eml")
        cache = DnsCache(store, DnsPythonQuery(["127.0.0.1:9"], timeout=0.3),
                         DnsConfig(timeout=timedelta(seconds=0.3)), clock=lambda: NOW)
        assert backfill_evidence(cache) == 1
        assert store.conn.execute("SELECT dns_status FROM bounces").fetchall() == [("unknown",)]


def test_a_locked_database_leaves_the_bounces_without_evidence_instead_of_failing(
        dns_server, tmp_path):
    import sqlite3

    with Store.open(tmp_path / "b.db") as store:
        _process(store, "postfix-09-nodomain-failed.eml")
        blocker = sqlite3.connect(tmp_path / "b.db", isolation_level=None, timeout=0)
        blocker.execute("BEGIN IMMEDIATE")  # another writer holds the lock
        store.conn.execute("PRAGMA busy_timeout = 100")
        cache = DnsCache(store, query_for(dns_server), DnsConfig(), clock=lambda: NOW)
        try:
            assert backfill_evidence(cache) == 0
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert store.conn.execute("SELECT dns_status FROM bounces").fetchall() == [(None,)]
        assert not store.conn.in_transaction


def test_backfill_records_evidence_on_waiting_bounces_newest_first_within_its_limit(
        dns_server, tmp_path):

    with Store.open(tmp_path / "b.db") as store:
        _process(store, "postfix-09-nodomain-failed.eml", "postfix-01-user-unknown-failed.eml")
        store.conn.execute(
            "UPDATE bounces SET recipient = NULL, reason_code = 2 WHERE reason_code = 1")
        cache = DnsCache(store, query_for(dns_server), DnsConfig(), clock=lambda: NOW)
        assert backfill_evidence(cache, limit=1) == 1  # the newest: no address, no look-up
        assert backfill_evidence(cache, limit=1) == 1
        assert backfill_evidence(cache, limit=1) == 0  # nothing waits any more
        rows = store.conn.execute(
            "SELECT recipient, dns_status, dns_detail FROM bounces ORDER BY id").fetchall()
    assert [row[:2] for row in rows] == [("nodomain@nodomain.test", "nxdomain"),
                                         (None, "unknown")]
    assert rows[1][2] == "no domain in the address"
    assert dns_server.queries[("nodomain.test.", "MX")] == 1
