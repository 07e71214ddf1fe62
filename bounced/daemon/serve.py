"""The daemon: listeners, commit writer, worker process, signals, systemd.

Three lanes, so that durability does not cost throughput and parsing does not slow the
SMTP dialogue:

1. **Event loop** (main thread): aiosmtpd sessions (:mod:`bounced.daemon.receive`). At the
   end of DATA a session hands its message to the commit writer and waits for the
   durable id.
2. **Commit thread** (:mod:`bounced.daemon.writer`): durable group commit before every
   ``250``; back-pressure (``451 4.3.2``) beyond ``processing.max_pending``.
3. **Worker process** (:mod:`bounced.daemon.worker`, started and supervised through
   :mod:`bounced.daemon.worker_process`): processing, maintenance, DNS evidence. It dies
   with the daemon (``PR_SET_PDEATHSIG``); whatever was not committed is redone from
   ``pending`` on the next start, exactly once; a worker that dies alone is restarted.

Signals: SIGTERM/SIGINT stop accepting, let sessions in a transaction finish (idle ones
get ``421``), commit what is queued, let the worker drain the backlog, exit 0. SIGHUP
re-reads the configuration file and the rules (listener addresses need a restart).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from bounced import log as logsetup
from bounced.config import Config, ConfigError, load_config
from bounced.daemon import sdnotify
from bounced.daemon.metrics import DatabaseGauges, Metrics, WorkReport, database_gauges
from bounced.daemon.receive import (
    BounceHandler,
    ReceivePolicy,
    SessionLimits,
    new_limits,
    protocol_factory,
)
from bounced.daemon.smpp import SmppReceiver
from bounced.daemon.worker_process import WorkerHandle
from bounced.daemon.writer import GroupCommitWriter
from bounced.log import get_logger
from bounced.store import Location, Store, StoreError

if TYPE_CHECKING:
    from bounced.daemon.api import Api
    from bounced.daemon.webhooks import WebhookDispatcher

log = get_logger("bounced.daemon.serve")

#: Longest wait for sessions in a transaction to finish after SIGTERM.
SHUTDOWN_GRACE_SECONDS = 30.0

# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class ServeOptions:
    """What the command line says; each set field overrides the configuration file."""

    config_path: str | None = None
    db: str | None = None
    smtp: str | None = None
    lmtp: str | None = None
    http: str | None = None


def effective_config(options: ServeOptions) -> Config:
    """The configuration file (or the defaults) with the command-line overrides applied."""
    config = load_config(options.config_path)
    if options.db is not None:  # a path or a URL, in place of both settings
        config = replace(config, database=replace(config.database, url="", path=options.db))
    if options.smtp is not None:
        config = replace(config, smtp=replace(config.smtp, listen=options.smtp))
    if options.lmtp is not None:
        config = replace(config, lmtp=replace(config.lmtp, listen=options.lmtp))
    if options.http is not None:
        config = replace(config, http=replace(config.http, listen=options.http))
    return config


@dataclass(frozen=True)
class ListenAddress:
    """``HOST:PORT`` / ``[V6]:PORT`` (TCP) or ``unix:/path`` (a Unix socket)."""

    host: str | None = None
    port: int | None = None
    path: str | None = None

    @classmethod
    def parse(cls, text: str) -> ListenAddress:
        value = text.strip()
        if value.startswith("unix:"):
            path = value[5:]
            if not path:
                raise ValueError(f"missing socket path in {text!r}")
            return cls(path=path)
        host, sep, port = value.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise ValueError(f"expected HOST:PORT or unix:/path, got {text!r}")
        return cls(host=host.strip("[]"), port=int(port))

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix:{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"{host}:{self.port}"

    @property
    def on_loopback(self) -> bool:
        """Reachable from this host only: a Unix socket, or a loopback address."""
        if self.path is not None:
            return True
        host = (self.host or "").lower()
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
        except ValueError:
            return False  # a host name: assume it resolves beyond loopback


def unsigned_exposure(config: Config, listening: Sequence[str] = ()) -> str | None:
    """Why anyone on the network could change address states, or None.

    Without ``verp.secret`` every bounce is taken at its word: whoever can reach a
    listener can write a DSN about any address and quarantine it (README: "Threat
    model"). ``listening``: the addresses actually bound (with inherited sockets);
    otherwise the configured ``smtp.listen`` / ``lmtp.listen``.
    """
    if config.verp.secret:
        return None
    configured = [value for value in (config.smtp.listen, config.lmtp.listen) if value]
    exposed = [text for text in (listening or configured)
               if not ListenAddress.parse(text).on_loopback]
    if not exposed:
        return None
    return (f"verp.secret is not set and bounced listens beyond loopback "
            f"({', '.join(exposed)}): anyone who can reach it can quarantine any address "
            "with a forged bounce; set verp.secret and send with signed return paths "
            "(README: Threat model)")


# --------------------------------------------------------------------------- daemon


class Daemon:
    """One running bounced: listeners + writer + worker, driven by an asyncio loop."""

    def __init__(
        self,
        options: ServeOptions,
        *,
        config: Config | None = None,
        notifier: sdnotify.Notifier | None = None,
        inherited: Sequence[sdnotify.InheritedSocket] = (),
    ) -> None:
        self.options = options
        self.config = config if config is not None else effective_config(options)
        self.notifier = notifier if notifier is not None else sdnotify.Notifier({})
        self.inherited = list(inherited)
        self.servers: list[asyncio.AbstractServer] = []
        self.addresses: list[str] = []
        #: Where each listener can be reached (``HOST:PORT`` / ``unix:PATH``).
        self.reachable: list[str] = []
        self.limits = new_limits(self.config.smtp)
        self.stop_event: asyncio.Event | None = None
        self.metrics = Metrics(self._database_gauges)
        self.worker = WorkerHandle(self.config, on_report=self._on_work_report)
        self.api: Api | None = None
        self.webhooks: WebhookDispatcher | None = None
        self._gauge_store: Store | None = None
        self._gauge_lock = threading.Lock()
        self.writer: GroupCommitWriter | None = None
        self.handlers: list[BounceHandler] = []
        #: One per ``[[smpp]]`` account: SMS status reports.
        self.smpp: list[SmppReceiver] = []
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = threading.Event()
        self.loop: asyncio.AbstractEventLoop | None = None

    # -- start

    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.stop_event = asyncio.Event()
        config = self.config
        # Create/migrate the database once, here, before two processes race to do it
        # (SQLite); on PostgreSQL refuse a schema this code does not know, and bring
        # this release's reasons and default rules.
        Store.open(config.database.location, seed=True).close()
        self.worker.start()
        self.writer = GroupCommitWriter(
            config.database.location,
            max_pending=config.processing.max_pending,
            on_commit=self.worker.nudge,
            shared=self.worker.shared,
            cache_mb=config.database.cache_mb,
            prewarm=config.database.prewarm,
            min_free_mb=config.storage.min_free_mb,
            wal_limit_mb=config.database.wal_limit_mb,
        )
        self.writer.start()
        policy = ReceivePolicy.from_config(config)
        _warn_if_open(policy)
        by_name = {s.name: s for s in self.inherited}
        unnamed = [s for s in self.inherited if s.name not in ("smtp", "lmtp")]
        smtp_sock = by_name.get("smtp") or (unnamed[0] if unnamed else None)
        lmtp_sock = by_name.get("lmtp")
        if smtp_sock is not None or config.smtp.listen:
            await self._listen(policy, lmtp=False, inherited=smtp_sock, address=config.smtp.listen)
        if lmtp_sock is not None or config.lmtp.listen:
            await self._listen(policy, lmtp=True, inherited=lmtp_sock, address=config.lmtp.listen)
        if not self.servers and not config.smpp and not config.http.listen:
            raise ConfigError(
                "smtp.listen",
                "no listener: set smtp.listen, lmtp.listen, http.listen or an [[smpp]] "
                "account (or use socket activation)",
            )
        for account in config.smpp:
            receiver = SmppReceiver(account, self.writer, metrics=self.metrics)
            receiver.start()
            self.smpp.append(receiver)
            self.addresses.append(f"smpp://{account.name}@{account.host}:{account.port}")
        await self._start_webhooks(config)
        if config.http.listen:
            await self._listen_http(config.http.listen)
        exposure = unsigned_exposure(config, self.reachable)
        if exposure is not None:
            log.warning("serve.unsigned_bounces", hint=exposure)
        self._tasks.append(asyncio.create_task(self._watchdog()))
        self._tasks.append(asyncio.create_task(self._supervise_worker()))
        log.info(
            "serve.ready",
            listen=self.addresses,
            db=str(Location.parse(config.database.location)),
            pending=self.writer.pending,
            pid=os.getpid(),
        )
        self.notifier.ready(self._status())
        self.ready.set()

    async def _listen(
        self,
        policy: ReceivePolicy,
        *,
        lmtp: bool,
        inherited: sdnotify.InheritedSocket | None,
        address: str,
    ) -> None:
        assert self.loop is not None
        handler = BounceHandler(self.writer, policy, lmtp=lmtp,  # type: ignore[arg-type]
                                metrics=self.metrics)
        self.handlers.append(handler)
        factory = protocol_factory(handler, self.config, lmtp=lmtp, limits=self.limits)
        kind = "lmtp" if lmtp else "smtp"
        if inherited is not None:
            sock = socket.socket(fileno=inherited.fd)
            sock.setblocking(False)
            if sock.family == socket.AF_UNIX:
                server = await self.loop.create_unix_server(factory, sock=sock)
                reach = ListenAddress(path=str(sock.getsockname() or "inherited"))
            else:
                server = await self.loop.create_server(factory, sock=sock)
                host, port = sock.getsockname()[:2]
                reach = ListenAddress(host=str(host), port=int(port))
            where = f"fd:{inherited.fd}({inherited.name})"
        else:
            listen = ListenAddress.parse(address)
            if listen.path is not None:
                path = Path(listen.path)
                if path.is_socket():
                    path.unlink()  # stale socket of a previous run
                server = await self.loop.create_unix_server(factory, path=listen.path)
                where, reach = str(listen), listen
            else:
                server = await self.loop.create_server(
                    factory,
                    host=listen.host,
                    port=listen.port or 0,
                    reuse_address=True,
                    backlog=1024,
                )
                bound = server.sockets[0].getsockname()
                reach = ListenAddress(host=str(bound[0]), port=int(bound[1]))
                where = str(reach)
        self.servers.append(server)
        self.addresses.append(f"{kind}://{where}")
        self.reachable.append(str(reach))

    async def _listen_http(self, address: str) -> None:
        listen = ListenAddress.parse(address)
        if listen.path is not None:
            raise ConfigError("http.listen", f"expected HOST:PORT, got {address!r}")
        if not self.config.http.tokens:
            log.warning("serve.http_without_tokens",
                        hint="no [[http.tokens]]: only /healthz and /readyz answer")
        from bounced.daemon.api import Api  # aiohttp's server: only when it listens

        self.api = Api(self.config, metrics=self.metrics, ready=self.ready.is_set,
                       written=self._api_wrote)
        host, port = await self.api.start(listen.host or "127.0.0.1", listen.port or 0)
        reach = ListenAddress(host=host, port=port)
        self.addresses.append(f"http://{reach}")

    async def _start_webhooks(self, config: Config) -> None:
        """The outbox's dispatcher, once some ``[[webhooks]]`` are configured (at start
        or by a reload): without any, no event is written and aiohttp's client is not
        loaded."""
        if self.webhooks is not None or not config.webhooks:
            return
        from bounced.daemon.webhooks import WebhookDispatcher

        self.webhooks = WebhookDispatcher(config, metrics=self.metrics)
        await self.webhooks.start()

    def _nudge_webhooks(self) -> None:
        if self.webhooks is not None:
            self.webhooks.nudge()

    def _api_wrote(self) -> None:
        """After a write of the API: its events to send, an SMS receipt it stored over
        HTTP to process."""
        self._nudge_webhooks()
        self.worker.nudge()

    def _database_gauges(self) -> DatabaseGauges | None:
        """The gauges of ``/metrics``, read when Prometheus scrapes (from the API's
        reader threads; one read-only connection, used by one scrape at a time)."""
        with self._gauge_lock:
            if self._gauge_store is None:
                self._gauge_store = Store.open_readonly(self.config.database.location)
            return database_gauges(self._gauge_store, datetime.now(UTC))

    def _on_work_report(self, report: WorkReport) -> None:
        """What the worker did (in the thread reading its reports): counted, and the
        webhook outbox looked at at once if the work published events."""
        self.metrics.apply(report)
        if self.loop is not None and (report.verdicts or report.state_changes):
            self.loop.call_soon_threadsafe(self._nudge_webhooks)

    # -- run

    async def serve(self) -> int:
        """Run until :meth:`request_stop`; then shut down gracefully. Returns the exit code."""
        assert self.stop_event is not None
        await self.stop_event.wait()
        return await self.shutdown()

    def request_stop(self) -> None:
        if self.stop_event is not None:
            self.stop_event.set()

    def install_signal_handlers(self) -> None:
        assert self.loop is not None
        for sig in (signal.SIGTERM, signal.SIGINT):
            self.loop.add_signal_handler(sig, self.request_stop)
        self.loop.add_signal_handler(signal.SIGHUP, self.reload)

    def reload(self) -> None:
        """SIGHUP: re-read the configuration file; the worker re-reads rules too. systemd
        hears RELOADING=1, then READY=1 once the new configuration is in force."""
        self.notifier.reloading()
        try:
            config = effective_config(self.options)
        except ConfigError as error:
            log.error("serve.reload_failed", error=str(error), effect="previous configuration kept")
            self.notifier.ready(self._status())
            return
        policy = ReceivePolicy.from_config(config)
        _warn_if_open(policy)
        for handler in self.handlers:
            handler.update_policy(policy)
        if self.writer is not None:
            self.writer.max_pending = config.processing.max_pending
            self.writer.min_free_mb = config.storage.min_free_mb
        self.limits.update(SessionLimits.from_smtp(config.smtp))
        restart_needed = [
            key
            for key, old, new in (
                ("smtp.listen", self.config.smtp.listen, config.smtp.listen),
                ("lmtp.listen", self.config.lmtp.listen, config.lmtp.listen),
                ("database", self.config.database.location, config.database.location),
                ("smtp.hostname", self.config.smtp.hostname, config.smtp.hostname),
                ("http.listen", self.config.http.listen, config.http.listen),
                ("smpp", self.config.smpp, config.smpp),
            )
            if old != new
        ]
        logsetup.configure(config.logging.format, config.logging.level)
        self.config = config
        self.worker.reconfigure(config)
        if self.api is not None:
            self.api.reconfigure(config)
        if self.webhooks is not None:
            self.webhooks.reconfigure(config)
        elif config.webhooks:
            self._tasks.append(asyncio.ensure_future(self._start_webhooks(config)))
        log.info("serve.reloaded", restart_needed=restart_needed or None)
        self.notifier.ready(self._status())

    async def shutdown(self) -> int:
        assert self.writer is not None
        log.info("serve.stopping", connections=len(self.limits.open), pending=self.writer.pending)
        self.notifier.stopping("stopping: finishing sessions and pending work")
        for server in self.servers:
            server.close()
        if self.api is not None:
            await self.api.stop()
        self.limits.closing = True
        deadline = time.monotonic() + SHUTDOWN_GRACE_SECONDS
        while self.limits.open and time.monotonic() < deadline:
            for protocol in list(self.limits.open):
                protocol.close_idle()
            await asyncio.sleep(0.05)
        for protocol in list(self.limits.open):  # grace over: cut the rest (they get no 250)
            if protocol.transport is not None:
                protocol.transport.close()
        for receiver in self.smpp:  # unbind; receipts being committed are still answered
            await receiver.stop()
        await asyncio.sleep(0)
        for task in self._tasks:
            task.cancel()
        await self.writer.stop()
        code = await asyncio.get_running_loop().run_in_executor(None, self.worker.stop)
        if self.webhooks is not None:  # after the worker: what it published is sent now
            await self.webhooks.stop()
        with self._gauge_lock:
            if self._gauge_store is not None:
                self._gauge_store.close()
        log.info("serve.stopped", worker_exit=code)
        return 0

    # -- background tasks

    def _status(self) -> str:
        pending = self.writer.pending if self.writer else 0
        listening = ", ".join(self.addresses)
        return f"listening on {listening}; pending={pending} connections={len(self.limits.open)}"

    async def _watchdog(self) -> None:
        """WATCHDOG=1 only while the writer thread is alive and not stuck."""
        interval = self.notifier.watchdog_interval or 10.0
        while True:
            await asyncio.sleep(min(interval, 10.0))
            writer = self.writer
            healthy = (
                writer is not None and writer.alive and time.monotonic() - writer.heartbeat < 60
            )
            if healthy:
                self.notifier.watchdog()
            else:
                log.error("serve.unhealthy", writer_alive=bool(writer and writer.alive))
            self.notifier.status(self._status())

    async def _supervise_worker(self) -> None:
        """Restart the worker if it dies: a crash in processing must not stop reception."""
        while True:
            await asyncio.sleep(1.0)
            if self.worker.stopping or self.worker.alive:
                continue
            code = self.worker.process.exitcode if self.worker.process else None
            self.worker.restarts += 1
            log.error("worker.died", exit_code=code, restarts=self.worker.restarts)
            await asyncio.sleep(min(30.0, 0.5 * self.worker.restarts))
            if not self.worker.stopping:
                self.worker.start()


def _warn_if_open(policy: ReceivePolicy) -> None:
    """Once per (re)configuration, not per session: the operator needs it said, not spammed."""
    if policy.recipients.accepts_everything:
        log.warning(
            "serve.open_recipients",
            hint="no smtp.bounce_domains nor smtp.bounce_addresses configured: every "
            "recipient is accepted; configure them before exposing bounced beyond loopback",
        )


def run(options: ServeOptions, *, environ: dict[str, str] | None = None) -> int:
    """``bounced serve``: configure logging, run the daemon until a stop signal."""
    env = dict(os.environ) if environ is None else environ
    try:
        config = effective_config(options)
    except ConfigError as error:
        print(f"bounced serve: {error}", file=sys.stderr)
        return 2
    logsetup.configure(config.logging.format, config.logging.level)
    notifier = sdnotify.Notifier(env)
    inherited = sdnotify.listen_fds(env)
    sdnotify.unset_activation_environment()
    daemon = Daemon(options, config=config, notifier=notifier, inherited=inherited)

    async def main() -> int:
        try:
            await daemon.start()
        except (OSError, ConfigError, ValueError, StoreError) as error:
            log.error("serve.start_failed", error=str(error))
            if daemon.writer is not None:
                await daemon.writer.stop()
            if daemon.worker.process is not None:
                daemon.worker.stop()
            return 1
        daemon.install_signal_handlers()
        return await daemon.serve()

    try:
        return asyncio.run(main())
    finally:
        notifier.close()


__all__ = ["Daemon", "ListenAddress", "ServeOptions", "effective_config", "run"]
