"""The daemon's log, redirected to a file as under a log shipper: every line one whole
JSON object, from the listener, its worker process and the libraries' own loggers."""

from __future__ import annotations

import json
import signal
import socket
import threading
from collections.abc import Callable
from pathlib import Path

from bounced.log import MAX_LINE_BYTES
from tests.harness.daemon import unique_dsn
from tests.harness.process import ServerProcess, wait_until_processed

BOUNCE = "bounces+tok@bounce.example"


def pipelined(port: int, serials: range) -> None:
    """Messages sent as fast as a client can: one write per transaction (MAIL, RCPT,
    DATA and the data together), then its four replies."""
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO load.test\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        for serial in serials:
            raw = unique_dsn(serial).replace(b"\r\n.", b"\r\n..")
            if not raw.endswith(b"\r\n"):
                raw += b"\r\n"
            sock.sendall(b"MAIL FROM:<>\r\nRCPT TO:<" + BOUNCE.encode() + b">\r\nDATA\r\n"
                         + raw + b".\r\n")
            replies = [reader.readline() for _ in range(4)]
            assert replies[-1].startswith(b"250 2.0.0"), replies


def garbage(port: int) -> None:
    """Commands aiosmtpd does not know: its own "unrecognised" warnings (mail.log)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        for word in (b"GARBAGE", b"\xff\xfeJUNK", b"HELLO there", b"X" * 400):
            sock.sendall(word + b"\r\n")
            assert reader.readline()[:1] == b"5"


def many_recipients(port: int) -> None:
    """One envelope whose message.received line would be ~40 KB with every recipient."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(b"EHLO big.test\r\n")
        while reader.readline()[3:4] == b"-":
            pass
        rcpts = [f"bounces+{'r' * 150}{n}@bounce.example" for n in range(250)]
        sock.sendall(b"MAIL FROM:<>\r\n" + b"".join(
            f"RCPT TO:<{rcpt}>\r\n".encode() for rcpt in rcpts) + b"DATA\r\n"
            + unique_dsn(999_999) + b"\r\n.\r\n")
        replies = [reader.readline() for _ in range(len(rcpts) + 3)]
        assert replies[-1].startswith(b"250 2.0.0"), replies[-1]


def test_ten_thousand_lines_from_both_processes_and_the_libraries_all_parse(
    serve: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    db = tmp_path / "log.db"
    server = serve("--db", str(db), "--smtp", "127.0.0.1:0")  # stdout: a file, so JSON
    port = server.ready().port()
    senders = [threading.Thread(target=pipelined, args=(port, range(n * 1250, (n + 1) * 1250)))
               for n in range(4)]
    for sender in senders:
        sender.start()
    for _ in range(3):
        garbage(port)
    many_recipients(port)
    for sender in senders:
        sender.join()
    wait_until_processed(db)
    server.wait_event("bounce.verdict", count=5001)
    server.signal(signal.SIGTERM)
    assert server.wait() == 0

    raw_lines = server.log_path.read_bytes().splitlines()
    assert len(raw_lines) >= 10_000
    events = []
    for number, line in enumerate(raw_lines, 1):
        assert len(line) + 1 <= MAX_LINE_BYTES, f"line {number} is {len(line)} bytes"
        event = json.loads(line)  # every line, not only most of them
        assert {"event", "level", "timestamp", "logger"} <= set(event), event
        events.append(event)
    by_name: dict[str, list[dict]] = {}
    for event in events:
        by_name.setdefault(event["event"], []).append(event)
    assert len(by_name["message.received"]) == 5001
    assert len(by_name["bounce.verdict"]) >= 5001
    assert {e["logger"] for e in by_name["bounce.verdict"]} == {"bounced.worker"}
    assert {e["logger"] for e in by_name["message.received"]} == {"bounced.daemon.receive"}
    library = [e for e in events if e["logger"] == "mail.log"]
    assert len([e for e in library if "unrecognised: GARBAGE" in e["event"]]) == 3
    assert all(e["level"] == "warning" for e in library)
    (big,) = [e for e in by_name["message.received"] if e.get("truncated")]
    assert big["truncated"] == ["rcpt_to"]
    assert 0 < len(big["rcpt_to"]) < 250
    assert big["rcpt_to"][0] == f"bounces+{'r' * 150}0@bounce.example"
