"""Delivering the webhook outbox: signed POSTs, retried with backoff, never lost.

The events are in the database (:mod:`bounced.store.outbox`), written in the same
transaction as the change they describe; this loop, in the daemon's event loop, sends
each to its endpoint as Standard Webhooks prescribe (``webhook-id``,
``webhook-timestamp``, ``webhook-signature`` headers, signed with the endpoint's
``whsec_`` secret by the ``standardwebhooks`` library) and records the outcome:

- a ``2xx`` answer: ``delivered``;
- anything else (another status, a timeout, a refused connection): tried again after
  ``retry_after``, then twice as long each time (at most an hour); the endpoint rests
  until then, so a receiver that is down is not hammered with its backlog;
- past ``give_up_after`` since the event: ``dead``, until ``bounced webhooks retry``.

A crash between the endpoint's ``2xx`` and the row's update sends the event again, with
the same id: delivery is at least once, and receivers drop what they have seen
(``docs/webhooks.md``). The database is used from one thread of its own, so the event
loop (and the SMTP sessions on it) never waits on SQLite.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import aiohttp
from standardwebhooks import Webhook

from bounced import __version__
from bounced.config import Config, WebhookConfig
from bounced.daemon.metrics import Metrics
from bounced.log import get_logger
from bounced.store import DatabaseError, Store
from bounced.store.outbox import Delivery

log = get_logger("bounced.daemon.webhooks")

#: Deliveries read from the outbox at a time.
BATCH = 100
#: How often the outbox is looked at when there was nothing to send.
IDLE_SECONDS = 1.0
#: The job name of delivery rounds (one host at a time, :meth:`Store.try_lock_job`).
JOB = "webhooks"
#: The longest wait between two attempts of one delivery.
LONGEST_RETRY = timedelta(hours=1)

Result = TypeVar("Result")


@dataclass(frozen=True, slots=True)
class Attempt:
    """What became of one POST: the HTTP status if there was an answer, and what went
    wrong if it was not a 2xx."""

    status: int | None
    error: str | None

    @property
    def delivered(self) -> bool:
        return self.error is None


def retry_delay(retry_after: timedelta, attempts: int) -> timedelta:
    """The wait before the next attempt, after ``attempts`` failed ones (1, 2, ...)."""
    return min(retry_after * (2 ** min(attempts - 1, 20)), LONGEST_RETRY)


class WebhookDispatcher:
    """Sends what the outbox owes, endpoint by endpoint, until stopped."""

    def __init__(self, config: Config, *, metrics: Metrics,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.path = config.database.location
        self.metrics = metrics
        self.clock = clock
        self._endpoints = _endpoints(config)
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="webhooks")
        self._store: Store | None = None
        #: Endpoint -> when it may be tried again (it failed just now).
        self._resting: dict[str, datetime] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: new endpoints, secrets, timeouts and retry schedules."""
        self._endpoints = _endpoints(config)
        self.nudge()

    def nudge(self) -> None:
        """Look at the outbox now (something was just published)."""
        self._wake.set()

    async def open(self) -> None:
        """The HTTP client; :meth:`deliver_due` can run from here on."""
        self._session = aiohttp.ClientSession(
            headers={"User-Agent": f"bounced/{__version__}"},
            connector=aiohttp.TCPConnector(limit_per_host=4),
        )

    async def start(self) -> None:
        """Open, and deliver in the background until :meth:`stop`."""
        await self.open()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
        await asyncio.get_running_loop().run_in_executor(self._executor, self._close)
        self._executor.shutdown(wait=True)

    # -- the loop

    async def _run(self) -> None:
        while True:
            try:
                posted = await self.deliver_due()
            except DatabaseError as error:  # busy or damaged: the next round tries again
                log.error("webhooks.database_failed", error=repr(error), db=str(self.path))
                posted = 0
            if posted == 0:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), IDLE_SECONDS)

    async def deliver_due(self) -> int:
        """One round: the due deliveries of every endpoint not resting; returns how
        many POSTs were made."""
        now = self.clock()
        self._resting = {url: until for url, until in self._resting.items() if until > now}
        resting = tuple(self._resting)
        # Several hosts on one PostgreSQL database: one of them delivers at a time, so
        # an event is not POSTed by two hosts at once (the others skip the round).
        if not await self._db(lambda store: store.try_lock_job(JOB), write=False):
            return 0
        try:
            due = await self._db(lambda store: store.outbox.due(now, BATCH, resting=resting),
                                 write=False)
            by_endpoint: dict[str, list[Delivery]] = {}
            for delivery in due:
                by_endpoint.setdefault(delivery.endpoint, []).append(delivery)
            posted = await asyncio.gather(*(self._deliver_in_order(url, deliveries)
                                            for url, deliveries in by_endpoint.items()))
        finally:
            await self._db(lambda store: store.unlock_job(JOB), write=False)
        return sum(posted)

    async def _deliver_in_order(self, url: str, deliveries: list[Delivery]) -> int:
        """One endpoint's deliveries, oldest first, until one fails (the others wait
        for the endpoint's next turn); returns how many were POSTed."""
        endpoint = self._endpoints.get(url)
        if endpoint is None:
            for delivery in deliveries:
                await self._record(delivery, Attempt(None, "endpoint no longer configured"),
                                   None)
            return 0
        posted = 0
        for delivery in deliveries:
            attempt = await self._post(endpoint, delivery)
            posted += 1
            await self._record(delivery, attempt, endpoint)
            if not attempt.delivered:
                break
        return posted

    async def _post(self, endpoint: WebhookConfig, delivery: Delivery) -> Attempt:
        assert self._session is not None
        sent_at = self.clock()
        signature = Webhook(endpoint.secret).sign(delivery.event_id, sent_at, delivery.body)
        headers = {
            "Content-Type": "application/json",
            "webhook-id": delivery.event_id,
            "webhook-timestamp": str(int(sent_at.timestamp())),
            "webhook-signature": signature,
        }
        timeout = aiohttp.ClientTimeout(total=endpoint.timeout.total_seconds())
        try:
            async with self._session.post(endpoint.url, data=delivery.body.encode(),
                                          headers=headers, timeout=timeout,
                                          allow_redirects=False) as response:
                await response.content.read(4096)  # the answer's body is not needed
                if 200 <= response.status < 300:
                    return Attempt(response.status, None)
                return Attempt(response.status, f"HTTP {response.status} {response.reason}")
        except TimeoutError:
            return Attempt(None, f"no answer within {endpoint.timeout.total_seconds():g}s")
        except aiohttp.ClientError as error:
            return Attempt(None, f"{type(error).__name__}: {error}")

    async def _record(self, delivery: Delivery, attempt: Attempt,
                      endpoint: WebhookConfig | None) -> None:
        now = self.clock()
        if attempt.delivered:
            status = attempt.status or 0
            await self._db(lambda store: store.outbox.delivered(delivery.id, status, now))
            self.metrics.deliveries.labels("delivered").inc()
            return
        error = attempt.error or "failed"
        retry_at = None
        if endpoint is not None:
            retry_at = now + retry_delay(endpoint.retry_after, delivery.attempts + 1)
            created = delivery.created_at or now
            if retry_at - created > endpoint.give_up_after:
                retry_at = None
        await self._db(lambda store: store.outbox.failed(
            delivery.id, status=attempt.status, error=error, retry_at=retry_at))
        if retry_at is None:
            self.metrics.deliveries.labels("dead").inc()
            log.error("webhooks.gave_up", event_id=delivery.event_id, endpoint=delivery.endpoint,
                      attempts=delivery.attempts + 1, error=error)
            return
        self.metrics.deliveries.labels("failed").inc()
        self._resting[delivery.endpoint] = retry_at
        log.warning("webhooks.delivery_failed", event_id=delivery.event_id,
                    endpoint=delivery.endpoint, attempts=delivery.attempts + 1, error=error,
                    retry_at=retry_at.isoformat())

    # -- the database, in a thread of its own

    async def _db(self, work: Callable[[Store], Result], *, write: bool = True) -> Result:
        """``work`` in the outbox's thread; a write in a transaction of its own, a read
        without one (polling must not take the write lock every second)."""
        def run() -> Result:
            if self._store is None:
                self._store = Store.open(self.path)
            if not write:
                return work(self._store)
            with self._store.atomic():
                return work(self._store)

        return await asyncio.get_running_loop().run_in_executor(self._executor, run)

    def _close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _endpoints(config: Config) -> dict[str, WebhookConfig]:
    return {webhook.url: webhook for webhook in config.webhooks}


__all__ = ["Attempt", "WebhookDispatcher", "retry_delay"]
