"""Bad input through ``bounced ingest``: each is stored byte for byte, reported with a
clear message, never crashes the command, and never loses the messages around it."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.paths import DATA

BAD = DATA / "bad"


def _mime_bomb(levels: int) -> bytes:
    nested = "".join(
        f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n' for i in range(levels)
    )
    return ("From: x@example.org\nSubject: nested\nMIME-Version: 1.0\n" + nested).encode()


def _thirty_megabytes() -> bytes:
    line = b"x" * 998 + b"\n"
    return b"From: a@example.org\nSubject: big\n\n" + line * 31_500


CASES: dict[str, Callable[[], bytes]] = {
    "empty file": lambda: (BAD / "empty.eml").read_bytes(),
    "0-byte message": lambda: b"",
    "binary garbage": lambda: (BAD / "binary-garbage.bin").read_bytes(),
    "30 MB message": _thirty_megabytes,
    "MIME bomb": lambda: _mime_bomb(10_000),
    "header without a body": lambda: (BAD / "header-without-body.eml").read_bytes(),
    "invalid charset": lambda: (BAD / "invalid-charset.eml").read_bytes(),
    "not an email": lambda: (BAD / "not-an-email.txt").read_bytes(),
    "truncated DSN": lambda: (BAD / "truncated-dsn.eml").read_bytes(),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_stored_reported_and_the_others_are_processed(
    case: str, db: Path, tmp_path: Path, mail_file: Callable[..., Path],
    bounced: Callable, sql: Callable,
) -> None:
    raw = CASES[case]()
    bad = tmp_path / "bad.eml"
    bad.write_bytes(raw)
    before = mail_file("hard-user-unknown", address="before@example.org")
    after = mail_file("hard-user-unknown", address="after@example.org")

    result = bounced(["ingest", "--db", str(db), str(before), str(bad), str(after)])

    assert result.status == 0, result.out + result.err
    assert "Traceback" not in result.out + result.err
    [line] = [line for line in result.out.splitlines() if line.startswith(f"{bad}: ")]
    assert line.startswith(f"{bad}: #2 ")
    [(stored_sha, size, state, error)] = sql(
        "SELECT sha256, size, state, error FROM messages WHERE id = 2")
    assert (stored_sha, size) == (hashlib.sha256(raw).hexdigest(), len(raw))
    assert state == "processed", error
    neighbours = {("after@example.org", "quarantine"), ("before@example.org", "quarantine")}
    assert neighbours - set(sql("SELECT address, state FROM addresses")) == set()


@pytest.mark.parametrize(
    ("case", "says"),
    [("0-byte message", "empty"), ("binary garbage", "binary"), ("MIME bomb", "nesting"),
     ("30 MB message", "large"), ("not an email", "not an email")],
)
def test_unusable_input_is_explained_in_the_report_line(
    case: str, says: str, db: Path, tmp_path: Path, bounced: Callable
) -> None:
    bad = tmp_path / "bad.eml"
    bad.write_bytes(CASES[case]())
    result = bounced(["ingest", "--db", str(db), str(bad)])
    assert result.status == 0
    assert "not_bounce" in result.out
    assert says in result.out.lower(), result.out
