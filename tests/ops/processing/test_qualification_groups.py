"""The qualification table groups identical failures whatever varies in their text."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

#: Five failures; everything in braces varies from one bounce to the next.
FAILURES = (
    "550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox "
    "table",
    "552 5.2.2 <{address}>: Mailbox full, quota exceeded (queue {queue})",
    "554 5.7.1 Service unavailable; Client host [{ip}] blocked using zen.spamhaus.org; "
    "https://www.spamhaus.org/query/ip/{ip}",
    "550 5.4.1 Recipient address rejected: Access denied. [{host}] at {date}",
    "451 4.3.0 Temporary lookup failure on {host} (id={queue}): retry timeout exceeded",
)

DSN = """\
Date: {date}
From: Mail Delivery System <MAILER-DAEMON@{host}>
To: bounces+{token}@bounce.example
Subject: Undelivered Mail Returned to Sender
Message-Id: <{queue}.{serial}@{host}>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="b-{serial}"

--b-{serial}
Content-Type: text/plain; charset=us-ascii

Your message could not be delivered.

--b-{serial}
Content-Type: message/delivery-status

Reporting-MTA: dns; {host}
X-Postfix-Queue-ID: {queue}

Final-Recipient: rfc822; {address}
Action: failed
Status: {status}
Remote-MTA: dns; {host}
Diagnostic-Code: smtp; {diagnostic}

--b-{serial}--
"""


def _random_host(rng: random.Random) -> str:
    label = "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(3, 9)))
    return f"mx{rng.randint(1, 99)}.{label}.example.{rng.choice(['com', 'net', 'org'])}"


def make_bounce(index: int, failure: str, rng: random.Random) -> bytes:
    moment = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(seconds=rng.randint(0, 30_000_000))
    fields = {
        "address": f"user{index}.{rng.randint(0, 99999)}@{_random_host(rng)[5:]}",
        "queue": "".join(rng.choice("0123456789ABCDEF") for _ in range(11)),
        "ip": ".".join(str(rng.randint(1, 254)) for _ in range(4)),
        "host": _random_host(rng),
        "date": moment.strftime("%a, %d %b %Y %H:%M:%S +0000"),
        "serial": str(index),
        "token": f"t{index}",
    }
    diagnostic = failure.format(**fields)
    status = diagnostic.split()[1]
    return DSN.format(diagnostic=diagnostic, status=status, **fields).encode()


def test_thousand_variants_of_five_failures_make_five_qualification_rows(
        tmp_path: Path, db: Path, bounced, sql):
    rng = random.Random(20261122)
    mails = tmp_path / "mails"
    mails.mkdir()
    for index in range(1000):
        (mails / f"{index:04}.eml").write_bytes(
            make_bounce(index, FAILURES[index % len(FAILURES)], rng))

    result = bounced(["ingest", "--db", str(db), str(mails)])

    assert result.status == 0, result.err
    assert sql("SELECT count(*), count(DISTINCT sha256) FROM messages") == [(1000, 1000)]
    assert sql("SELECT count(*) FROM bounces") == [(1000,)]
    rows = sql("SELECT text, occurrences FROM qualification ORDER BY text")
    assert len(rows) == 5, "\n".join(text for text, _ in rows)
    assert [occurrences for _, occurrences in rows] == [200] * 5
    assert sql("SELECT count(DISTINCT qualification_id) FROM bounces") == [(5,)]
