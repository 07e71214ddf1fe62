"""The daemon's fast reading of MAIL FROM / RCPT TO paths gives exactly aiosmtpd's answer."""

from __future__ import annotations

import pytest
from aiosmtpd.smtp import SMTP

from bounced.daemon.receive import BouncedSMTP

PATHS = [
    "<>", "<> SIZE=100", "<>SIZE=1", "<a@b.c>", "<a@b.c> SIZE=12 BODY=8BITMIME",
    "<bounces+tok=x@bounce.example.com>", " <a@b.c>", "<A.B@C.D>", "<a@b.c>SIZE=1",
    "<a@b.c> ", "<a@b.c>   SMTPUTF8", "<a@b>", "<a@-b.c>", "<o'brien@example.ie>",
    "<x_y-z!#$%&*/=?^`{|}~@example.org>",
    # Not plain: these must take aiosmtpd's own parser, with its answers.
    "a@b.c", '<"q s"@b.c>', "<@r:a@b.c>", "<müller@b.c>", "<a@[1.2.3.4]>", "<a@b.c",
    "<a..b@c.d>", "<.a@b.c>", "<a@b.c.>", "<a@b.c> (comment) SIZE=1", "", "<@>",
]


def _parser(cls: type[SMTP], local_part_limit: int = 0) -> SMTP:
    server = cls.__new__(cls)
    server.local_part_limit = local_part_limit
    return server


@pytest.mark.parametrize("path", PATHS)
def test_a_path_is_read_as_aiosmtpd_reads_it(path: str) -> None:
    assert _parser(BouncedSMTP)._getaddr(path) == _parser(SMTP)._getaddr(path)


@pytest.mark.parametrize("path", ["<abcdefgh@example.org>", "<abc@example.org> SIZE=1"])
def test_the_local_part_limit_still_applies(path: str) -> None:
    for limit in (3, 8, 64):
        assert (_parser(BouncedSMTP, limit)._getaddr(path)
                == _parser(SMTP, limit)._getaddr(path))
