"""Bounces with chosen diagnostics, as files for ``bounced ingest``."""

from __future__ import annotations

from collections.abc import Callable
from itertools import count
from pathlib import Path

import pytest

_serial = count(1)


def dsn(address: str, status: str, diagnostic: str, *, action: str = "failed") -> bytes:
    """A minimal RFC 3464 delivery status notification for one recipient."""
    serial = next(_serial)
    return (
        "From: Mail Delivery System <MAILER-DAEMON@mta.test>\r\n"
        "To: bounces@bounce.test\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        "Date: Sun, 22 Nov 2026 13:30:00 +0000\r\n"
        f"Message-ID: <dsn-{serial}@mta.test>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n'
        "\r\n--B\r\nContent-Type: text/plain\r\n\r\nDelivery to the recipient failed.\r\n"
        "\r\n--B\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; mta.test\r\n\r\n"
        f"Final-Recipient: rfc822; {address}\r\n"
        f"Action: {action}\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; {diagnostic}\r\n"
        "\r\n--B--\r\n"
    ).encode()


@pytest.fixture
def dsn_file(tmp_path: Path) -> Callable[..., Path]:
    """``dsn_file(address, status, diagnostic)`` -> path of a new .eml file."""
    directory = tmp_path / "dsn"
    directory.mkdir(exist_ok=True)

    def write(address: str, status: str, diagnostic: str, **kwargs: str) -> Path:
        path = directory / f"dsn-{next(_serial)}.eml"
        path.write_bytes(dsn(address, status, diagnostic, **kwargs))
        return path

    return write
