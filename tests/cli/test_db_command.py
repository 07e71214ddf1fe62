"""``bounced db init / check / retry / cleanup``."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from bounced.store import SCHEMA_VERSION


def test_init_creates_a_database_that_check_finds_healthy(db, bounced):
    init = bounced(["db", "init", "--db", str(db)])
    assert init.status == 0 and f"schema version {SCHEMA_VERSION}" in init.out
    check = bounced(["db", "check", "--db", str(db)])
    assert check.status == 0, check.out
    assert "integrity: ok" in check.out
    assert f"schema version: {SCHEMA_VERSION}" in check.out
    assert "messages pending: 0" in check.out and "messages failed: 0" in check.out
    assert check.out.rstrip().endswith(": ok")


@pytest.mark.sqlite_only  # SQLite's page cache; PostgreSQL's is the server's
def test_check_tells_how_much_cache_the_daemon_needs_to_prewarm(db, bounced):
    bounced(["db", "init", "--db", str(db)])
    with sqlite3.connect(db) as conn:
        conn.executemany(
            "INSERT INTO addresses (address, state, error_count, updated_at, undefined_count) "
            "VALUES (?, 'erroneous', 1, '2026-11-22T13:05:00Z', 0)",
            ((f"someone.with.a.long.name.{i}@example.org",) for i in range(30_000)))
    check = bounced(["db", "check", "--db", str(db)])
    assert check.status == 0, check.out
    (line,) = [line for line in check.out.splitlines() if line.startswith("b-trees read")]
    processing = float(line.split(": ", 1)[1].split(" MiB")[0])
    assert processing > 2  # 30,000 addresses
    assert line.endswith(f"database.cache_mb >= {int(processing) + 1} lets the daemon "
                         "prewarm them")


def test_check_reports_pending_messages_without_failing(db, bounced, sql):
    bounced(["db", "init", "--db", str(db)])
    sql("INSERT INTO messages (received_at, mail_from, rcpt_to, size, sha256, raw) "
        "VALUES ('2026-11-22T13:05:00Z', '', '[]', 1, 'x', ?)", (b"\x00",))
    check = bounced(["db", "check", "--db", str(db)])
    assert check.status == 0
    assert "messages pending: 1" in check.out


@pytest.mark.sqlite_only  # PRAGMA user_version (PostgreSQL: tests/store/test_postgresql.py)
def test_check_fails_on_an_old_schema_and_init_migrates_it(db, bounced):
    bounced(["db", "init", "--db", str(db)])
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA user_version = 0")
        conn.execute("DROP VIEW to_qualify")
    check = bounced(["db", "check", "--db", str(db)])
    assert check.status == 1
    assert "schema version: 0" in check.out and "to_qualify" in check.out


def test_check_of_a_missing_file_is_a_usage_error_and_creates_nothing(tmp_path, bounced):
    missing = tmp_path / "missing.db"
    check = bounced(["db", "check", "--db", str(missing)])
    assert check.status == 2 and "missing.db" in check.err
    assert not missing.exists()


def test_check_of_a_file_that_is_not_a_database(tmp_path, bounced):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database at all" * 200)
    check = bounced(["db", "check", "--db", str(junk)])
    assert check.status == 2 and "junk.db" in check.err
    assert "Traceback" not in check.err


@pytest.mark.sqlite_only  # a SQLite trigger makes the disk say no
def test_retry_processes_failed_messages_again(db, bounced, sql, mail_file):
    bounced(["db", "init", "--db", str(db)])
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON bounces "
                     "BEGIN SELECT RAISE(ABORT, 'disk says no'); END")
    assert bounced(["ingest", "--db", str(db), str(mail_file("hard-user-unknown"))]).status == 1
    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER refuse")
    retry = bounced(["db", "retry", "--db", str(db)])
    assert retry.status == 0, retry.out
    assert "retried 1, still failed 0" in retry.out
    assert sql("SELECT state FROM messages") == [("processed",)]
    assert sql("SELECT count(*) FROM bounces") == [(1,)]


def test_check_warns_when_the_configuration_takes_unsigned_bounces_from_the_network(
        tmp_path: Path, bounced) -> None:
    db = tmp_path / "w.db"
    assert bounced(["db", "init", "--db", str(db)]).status == 0
    exposed = tmp_path / "exposed.toml"
    exposed.write_text('[smtp]\nlisten = "0.0.0.0:25"\n')
    run = bounced(["db", "check", "--db", str(db), "--config", str(exposed)])
    assert run.status == 0
    assert "WARNING: verp.secret is not set" in run.out and "0.0.0.0:25" in run.out
    signed = tmp_path / "signed.toml"
    signed.write_text('[smtp]\nlisten = "0.0.0.0:25"\n[verp]\nsecret = "x"\n')
    assert "WARNING" not in bounced(["db", "check", "--db", str(db), "--config",
                                     str(signed)]).out


@pytest.mark.sqlite_only  # the SQLite file's WAL and file system (PostgreSQL: below)
def test_check_shows_the_wal_size_and_free_space_against_the_reserve(db, bounced):
    bounced(["db", "init", "--db", str(db)])
    check = bounced(["db", "check", "--db", str(db)])
    assert check.status == 0, check.out
    lines = check.out.splitlines()
    assert any(line.startswith("WAL: ") and line.endswith(f"MiB ({db.name}-wal)")
               for line in lines), check.out
    (free,) = [line for line in lines if line.startswith("free space: ")]
    assert free.endswith("reserve storage.min_free_mb = 256 MiB")


@pytest.mark.sqlite_only  # the SQLite file's file system (PostgreSQL: below)
def test_check_fails_when_free_space_is_below_the_reserve(db, bounced, tmp_path):
    import os

    bounced(["db", "init", "--db", str(db)])
    stats = os.statvfs(tmp_path)
    reserve = stats.f_bavail * stats.f_frsize // (1024 * 1024) + 1024
    config = tmp_path / "bounced.toml"
    config.write_text(f"[storage]\nmin_free_mb = {reserve}\n")
    check = bounced(["db", "check", "--db", str(db), "--config", str(config)])
    assert check.status == 1
    assert any(line.startswith("PROBLEM: free space: ") and "below the reserve" in line
               for line in check.out.splitlines()), check.out


@pytest.mark.sqlite_only  # a reader holding the SQLite WAL
def test_check_fails_when_the_wal_is_past_the_warning_size(db, bounced, tmp_path):
    bounced(["db", "init", "--db", str(db)])
    holder = sqlite3.connect(db)  # keeps the WAL file from being removed at close
    holder.execute("PRAGMA wal_autocheckpoint = 0")
    with holder:
        holder.execute("CREATE TABLE filler (x BLOB)")
        holder.executemany("INSERT INTO filler VALUES (?)", ((b"x" * 100_000,) for _ in range(30)))
    config = tmp_path / "bounced.toml"
    config.write_text("[database]\nwal_warn_mb = 1\n")
    check = bounced(["db", "check", "--db", str(db), "--config", str(config)])
    holder.close()
    assert check.status == 1
    assert any(line.startswith("PROBLEM: WAL: ") and "database.wal_warn_mb (1 MiB)" in line
               for line in check.out.splitlines()), check.out


def test_check_on_postgresql_leaves_wal_and_free_space_to_the_server(pg_url, bounced,
                                                                    tmp_path):
    # A reserve no disk could meet: on PostgreSQL it is not the daemon's to keep.
    config = tmp_path / "bounced.toml"
    config.write_text("[storage]\nmin_free_mb = 1000000000\n[database]\nwal_warn_mb = 1\n")
    check = bounced(["db", "check", "--db", str(pg_url), "--config", str(config)])
    assert check.status == 0, check.out
    lines = check.out.splitlines()
    assert not any(line.startswith(("WAL: ", "free space: ", "PROBLEM: ")) for line in lines)
    assert ("WAL and free space: the PostgreSQL server's (max_wal_size, its disk); "
            "database.wal_warn_mb and storage.min_free_mb apply to a SQLite file") in lines
