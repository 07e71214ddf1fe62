"""``bounced report`` on real databases filled by ``bounced ingest --at``: every figure
is checked against SQL on the public schema, and provider grouping runs against the
loopback DNS server of tests/dns."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bounced.config import DnsConfig
from bounced.ops.dns import DnsCache, DnsPythonQuery, backfill_evidence
from bounced.store import Store
from tests.paths import DATA

MTA_LAB = DATA / "mta-lab"
T = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def ingest_at(bounced, db):
    def run(at: datetime, *paths: Path) -> None:
        result = bounced(["ingest", "--db", str(db), "--at", iso(at), *map(str, paths)])
        assert result.status == 0, result.out + result.err

    return run


@pytest.fixture
def report(bounced, db):
    """``report(*args)`` -> the JSON report for the window ending at T."""

    def run(*args: str) -> dict:
        result = bounced(["report", "--db", str(db), "--at", iso(T), "--json", *args])
        assert result.status == 0, result.err
        return json.loads(result.out)

    return run


def test_totals_and_rates_match_the_delivery_log(ingest_at, report, sql):
    ingest_at(T - timedelta(hours=2), *sorted(MTA_LAB.glob("*.eml")))
    data = report("--since", "1d", "--no-dns")
    count, addresses, messages = sql(
        "SELECT count(*), count(DISTINCT recipient), count(DISTINCT message_id) FROM bounces")[0]
    totals = data["totals"]
    assert (totals["bounces"], totals["addresses"], totals["messages"]) == (
        count, addresses, messages)
    assert totals["by_type"] == dict(sql(
        "SELECT failure_type, count(*) FROM bounces WHERE failure_type IS NOT NULL GROUP BY 1"))
    assert totals["by_kind"] == dict(sql("SELECT kind, count(*) FROM bounces GROUP BY 1"))
    assert totals["rates"]["hard"] == round(totals["by_type"]["hard"] / count, 4)
    assert totals["quarantined"] == sql(
        "SELECT count(*) FROM address_events WHERE new_state = 'quarantine'")[0][0] > 0
    groups = {g["key"]: g for g in data["groups"]}
    assert sum(g["bounces"] for g in groups.values()) == count
    assert groups["hard"]["hard_rate"] == 1.0
    assert groups["soft"]["share"] == pytest.approx(totals["by_type"]["soft"] / count)


def test_only_the_window_is_counted(ingest_at, report, mail_file):
    ingest_at(T - timedelta(days=3), mail_file("hard-user-unknown", address="old@example.org"))
    ingest_at(T - timedelta(hours=1), mail_file("hard-user-unknown", address="new@example.org"))
    ingest_at(T + timedelta(hours=1), mail_file("hard-user-unknown", address="late@example.org"))
    day = report("--since", "1d", "--no-dns")
    assert (day["totals"]["bounces"], day["totals"]["quarantined"]) == (1, 1)
    week = report("--since", iso(T - timedelta(days=7)), "--no-dns")
    assert (week["totals"]["bounces"], week["totals"]["quarantined"]) == (2, 2)


@pytest.mark.parametrize(
    ("by", "key_sql"),
    [
        ("reason", "SELECT coalesce(r.label, '(' || b.kind || ')'), count(*) FROM bounces b "
                   "LEFT JOIN reasons r ON r.code = b.reason_code GROUP BY 1"),
        ("domain", {"sqlite": "SELECT substr(recipient, instr(recipient, '@') + 1), count(*) "
                              "FROM bounces GROUP BY 1",
                    "postgresql": "SELECT substr(recipient, strpos(recipient, '@') + 1), "
                                  "count(*) FROM bounces GROUP BY 1"}),
        ("day", {"sqlite": "SELECT substr(at, 1, 10), count(*) FROM bounces GROUP BY 1",
                 "postgresql": "SELECT to_char(at, 'YYYY-MM-DD'), count(*) FROM bounces "
                               "GROUP BY 1"}),
    ],
)
def test_breakdowns_add_up_to_the_same_rows_as_sql(ingest_at, report, sql, by, key_sql,
                                                   engine):
    if isinstance(key_sql, dict):
        key_sql = key_sql[engine]
    ingest_at(T - timedelta(hours=30), *sorted(MTA_LAB.glob("postfix-*.eml")))
    ingest_at(T - timedelta(hours=2), *sorted(MTA_LAB.glob("exim-*.eml")))
    data = report("--since", "2d", "--by", by, "--no-dns")
    assert {g["key"]: g["bounces"] for g in data["groups"]} == dict(sql(key_sql))
    if by == "day":
        assert [g["key"] for g in data["groups"]] == ["2026-11-19", "2026-11-20"]


def test_waiting_texts_are_ranked_by_their_bounces_in_the_window(
        ingest_at, report, sql, bounced, db):
    ingest_at(T - timedelta(hours=2), *sorted(MTA_LAB.glob("*.eml")))
    waiting = report("--since", "1d", "--no-dns", "--top", "50")["waiting"]
    expected = sql(
        "SELECT q.id, count(*) FROM bounces b JOIN qualification q "
        "ON q.id = b.qualification_id WHERE q.status = 'to_qualify' GROUP BY q.id "
        "ORDER BY 2 DESC, q.occurrences DESC, q.id")
    assert [(w["id"], w["in_window"]) for w in waiting] == expected
    top = waiting[0]["id"]
    bounced(["rules", "qualify", "--db", str(db), str(top), "--ignore"])
    assert top not in [w["id"] for w in report("--since", "1d", "--no-dns")["waiting"]]


def test_quarantines_are_counted_per_day(ingest_at, report, mail_file):
    for day, address in ((3, "a@example.org"), (3, "b@example.org"), (1, "c@example.org")):
        ingest_at(T - timedelta(days=day), mail_file("hard-user-unknown", address=address))
    ingest_at(T - timedelta(days=1), mail_file("arf", address="d@example.org"))
    days = report("--since", "7d", "--no-dns")["days"]
    assert days == [
        {"day": "2026-11-17", "quarantined": 2, "denylisted": 0, "released": 0},
        {"day": "2026-11-19", "quarantined": 1, "denylisted": 1, "released": 0},
    ]


def test_providers_come_from_mx_hosts_via_dns_and_are_cached(
        ingest_at, report, dsn_file, dns_server, sql):
    recipients = ["a@gmail-hosted.test", "b@gmail-hosted.test", "c@o365-hosted.test",
                  "d@yahoo-hosted.test", "e@exists.test", "f@gone.test"]
    ingest_at(T - timedelta(hours=1), *(
        dsn_file(address, "5.1.1", f"550 5.1.1 <{address}>: user unknown")
        for address in recipients))
    data = report("--since", "1d", "--by", "provider", "--dns-server", dns_server.address)
    assert {g["key"]: g["bounces"] for g in data["groups"]} == {
        "Google": 2, "Microsoft": 1, "Yahoo": 1, "other": 1, "(no such domain)": 1}
    assert sql("SELECT domain, provider FROM dns_cache ORDER BY domain") == [
        ("exists.test", "other"), ("gmail-hosted.test", "Google"), ("gone.test",
         "(no such domain)"), ("o365-hosted.test", "Microsoft"), ("yahoo-hosted.test", "Yahoo")]
    asked = sum(dns_server.queries.values())
    again = report("--since", "1d", "--by", "provider", "--dns-server", dns_server.address)
    assert again["groups"] == data["groups"]
    assert sum(dns_server.queries.values()) == asked  # answered from dns_cache


def test_without_dns_uncached_domains_are_marked_not_looked_up(ingest_at, report, dsn_file):
    ingest_at(T - timedelta(hours=1), dsn_file("a@gmail-hosted.test", "5.1.1", "550 5.1.1 x"))
    data = report("--since", "1d", "--by", "provider", "--no-dns")
    assert [(g["key"], g["bounces"]) for g in data["groups"]] == [("(not looked up)", 1)]


def test_domains_that_do_not_exist_are_counted_among_invalid_domain_bounces(
        ingest_at, report, dsn_file, dns_server):
    ingest_at(T - timedelta(hours=1),
              MTA_LAB / "postfix-09-nodomain-failed.eml",
              dsn_file("x@nullmx.test", "5.1.10", "550 5.1.10 null MX: domain accepts no mail"),
              dsn_file("y@exists.test", "5.4.4", "550 5.4.4 Host or domain name not found"),
              dsn_file("z@gone.test", "5.4.4", "550 5.4.4 Host or domain name not found"))
    checks = report("--since", "1d", "--dns-server", dns_server.address)["invalid_domains"]
    assert [(c["status"], c["domains"], c["bounces"]) for c in checks] == [
        ("mx", 1, 1), ("null_mx", 1, 1), ("nxdomain", 2, 2)]
    assert checks[2]["examples"] == ["gone.test", "nodomain.test"]


def test_evidence_recorded_on_the_bounce_is_used_without_dns(ingest_at, report, db,
                                                             dns_server):
    ingest_at(T - timedelta(hours=1), MTA_LAB / "postfix-09-nodomain-failed.eml")
    with Store.open(db) as store:
        cache = DnsCache(store, DnsPythonQuery([dns_server.address]), DnsConfig(),
                         clock=lambda: T)
        assert backfill_evidence(cache) == 1
        store.conn.execute("DELETE FROM dns_cache")
    checks = report("--since", "1d", "--no-dns")["invalid_domains"]
    assert [(c["status"], c["bounces"]) for c in checks] == [("nxdomain", 1)]


def test_text_report_has_every_section(ingest_at, bounced, db):
    ingest_at(T - timedelta(hours=1), *sorted(MTA_LAB.glob("postfix-0*.eml")))
    result = bounced(["report", "--db", str(db), "--at", iso(T), "--since", "1d",
                      "--by", "reason", "--no-dns"])
    assert result.status == 0, result.err
    for heading in ("bounced report 2026-11-19T12:00:00Z .. 2026-11-20T12:00:00Z",
                    "By reason", "Top texts waiting for qualification",
                    "Quarantines per day", "Invalid domain bounces by DNS evidence"):
        assert heading in result.out
    reason_line = next(line for line in result.out.splitlines()
                       if line.startswith("User unknown"))
    assert reason_line.split()[2:4] == ["3", "33.3%"]


def test_a_bad_window_is_a_usage_error(bounced, db):
    assert bounced(["report", "--db", str(db), "--since", "yesterday-ish"]).status == 2
    future = bounced(["report", "--db", str(db), "--at", iso(T), "--since", iso(T)])
    assert future.status == 2
    assert "is not before the window end" in future.err


def test_dns_disabled_in_the_configuration_sends_no_query(
        ingest_at, report, dsn_file, dns_server, tmp_path):
    config = tmp_path / "bounced.toml"
    config.write_text(f'[dns]\nenabled = false\nnameservers = ["{dns_server.address}"]\n',
                      encoding="utf-8")
    ingest_at(T - timedelta(hours=1), dsn_file("a@gmail-hosted.test", "5.1.1", "550 5.1.1 x"))
    data = report("--since", "1d", "--by", "provider", "--config", str(config))
    assert [g["key"] for g in data["groups"]] == ["(not looked up)"]
    assert sum(dns_server.queries.values()) == 0
    enabled = tmp_path / "enabled.toml"
    enabled.write_text(f'[dns]\nnameservers = ["{dns_server.address}"]\n', encoding="utf-8")
    data = report("--since", "1d", "--by", "provider", "--config", str(enabled))
    assert [g["key"] for g in data["groups"]] == ["Google"]


def test_a_recorded_unknown_is_asked_again(ingest_at, report, db, dns_server):
    ingest_at(T - timedelta(hours=1), MTA_LAB / "postfix-09-nodomain-failed.eml")
    with Store.open(db) as store:
        store.conn.execute("UPDATE bounces SET dns_status = 'unknown'")
    offline = report("--since", "1d", "--no-dns")["invalid_domains"]
    assert [(c["status"], c["bounces"]) for c in offline] == [("unknown", 1)]
    online = report("--since", "1d", "--dns-server", dns_server.address)["invalid_domains"]
    assert [(c["status"], c["bounces"]) for c in online] == [("nxdomain", 1)]


def test_only_the_most_bounced_domains_are_looked_up(ingest_at, report, dsn_file, dns_server):
    ingest_at(T - timedelta(hours=1),
              dsn_file("a@gmail-hosted.test", "5.1.1", "550 5.1.1 x"),
              dsn_file("b@gmail-hosted.test", "5.1.1", "550 5.1.1 x"),
              dsn_file("c@o365-hosted.test", "5.1.1", "550 5.1.1 x"))
    data = report("--since", "1d", "--by", "provider", "--dns-server", dns_server.address,
                  "--dns-limit", "1")
    assert {g["key"]: g["bounces"] for g in data["groups"]} == {
        "Google": 2, "(not looked up)": 1}
    assert dns_server.queries[("o365-hosted.test.", "MX")] == 0


def test_a_bounce_with_no_readable_recipient_is_listed_as_unreadable(ingest_at, report,
                                                                     bounced, db, sql):
    layouts = DATA / "layouts"
    ingest_at(T - timedelta(hours=1), layouts / "no-recipient-transcript.eml",
              MTA_LAB / "postfix-01-user-unknown-failed.eml")
    [(message_id,)] = sql("SELECT message_id FROM bounces WHERE recipient IS NULL")
    data = report("--since", "1d", "--no-dns")
    assert data["unreadable_count"] == 1
    assert [row["message_id"] for row in data["unreadable"]] == [message_id]
    text = bounced(["report", "--db", str(db), "--at", iso(T), "--since", "1d", "--no-dns"])
    assert "Bounces with no readable recipient: 1" in text.out
    assert sql("SELECT length(raw) > 0 FROM messages WHERE id = ?", (message_id,)) == [(1,)]
