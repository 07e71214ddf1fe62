"""Hostile input costs time in proportion to its size, and the work is bounded (issue #9).

No test here measures time. Each runs a hostile shape at 1 MB, where a pattern that
retried a scan from every position would run for hours (the first shapes took 55 s at
40 KB) and linear code takes milliseconds: a reintroduced quadratic pattern makes the
suite hang instead of pass. The others check the bounds themselves: what normalization
and rule matching read, how many recipients a report may name, what the flufl.bounce
fallback and the header decoder are given. ``bench/adversarial.py`` prints the times.
"""

from __future__ import annotations

import pytest

from bounced.core.judge import judge
from bounced.core.normalize import MAX_NORMALIZED, normalize
from bounced.core.parse import arf, commands, dsn, fallback, message, mime, parse_message, vendors
from bounced.core.parse.message import MAX_RECIPIENTS
from bounced.core.qualify import load_default_rules, match_rule
from bounced.model import FailureType, Kind, Reason, Rule
from tests.fuzzing import check_report
from tests.harness.hostile import CASES, VICTIM, Case, prose
from tests.harness.hostile import dsn as dsn_message

MEGABYTE = 1024 * 1024


# ------------------------------------------------------------- whole messages, 1 MB

@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda case: f"{case.shape} in {case.place}")
def test_hostile_shape_of_1_mb_is_parsed_and_judged(case: Case) -> None:
    report = parse_message(case.build(MEGABYTE))
    check_report(report)  # judges it too: normalize and the default rules
    addresses = [recipient.address for recipient in report.recipients]
    assert (VICTIM in addresses) is case.names_victim, (addresses[:3], report.problems)


@pytest.mark.slow
@pytest.mark.parametrize("unit", ["a.", "a", "1a."])
def test_issue_shapes_keep_the_whole_diagnostic_and_normalize_its_head(unit: str) -> None:
    text = unit * (MEGABYTE // len(unit)) + " @"
    report = parse_message(dsn_message(text))
    (recipient,) = report.recipients
    assert (recipient.address, recipient.status) == (VICTIM, "5.1.1")
    assert recipient.diagnostic == f"550 5.1.1 {text}"  # the report keeps it whole
    (verdict,) = judge(report, load_default_rules())
    assert len(verdict.text) <= MAX_NORMALIZED
    assert verdict.text == normalize(recipient.diagnostic[:MAX_NORMALIZED])


# ------------------------------------------------- each pattern fixed, on its own text

@pytest.mark.slow
def test_the_patterns_that_were_quadratic_take_1_mb() -> None:
    run = "a" * MEGABYTE
    assert normalize(run + " @") == run[:MAX_NORMALIZED]
    assert normalize("a." * (MEGABYTE // 2) + " @") == ("a." * MAX_NORMALIZED)[:MAX_NORMALIZED]
    assert vendors.ADDRESS.search(run + " @") is None
    assert vendors._ADDRESS_LINE.match("550" + "-" * MEGABYTE + "x @") is None
    assert vendors._ADDRESS_LINE.match("550" + "-" * MEGABYTE + "x@example.org") is not None
    assert vendors.scan_recipients("unknown user" + " " * MEGABYTE + "x") == []
    assert dsn.address_of("rfc822; " + run + " <a@example.org>") == "a@example.org"
    assert arf._addresses(run + " a@example.org") == ["a@example.org"]
    assert commands.find_section_command("command" + " \t" * MEGABYTE) is None
    assert message._HUMAN_SUBJECT.match("Re" + " " * MEGABYTE + "x") is None
    assert message.html_to_text("<" * MEGABYTE) == "<" * MEGABYTE
    assert message.html_to_text("<script>" * (MEGABYTE // 8) + "x") == " " * (MEGABYTE // 8) + "x"
    assert mime.decode_words("=?a?q? " * (MEGABYTE // 7)) == "=?a?q? " * (MEGABYTE // 7)
    (line,) = dsn.unfold("Diagnostic-Code: x" + "\n y" * (MEGABYTE // 3))
    assert line == "Diagnostic-Code: x" + " y" * (MEGABYTE // 3)
    assert len(vendors.collapse(" x" * MEGABYTE)) == 2000


# ----------------------------------------------------------------------- the bounds

def test_normalize_reads_and_returns_at_most_its_bound() -> None:
    head = "550 5.1.1 <jane@example.org>: user unknown " * 400
    assert len(head) > MAX_NORMALIZED
    assert normalize(head + "tail 3F2A91C0B4 " * 1000) == normalize(head[:MAX_NORMALIZED])
    grown = normalize("1s] " * (MAX_NORMALIZED // 4))  # "1s" becomes the longer "#xxx#"
    assert len(grown) <= MAX_NORMALIZED
    assert normalize(grown) == grown


def test_rules_are_matched_against_the_first_16_kb_only() -> None:
    rules = (Rule(id=10_001, pattern="user unknown", failure_type=FailureType.HARD,
                  reason=Reason.USER_UNKNOWN),)
    assert match_rule("user unknown", rules) is not None
    assert match_rule("x " * (MAX_NORMALIZED // 2) + "user unknown", rules) is None


def blocks(count: int, start: int = 0) -> str:
    return "".join(
        f"Final-Recipient: rfc822; u{i}@example.org\nAction: failed\nStatus: 5.1.1\n\n"
        for i in range(start, start + count)
    )


def test_a_report_names_at_most_1000_recipients_and_says_so() -> None:
    report = parse_message(dsn_message(blocks=blocks(1500)))
    assert len(report.recipients) == MAX_RECIPIENTS == 1000
    assert report.recipients[-1].address == "u999@example.org"
    assert any("more than 1000 recipients" in p and "500 more" in p for p in report.problems)


def test_the_recipient_bound_holds_across_delivery_status_parts() -> None:
    raw = dsn_message(blocks=blocks(800)).replace(
        b"\n--b--\n",
        b"\n--b\nContent-Type: message/delivery-status\n\nReporting-MTA: dns; x\n\n"
        + blocks(800, 800).encode() + b"\n--b--\n",
    )
    report = parse_message(raw)
    assert len(report.recipients) == MAX_RECIPIENTS
    assert any("more than 1000 recipients" in p for p in report.problems)


def test_prose_naming_more_than_1000_recipients_is_cut_too() -> None:
    lines = "".join(f"<u{i}@example.org>: 550 5.1.1 unknown user\n\n" for i in range(1200))
    report = parse_message(prose(lines))
    assert report.kind is Kind.FAILURE
    assert len(report.recipients) == MAX_RECIPIENTS
    assert any("more than 1000 recipients" in p for p in report.problems)


def test_delivery_status_keeps_1000_blocks_and_counts_the_others() -> None:
    status = dsn.parse_delivery_status("Reporting-MTA: dns; x\n\n" + blocks(1200))
    assert len(status.recipients) == dsn.MAX_RECIPIENTS
    assert status.skipped == 200


def test_flufl_bounce_reads_a_bounded_head_with_bounded_lines() -> None:
    raw = b"From: a@b\n\n" + (b"," * 5000 + b"\n") * 100
    head = fallback.bounded(raw)
    assert len(head) <= fallback.MAX_BYTES
    assert max(len(line) for line in head.split(b"\n")) <= fallback.MAX_LINE
    assert head.startswith(b"From: a@b\n\n" + b"," * fallback.MAX_LINE + b"\n")
    assert fallback.bounded(b"From: a@b\n\nshort\n") == b"From: a@b\n\nshort\n"


@pytest.mark.slow
def test_a_bounce_that_reaches_flufl_bounce_with_a_line_of_1_mb() -> None:
    raw = (b"From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n\n"
           b"did not reach the following recipient\n" + b"," * MEGABYTE + b"\n")
    report = parse_message(raw)
    assert report.recipients == ()
    assert any("no recipient" in problem for problem in report.problems)


def test_encoded_words_are_decoded_unless_too_long_or_never_closed() -> None:
    assert mime.decode_words("=?utf-8?q?R=C3=A9union?=") == "Réunion"
    long_value = "=?utf-8?q?a?= " * (mime.MAX_DECODED_VALUE // 14 + 1)
    assert mime.decode_words(long_value) == long_value
    unclosed = "=?utf-8?q?R=C3=A9union?= " + "=?a?q? " * (mime.MAX_UNCLOSED_WORDS + 1)
    assert mime.decode_words(unclosed) == unclosed
    few = "=?utf-8?q?R=C3=A9union?= " + "=?a?q? " * mime.MAX_UNCLOSED_WORDS
    assert mime.decode_words(few) != few


def test_boundary_guesses_are_bounded() -> None:
    real = b"--real\npart\n--real--\n"
    decoys = [b"--decoy%d\n" % i for i in range(mime.MAX_BOUNDARY_GUESSES)]
    assert mime.guess_boundary(real) == b"real"
    assert mime.guess_boundary(b"".join(decoys[:-1]) + real) == b"real"
    assert mime.guess_boundary(b"".join(decoys) + real) is None  # after 8 distinct decoys


def test_boundaries_are_guessed_for_four_multiparts_of_a_message_at_most() -> None:
    body = b"<a@example.org>: 550 5.1.1 unknown user\n"
    for level in range(6):
        head = b'Content-Type: multipart/mixed; boundary="mangled%d"\n\n' % level
        body = head + b"--real%d\n" % level + body + b"\n--real%d--\n" % level
    loaded = mime.load(b"From: MAILER-DAEMON@mx.example.net\n" + body)
    guessed = "multipart/mixed: its boundary delimits nothing; used the delimiter found in the body"
    assert loaded.problems.count(guessed) == mime.MAX_GUESSED_MULTIPARTS == 4
    assert "multipart/mixed: its boundary delimits nothing, read as text" in loaded.problems


def test_a_header_section_of_half_a_million_headers_is_cut() -> None:
    raw = (b"From: MAILER-DAEMON@mx.example.net\nSubject: Undelivered Mail\n"
           + b"X-Filler: yes\n" * 500_000 + b"\n<a@example.org>: 550 5.1.1 unknown user\n")
    report = parse_message(raw)
    assert report.subject == "Undelivered Mail"
    assert any("header section too long" in problem for problem in report.problems)
    assert not [p for p in report.problems if p.startswith("parser error")]
