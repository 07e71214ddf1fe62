"""A minimal SMSC for the tests, on smpplib's PDU classes, over loopback TCP.

It does what an SMSC does to a receiving ESME: accepts a ``bind_receiver`` /
``bind_transceiver`` (checking system_id and password), answers ``enquire_link``, sends
``deliver_sm`` receipts, reads their ``deliver_sm_resp``, and **re-sends on the next
bind every receipt it never saw answered** (what SMSCs do, and what makes "commit before
``deliver_sm_resp``" lose nothing). It can drop the connection and stop listening, then
listen again on the same port, like an SMSC restarting.

It runs its own event loop in a thread, so synchronous tests drive it with plain calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from smpplib import command_codes
from smpplib import smpp as codec

from tests.harness.waiting import eventually


class _Sequence:
    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


@dataclass
class Sent:
    """One receipt the SMSC owes the ESME until it reads its ``deliver_sm_resp``."""

    name: str
    fields: dict[str, Any]
    sequences: list[int] = field(default_factory=list)
    status: int | None = None
    #: Answers to ignore: the ESME "died before its answer reached us".
    lose_answers: int = 0


class LoopbackSmsc:
    """``start()``, then ``send(name, **deliver_sm fields)``; ``acked(name)`` once answered."""

    def __init__(self, system_id: str = "bounced", password: str = "secret", *,
                 tls: ssl.SSLContext | None = None) -> None:
        """``tls``: a server context, for SMPP over TLS."""
        self.system_id, self.password = system_id, password
        self.tls = tls
        self.port = 0
        self.binds = 0
        self.bind_commands: list[str] = []
        self.enquire_links = 0
        self.receipts: dict[str, Sent] = {}
        self._order: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._sequence = _Sequence()
        self._lock = threading.Lock()

    # -- control, from the test's thread

    def start(self) -> LoopbackSmsc:
        self._thread.start()
        self._call(self._listen())
        return self

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._call(self._shutdown())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def drop(self) -> None:
        """Close the ESME's connection and stop listening (an SMSC going down)."""
        self._call(self._shutdown())

    def restart(self) -> None:
        """Listen again on the same port."""
        self._call(self._listen())

    def send(self, name: str, *, lose_answer: bool = False, **fields: Any) -> None:
        """Send one receipt (now if bound, else at the next bind)."""
        with self._lock:
            self.receipts[name] = Sent(name, fields, lose_answers=int(lose_answer))
            self._order.append(name)
        self._call(self._push(name))

    def acked(self, name: str) -> bool:
        sent = self.receipts[name]
        return sent.status is not None

    def wait(self, condition: Callable[[], bool], timeout: float = 30.0, what: str = "") -> None:
        if not eventually(condition, seconds=timeout, every=0.02):
            raise AssertionError(f"timed out waiting for {what or condition}")

    def wait_bound(self, count: int, timeout: float = 30.0) -> None:
        self.wait(lambda: self.binds >= count and self._writer is not None, timeout,
                  f"bind #{count}")

    def _call(self, coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(10)

    # -- the server, on its loop

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._session, "127.0.0.1", self.port,
                                                  reuse_address=True, ssl=self.tls)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()

    async def _push(self, name: str) -> None:
        if self._writer is not None:
            self._deliver(self._writer, self.receipts[name])

    def _deliver(self, writer: asyncio.StreamWriter, sent: Sent) -> None:
        pdu = codec.make_pdu("deliver_sm", client=self._sequence, **sent.fields)
        sent.sequences.append(pdu.sequence)
        writer.write(pdu.generate())

    def _write(self, writer: asyncio.StreamWriter, command: str, sequence: int,
               **fields: Any) -> None:
        pdu = codec.make_pdu(command, client=self._sequence, **fields)
        pdu.sequence = sequence
        writer.write(pdu.generate())

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                       ) -> None:
        try:
            while True:
                header = await reader.readexactly(16)
                length, command_id, status, sequence = struct.unpack(">LLLL", header)
                body = await reader.readexactly(length - 16)
                name = command_codes.get_command_name(command_id)
                if name in ("bind_receiver", "bind_transceiver"):
                    pdu: Any = codec.parse_pdu(header + body, client=self._sequence)
                    ok = (pdu.system_id.decode(), pdu.password.decode()) == (
                        self.system_id, self.password)
                    self._write(writer, f"{name}_resp", sequence, system_id="TESTSMSC",
                                status=0 if ok else 0x0E)
                    if not ok:
                        continue
                    self.bind_commands.append(name)
                    self._writer = writer
                    self.binds += 1
                    for each in list(self._order):  # what was never answered, again
                        if self.receipts[each].status is None:
                            self._deliver(writer, self.receipts[each])
                elif name == "enquire_link":
                    self.enquire_links += 1
                    self._write(writer, "enquire_link_resp", sequence)
                elif name == "unbind":
                    self._write(writer, "unbind_resp", sequence)
                    await writer.drain()
                    break
                elif name == "deliver_sm_resp":
                    for sent in self.receipts.values():
                        if sequence in sent.sequences:
                            if sent.lose_answers:
                                sent.lose_answers -= 1
                            else:
                                sent.status = status
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            if self._writer is writer:
                self._writer = None
            writer.close()
