"""The same bounce with LF, CRLF or bare CR line ends, with or without an mbox
``From `` line, parses the same."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from bounced.core.parse import parse_message
from bounced.model import BounceReport
from tests.paths import DATA

DATA = DATA
SAMPLES = [
    DATA / "mta-lab" / "postfix-12-multi-hdrs-envid-failed.eml",
    DATA / "mta-lab" / "exim-18-multi-mixed-failed.eml",
    DATA / "corpus" / "sisimai" / "eml" / "lhost-qmail-02.eml",
    DATA / "corpus" / "sisimai" / "eml" / "lhost-exim-05.eml",
]


def as_lf(raw: bytes) -> bytes:
    return raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")


def summary(report: BounceReport) -> tuple[object, ...]:
    return (
        report.kind,
        tuple((r.address, r.status, r.reply_code, r.diagnostic) for r in report.recipients),
        report.original_message_id,
        report.subject,
        report.verp_token,
    )


@pytest.mark.parametrize("path", SAMPLES, ids=lambda p: p.name)
@pytest.mark.parametrize(
    "variant",
    [
        lambda raw: raw.replace(b"\n", b"\r\n"),
        lambda raw: raw.replace(b"\n", b"\r"),
        lambda raw: b"From MAILER-DAEMON  Sun Nov 22 13:30:00 2026\n" + raw,
        lambda raw: b"From MAILER-DAEMON  Sun Nov 22 13:30:00 2026\r\n"
        + raw.replace(b"\n", b"\r\n"),
    ],
    ids=["crlf", "cr", "mbox-lf", "mbox-crlf"],
)
def test_line_ends_do_not_change_the_report(
    path: Path, variant: Callable[[bytes], bytes]
) -> None:
    lf = as_lf(path.read_bytes())
    expected = summary(parse_message(lf))
    assert expected[1], "the sample has recipients"
    assert summary(parse_message(variant(lf))) == expected


def test_bare_cr_sample_file() -> None:
    raw = (DATA / "bad" / "bare-cr-line-ends.eml").read_bytes()
    assert b"\n" not in raw
    report = parse_message(raw)
    assert [(r.address, r.status) for r in report.recipients] == [("nobody@example.org",
                                                                   "5.1.1")]
    assert report.verp_token == "cr"
