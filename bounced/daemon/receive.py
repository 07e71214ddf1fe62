"""Receive stage: the SMTP and LMTP front door (aiosmtpd), up to a durable ``250``.

What this module decides, and why:

- **Who may deliver what.** Only the configured bounce domains and addresses (with their
  VERP forms ``local+token@domain``) are accepted, anything else gets ``550 5.1.1`` at
  RCPT, so bounced can face the internet on port 25 without being an open relay. With
  nothing configured every recipient is accepted (fine on loopback; warned once).
- **When to say 250.** Only after the raw message is committed: the handler hands it to a
  :class:`MessageSink` and waits for the durable id. The sink batches concurrent messages
  into one transaction (group commit, in :mod:`bounced.daemon.serve`); this module never touches
  the database, so the policy is testable with an in-memory sink.
- **When to say "later".** ``451 4.3.2`` when the sink reports a backlog beyond
  ``processing.max_pending`` (back-pressure: the sending MTA keeps the bounce in its own
  queue instead of us holding it in memory), and ``451 4.3.0`` when the store fails:
  a temporary error is always safe, the MTA retries.
- **Replies that MTAs understand.** Enhanced status codes everywhere; ``552 5.3.4`` over
  the size limit (aiosmtpd's own text has none); LMTP answers after DATA once per accepted
  recipient (RFC 2033 §4.2).

aiosmtpd pitfalls handled here: the null sender arrives as ``"<>"`` (stored as ``""``);
its default hostname does a DNS lookup (we always pass one); SMTPUTF8 must be enabled or
Postfix cannot deliver DSNs about UTF-8 addresses; the raw bytes (``original_content``)
are stored untouched, never a decoded or re-encoded copy, so a re-sent identical message
is recognised as a duplicate.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session

from bounced.config import Config
from bounced.core.verp import envelope_token, split_local
from bounced.daemon.metrics import Metrics
from bounced.log import get_logger
from bounced.model import IncomingMessage

log = get_logger("bounced.daemon.receive")

Clock = Callable[[], datetime]

# aiosmtpd's own texts for the two size refusals and the DATA line-length refusal; they
# carry no enhanced status code, so the protocol classes below rewrite them.
_AIOSMTPD_TOO_MUCH_DATA = "552 Error: Too much mail data"
_AIOSMTPD_SIZE_PARAM = "552 Error: message size exceeds fixed maximum message size"
_AIOSMTPD_LINE_TOO_LONG = "500 Line too long (see RFC5321 4.5.3.1.6)"

_TERMINATOR = b"\r\n.\r\n"
#: Bytes read at a time during DATA.
DATA_BLOCK = 64 * 1024

REPLY_TOO_BIG = "552 5.3.4 Message size exceeds fixed maximum message size"
REPLY_LINE_TOO_LONG = "500 5.5.2 Line too long (RFC 5321 4.5.3.1.6)"
REPLY_BACKLOG = "451 4.3.2 Too many bounces waiting to be processed, try again later"
REPLY_STORE_FAILED = "451 4.3.0 Temporary failure storing the message, try again later"
REPLY_NOT_BOUNCE_ADDRESS = (
    "550 5.1.1 <{address}>: Recipient address rejected: not a bounce address here"
)
REPLY_TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
REPLY_CLIENT_REFUSED = "554 5.7.1 Client host {host} is not allowed to deliver here"
REPLY_TOO_MANY_CONNECTIONS = "421 4.3.2 Too many connections, try again later"
REPLY_SHUTTING_DOWN = "421 4.3.2 Service shutting down, try again later"


class Accepted(Protocol):
    """What the sink returns once a message is durable (``store.AcceptedMessage`` fits)."""

    @property
    def id(self) -> int: ...

    @property
    def duplicate(self) -> bool: ...


class MessageSink(Protocol):
    """Where received messages go. ``accept`` returns only once the message is durable."""

    async def accept(self, message: IncomingMessage) -> Accepted: ...

    def overloaded(self) -> bool:
        """True when the processing backlog is over its limit (answer 451 4.3.2)."""
        ...


@dataclass(frozen=True)
class RecipientPolicy:
    """Which envelope recipients are bounce addresses of ours (docs/correlation.md: VERP forms)."""

    domains: frozenset[str] = frozenset()
    addresses: frozenset[str] = frozenset()
    separator: str = "+"

    @classmethod
    def from_config(cls, config: Config) -> RecipientPolicy:
        return cls(
            domains=frozenset(d.strip().lower().rstrip(".") for d in config.smtp.bounce_domains),
            addresses=frozenset(a.strip().lower() for a in config.smtp.bounce_addresses),
            separator=config.verp.separator,
        )

    @property
    def accepts_everything(self) -> bool:
        return not self.domains and not self.addresses

    def accepts(self, address: str) -> bool:
        if self.accepts_everything:
            return True
        local, at, domain = address.strip().strip("<>").lower().rpartition("@")
        if not at or not local:
            return False
        domain = domain.rstrip(".")
        if domain in self.domains:
            return True
        if f"{local}@{domain}" in self.addresses:
            return True
        base, token = split_local(local, self.separator)
        return token is not None and f"{base}@{domain}" in self.addresses


@dataclass(frozen=True)
class ClientPolicy:
    """Client networks allowed to connect; empty means any. Unix-socket peers always may."""

    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()

    @classmethod
    def from_strings(cls, networks: Iterable[str]) -> ClientPolicy:
        return cls(tuple(ipaddress.ip_network(n.strip(), strict=False) for n in networks))

    def allows(self, peer: Any) -> bool:
        if not self.networks:
            return True
        host = peer_host(peer)
        if host is None:
            return True  # AF_UNIX: access is governed by the socket file's permissions
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.networks)


def peer_host(peer: Any) -> str | None:
    """The IP of a TCP peer (``(host, port[, ...])``), None for a Unix socket peer."""
    if isinstance(peer, tuple) and peer:
        return str(peer[0])
    return None


def peer_text(peer: Any) -> str | None:
    if isinstance(peer, tuple) and len(peer) >= 2:
        return f"{peer[0]}:{peer[1]}"
    return None if not peer else str(peer)


@dataclass(frozen=True)
class ReceivePolicy:
    """Everything the handler checks, rebuilt from the configuration (and on SIGHUP)."""

    recipients: RecipientPolicy
    clients: ClientPolicy
    max_message_size: int
    max_recipients: int

    @classmethod
    def from_config(cls, config: Config) -> ReceivePolicy:
        return cls(
            recipients=RecipientPolicy.from_config(config),
            clients=ClientPolicy.from_strings(config.smtp.allowed_networks),
            max_message_size=config.smtp.max_message_size,
            max_recipients=config.smtp.max_recipients,
        )


def _utcnow() -> datetime:
    return datetime.now(UTC)


class BounceHandler:
    """aiosmtpd handler: recipient policy at RCPT, durable storage at end of DATA.

    ``policy`` is read on every command, so :meth:`update_policy` (SIGHUP) takes effect
    for the next command without dropping connections.
    """

    def __init__(
        self,
        sink: MessageSink,
        policy: ReceivePolicy,
        *,
        clock: Clock = _utcnow,
        lmtp: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.sink = sink
        self.policy = policy
        self.clock = clock
        self.lmtp = lmtp
        self.metrics = metrics if metrics is not None else Metrics()
        self.protocol = "lmtp" if lmtp else "smtp"

    def update_policy(self, policy: ReceivePolicy) -> None:
        self.policy = policy

    async def handle_MAIL(  # noqa: N802 - aiosmtpd hook names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        if not self.policy.clients.allows(session.peer):
            log.warning(
                "smtp.rejected", peer=peer_text(session.peer), stage="mail", reply="554 5.7.1"
            )
            return REPLY_CLIENT_REFUSED.format(host=peer_host(session.peer))
        if self.sink.overloaded():
            log.warning("smtp.backpressure", peer=peer_text(session.peer), reply="451 4.3.2")
            return REPLY_BACKLOG
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Ok"

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook names
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        policy = self.policy
        if not policy.recipients.accepts(address):
            log.info(
                "smtp.rejected",
                peer=peer_text(session.peer),
                stage="rcpt",
                rcpt=address,
                reply="550 5.1.1",
            )
            return REPLY_NOT_BOUNCE_ADDRESS.format(address=address)
        if len(envelope.rcpt_tos) >= policy.max_recipients:
            return REPLY_TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Ok"

    async def handle_DATA(  # noqa: N802 - aiosmtpd hook names
        self, server: SMTP, session: Session, envelope: Envelope
    ) -> str:
        recipients = tuple(envelope.rcpt_tos)
        status = await self._store(session, envelope)
        if not self.lmtp:
            return status
        # RFC 2033 §4.2: one reply per accepted recipient, in RCPT order. The message is
        # stored once for all of them, so they share its fate.
        return "\r\n".join(_per_recipient(status, rcpt) for rcpt in recipients)

    async def _store(self, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content
        if raw is None:  # pragma: no cover - aiosmtpd always sets it before handle_DATA
            return REPLY_STORE_FAILED
        if len(raw) > self.policy.max_message_size:
            # The limit may have been lowered by a reload after the session started.
            return REPLY_TOO_BIG
        mail_from = envelope.mail_from or ""
        message = IncomingMessage(
            received_at=self.clock(),
            mail_from="" if mail_from == "<>" else mail_from,
            rcpt_to=tuple(envelope.rcpt_tos),
            raw=bytes(raw),
            peer=peer_text(session.peer),
            verp_token=envelope_token(envelope.rcpt_tos, self.policy.recipients.separator),
        )
        started = time.monotonic()
        try:
            stored = await self.sink.accept(message)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # the store failed: the MTA keeps the bounce and retries
            log.error(
                "message.store_failed", error=repr(error), peer=message.peer, size=len(message.raw)
            )
            return REPLY_STORE_FAILED
        self.metrics.commit_seconds.observe(time.monotonic() - started)
        self.metrics.received.labels(self.protocol, str(stored.duplicate).lower(),
                                     "email").inc()
        log.info(
            "message.received",
            message_id=stored.id,
            duplicate=stored.duplicate,
            mail_from=message.mail_from,
            rcpt_to=list(message.rcpt_to),
            size=len(message.raw),
            peer=message.peer,
            protocol="lmtp" if self.lmtp else "smtp",
        )
        if stored.duplicate:
            return f"250 2.0.0 Ok: already stored as message {stored.id}"
        return f"250 2.0.0 Ok: stored as message {stored.id}"


def _per_recipient(status: str, rcpt: str) -> str:
    code, _, text = status.partition(" ")
    return f"{code} {text} <{rcpt}>" if code.startswith("2") else f"{code} {text}"


class _Limits:
    """Connection bookkeeping shared by every protocol instance of one daemon."""

    def __init__(self, max_connections: int) -> None:
        self.max_connections = max_connections
        self.open: set[BouncedSMTP] = set()
        self.closing = False


#: The reverse/forward paths MTAs actually send: ``<>`` or ``<dot-atom@domain>``, then
#: ESMTP parameters. aiosmtpd parses every path with the RFC 5322 header parser (and
#: defines a class per call), a tenth of the event loop's time under load; these common
#: shapes are read directly, anything else (quoted local parts, source routes, comments,
#: UTF-8) still goes through aiosmtpd.
_PLAIN_PATH = re.compile(
    r"\s*<((?:[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)?)>([^(]*)\Z"
)


class BouncedSMTP(SMTP):
    """aiosmtpd's SMTP with our replies for its built-in refusals and a connection cap."""

    limits: _Limits

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        over = self.limits.closing or len(self.limits.open) >= self.limits.max_connections
        super().connection_made(transport)
        self.limits.open.add(self)
        if over:
            reply = REPLY_SHUTTING_DOWN if self.limits.closing else REPLY_TOO_MANY_CONNECTIONS
            log.warning(
                "smtp.refused_connection",
                peer=peer_text(self.session.peer if self.session else None),
                reply=reply[:9],
            )
            # The greeting task is already scheduled; answering 421 first and closing is
            # what RFC 5321 §3.1 allows a busy server to do.
            if self._handler_coroutine is not None:
                self._handler_coroutine.cancel()
            transport.write(reply.encode() + b"\r\n")  # type: ignore[attr-defined]
            transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        self.limits.open.discard(self)
        super().connection_lost(error)

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        """aiosmtpd's path parser, with a fast path giving the same answer for plain paths."""
        match = _PLAIN_PATH.match(arg) if arg else None
        if match is None:
            return super()._getaddr(arg)
        address, rest = match.group(1), match.group(2)
        if not address:
            return "<>", rest  # aiosmtpd's null path, parameters as written
        local_part = address.rpartition("@")[0]
        if self.local_part_limit and len(local_part) > self.local_part_limit:
            return None, None
        return address, rest.lstrip()

    @property
    def in_transaction(self) -> bool:
        """True from MAIL until the end of DATA: closing now would lose the client's work."""
        return self.envelope is not None and self.envelope.mail_from is not None

    def close_idle(self) -> bool:
        """Say 421 and close if no transaction is in progress (graceful shutdown)."""
        if self.transport is None:
            return True
        if self.in_transaction:
            return False
        self.transport.write(REPLY_SHUTTING_DOWN.encode() + b"\r\n")  # type: ignore[attr-defined]
        self.transport.close()
        return True

    async def smtp_DATA(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command method
        """DATA read in blocks instead of line by line.

        aiosmtpd reads the message one line at a time through its StreamReader, which is
        the biggest single cost of a session; here the stream is read in 64 KB blocks and
        searched for the ``CRLF.CRLF`` terminator, then dot-unstuffed in one pass. The
        result is byte for byte what aiosmtpd would store. Past the size limit the data
        is still read to the terminator (so the session can go on) but not kept: a
        100 MB message costs one block of memory, then ``552 5.3.4``. Lines longer than
        RFC 5321's 1000 octets are accepted: losing a bounce over it helps nobody.
        """
        if await self.check_helo_needed():
            return
        if await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        limit = self.data_size_limit
        # A CRLF in front, so that the first line is found like the others ("\r\n.").
        buffer = bytearray(b"\r\n")
        searched = 0
        too_big = False
        while True:
            block = await self._reader.read(DATA_BLOCK)
            if not block:  # the client went away: nothing is stored
                return
            buffer += block
            end = buffer.find(_TERMINATOR, max(0, searched - len(_TERMINATOR)))
            if end >= 0:
                break
            searched = len(buffer)
            if limit and len(buffer) - 2 > limit:
                too_big = True
                # Keep only what may start the terminator; forget the rest.
                del buffer[: len(buffer) - len(_TERMINATOR)]
                searched = len(buffer)
        leftover = bytes(buffer[end + len(_TERMINATOR) :])
        if leftover:  # a pipelined next command: give it back to the command reader
            self._reader._buffer[:0] = leftover  # type: ignore[attr-defined]
        if too_big or (limit and end > limit):
            await self.push(_AIOSMTPD_TOO_MUCH_DATA)
            self._set_post_data_state()
            return
        content = bytes(buffer[: end + 2]).replace(b"\r\n.", b"\r\n")[2:]
        del buffer
        self.envelope.content = content
        self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def push(self, status: Any) -> None:
        if isinstance(status, str):
            status = self._rewrite(status)
            if status[:1] in ("4", "5") and isinstance(self.event_handler, BounceHandler):
                self.event_handler.metrics.refused.labels(status[:3]).inc()
        await super().push(status)

    def _rewrite(self, status: str) -> str:
        if status in (_AIOSMTPD_TOO_MUCH_DATA, _AIOSMTPD_SIZE_PARAM):
            log.info(
                "smtp.rejected",
                peer=peer_text(self.session.peer if self.session else None),
                stage="data",
                reply="552 5.3.4",
            )
            return (
                self._after_data(REPLY_TOO_BIG)
                if status == _AIOSMTPD_TOO_MUCH_DATA
                else REPLY_TOO_BIG
            )
        if status == _AIOSMTPD_LINE_TOO_LONG:
            return self._after_data(REPLY_LINE_TOO_LONG)
        return status

    def _after_data(self, reply: str) -> str:
        return reply


class BouncedLMTP(LMTP, BouncedSMTP):
    """LMTP: the same, with the post-DATA refusals repeated once per recipient."""

    def _after_data(self, reply: str) -> str:
        count = len(self.envelope.rcpt_tos) if self.envelope is not None else 1
        return "\r\n".join([reply] * max(count, 1))


def protocol_factory(
    handler: BounceHandler, config: Config, *, lmtp: bool = False, limits: _Limits | None = None
) -> Callable[[], SMTP]:
    """A factory for ``loop.create_server`` building one protocol per connection."""
    shared = limits if limits is not None else _Limits(config.smtp.max_connections)
    cls = BouncedLMTP if lmtp else BouncedSMTP

    def build() -> SMTP:
        protocol = cls(
            handler,
            hostname=config.smtp.hostname,
            data_size_limit=handler.policy.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=config.smtp.timeout.total_seconds(),
            ident="bounced",
        )
        protocol.limits = shared
        return protocol

    build.limits = shared  # type: ignore[attr-defined]
    return build


def new_limits(max_connections: int) -> _Limits:
    return _Limits(max_connections)
