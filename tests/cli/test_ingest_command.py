"""``bounced ingest``: store first, then process; report every message; never lose one."""

from __future__ import annotations

import mailbox
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import query
from tests.paths import ROOT


def test_each_message_is_reported_with_its_id_kind_and_verdict(db, mail_file, bounced, sql):
    path = mail_file("hard-user-unknown", address="gone@example.org")
    result = bounced(["ingest", "--db", str(db), str(path)])
    assert result.status == 0, result.err
    [line] = result.out.splitlines()
    assert line.startswith(f"{path}: #1 gone@example.org: failure hard/User unknown (1)")
    assert "address quarantine" in line
    assert sql("SELECT state FROM messages") == [("processed",)]


def test_an_identical_message_is_recognised_and_not_counted_twice(
        db, mail_file, bounced, sql, tmp_path):
    path = mail_file("soft-mailbox-full", address="twice@example.org")
    copy = tmp_path / "copy.eml"
    copy.write_bytes(path.read_bytes())
    first = bounced(["ingest", "--db", str(db), str(path)])
    second = bounced(["ingest", "--db", str(db), str(copy), str(path)])
    assert first.status == second.status == 0
    assert second.out.splitlines() == [f"{copy}: duplicate of #1", f"{path}: duplicate of #1"]
    assert sql("SELECT count(*) FROM messages") == [(1,)]
    assert sql("SELECT count(*) FROM bounces") == [(1,)]
    assert sql("SELECT occurrences FROM qualification") == [(1,)]


@pytest.mark.parametrize(
    ("name", "raw"),
    [
        ("empty", b""),
        ("binary", bytes(range(256)) * 40),
        ("headers-only", b"From: someone@example.org\r\nSubject: no body at all\r\n"),
        ("blank-lines", b"\r\n\r\n\r\n"),
    ],
)
def test_bad_input_is_stored_reported_and_does_not_stop_the_others(
        db, mail_file, bounced, sql, tmp_path, name, raw):
    bad = tmp_path / f"{name}.eml"
    bad.write_bytes(raw)
    before = mail_file("hard-user-unknown", address="before@example.org")
    after = mail_file("hard-user-unknown", address="after@example.org")
    result = bounced(["ingest", "--db", str(db), str(before), str(bad), str(after)])
    assert result.status == 0, result.out + result.err
    assert "Traceback" not in result.err
    lines = result.out.splitlines()
    assert any(line.startswith(f"{bad}: #2 ") for line in lines), result.out
    assert sql("SELECT raw, state FROM messages WHERE id = 2") == [(raw, "processed")]
    assert sql("SELECT recipient FROM bounces ORDER BY id") == [
        ("before@example.org",), ("after@example.org",)]


@pytest.mark.sqlite_only  # a SQLite trigger refuses the write
def test_a_message_that_fails_processing_stays_stored_and_the_exit_status_says_so(
        db, mail_file, bounced, sql):
    bounced(["db", "init", "--db", str(db)])
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON bounces WHEN NEW.recipient = "
                     "'boom@example.org' BEGIN SELECT RAISE(ABORT, 'refused by trigger'); END")
    bad = mail_file("hard-user-unknown", address="boom@example.org")
    good = mail_file("hard-user-unknown", address="fine@example.org")
    result = bounced(["ingest", "--db", str(db), str(bad), str(good)])
    assert result.status == 1
    assert f"{bad}: #1 failed: " in result.out and "refused by trigger" in result.out
    assert f"{good}: #2 fine@example.org" in result.out
    assert sql("SELECT id, state, error LIKE '%refused by trigger%', length(raw) > 0 "
               "FROM messages ORDER BY id") == [(1, "failed", 1, 1), (2, "processed", None, 1)]

    check = bounced(["db", "check", "--db", str(db)])
    assert check.status == 1 and "1 failed message" in check.out

    with sqlite3.connect(db) as conn:
        conn.execute("DROP TRIGGER refuse")
    again = bounced(["ingest", "--db", str(db), str(bad)])  # re-sent: processed this time
    assert again.status == 0, again.out
    assert sql("SELECT state, error FROM messages WHERE id = 1") == [("processed", None)]
    assert bounced(["db", "check", "--db", str(db)]).status == 0


def test_maildir_and_mbox_sources(db, mail_file, bounced, sql, tmp_path):
    box = mailbox.Maildir(tmp_path / "Maildir", create=True)
    for index in range(3):
        box.add(mail_file("hard-user-unknown", address=f"md{index}@example.org").read_bytes())
    mbox_path = tmp_path / "bounces.mbox"
    mbox = mailbox.mbox(mbox_path, create=True)
    for index in range(2):
        mbox.add(mail_file("hard-user-unknown", address=f"mb{index}@example.org").read_bytes())
    mbox.flush()
    result = bounced(["ingest", "--db", str(db), str(tmp_path / "Maildir"), str(mbox_path)])
    assert result.status == 0, result.err
    assert sql("SELECT recipient FROM bounces ORDER BY recipient") == [
        ("mb0@example.org",), ("mb1@example.org",),
        ("md0@example.org",), ("md1@example.org",), ("md2@example.org",)]


def test_stdin_with_envelope_options_works_as_a_pipe_transport(db, mail_file, tmp_path):
    raw = mail_file("soft-mailbox-full", address="piped@example.org").read_bytes()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run(
        [sys.executable, "-m", "bounced", "ingest", "--db", str(db),
         "--mail-from", "", "--rcpt-to", "bounces+piped42@bounce.example", "-"],
        input=raw, capture_output=True, env=env, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr.decode()
    assert b"piped@example.org" in done.stdout
    assert query(db, "SELECT rcpt_to, verp_token FROM messages") == [
        ('["bounces+piped42@bounce.example"]', "piped42")]
    assert query(db, "SELECT verp_token FROM bounces") == [("piped42",)]


def test_envelope_is_taken_from_delivery_headers_of_saved_mail(db, bounced, sql, tmp_path,
                                                               mail_file):
    raw = mail_file("hard-user-unknown", address="saved@example.org").read_bytes()
    saved = tmp_path / "saved.eml"
    saved.write_bytes(b"Return-Path: <>\r\nDelivered-To: bounces+tok9@bounce.example\r\n" + raw)
    assert bounced(["ingest", "--db", str(db), str(saved)]).status == 0
    assert sql("SELECT rcpt_to, verp_token FROM messages") == [
        ('["bounces+tok9@bounce.example"]', "tok9")]


def test_a_forged_signed_verp_token_changes_no_address(db, mail_file, bounced, sql, tmp_path):
    config = tmp_path / "bounced.toml"
    config.write_text('[verp]\nsecret = "s3cret"\n')
    path = mail_file("hard-user-unknown", address="victim@example.org")
    result = bounced(["ingest", "--db", str(db), "--config", str(config),
                      "--rcpt-to", "bounces+victim=example.org=aaaaaaaaaaaaaaaa@bounce.example",
                      str(path)])
    assert result.status == 0, result.err
    assert "untrusted" in result.out
    assert sql("SELECT recipient, failure_type FROM bounces") == [("victim@example.org", "hard")]
    assert sql("SELECT count(*) FROM addresses") == [(0,)]


def test_a_bad_config_value_is_named_with_exit_2(db, mail_file, bounced, tmp_path):
    config = tmp_path / "bounced.toml"
    config.write_text('[policy]\nsoft_error_threshold = "five"\n')
    result = bounced(["ingest", "--db", str(db), "--config", str(config),
                      str(mail_file("delay"))])
    assert result.status == 2
    assert "policy.soft_error_threshold" in result.err
    assert "Traceback" not in result.err
    if isinstance(db, Path):
        assert not db.exists()
    else:
        assert query(db, "SELECT count(*) FROM messages") == [(0,)]


def test_a_missing_path_is_named_with_exit_2_before_anything_is_stored(db, bounced, tmp_path):
    result = bounced(["ingest", "--db", str(db), str(tmp_path / "nope.eml")])
    assert result.status == 2
    assert "nope.eml" in result.err and "Traceback" not in result.err


def test_an_unusable_database_path_is_named_with_exit_2(bounced, mail_file, tmp_path):
    result = bounced(["ingest", "--db", str(tmp_path / "no" / "such" / "dir" / "x.db"),
                      str(mail_file("delay"))])
    assert result.status == 2
    assert "x.db" in result.err and "Traceback" not in result.err


def test_a_bad_at_value_is_refused_with_exit_2(db, bounced, mail_file):
    result = bounced(["ingest", "--db", str(db), "--at", "yesterday", str(mail_file("delay"))])
    assert result.status == 2
    assert "yesterday" in result.err
