"""A real DNS server on loopback for the DNS tests: a small UDP responder built with
dnspython, started per test, serving a fixed zone.

Names served (everything under ``.test``):

- ``exists.test``: MX 10 mx1.exists.test, MX 20 mx2.exists.test, and an A record;
- ``gone.test`` (and anything not listed): NXDOMAIN;
- ``nullmx.test``: ``MX 0 .`` (RFC 7505);
- ``aonly.test``: no MX, an A record (implicit MX);
- ``nomail.test``: exists (TXT) with no MX and no address record;
- ``slow.test``: never answered (the timeout case);
- ``broken.test``: SERVFAIL;
- ``gmail-hosted.test``, ``o365-hosted.test``, ``yahoo-hosted.test``: MX at the
  providers' real host names.

``server.queries`` counts the questions received, so a test can tell a cache hit.
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest

ZONE: dict[tuple[str, str], tuple[str, ...]] = {
    ("exists.test.", "MX"): ("10 mx1.exists.test.", "20 mx2.exists.test."),
    ("exists.test.", "A"): ("192.0.2.10",),
    ("nullmx.test.", "MX"): ("0 .",),
    ("aonly.test.", "A"): ("192.0.2.20",),
    ("nomail.test.", "TXT"): ('"v=spf1 -all"',),
    ("gmail-hosted.test.", "MX"): ("5 gmail-smtp-in.l.google.com.",
                                   "10 alt1.gmail-smtp-in.l.google.com."),
    ("o365-hosted.test.", "MX"): ("0 o365-hosted-test.mail.protection.outlook.com.",),
    ("yahoo-hosted.test.", "MX"): ("1 mta5.am0.yahoodns.net.",),
}
SILENT = {"slow.test."}
SERVFAIL = {"broken.test."}


@dataclass
class LoopbackDns:
    host: str
    port: int
    queries: Counter[tuple[str, str]] = field(default_factory=Counter)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def _answer(request: dns.message.Message) -> dns.message.Message | None:
    question = request.question[0]
    name = question.name.to_text().lower()
    rdtype = dns.rdatatype.to_text(question.rdtype)
    if name in SILENT:
        return None
    response = dns.message.make_response(request)
    response.flags |= dns.flags.AA
    if name in SERVFAIL:
        response.set_rcode(dns.rcode.SERVFAIL)
        return response
    if not any(owner == name for owner, _ in ZONE):
        response.set_rcode(dns.rcode.NXDOMAIN)
        return response
    records = ZONE.get((name, rdtype), ())
    if records:
        response.answer.append(
            dns.rrset.from_text_list(name, 300, dns.rdataclass.IN, question.rdtype, records)
        )
    return response


def _serve(sock: socket.socket, server: LoopbackDns, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            data, peer = sock.recvfrom(4096)
        except TimeoutError:
            continue
        except OSError:
            return
        try:
            request = dns.message.from_wire(data)
        except Exception:
            continue
        question = request.question[0]
        server.queries[(question.name.to_text().lower(),
                        dns.rdatatype.to_text(question.rdtype))] += 1
        response = _answer(request)
        if response is not None:
            sock.sendto(response.to_wire(), peer)


@pytest.fixture
def dns_server() -> Iterator[LoopbackDns]:
    """Start the responder on 127.0.0.1 (a free UDP port) for one test."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.settimeout(0.05)
    server = LoopbackDns("127.0.0.1", sock.getsockname()[1])
    stop = threading.Event()
    thread = threading.Thread(target=_serve, args=(sock, server, stop), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        stop.set()
        thread.join(timeout=2)
        sock.close()
