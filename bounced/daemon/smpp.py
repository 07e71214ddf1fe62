"""SMS status reports over SMPP 3.4: bounced as the receiving ESME of an SMSC account.

For each ``[[smpp]]`` account the daemon connects (TLS optional), binds as a receiver
or a transceiver, answers the SMSC's ``enquire_link`` and sends its own after
``enquire_link`` of silence, and rebinds after any failure, waiting ``reconnect_min``
doubling up to ``reconnect_max``. Every ``deliver_sm`` that is a delivery receipt
(``esm_class`` message type "SMSC delivery receipt" or "intermediate notification")
becomes a :class:`~bounced.core.sms.Receipt`, handed to the same
:class:`~bounced.daemon.writer.GroupCommitWriter` as SMTP messages, and only once it is
committed does the ``deliver_sm_resp`` go out: no ack, no loss, as with SMTP's ``250``.
A receipt the SMSC re-sends because it never saw the answer has the same canonical
bytes (the sequence number is left out), so it is a duplicate and counts once. A
malformed receipt is stored (with what could not be read) and answered, never dropped;
when the database cannot take it (back-pressure, a failed commit) the answer is
``ESME_RX_T_APPN`` ("temporary application error"): the SMSC keeps the receipt and
re-sends it later. Receipts are committed concurrently (one task each), so an SMSC that
keeps several unanswered ``deliver_sm`` in flight (its window) gets them into one group
commit.

The PDU codec is smpplib's (``smpplib.smpp.make_pdu`` / ``parse_pdu``, maintained,
SMPP 3.4 with every TLV of ``deliver_sm``); the session around it is this module's,
on the daemon's event loop, because none of the libraries read fits the "commit before
``deliver_sm_resp``" rule and asyncio together:

- smpplib's own ``Client`` is blocking (a thread per account) and answers from inside
  its read loop;
- aiosmpplib's ``ESME`` (asyncio) awaits a hook before answering, but its ``DeliverSm``
  refuses a receipt without ``short_message`` (a TLV-only receipt is
  ``ValueError``, answered with ``generic_nack`` before any hook runs), and it has no
  TLS;
- smpp34's asyncio ``Client`` answers every ``deliver_sm`` in its Rust core before
  Python sees it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from smpplib import smpp as smpp_codec

from bounced.config import SmppAccount
from bounced.core.sms import (
    ESM_INTERMEDIATE,
    ESM_TYPE_MASK,
    Receipt,
    decode_text,
    is_delivery_receipt,
    message_id_of,
    receipt_raw,
)
from bounced.daemon.metrics import Metrics
from bounced.daemon.receive import MessageSink
from bounced.log import get_logger
from bounced.model import Channel, IncomingMessage

log = get_logger("bounced.daemon.smpp")
# smpplib warns through stdlib logging about every unknown TLV; they are kept in the
# stored PDU, and the warning is noise in the daemon's log.
logging.getLogger("smpplib").setLevel(logging.ERROR)

HEADER = 16
#: Largest PDU accepted: a ``deliver_sm`` with a full ``message_payload`` (64 KiB).
MAX_PDU = 70_000
#: command_status values (SMPP 3.4 5.1.3).
ESME_ROK = 0x00000000
ESME_RINVCMDID = 0x00000003
ESME_RX_T_APPN = 0x00000064
#: command_id of the PDUs a receiving ESME handles.
DELIVER_SM = 0x00000005
GENERIC_NACK = 0x80000000
RESPONSE_BIT = 0x80000000
#: How long a stopping daemon waits for the SMSC's ``unbind_resp``.
UNBIND_WAIT_SECONDS = 2.0

Clock = Callable[[], datetime]


class _Sequence:
    """What smpplib asks of a client to number the PDUs it makes and parses."""

    def __init__(self) -> None:
        self.sequence = 0

    def next_sequence(self) -> int:
        self.sequence = self.sequence % 0x7FFFFFFF + 1
        return self.sequence


class SessionError(Exception):
    """The session cannot go on (closed, refused, silent, garbled): rebind."""


@dataclass(frozen=True, slots=True)
class Pdu:
    """One PDU as read: its header fields and its bytes."""

    command_id: int
    status: int
    sequence: int
    raw: bytes


def without_sequence(raw: bytes) -> bytes:
    """The PDU with its sequence number zeroed: what identifies a re-sent receipt."""
    return raw[:12] + b"\0\0\0\0" + raw[16:]


def receipt_of(account: SmppAccount, raw: bytes) -> Receipt | None:
    """The receipt a ``deliver_sm`` carries (smpplib decodes it); ``None`` when it is
    no delivery receipt (a mobile-originated SMS). A PDU smpplib cannot read is still
    a receipt: stored with its bytes and the problem, for an operator to look at."""
    pdu_hex = without_sequence(raw).hex()
    try:
        pdu: Any = smpp_codec.parse_pdu(raw, client=_Sequence(),
                                        allow_unknown_opt_params=True)
        if pdu.esm_class is None or pdu.data_coding is None:  # smpplib stops silently
            raise ValueError("the body ends before its mandatory fields")
        esm_class = int(pdu.esm_class)
    except Exception as error:  # any decoding failure: keep the bytes
        return Receipt("smpp", account.name, account.smsc, pdu=pdu_hex,
                       problems=(f"unreadable deliver_sm: {type(error).__name__}: {error}",))
    if not is_delivery_receipt(esm_class):
        return None

    def text_of(value: Any) -> str | None:
        if value is None:
            return None
        return value.decode("latin-1") if isinstance(value, bytes) else str(value)

    payload = pdu.short_message or pdu.message_payload or b""
    state = getattr(pdu, "message_state", None)
    network = getattr(pdu, "network_error_code", None)
    message_id = text_of(getattr(pdu, "receipted_message_id", None))
    return Receipt(
        via="smpp",
        account=account.name,
        smsc=account.smsc,
        text=decode_text(payload if isinstance(payload, bytes) else str(payload).encode(),
                         int(pdu.data_coding or 0)).strip("\0").strip(),
        source=text_of(pdu.source_addr),
        source_ton=int(pdu.source_addr_ton or 0),
        message_id=message_id.strip("\0") if message_id else None,
        message_state=int(state) if state is not None else None,
        network_error_code=network.hex() if isinstance(network, bytes) else None,
        esm_class=esm_class,
        intermediate=(esm_class & ESM_TYPE_MASK) == ESM_INTERMEDIATE,
        pdu=pdu_hex,
    )


class SmppReceiver:
    """One ``[[smpp]]`` account's session, rebound for as long as the daemon runs."""

    def __init__(self, account: SmppAccount, sink: MessageSink, *, metrics: Metrics,
                 clock: Clock = lambda: datetime.now(UTC)) -> None:
        self.account = account
        self.sink = sink
        self.metrics = metrics
        self.clock = clock
        self.bound = False
        self.binds = 0
        self._sequence = _Sequence()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._inflight: set[asyncio.Task[None]] = set()
        self._unbound = asyncio.Event()

    # -- life cycle

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"smpp:{self.account.name}")

    async def stop(self) -> None:
        """Unbind (the SMSC keeps what was not answered), let the receipts being
        committed be answered, close."""
        self._stopping = True
        writer = self._writer
        if writer is not None and self.bound:
            with contextlib.suppress(OSError, RuntimeError):
                self._send(writer, "unbind")
                await writer.drain()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._unbound.wait(), UNBIND_WAIT_SECONDS)
        if self._inflight:
            await asyncio.wait(self._inflight, timeout=UNBIND_WAIT_SECONDS)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._close()

    def _close(self) -> None:
        writer, self._writer = self._writer, None
        self.bound = False
        if writer is not None:
            writer.close()

    async def _run(self) -> None:
        account = self.account
        delay = account.reconnect_min.total_seconds()
        while not self._stopping:
            started = time.monotonic()
            try:
                await self._session()
                error = "closed by the SMSC"
            except asyncio.CancelledError:
                raise
            except asyncio.IncompleteReadError:
                error = "connection closed by the SMSC"
            except (OSError, SessionError, TimeoutError) as failure:
                error = str(failure) or type(failure).__name__
            self._close()
            if self._stopping:
                break
            if time.monotonic() - started > account.reconnect_max.total_seconds():
                delay = account.reconnect_min.total_seconds()  # it had worked for a while
            log.warning("smpp.disconnected", account=account.name, host=account.host,
                        port=account.port, error=error, retry_in=round(delay, 3))
            await asyncio.sleep(delay)
            delay = min(delay * 2, account.reconnect_max.total_seconds())

    # -- one session

    async def _session(self) -> None:
        account = self.account
        context = None
        if account.tls:
            context = ssl.create_default_context(cafile=account.tls_ca_file or None)
        timeout = account.response_timeout.total_seconds()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(account.host, account.port, ssl=context,
                                    server_hostname=account.host if context else None),
            timeout)
        self._writer = writer
        self._unbound.clear()
        command = "bind_receiver" if account.bind == "receiver" else "bind_transceiver"
        sequence = self._send(writer, command, system_id=account.system_id,
                              password=account.password, system_type=account.system_type,
                              interface_version=0x34, addr_ton=0, addr_npi=0, address_range="")
        answer = await asyncio.wait_for(self._read(reader), timeout)
        if answer.sequence != sequence or not answer.command_id & RESPONSE_BIT:
            raise SessionError(f"unexpected answer to {command}: 0x{answer.command_id:08x}")
        if answer.status != ESME_ROK:
            raise SessionError(f"{command} refused with status 0x{answer.status:08x}")
        self.bound = True
        self.binds += 1
        log.info("smpp.bound", account=account.name, host=account.host, port=account.port,
                 bind=account.bind, tls=account.tls, binds=self.binds)
        await self._receive(reader, writer)

    async def _receive(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
                       ) -> None:
        idle = self.account.enquire_link.total_seconds()
        patience = self.account.response_timeout.total_seconds()
        probing = False
        while True:
            try:
                pdu = await asyncio.wait_for(self._read(reader), patience if probing else idle)
            except TimeoutError:
                if probing:
                    raise SessionError("no answer to enquire_link") from None
                self._send(writer, "enquire_link")
                probing = True
                continue
            probing = False
            name = _command_name(pdu.command_id)
            if pdu.command_id == DELIVER_SM:
                task = asyncio.create_task(self._deliver(writer, pdu))
                self._inflight.add(task)
                task.add_done_callback(self._inflight.discard)
            elif name == "enquire_link":
                self._send(writer, "enquire_link_resp", sequence=pdu.sequence)
            elif name == "unbind":
                self._send(writer, "unbind_resp", sequence=pdu.sequence)
                await writer.drain()
                raise SessionError("the SMSC unbound")
            elif name == "unbind_resp":
                self._unbound.set()
                return
            elif not pdu.command_id & RESPONSE_BIT:  # a request we do not serve
                self._send(writer, "generic_nack", sequence=pdu.sequence,
                           status=ESME_RINVCMDID)
            elif pdu.command_id == GENERIC_NACK:
                log.warning("smpp.generic_nack", account=self.account.name,
                            status=f"0x{pdu.status:08x}", sequence=pdu.sequence)

    async def _deliver(self, writer: asyncio.StreamWriter, pdu: Pdu) -> None:
        """Store one ``deliver_sm``, then answer it."""
        account = self.account
        receipt = receipt_of(account, pdu.raw)
        status = ESME_ROK
        if receipt is None:
            log.info("smpp.mobile_originated", account=account.name,
                     effect="answered, not stored (not a delivery receipt)")
        elif self.sink.overloaded():
            status = ESME_RX_T_APPN
            log.warning("smpp.backpressure", account=account.name,
                        effect="answered ESME_RX_T_APPN, the SMSC re-sends later")
        else:
            message = IncomingMessage(received_at=self.clock(), mail_from="", rcpt_to=(),
                                      raw=receipt_raw(receipt), peer=f"smpp:{account.name}",
                                      channel=Channel.SMS)
            started = time.monotonic()
            try:
                stored = await self.sink.accept(message)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # not durable: the SMSC must keep it
                status = ESME_RX_T_APPN
                log.error("message.store_failed", error=repr(error), peer=message.peer,
                          size=len(message.raw))
            else:
                self.metrics.commit_seconds.observe(time.monotonic() - started)
                self.metrics.received.labels("smpp", str(stored.duplicate).lower(),
                                             Channel.SMS.value).inc()
                log.info("message.received", message_id=stored.id, duplicate=stored.duplicate,
                         channel=Channel.SMS.value, peer=message.peer, size=len(message.raw),
                         protocol="smpp", smsc_message_id=message_id_of(receipt),
                         problems=list(receipt.problems) or None)
        if writer.is_closing():
            return  # the session is gone: the SMSC re-sends, the copy is a duplicate
        with contextlib.suppress(OSError, RuntimeError):
            self._send(writer, "deliver_sm_resp", sequence=pdu.sequence, status=status)
            await writer.drain()

    # -- the wire

    def _send(self, writer: asyncio.StreamWriter, command: str, *,
              sequence: int | None = None, **fields: Any) -> int:
        """Write one PDU made by smpplib; returns its sequence number."""
        if sequence is None:
            sequence = self._sequence.next_sequence()
        pdu = smpp_codec.make_pdu(command, client=self._sequence, **fields)
        pdu.sequence = sequence  # as smpplib's client does: the keyword is not enough
        writer.write(pdu.generate())
        return sequence

    @staticmethod
    async def _read(reader: asyncio.StreamReader) -> Pdu:
        header = await reader.readexactly(HEADER)
        length, command_id, status, sequence = struct.unpack(">LLLL", header)
        if not HEADER <= length <= MAX_PDU:
            raise SessionError(f"PDU length {length} out of range")
        body = await reader.readexactly(length - HEADER)
        return Pdu(command_id, status, sequence, header + body)


def _command_name(command_id: int) -> str:
    from smpplib import command_codes

    try:
        return str(command_codes.get_command_name(command_id))
    except Exception:  # unknown command ids are answered generic_nack
        return f"0x{command_id:08x}"
