"""Where messages come from: files, mbox files, maildirs, directories, stdin."""

from __future__ import annotations

import io
import shutil
import sys
from pathlib import Path

import pytest

from bounced.core.parse import parse_message
from bounced.model import Kind
from bounced.ops.sources import read_messages, read_stream, split_mbox
from tests.paths import DATA

DATA = DATA
CORPUS = DATA / "corpus" / "sisimai" / "eml"
LAB = DATA / "mta-lab"


def test_single_file_is_one_message_named_after_its_path() -> None:
    path = LAB / "postfix-01-user-unknown-failed.eml"
    (message,) = read_messages(str(path))
    assert message.name == str(path)
    assert message.raw == path.read_bytes()


def test_concatenated_bounces_are_split_and_keep_the_file_name() -> None:
    path = CORPUS / "rfc3464-28.eml"
    messages = list(read_messages(str(path)))
    assert len(messages) == 2
    assert {m.name for m in messages} == {str(path)}
    assert b"".join(m.raw for m in messages) == path.read_bytes()
    kinds = [parse_message(m.raw).kind for m in messages]
    assert Kind.DELIVERED in kinds


def test_concatenation_without_blank_line_is_split_on_the_envelope_date() -> None:
    messages = list(read_messages(str(CORPUS / "rhost-cox-01.eml")))
    assert len(messages) == 2
    assert messages[1].raw.startswith(b"From double-bounce@")


def test_single_message_mbox_file() -> None:
    (message,) = read_messages(str(CORPUS / "rfc3834-05.eml"))
    assert message.raw.startswith(b"From MAILER-DAEMON")


def test_mbox_from_in_body_after_text_is_not_a_separator() -> None:
    lines = [b"From a@b Sun Nov 22 13:30:00 2026\n", b"Subject: x\n", b"\n",
             b"line\n", b"From here on, text.\n", b"\n",
             b"From c@d Sun Nov 22 13:31:00 2026\n", b"Subject: y\n", b"\n", b"body\n"]
    messages = list(split_mbox(lines))
    assert len(messages) == 2
    assert b"From here on" in messages[0]


def test_mbox_with_many_messages(tmp_path: Path) -> None:
    mbox = tmp_path / "bounces.mbox"
    with mbox.open("wb") as out:
        for _ in range(50):
            out.write(b"From MAILER-DAEMON Sun Nov 22 13:30:00 2026\n")
            out.write((LAB / "postfix-01-user-unknown-failed.eml").read_bytes()
                      .replace(b"\r\n", b"\n").replace(b"\nFrom ", b"\n>From "))
            out.write(b"\n")
    messages = list(read_messages(str(mbox)))
    assert len(messages) == 50
    assert all(parse_message(m.raw).recipients for m in messages)


def test_maildir_reads_new_and_cur_never_tmp(tmp_path: Path) -> None:
    maildir = tmp_path / "Maildir"
    for sub in ("new", "cur", "tmp"):
        (maildir / sub).mkdir(parents=True)
    shutil.copy(LAB / "postfix-01-user-unknown-failed.eml", maildir / "new" / "1.host")
    shutil.copy(LAB / "exim-01-user-unknown-failed.eml", maildir / "cur" / "2.host:2,S")
    shutil.copy(LAB / "postfix-02-mailbox-full-failed.eml", maildir / "tmp" / "3.host")
    names = [Path(m.name).name for m in read_messages(str(maildir))]
    assert names == ["1.host", "2.host:2,S"]


def test_directory_is_read_recursively_in_sorted_order(tmp_path: Path) -> None:
    (tmp_path / "b").mkdir()
    shutil.copy(LAB / "postfix-01-user-unknown-failed.eml", tmp_path / "b" / "z.eml")
    shutil.copy(LAB / "exim-01-user-unknown-failed.eml", tmp_path / "a.eml")
    shutil.copy(CORPUS / "rfc3464-28.eml", tmp_path / "b" / "a.mbox")
    names = [Path(m.name).relative_to(tmp_path).as_posix() for m in read_messages(str(tmp_path))]
    assert names == ["a.eml", "b/a.mbox", "b/a.mbox", "b/z.eml"]


def test_empty_file_is_one_empty_message(tmp_path: Path) -> None:
    path = tmp_path / "empty.eml"
    path.write_bytes(b"")
    assert [m.raw for m in read_messages(str(path))] == [b""]


def test_stdin_is_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    raw = (CORPUS / "rfc3464-28.eml").read_bytes()
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(raw)))
    messages = list(read_messages("-"))
    assert [m.name for m in messages] == ["-", "-"]


def test_stream_is_read_line_by_line_not_whole() -> None:
    class CountingStream(io.BytesIO):
        big_reads = 0

        def read(self, size: int | None = -1) -> bytes:
            if size is None or size < 0:
                CountingStream.big_reads += 1
            return super().read(size)

    raw = (CORPUS / "rfc3464-28.eml").read_bytes()
    assert len(list(read_stream(CountingStream(raw), "x"))) == 2
    assert CountingStream.big_reads == 0


def test_missing_file_raises_a_clear_oserror(tmp_path: Path) -> None:
    missing = tmp_path / "nope.eml"
    with pytest.raises(OSError, match="no such file") as caught:
        list(read_messages(str(missing)))
    assert caught.value.filename == str(missing)


def test_unreadable_file_raises_oserror(tmp_path: Path) -> None:
    path = tmp_path / "secret.eml"
    path.write_bytes(b"From: a@b\n\nx\n")
    path.chmod(0)
    try:
        with path.open("rb"):
            pytest.skip("running as a user that ignores file permissions (root)")
    except PermissionError:
        pass
    with pytest.raises(PermissionError):
        list(read_messages(str(path)))
