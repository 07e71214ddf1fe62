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
- **Who may hold a slot, and for how long** (:class:`ConnectionTable`, after Postfix's
  anvil(8) and smtpd(8)): a client IP gets at most ``smtp.max_connections_per_client``
  connections and ``smtp.connection_rate_per_client`` new ones a minute, so one client
  cannot take every slot; ``smtp.timeout`` is a silence limit, shorter under stress
  (the table over 80% full); DATA must also keep up ``smtp.min_data_rate``; commands
  that deliver nothing (NOOP, RSET, ...) and sessions that deliver nothing for
  ``smtp.idle_session_limit`` are cut off. Every refusal is a ``421`` naming its limit.
- **Room on disk.** Below ``storage.min_free_mb`` free (the sink measures it) new mail
  gets ``452 4.3.1``: the room left is for the worker to finish what was accepted.

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
from aiosmtpd.smtp import MISSING, SMTP, Envelope, Session, syntax

from bounced.config import Config, SmtpConfig
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
REPLY_NO_STORAGE = "452 4.3.1 Insufficient system storage, try again later"
REPLY_CLIENT_CONNECTIONS = (
    "421 4.7.0 Too many connections from {host} (at most {limit} at a time), try again later"
)
REPLY_CLIENT_RATE = (
    "421 4.7.0 Too many connections from {host} (at most {limit} a minute), try again later"
)
REPLY_TOO_MUCH_JUNK = (
    "421 4.7.0 Too many commands that deliver nothing (at most {limit} in a row), closing"
)
REPLY_IDLE_SESSION = "421 4.7.0 No message delivered for {seconds} s, closing"
REPLY_TIMEOUT = "421 4.4.2 Timeout: nothing received for {seconds} s, closing"
REPLY_DATA_TOO_SLOW = (
    "421 4.4.2 Timeout: DATA slower than {rate} bytes/s for {received} bytes, closing"
)


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

    def storage_low(self) -> bool:
        """True when free space is below the reserve (answer 452 4.3.1). Must be cheap:
        it is asked at every MAIL and at every end of DATA."""
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
        if self.sink.storage_low():
            log.warning("smtp.backpressure", peer=peer_text(session.peer), stage="mail",
                        reason="disk", reply="452 4.3.1")
            return REPLY_NO_STORAGE
        if self.sink.overloaded():
            log.warning("smtp.backpressure", peer=peer_text(session.peer), stage="mail",
                        reason="backlog", reply="451 4.3.2")
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
        if self.sink.storage_low():  # the reserve was reached since MAIL FROM
            log.warning("smtp.backpressure", peer=peer_text(session.peer), stage="data",
                        reason="disk", reply="452 4.3.1", size=len(raw))
            return REPLY_NO_STORAGE
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


#: Share of ``smtp.max_connections`` above which the table is under stress: the silence
#: limit drops to ``smtp.stress_timeout`` (Postfix's stress mode starts when every smtpd
#: process is busy; here a margin is kept for the clients that deliver).
STRESS_ABOVE = 0.8
#: Share below which the stress ends (a margin, so it does not flap at the threshold).
STRESS_ENDS_BELOW = 0.7
#: The time unit of ``smtp.connection_rate_per_client`` (Postfix's anvil_rate_time_unit).
RATE_WINDOW_SECONDS = 60.0
#: IPv6 clients are counted per network of this many bits (Postfix 3.8's
#: smtpd_client_ipv6_prefix_length default): one host has a whole /64 to connect from.
IPV6_CLIENT_PREFIX = 84


@dataclass(frozen=True)
class SessionLimits:
    """The connection and session limits of ``[smtp]``, in the units the listener uses."""

    max_connections: int
    per_client: int
    rate_per_client: int
    timeout: float
    stress_timeout: float
    min_data_rate: int
    max_junk_commands: int
    idle_session: float

    @classmethod
    def from_smtp(cls, smtp: SmtpConfig) -> SessionLimits:
        return cls(
            max_connections=smtp.max_connections,
            per_client=smtp.max_connections_per_client,
            rate_per_client=smtp.connection_rate_per_client,
            timeout=smtp.timeout.total_seconds(),
            stress_timeout=min(smtp.stress_timeout, smtp.timeout).total_seconds(),
            min_data_rate=smtp.min_data_rate,
            max_junk_commands=smtp.max_junk_commands,
            idle_session=smtp.idle_session_limit.total_seconds(),
        )


def client_key(peer: Any) -> str | None:
    """What per-client limits count by: the peer's IPv4 address (an IPv4-mapped IPv6
    address too), the IPv6 network of :data:`IPV6_CLIENT_PREFIX` bits around an IPv6
    peer (a host picks any address of its /64 at will), None for a Unix-socket peer (a
    local MTA, trusted by the socket file's permissions)."""
    host = peer_host(peer)
    if host is None:
        return None
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_CLIENT_PREFIX), strict=False))
    return str(ip)


class ConnectionTable:
    """Every open session of one daemon (SMTP and LMTP together), counted per client.

    What Postfix splits between anvil(8) and smtpd(8): a connection is refused with a
    ``421`` naming the limit when its client already has ``per_client`` connections or
    opened more than ``rate_per_client`` in the current minute (attempts count, refused
    ones too: a client that hammers stays refused), or when the table is full. Past
    :data:`STRESS_ABOVE` of the table, silence limits drop to ``stress_timeout`` for every
    session, the ones already open included, so idle clients give their slots back.
    """

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        self.open: set[BouncedSMTP] = set()
        self.per_client: dict[str, int] = {}
        #: client -> [start of its rate window, attempts in it]
        self._rates: dict[str, list[float]] = {}
        self._rates_swept = 0.0
        self.closing = False
        self.stressed = False

    @property
    def max_connections(self) -> int:
        return self.limits.max_connections

    def update(self, limits: SessionLimits) -> None:
        """SIGHUP: new limits for the next connections, and for the open ones at once."""
        self.limits = limits
        self._check_stress()
        for session in list(self.open):
            session.rearm_timeout()

    def silence_limit(self) -> float:
        """Seconds of silence a session is allowed now (shorter under stress)."""
        return self.limits.stress_timeout if self.stressed else self.limits.timeout

    def admit(self, session: BouncedSMTP, client: str | None, now: float) -> tuple[str, str] | None:
        """Count the connection in, or say why not: ``(reply, reason)``."""
        limits = self.limits
        if self.closing:
            return REPLY_SHUTTING_DOWN, "shutting_down"
        if client is not None:
            if limits.rate_per_client and self._attempt(client, now) > limits.rate_per_client:
                return (REPLY_CLIENT_RATE.format(host=client, limit=limits.rate_per_client),
                        "connection_rate_per_client")
            if limits.per_client and self.per_client.get(client, 0) >= limits.per_client:
                return (REPLY_CLIENT_CONNECTIONS.format(host=client, limit=limits.per_client),
                        "max_connections_per_client")
        if len(self.open) >= limits.max_connections:
            return REPLY_TOO_MANY_CONNECTIONS, "max_connections"
        self.open.add(session)
        if client is not None:
            self.per_client[client] = self.per_client.get(client, 0) + 1
        self._check_stress()
        return None

    def release(self, session: BouncedSMTP, client: str | None) -> None:
        if session not in self.open:
            return
        self.open.discard(session)
        if client is not None:
            left = self.per_client.get(client, 1) - 1
            if left > 0:
                self.per_client[client] = left
            else:
                self.per_client.pop(client, None)
        self._check_stress()

    def _attempt(self, client: str, now: float) -> int:
        """Count a connection attempt in the client's current window (a fixed window of
        :data:`RATE_WINDOW_SECONDS`, as anvil(8) does); return the count so far."""
        if now - self._rates_swept > RATE_WINDOW_SECONDS:  # forget clients gone quiet
            self._rates = {c: w for c, w in self._rates.items()
                           if now - w[0] < RATE_WINDOW_SECONDS}
            self._rates_swept = now
        window = self._rates.get(client)
        if window is None or now - window[0] >= RATE_WINDOW_SECONDS:
            window = self._rates[client] = [now, 0.0]
        window[1] += 1
        return int(window[1])

    def _check_stress(self) -> None:
        count, size = len(self.open), self.limits.max_connections
        if not self.stressed and count > STRESS_ABOVE * size:
            self.stressed = True
            log.warning("smtp.stress", connections=count, max_connections=size,
                        timeout_seconds=self.limits.stress_timeout)
            for session in list(self.open):  # their timers were armed with the long limit
                session.rearm_timeout()
        elif self.stressed and count < STRESS_ENDS_BELOW * size:
            self.stressed = False
            log.info("smtp.stress_over", connections=count, max_connections=size,
                     timeout_seconds=self.limits.timeout)


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
    """aiosmtpd's SMTP with our replies for its built-in refusals, the connection table's
    limits, and timers that measure the client's silence and DATA rate.

    aiosmtpd's own timer runs from the last valid command: it cut a steady sender whose
    DATA phase lasted longer than ``smtp.timeout``, and let a client that sends NOOP
    now and then keep its slot forever. Here one lazy timer per session (armed once,
    re-armed only when it fires early: no system call per command or per block) checks
    whichever deadline applies (:meth:`_deadline`).
    """

    limits: ConnectionTable
    _client: str | None = None
    #: loop.time() of the last valid command, of the session's start or last delivery.
    _last_command = 0.0
    _last_delivery = 0.0
    #: Commands that delivered nothing since the last delivery.
    _junk = 0
    #: DATA in progress: when it started, when its last bytes came, how many.
    _data_started: float | None = None
    _data_last = 0.0
    _data_received = 0
    #: The server works (storing the message): the client is waiting, not silent.
    _storing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._last_delivery = self.loop.time()
        super().connection_made(transport)
        peer = self.session.peer if self.session else None
        self._client = client_key(peer)
        refusal = self.limits.admit(self, self._client, self.loop.time())
        if refusal is None:
            return
        reply, reason = refusal
        log.warning("smtp.refused_connection", peer=peer_text(peer), reason=reason,
                    reply=reply[:9])
        # The greeting task is already scheduled; answering 421 first and closing is
        # what RFC 5321 §3.1 allows a busy server to do.
        if self._handler_coroutine is not None:
            self._handler_coroutine.cancel()
        transport.write(reply.encode() + b"\r\n")  # type: ignore[attr-defined]
        transport.close()

    def connection_lost(self, error: Exception | None) -> None:
        self.limits.release(self, self._client)
        super().connection_lost(error)

    # -- timers

    def _reset_timeout(self, duration: float | None = None) -> None:
        """aiosmtpd calls this at the connection and at every valid command: note the
        time; the one timer is armed here once, and re-arms itself (:meth:`_timeout_cb`)."""
        self._last_command = now = self.loop.time()
        if self._timeout_handle is None:
            deadline, _limit = self._deadline()
            self._timeout_handle = self.loop.call_later(
                max(deadline - now, 0.001), self._timeout_cb)

    def rearm_timeout(self) -> None:
        """Look at the deadline again now (the limits changed: stress, reload)."""
        if self._timeout_handle is not None:
            self._timeout_handle.cancel()
        self._timeout_handle = self.loop.call_later(0, self._timeout_cb)

    def _deadline(self) -> tuple[float, str | None]:
        """When the session must end, and which limit that is (None: no limit now).

        - between commands: ``timeout`` (``stress_timeout`` under stress) since the
          last valid command (a command line trickled byte by byte does not count:
          it must be complete in time), and ``idle_session_limit`` since the last
          delivery;
        - during DATA: ``timeout`` since the last bytes received, and ``timeout`` +
          bytes received / ``min_data_rate`` since DATA started (Postfix's
          smtpd_min_data_rate): a steady sender of any size gets through, a trickle not;
        - while the message is being stored: none (the client waits for us).
        """
        now = self.loop.time()
        table = self.limits
        silence = table.silence_limit()
        quiet_limit = "stress_timeout" if table.stressed else "timeout"
        if self._storing:
            return now + silence, None
        if self._data_started is not None:
            quiet = self._data_last + silence
            slow = (self._data_started + silence
                    + self._data_received / table.limits.min_data_rate)
            return (quiet, quiet_limit) if quiet <= slow else (slow, "min_data_rate")
        quiet = self._last_command + silence
        idle = self._last_delivery + table.limits.idle_session
        return (quiet, quiet_limit) if quiet <= idle else (idle, "idle_session_limit")

    def _timeout_cb(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        deadline, limit = self._deadline()
        now = self.loop.time()
        if limit is None or now < deadline:
            self._timeout_handle = self.loop.call_later(
                max(deadline - now, 0.001), self._timeout_cb)
            return
        self._expire(limit)

    def _expire(self, limit: str) -> None:
        """Say why in a ``421`` (the MTA logs it), then close: nothing half-received is
        stored, the MTA keeps the message and retries."""
        assert self.transport is not None
        table = self.limits
        stage = "data" if self._data_started is not None else "command"
        peer = peer_text(self.session.peer if self.session else None)
        if limit == "idle_session_limit":
            seconds = round(table.limits.idle_session)
            reply = REPLY_IDLE_SESSION.format(seconds=seconds)
            log.warning("smtp.rejected", peer=peer, stage=stage, reason=limit,
                        seconds=seconds, reply=reply[:9])
        else:
            if limit == "min_data_rate":
                reply = REPLY_DATA_TOO_SLOW.format(rate=table.limits.min_data_rate,
                                                   received=self._data_received)
            else:
                reply = REPLY_TIMEOUT.format(seconds=round(table.silence_limit(), 1))
            log.info("smtp.timeout", peer=peer, stage=stage, limit=limit,
                     seconds=round(table.silence_limit(), 1),
                     received=self._data_received if stage == "data" else None,
                     reply=reply[:9])
        self.transport.write(reply.encode() + b"\r\n")  # type: ignore[attr-defined]
        self.transport.close()

    # -- commands that deliver nothing

    async def _over_junk_limit(self, command: str) -> bool:
        """Count a command that delivers nothing; past ``max_junk_commands`` since the
        last delivery, say 421 and close (Postfix's smtpd_junk_command_limit)."""
        self._junk += 1
        limit = self.limits.limits.max_junk_commands
        if not limit or self._junk <= limit:
            return False
        log.warning("smtp.rejected", peer=peer_text(self.session.peer if self.session else None),
                    stage=command.lower(), reason="max_junk_commands", reply="421 4.7.0")
        await self.push(REPLY_TOO_MUCH_JUNK.format(limit=limit))
        if self.transport is not None:
            self.transport.close()
        return True

    @syntax("NOOP [ignored]")
    async def smtp_NOOP(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command method
        if not await self._over_junk_limit("NOOP"):
            await super().smtp_NOOP(arg)

    @syntax("RSET")
    async def smtp_RSET(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command method
        if not await self._over_junk_limit("RSET"):
            await super().smtp_RSET(arg)

    @syntax("HELP [command]")
    async def smtp_HELP(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command method
        if not await self._over_junk_limit("HELP"):
            await super().smtp_HELP(arg)

    @syntax("VRFY <address>")
    async def smtp_VRFY(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command method
        if not await self._over_junk_limit("VRFY"):
            await super().smtp_VRFY(arg)

    async def smtp_EXPN(self, arg: str) -> None:  # noqa: N802 - aiosmtpd command method
        if not await self._over_junk_limit("EXPN"):
            await super().smtp_EXPN(arg)

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
        Each block received moves the silence deadline; the rate deadline grows with the
        bytes received (:meth:`_deadline`).
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
        read = await self._read_data(self.data_size_limit)
        if read is None:  # the client went away: nothing is stored
            return
        content, too_big = read
        if too_big:
            await self.push(_AIOSMTPD_TOO_MUCH_DATA)
            self._set_post_data_state()
            return
        self.envelope.content = content
        self.envelope.original_content = content
        self._storing = True
        try:
            status = await self._call_handler_hook("DATA")
        finally:
            self._storing = False
        self._last_command = self.loop.time()  # silence counts from our reply
        if isinstance(status, str) and status.startswith("250"):
            self._last_delivery, self._junk = self._last_command, 0
        self._set_post_data_state()
        await self.push("250 OK" if status is MISSING else status)

    async def _read_data(self, limit: int | None) -> tuple[bytes, bool] | None:
        """The message up to the ``CRLF.CRLF`` terminator, dot-unstuffed, and whether it
        was over ``limit`` (then its bytes were not kept); None when the client left."""
        # A CRLF in front, so that the first line is found like the others ("\r\n.").
        buffer = bytearray(b"\r\n")
        searched = 0
        too_big = False
        self._data_started = self._data_last = self.loop.time()
        self._data_received = 0
        while True:
            block = await self._reader.read(DATA_BLOCK)
            if not block:
                return None
            self._data_last = self.loop.time()
            self._data_received += len(block)
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
        self._data_started = None
        leftover = bytes(buffer[end + len(_TERMINATOR) :])
        if leftover:  # a pipelined next command: give it back to the command reader
            self._reader._buffer[:0] = leftover  # type: ignore[attr-defined]
        if too_big or (limit and end > limit):
            return b"", True
        return bytes(buffer[: end + 2]).replace(b"\r\n.", b"\r\n")[2:], False

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
    handler: BounceHandler,
    config: Config,
    *,
    lmtp: bool = False,
    limits: ConnectionTable | None = None,
) -> Callable[[], SMTP]:
    """A factory for ``loop.create_server`` building one protocol per connection."""
    shared = limits if limits is not None else new_limits(config.smtp)
    cls = BouncedLMTP if lmtp else BouncedSMTP

    def build() -> SMTP:
        protocol = cls(
            handler,
            hostname=config.smtp.hostname,
            data_size_limit=handler.policy.max_message_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            timeout=shared.limits.timeout,
            ident="bounced",
        )
        protocol.limits = shared
        return protocol

    build.limits = shared  # type: ignore[attr-defined]
    return build


def new_limits(smtp: SmtpConfig) -> ConnectionTable:
    """The connection table shared by every listener of one daemon."""
    return ConnectionTable(SessionLimits.from_smtp(smtp))
