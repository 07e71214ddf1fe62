"""Every rule of the quarantine policy (docs/policy.md), end to end: sample mails as files,
``bounced ingest --at`` into a real SQLite file, then SQL on the public schema."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.conftest import query

T0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
def ingest(bounced) -> Callable[[Path, Path, datetime], str]:
    """``ingest(db, path, at)``: ``bounced ingest --at`` that must succeed."""

    def run(db: Path, path: Path, at: datetime) -> str:
        result = bounced(["ingest", "--db", str(db), "--at", iso(at), str(path)])
        assert result.status == 0, result.out + result.err
        return result.out

    return run


def address_row(db: Path, address: str) -> tuple | None:
    rows = query(
        db,
        "SELECT state, error_count, last_counted_error_at, reason_code, quarantined_at, "
        "release_at FROM addresses WHERE address = ?",
        (address,),
    )
    return rows[0] if rows else None


def history(db: Path, address: str) -> list[tuple]:
    return query(
        db,
        "SELECT old_state, new_state, cause, bounce_id IS NOT NULL FROM address_events "
        "WHERE address = ? ORDER BY id",
        (address,),
    )


def test_five_soft_bounces_a_day_apart_quarantine_with_a_30_day_release(
        db: Path, mail_file, ingest):
    address = "full@example.org"
    for day in range(5):
        ingest(db, mail_file("soft-mailbox-full", address=address), T0 + timedelta(days=day))
    quarantined_at = T0 + timedelta(days=4)
    assert address_row(db, address) == (
        "quarantine", 5, iso(quarantined_at), 5, iso(quarantined_at),
        iso(quarantined_at + timedelta(days=30)),
    )
    events = history(db, address)
    assert [(old, new) for old, new, _, _ in events] == [
        (None, "erroneous"), ("erroneous", "quarantine")]
    assert events[1][2].startswith("5th soft error: Mailbox full")
    assert all(linked for *_, linked in events)
    assert query(db, "SELECT address, state, reason FROM suppression_list") == [
        (address, "quarantine", "Mailbox full")]
    assert query(db, "SELECT failure_type, reason_code, count(*) FROM bounces "
                     "WHERE recipient = ? GROUP BY 1, 2", (address,)) == [("soft", 5, 5)]


def test_four_soft_bounces_within_one_day_count_once(db: Path, mail_file, ingest):
    address = "busy@example.org"
    for hours in (0, 6, 12, 23):
        ingest(db, mail_file("soft-mailbox-full", address=address), T0 + timedelta(hours=hours))
    assert address_row(db, address)[:3] == ("erroneous", 1, iso(T0))
    assert len(history(db, address)) == 1
    assert query(db, "SELECT count(*) FROM bounces WHERE recipient = ?", (address,)) == [(4,)]


def test_soft_counter_starts_again_after_ten_days(db: Path, mail_file, ingest):
    address = "again@example.org"
    ingest(db, mail_file("soft-mailbox-full", address=address), T0)
    ingest(db, mail_file("soft-mailbox-full", address=address), T0 + timedelta(days=1))
    assert address_row(db, address)[1] == 2
    late = T0 + timedelta(days=12)
    ingest(db, mail_file("soft-mailbox-full", address=address), late)
    assert address_row(db, address)[:3] == ("erroneous", 1, iso(late))


def test_cleanup_resets_a_stale_counter_to_valid(db: Path, mail_file, ingest, bounced):
    address = "stale@example.org"
    ingest(db, mail_file("soft-mailbox-full", address=address), T0)
    result = bounced(["cleanup", "--db", str(db), "--at", iso(T0 + timedelta(days=11))])
    assert result.status == 0, result.err
    assert address_row(db, address)[:2] == ("valid", 0)
    assert history(db, address)[-1][:2] == ("erroneous", "valid")


def test_cleanup_releases_a_mailbox_full_quarantine_after_30_days(
        db: Path, mail_file, ingest, bounced):
    address = "release@example.org"
    for day in range(5):
        ingest(db, mail_file("soft-mailbox-full", address=address), T0 + timedelta(days=day))
    due = T0 + timedelta(days=4 + 30)
    bounced(["cleanup", "--db", str(db), "--at", iso(due - timedelta(minutes=1))])
    assert address_row(db, address)[0] == "quarantine"
    result = bounced(["cleanup", "--db", str(db), "--at", iso(due)])
    assert result.status == 0 and address in result.out
    assert address_row(db, address)[:2] == ("valid", 0)
    assert history(db, address)[-1][:2] == ("quarantine", "valid")
    assert query(db, "SELECT count(*) FROM suppression_list") == [(0,)]


def test_hard_bounce_quarantines_at_once(db: Path, mail_file, ingest):
    address = "gone@example.org"
    ingest(db, mail_file("hard-user-unknown", address=address), T0)
    assert address_row(db, address) == ("quarantine", 1, iso(T0), 1, iso(T0), None)
    events = history(db, address)
    assert [(old, new) for old, new, _, _ in events] == [(None, "quarantine")]
    assert events[0][2].startswith("hard bounce: User unknown")
    assert query(db, "SELECT state, reason FROM suppression_list WHERE address = ?",
                 (address,)) == [("quarantine", "User unknown")]


def test_first_undefined_bounce_changes_nothing_the_second_counts(db: Path, mail_file, ingest):
    address = "odd@example.org"
    ingest(db, mail_file("undefined", address=address), T0)
    assert query(db, "SELECT state, error_count, undefined_count FROM addresses "
                     "WHERE address = ?", (address,)) == [("valid", 0, 1)]
    assert history(db, address) == []
    assert query(db, "SELECT failure_type, reason_code FROM bounces") == [("undefined", 0)]
    assert query(db, "SELECT status FROM qualification") == [("to_qualify",)]
    ingest(db, mail_file("undefined", address=address), T0 + timedelta(days=1))
    assert address_row(db, address)[:2] == ("erroneous", 1)
    assert [(old, new) for old, new, _, _ in history(db, address)] == [("valid", "erroneous")]


def test_spam_complaint_denylists(db: Path, mail_file, ingest):
    address = "complainer@example.org"
    ingest(db, mail_file("arf", address=address), T0)
    assert address_row(db, address)[0] == "denylisted"
    events = history(db, address)
    assert [(old, new) for old, new, _, _ in events] == [(None, "denylisted")]
    assert events[0][2].startswith("ARF complaint")
    assert query(db, "SELECT kind, feedback_type FROM bounces") == [("feedback", "abuse")]
    assert query(db, "SELECT state FROM suppression_list WHERE address = ?",
                 (address,)) == [("denylisted",)]


def test_allowlisted_address_stays_deliverable_and_its_verdicts_carry_reason_25(
        db: Path, mail_file, ingest, bounced):
    address = "vip@example.org"
    bounced(["db", "init", "--db", str(db)])
    query(db, "INSERT INTO addresses (address, state, updated_at) "
              "VALUES (?, 'allowlisted', ?)", (address, iso(T0)))
    ingest(db, mail_file("hard-user-unknown", address=address), T0)
    for day in range(6):
        ingest(db, mail_file("soft-mailbox-full", address=address), T0 + timedelta(days=day))
    ingest(db, mail_file("arf", address=address), T0 + timedelta(days=7))
    assert address_row(db, address)[0] == "allowlisted"
    assert history(db, address) == []
    assert query(db, "SELECT DISTINCT failure_type, reason_code FROM bounces") == [
        ("ignored", 25)]
    assert query(db, "SELECT count(*) FROM suppression_list") == [(0,)]


def test_delay_delivered_and_autoreply_change_nothing(db: Path, mail_file, ingest):
    address = "fine@example.org"
    ingest(db, mail_file("soft-mailbox-full", address=address), T0)
    before = address_row(db, address)
    for index, template in enumerate(("delay", "delivered", "autoreply") * 2):
        ingest(db, mail_file(template, address=address), T0 + timedelta(days=2 + index))
    assert address_row(db, address) == before
    assert len(history(db, address)) == 1
    kinds = query(db, "SELECT kind, failure_type FROM bounces WHERE recipient = ? ORDER BY id",
                  (address,))
    assert [kind for kind, _ in kinds] == ["failure"] + ["delay", "delivered", "autoreply"] * 2
    assert {ftype for kind, ftype in kinds if kind in ("delay", "autoreply")} == {"ignored"}
    # An unknown address that only got a delay gets no addresses row at all.
    ingest(db, mail_file("delay", address="new@example.org"), T0)
    assert address_row(db, "new@example.org") is None


def test_at_header_counts_each_bounce_at_its_own_date(db: Path, mail_file, ingest, bounced):
    address = "dated@example.org"
    paths = [
        mail_file("soft-mailbox-full", address=address,
                  date=(T0 + timedelta(days=day)).strftime("%a, %d %b %Y %H:%M:%S +0000"))
        for day in range(5)
    ]
    result = bounced(["ingest", "--db", str(db), "--at", "header", *map(str, paths)])
    assert result.status == 0, result.out + result.err
    assert address_row(db, address)[0] == "quarantine"
    assert query(db, "SELECT min(at), max(at) FROM bounces") == [
        (iso(T0), iso(T0 + timedelta(days=4)))]


def test_addresses_are_stored_lowercased(db: Path, mail_file, ingest):
    ingest(db, mail_file("hard-user-unknown", address="Mixed.Case@Example.ORG"), T0)
    assert query(db, "SELECT address FROM addresses") == [("mixed.case@example.org",)]
    assert query(db, "SELECT recipient FROM bounces") == [("mixed.case@example.org",)]


def test_a_text_an_operator_marked_ignore_never_quarantines(db: Path, mail_file, ingest):
    ingest(db, mail_file("hard-user-unknown", address="first@example.org"), T0)
    query(db, "UPDATE qualification SET status = 'ignore'")
    address = "spared@example.org"
    ingest(db, mail_file("hard-user-unknown", address=address), T0 + timedelta(days=1))
    assert address_row(db, address) is None
    assert query(db, "SELECT failure_type FROM bounces WHERE recipient = ?",
                 (address,)) == [("ignored",)]


def test_a_denylisted_address_stays_denylisted(db: Path, mail_file, ingest):
    address = "blocked@example.org"
    ingest(db, mail_file("arf", address=address), T0)
    ingest(db, mail_file("hard-user-unknown", address=address), T0 + timedelta(days=1))
    for day in range(2, 8):
        ingest(db, mail_file("soft-mailbox-full", address=address), T0 + timedelta(days=day))
    assert address_row(db, address)[0] == "denylisted"
    assert [(old, new) for old, new, _, _ in history(db, address)] == [(None, "denylisted")]
