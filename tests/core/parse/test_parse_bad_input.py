"""Broken input never raises and always says what was wrong (``problems``).

Small samples live in tests/data/bad/; the big and the pathological ones (30 MB, a
10,000-level MIME bomb) are generated into tmp_path so they never get committed.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from bounced.core.parse import message, parse_message
from bounced.model import BounceReport, Kind
from tests.paths import DATA

BAD = DATA / "bad"


def parse_file(name: str) -> BounceReport:
    return parse_message((BAD / name).read_bytes())


def has_problem(problems: tuple[str, ...], *words: str) -> bool:
    return any(all(word in problem for word in words) for problem in problems)


def test_zero_byte_file_is_reported_empty() -> None:
    assert (BAD / "empty.eml").stat().st_size == 0
    report = parse_file("empty.eml")
    assert report.kind is Kind.NOT_BOUNCE
    assert report.recipients == ()
    assert has_problem(report.problems, "empty")


def test_blank_lines_only_is_empty_too() -> None:
    report = parse_message(b"\r\n\n  \n")
    assert report.kind is Kind.NOT_BOUNCE
    assert has_problem(report.problems, "empty")


def test_binary_garbage_is_not_an_email() -> None:
    report = parse_file("binary-garbage.bin")
    assert report.kind is Kind.NOT_BOUNCE
    assert report.recipients == ()
    assert has_problem(report.problems, "not an email", "binary")


def test_plain_text_without_headers_is_not_an_email() -> None:
    report = parse_file("not-an-email.txt")
    assert report.kind is Kind.NOT_BOUNCE
    assert has_problem(report.problems, "not an email", "no header")


def test_header_without_body() -> None:
    # a mailer daemon's bounce subject: a bounce, stored with no recipient for an operator
    report = parse_file("header-without-body.eml")
    assert report.kind is Kind.FAILURE
    assert report.recipients == ()
    assert report.subject == "Undelivered Mail Returned to Sender"
    assert report.verp_token == "hdronly"
    assert has_problem(report.problems, "no body")
    assert has_problem(report.problems, "no recipient")


def test_invalid_charset_is_read_as_utf8_and_noted() -> None:
    report = parse_file("invalid-charset.eml")
    (recipient,) = report.recipients
    assert recipient.address == "josé@example.org"
    assert recipient.status == "5.1.1"
    assert "été" in recipient.diagnostic, "8-bit Latin-1 words stay readable"
    assert has_problem(report.problems, "unknown charset", "x-no-such-charset")


def test_8bit_latin1_headers_are_decoded_and_noted() -> None:
    report = parse_file("latin1-8bit-headers.eml")
    assert report.subject == "Non remis : Réunion"
    (recipient,) = report.recipients
    assert recipient.address == "andré@example.fr"
    assert has_problem(report.problems, "8-bit header")


def test_truncated_dsn_still_gives_its_recipient_and_original() -> None:
    report = parse_file("truncated-dsn.eml")
    (recipient,) = report.recipients
    assert (recipient.address, recipient.status, recipient.reply_code) == (
        "gone@example.org", "5.1.1", "550")
    assert report.original_message_id == "<weekly-42@example.com>"
    assert ("X-Campaign-Id", "4242") in report.original_headers
    assert has_problem(report.problems, "closing boundary")


def test_boundary_that_matches_nothing_is_recovered_from_the_body() -> None:
    report = parse_file("mangled-boundary.eml")
    (recipient,) = report.recipients
    assert (recipient.address, recipient.status) == ("full@example.org", "5.2.2")
    assert has_problem(report.problems, "boundary delimits nothing")


def test_damaged_base64_is_noted_and_what_decodes_is_used() -> None:
    report = parse_file("damaged-base64.eml")
    (recipient,) = report.recipients
    assert recipient.address == "nobody@example.org"
    assert recipient.status == "5.1.1"
    assert recipient.diagnostic.isprintable()
    assert has_problem(report.problems, "base64")


def test_30_mb_message_is_parsed_quickly_and_noted(tmp_path: Path) -> None:
    dsn = (BAD.parent / "mta-lab" / "postfix-01-user-unknown-failed.eml").read_bytes()
    before, marker, after = dsn.partition(b"Lab test message.")
    assert marker, "the returned message's body is where the padding goes"
    line = b"x" * 76 + b"\r\n"
    path = tmp_path / "huge.eml"
    with path.open("wb") as out:
        out.write(before + marker + b"\r\n")
        out.write(line * (30 * 1024 * 1024 // len(line)))
        out.write(after)
    raw = path.read_bytes()
    assert len(raw) > 30 * 1024 * 1024 - 4096
    started = time.perf_counter()
    report = parse_message(raw)
    assert time.perf_counter() - started < 5
    assert [r.address for r in report.recipients] == ["unknown-user@rcpt.test"]
    assert has_problem(report.problems, "large message")


def test_30_mb_single_text_part_reads_only_its_head(tmp_path: Path) -> None:
    path = tmp_path / "huge-text.eml"
    path.write_bytes(
        b"From: MAILER-DAEMON@mx.example.net\nSubject: failure notice\n\n"
        b"<a@example.org>:\nRemote host said: 550 5.1.1 unknown\n\n"
        + b"y" * 75 + b"\n" * (30 * 1024 * 1024 // 76)
    )
    report = parse_message(path.read_bytes())
    assert [r.address for r in report.recipients] == ["a@example.org"]
    assert has_problem(report.problems, "only its first")


def test_mime_bomb_of_10000_nested_multiparts(tmp_path: Path) -> None:
    levels = 10_000
    path = tmp_path / "bomb.eml"
    with path.open("wb") as out:
        out.write(b"From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n"
                  b"MIME-Version: 1.0\n")
        for level in range(levels):
            out.write(b'Content-Type: multipart/mixed; boundary="b%d"\n\n--b%d\n' % (level, level))
        out.write(b"Content-Type: text/plain\n\n<deep@example.org>: 550 5.1.1 unknown\n")
        for level in reversed(range(levels)):
            out.write(b"\n--b%d--\n" % level)
    started = time.perf_counter()
    report = parse_message(path.read_bytes())
    assert time.perf_counter() - started < 5
    assert report.recipients == ()
    assert has_problem(report.problems, "nesting deeper")


def test_nested_message_bomb_is_not_descended(tmp_path: Path) -> None:
    inner = b"From: a@example.org\nSubject: leaf\n\nleaf\n"
    for _ in range(5_000):
        inner = b"From: a@example.org\nContent-Type: message/rfc822\n\n" + inner
    raw = (b"From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n"
           b"Content-Type: multipart/mixed; boundary=x\n\n--x\nContent-Type: text/plain\n\n"
           b"<b@example.org>: 550 5.1.1 unknown\n--x\nContent-Type: message/rfc822\n\n"
           + inner + b"\n--x--\n")
    report = parse_message(raw)
    assert [r.address for r in report.recipients] == ["b@example.org"]


def internal_errors(problems: tuple[str, ...]) -> list[str]:
    """The catch-all's notes: input the parser itself choked on (must never happen)."""
    return [problem for problem in problems if problem.startswith("parser error")]


def test_every_truncation_of_a_dsn_is_read_without_internal_error() -> None:
    raw = (BAD.parent / "mta-lab" / "postfix-12-multi-hdrs-envid-failed.eml").read_bytes()
    for cut in range(0, len(raw), 97):
        report = parse_message(raw[:cut])
        assert internal_errors(report.problems) == [], cut


@pytest.mark.parametrize("name", sorted(path.name for path in BAD.iterdir()))
def test_bad_samples_are_read_without_internal_error(name: str) -> None:
    report = parse_file(name)
    assert internal_errors(report.problems) == []


def test_corpus_is_read_without_internal_error() -> None:
    corpus = sorted((BAD.parent / "corpus" / "sisimai" / "eml").glob("*.eml"))
    lab = sorted((BAD.parent / "mta-lab").glob("*.eml"))
    assert len(corpus) > 300
    for path in corpus + lab:
        report = parse_message(path.read_bytes())
        assert internal_errors(report.problems) == [], path.name
        assert report.recipients or report.kind is Kind.NOT_BOUNCE, path.name


def test_the_catch_all_turns_a_crash_into_a_problem(monkeypatch: pytest.MonkeyPatch) -> None:
    def explode(_raw: bytes) -> None:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(message, "load", explode)
    report = parse_message(b"From: a@example.org\n\nhello\n")
    assert report.kind is Kind.NOT_BOUNCE
    assert internal_errors(report.problems)


def test_unreadable_bounce_is_noted_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    report = parse_file("bounce-without-from.eml")
    assert report.kind is Kind.NOT_BOUNCE
    assert has_problem(report.problems, "no recipient")
    assert report.verp_token == "nofrom"
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "")
