"""The HTTP API for sending platforms, in the daemon's event loop (aiohttp).

Sending platforms run on other hosts: this is how they honour the suppression list
without ``sqlite3`` on the MX host. JSON under ``/v1/`` (described by
``GET /v1/openapi.json``, :mod:`bounced.daemon.openapi`), ``/metrics`` for Prometheus,
``/healthz`` and ``/readyz`` for load balancers and systemd. README: "HTTP API".

- **Auth**: a bearer token of ``[[http.tokens]]`` on every request but the health
  checks; ``read`` lets a client check, list, export, read histories and raw messages and
  scrape metrics, ``write`` lets it denylist, release and import, post push feedback and
  SMS receipts and register sent messages. A write is the same operator action as the
  CLI's, recorded with the actor ``api:NAME``. SMS gateways that call a URL back
  (Kannel, Jasmin) cannot send a header: ``/v1/feedback/sms`` also takes the token as
  ``?access_token=`` (RFC 6750 2.3).
- **Addresses** are of three kinds (docs/channels.md): ``jane@example.org``,
  ``tel:+33612345678``, ``push:APP_ID:TOKEN``.
- **Errors** are RFC 9457 problem details (``application/problem+json``), with the field
  at fault for bad input; never a 500 for what a client sent.
- **The database** is read in a small pool of threads, each with its own read-only
  connection (WAL readers never wait behind the writers); writes go through one thread
  with a read-write connection, so the event loop (and the SMTP sessions on it) never
  waits on SQLite.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import io
import json
import threading
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, TypeVar

from aiohttp import web

from bounced.config import Config, HttpToken
from bounced.core.addresses import (
    address_problem,
    canonical_address,
    channel_of,
    rules_from_config,
)
from bounced.core.decisions import Decision, denied, released
from bounced.core.push import PROVIDERS, Feedback
from bounced.core.sms import message_id_of
from bounced.core.times import format_time, parse_instant
from bounced.daemon.metrics import Metrics, report_of
from bounced.daemon.openapi import document
from bounced.log import get_logger
from bounced.model import Channel, QuarantineState, Reason
from bounced.ops.audit import check_address, explain
from bounced.ops.channels import receipt_from_fields, record_push, register_messages, store_receipt
from bounced.ops.quarantine import act, import_denylist, parse_import, write_suppressions_csv
from bounced.ops.webhooks import subscribe
from bounced.store import DatabaseError, Store
from bounced.store.sent import SentMessage

log = get_logger("bounced.daemon.api")

#: Addresses one ``POST /v1/check`` may ask about.
MAX_CHECK = 1000
#: Rows one page of ``GET /v1/suppressions`` holds at most (and by default).
MAX_PAGE, DEFAULT_PAGE = 1000, 100
#: Longest note an operator action keeps in the history.
MAX_NOTE = 500
#: Longest address accepted (RFC 5321: 64 + 1 + 255; a push token is ~200).
MAX_ADDRESS = 320
#: Messages one ``POST /v1/messages`` may register.
MAX_REGISTER = 1000
#: Longest field of a push answer or an SMS receipt (an FCM token is ~200 characters).
MAX_FIELD = 1000
#: Where a token may come in the query string (gateways that cannot send a header).
QUERY_TOKEN_PATHS = frozenset({"/v1/feedback/sms"})
#: Threads reading the database for the API.
READERS = 4
PUBLIC = frozenset({"/healthz", "/readyz"})
PROBLEM = "application/problem+json"

Result = TypeVar("Result")


class Problem(Exception):  # noqa: N818 - an HTTP answer, named as RFC 9457 names it
    """An RFC 9457 problem: a status, a short kind, what is wrong, and the field at fault."""

    def __init__(self, status: int, kind: str, detail: str, *, field: str | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.kind, self.detail, self.field = status, kind, detail, field
        self.headers = headers or {}

    def response(self, instance: str) -> web.Response:
        body: dict[str, Any] = {
            "type": f"urn:bounced:problem:{self.kind}",
            "title": self.kind.replace("-", " "),
            "status": self.status,
            "detail": self.detail,
            "instance": instance,
        }
        if self.field is not None:
            body["field"] = self.field
        return web.Response(status=self.status, text=json.dumps(body),
                            content_type=PROBLEM, headers=self.headers)


def _token_of(request: web.Request, tokens: Sequence[HttpToken]) -> HttpToken:
    header = request.headers.get("Authorization", "")
    if not header and request.path in QUERY_TOKEN_PATHS and "access_token" in request.query:
        header = f"Bearer {request.query['access_token']}"
    scheme, _, secret = header.partition(" ")
    challenge = {"WWW-Authenticate": 'Bearer realm="bounced"'}
    if scheme.lower() != "bearer" or not secret.strip():
        raise Problem(401, "unauthorized", "a bearer token is required "
                      "(Authorization: Bearer TOKEN)", headers=challenge)
    given = secret.strip().encode()
    found = None
    for token in tokens:  # every one compared, in constant time each
        if hmac.compare_digest(given, token.secret.encode()):
            found = token
    if found is None:
        raise Problem(401, "unauthorized", "unknown token",
                      headers={"WWW-Authenticate": 'Bearer realm="bounced", '
                                                   'error="invalid_token"'})
    return found


def _scope_of(request: web.Request) -> str:
    if request.path == "/v1/feedback/sms":  # Kannel calls its dlr-url with GET
        return "write"
    return "write" if request.method in ("PUT", "DELETE", "POST") and \
        request.path != "/v1/check" else "read"


class Api:
    """The aiohttp application over the daemon's database."""

    def __init__(self, config: Config, *, metrics: Metrics, ready: Callable[[], bool],
                 written: Callable[[], None] = lambda: None,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        """``ready``: whether the daemon serves (``/readyz``); ``written``: called after
        each write (the webhook outbox may have new events)."""
        self.config = config
        #: The ``[addresses]`` folding, derived once per configuration (a check of 1,000
        #: addresses reads it for each).
        self.rules = rules_from_config(config.addresses)
        self.metrics = metrics
        self.ready = ready
        self.written = written
        self.clock = clock
        self.path = config.database.location
        self._readers = ThreadPoolExecutor(READERS, thread_name_prefix="api-read")
        self._writer = ThreadPoolExecutor(1, thread_name_prefix="api-write")
        self._local = threading.local()
        self._opened: list[Store] = []
        self._lock = threading.Lock()
        self.app = web.Application(
            middlewares=[self._problems, self._auth],
            client_max_size=config.http.max_body_bytes,
        )
        self.app.router.add_get("/healthz", self.healthz)
        self.app.router.add_get("/readyz", self.readyz)
        self.app.router.add_get("/metrics", self.scrape)
        self.app.router.add_get("/v1/openapi.json", self.openapi)
        self.app.router.add_get("/v1/addresses/{address}", self.get_address)
        self.app.router.add_get("/v1/addresses/{address}/history", self.history)
        self.app.router.add_post("/v1/check", self.check)
        self.app.router.add_get("/v1/suppressions", self.suppressions)
        self.app.router.add_post("/v1/suppressions/import", self.import_)
        self.app.router.add_put("/v1/suppressions/{address}", self.deny)
        self.app.router.add_delete("/v1/suppressions/{address}", self.release)
        self.app.router.add_get("/v1/messages/{id}/raw", self.raw)
        self.app.router.add_post("/v1/messages", self.register)
        self.app.router.add_post("/v1/feedback/push", self.push_feedback)
        self.app.router.add_post("/v1/feedback/sms", self.sms_feedback)
        self.app.router.add_get("/v1/feedback/sms", self.sms_feedback)
        self.runner: web.AppRunner | None = None
        self.address: tuple[str, int] | None = None

    # -- life cycle

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on ``host:port`` (0: any free port); returns where it listens."""
        self.runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self.runner.setup()
        site = web.TCPSite(self.runner, host, port, reuse_address=True)
        await site.start()
        bound = self.runner.addresses[0]  # the real port of a port-0 listener
        self.address = (str(bound[0]), int(bound[1]))
        return self.address

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
        self._readers.shutdown(wait=True)
        self._writer.shutdown(wait=True)
        for store in self._opened:
            store.close()

    def reconfigure(self, config: Config) -> None:
        """SIGHUP: tokens, address folding and webhooks of the new configuration."""
        self.config = config
        self.rules = rules_from_config(config.addresses)

    # -- the database, off the event loop

    def _reader(self) -> Store:
        store = getattr(self._local, "store", None)
        if store is None:
            store = Store.open_readonly(self.path)
            self._local.store = store
            with self._lock:
                self._opened.append(store)
        return store

    def _writer_store(self) -> Store:
        store = getattr(self._local, "writer", None)
        if store is None:
            store = Store.open(self.path)
            self._local.writer = store
            with self._lock:
                self._opened.append(store)
        return subscribe(store, self.config)

    async def read(self, work: Callable[[Store], Result]) -> Result:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._readers, lambda: work(self._reader()))

    async def write(self, work: Callable[[Store], Result]) -> Result:
        loop = asyncio.get_running_loop()
        result = await loop.run_in_executor(self._writer, lambda: work(self._writer_store()))
        self.written()
        return result

    # -- middlewares

    @web.middleware
    async def _problems(self, request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        try:
            response = await handler(request)
        except Problem as problem:
            response = problem.response(request.path)
        except web.HTTPException as error:  # aiohttp's own: 404, 405, 413, ...
            kind = error.reason.lower().replace(" ", "-")
            kept = {name: value for name, value in error.headers.items()
                    if name.lower() == "allow"}
            response = Problem(error.status, kind, error.text or error.reason,
                               headers=kept).response(request.path)
        except DatabaseError as error:
            log.error("api.database_failed", error=repr(error), path=request.path)
            response = Problem(503, "database-unavailable", "the database cannot be read or "
                               "written just now; try again").response(request.path)
        self.metrics.http_requests.labels(name, str(response.status)).inc()
        return response

    @web.middleware
    async def _auth(self, request: web.Request,
                    handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                    ) -> web.StreamResponse:
        if request.path in PUBLIC:
            return await handler(request)
        token = _token_of(request, self.config.http.tokens)
        scope = _scope_of(request)
        if scope not in token.scopes:
            raise Problem(403, "forbidden", f"this token has no {scope!r} scope",
                          headers={"WWW-Authenticate": 'Bearer realm="bounced", '
                                   f'error="insufficient_scope", scope="{scope}"'})
        request["token"] = token
        return await handler(request)

    # -- input

    def _address(self, value: str, field: str = "address") -> str:
        """An address of one of the three kinds, as given (422 otherwise)."""
        text = value.strip()
        problem = address_problem(text, self.rules) if \
            len(text) <= MAX_ADDRESS else f"too long: {value[:100]!r}"
        if problem is not None:
            raise Problem(422, "invalid-field", problem, field=field)
        return text

    @staticmethod
    async def _json(request: web.Request, *, required: bool) -> dict[str, Any]:
        if not request.can_read_body:
            if required:
                raise Problem(400, "invalid-body", "a JSON body is required", field="body")
            return {}
        if request.content_type != "application/json":
            raise Problem(415, "unsupported-media-type",
                          f"expected application/json, got {request.content_type}",
                          field="Content-Type")
        try:
            body = json.loads(await request.text())
        except (ValueError, UnicodeDecodeError) as error:
            raise Problem(400, "invalid-json", f"the body is not valid JSON: {error}",
                          field="body") from None
        if not isinstance(body, dict):
            raise Problem(422, "invalid-field", "expected a JSON object", field="body")
        return body

    @staticmethod
    def _note(value: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or len(value) > MAX_NOTE:
            raise Problem(422, "invalid-field",
                          f"expected a string of at most {MAX_NOTE} characters", field="note")
        return value

    # -- health

    async def healthz(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def readyz(self, request: web.Request) -> web.Response:
        try:
            database = await self.read(lambda store: store.health.schema_version() > 0)
        except Exception:  # not ready, whatever the reason
            database = False
        ready = database and self.ready()
        return web.json_response({"status": "ready" if ready else "not ready",
                                  "database": database}, status=200 if ready else 503)

    async def scrape(self, request: web.Request) -> web.Response:
        body = await self.read(lambda _store: self.metrics.render())
        return web.Response(body=body, headers={
            "Content-Type": "text/plain; version=0.0.4; charset=utf-8"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(document())

    # -- addresses

    async def get_address(self, request: web.Request) -> web.Response:
        address = self._address(request.match_info["address"])
        rules = self.rules
        report = await self.read(lambda store: check_address(store, address, rules))
        return web.json_response(report.to_json())

    async def check(self, request: web.Request) -> web.Response:
        body = await self._json(request, required=True)
        addresses = body.get("addresses")
        if not isinstance(addresses, list) or not addresses or len(addresses) > MAX_CHECK:
            raise Problem(422, "invalid-field",
                          f"expected a list of 1 to {MAX_CHECK} addresses", field="addresses")
        checked = [self._address(each, f"addresses[{index}]") if isinstance(each, str) else
                   self._address("", f"addresses[{index}]")
                   for index, each in enumerate(addresses)]
        rules = self.rules
        reports = await self.read(
            lambda store: [check_address(store, each, rules) for each in checked])
        return web.json_response({
            "deliverable": all(report.deliverable for report in reports),
            "results": [report.to_json() for report in reports],
        })

    async def history(self, request: web.Request) -> web.Response:
        address = self._address(request.match_info["address"])
        rules = self.rules
        timeline = await self.read(lambda store: explain(store, address, rules))
        return web.json_response(timeline.to_json())

    async def raw(self, request: web.Request) -> web.Response:
        text = request.match_info["id"]
        if not text.isdigit() or len(text) > 18:
            raise Problem(422, "invalid-field", f"not a message id: {text[:40]!r}", field="id")
        found = await self.read(lambda store: store.messages.get(int(text)))
        if found is None or not found.raw:
            raise Problem(404, "not-found", f"no stored message #{text} (or its raw bytes "
                          "were purged past retention)", field="id")
        # an SMS receipt or a push answer is stored as its canonical JSON document
        kind = "message/rfc822" if found.channel is Channel.EMAIL else "application/json"
        return web.Response(body=found.raw, content_type=kind)

    # -- the suppression list

    async def suppressions(self, request: web.Request) -> web.Response:
        query = request.query
        states = []
        for value in query.getall("state", []):
            if value not in (QuarantineState.QUARANTINE.value, QuarantineState.DENYLISTED.value):
                raise Problem(422, "invalid-field", "expected quarantine or denylisted",
                              field="state")
            states.append(QuarantineState(value))
        reason = None
        if "reason" in query:
            try:
                reason = Reason.from_name(query["reason"]).label
            except ValueError:
                raise Problem(422, "invalid-field", f"unknown reason {query['reason']!r}",
                              field="reason") from None
        since = None
        if "since" in query:
            try:
                since = parse_instant(query["since"])
            except ValueError as error:
                raise Problem(422, "invalid-field", str(error), field="since") from None
        if "text/csv" in request.headers.get("Accept", ""):
            return await self._csv(states, reason, since)
        limit = DEFAULT_PAGE
        if "limit" in query:
            if not query["limit"].isdigit() or not 1 <= int(query["limit"]) <= MAX_PAGE:
                raise Problem(422, "invalid-field", f"expected 1 to {MAX_PAGE}", field="limit")
            limit = int(query["limit"])
        after = _cursor(query.get("cursor"))
        rows = await self.read(lambda store: store.addresses.suppressions(
            states=states, reason=reason, since=since, after=after, limit=limit + 1))
        page, more = rows[:limit], len(rows) > limit
        return web.json_response({
            "items": [{"address": r.address, "state": r.state, "reason": r.reason,
                       "since": r.since} for r in page],
            "next_cursor": _encode_cursor(page[-1].address) if more and page else None,
        })

    async def _csv(self, states: list[QuarantineState], reason: str | None,
                   since: datetime | None) -> web.Response:
        def export(store: Store) -> str:
            out = io.StringIO()
            if not states and reason is None and since is None:
                rows = store.addresses.suppression_list()
            else:
                rows = store.addresses.suppressions(states=states, reason=reason, since=since,
                                                    limit=2**62)
            write_suppressions_csv(rows, out)
            return out.getvalue()

        return web.Response(text=await self.read(export), content_type="text/csv")

    async def deny(self, request: web.Request) -> web.Response:
        return await self._decide(request, denied)

    async def release(self, request: web.Request) -> web.Response:
        return await self._decide(request, released)

    async def _decide(self, request: web.Request, decide: Decision) -> web.Response:
        address = self._address(request.match_info["address"])
        body = await self._json(request, required=False)
        note = self._note(body.get("note", request.query.get("note")))
        actor = f"api:{request['token'].name}"
        rules = self.rules
        now = self.clock()
        [result] = await self.write(
            lambda store: act(store, decide, [address], now, note, rules, actor))
        if result.changed:
            self.metrics.state_changes.labels(result.new.value).inc()
        return web.json_response({
            "address": result.address,
            "old_state": result.old.value if result.old else None,
            "new_state": result.new.value,
            "changed": result.changed,
        })

    async def import_(self, request: web.Request) -> web.Response:
        if request.content_type == "text/csv":
            text, source = await request.text(), "api"
        else:
            body = await self._json(request, required=True)
            addresses = body.get("addresses")
            if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
                raise Problem(422, "invalid-field", "expected a list of addresses",
                              field="addresses")
            text = "\n".join(address.replace(",", " ") for address in addresses)
            source = body.get("source", "api")
            if not isinstance(source, str) or len(source) > 100:
                raise Problem(422, "invalid-field", "expected a short string", field="source")
        rules = self.rules
        plan = parse_import(text, rules)
        actor = f"api:{request['token'].name}"
        now = self.clock()
        result = await self.write(lambda store: import_denylist(
            store, plan, now, f"{source} via {actor}", actor))
        if result.denylisted:
            self.metrics.state_changes.labels(QuarantineState.DENYLISTED.value).inc(
                result.denylisted)
        return web.json_response({
            "denylisted": result.denylisted,
            "already": result.already,
            "kept_allowlisted": list(result.kept_allowlisted),
            "duplicates": plan.duplicates,
            "bad": [{"line": bad.line, "text": bad.text, "problem": bad.problem}
                    for bad in plan.bad],
            "at": format_time(now),
        })


    # -- the other channels

    @staticmethod
    def _text(body: dict[str, Any], key: str, *, required: bool = False) -> str | None:
        value = body.get(key)
        if value is None and not required:
            return None
        if not isinstance(value, str) or not value.strip() or len(value) > MAX_FIELD:
            raise Problem(422, "invalid-field",
                          f"expected a non-empty string of at most {MAX_FIELD} characters",
                          field=key)
        return value.strip()

    async def push_feedback(self, request: web.Request) -> web.Response:
        """A push provider's answer to one notification: the verdict, and retry or not."""
        body = await self._json(request, required=True)
        provider = body.get("provider")
        if provider not in PROVIDERS:
            raise Problem(422, "invalid-field", f"expected one of {', '.join(PROVIDERS)}",
                          field="provider")
        app = self._text(body, "app", required=True)
        token = self._text(body, "token", required=True)
        assert app is not None and token is not None
        status = body.get("status")
        if status is not None and (not isinstance(status, int) or isinstance(status, bool)
                                   or not 0 <= status <= 599):
            raise Problem(422, "invalid-field", "expected an HTTP status (0: no answer)",
                          field="status")
        code_key = "reason" if provider == "apns" else "error"
        code = self._text(body, code_key) or self._text(body, "reason" if code_key == "error"
                                                         else "error")
        if status is None and code is None:
            raise Problem(422, "invalid-field", f"expected the provider's status and/or "
                          f"its {code_key}", field="status")
        detail = body.get("detail", [])
        if isinstance(detail, str | int):
            detail = [str(detail)]
        if not isinstance(detail, list) or not all(isinstance(d, str | int) for d in detail) \
                or len(detail) > 5:
            raise Problem(422, "invalid-field", "expected up to 5 values ({1}, {2}, ...)",
                          field="detail")
        notification = self._text(body, "id")
        if any(c.isspace() for c in app) or any(c.isspace() for c in token):
            raise Problem(422, "invalid-field", "expected no spaces in app and token",
                          field="token")
        now = self.clock()
        feedback = Feedback(provider, app, token, status, code,
                            tuple(str(d)[:MAX_FIELD] for d in detail), notification,
                            format_time(now) if notification is None else None)
        peer = f"api:{request['token'].name}"
        config = self.config
        outcome = await self.write(lambda store: record_push(
            store, feedback, config=config, received_at=now, peer=peer))
        if outcome.message_id is not None and not outcome.duplicate:
            self.metrics.received.labels("http", "false", Channel.PUSH.value).inc()
        elif outcome.duplicate:
            self.metrics.received.labels("http", "true", Channel.PUSH.value).inc()
        if outcome.result is not None:
            self.metrics.apply(report_of([outcome.result], lambda _r: 0.0))
        log.info("push.feedback", address=outcome.address, provider=provider, code=code,
                 status=status, retry=outcome.retry, failure_type=outcome.failure_type,
                 state=outcome.state.value, message_id=outcome.message_id,
                 duplicate=outcome.duplicate)
        return web.json_response(outcome.to_json())

    async def sms_feedback(self, request: web.Request) -> web.Response:
        """An SMS receipt a gateway calls back with: stored (durable) before the 200."""
        fields: dict[str, str] = {key: value for key, value in request.query.items()}
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await self._json(request, required=True)
                fields.update({str(k): str(v) for k, v in body.items()
                               if isinstance(v, str | int | float)})
            elif request.content_type in ("application/x-www-form-urlencoded",
                                          "multipart/form-data"):
                form = await request.post()
                fields.update({str(k): str(v) for k, v in form.items() if isinstance(v, str)})
            else:
                raise Problem(415, "unsupported-media-type", "expected a form or JSON body, "
                              f"got {request.content_type}", field="Content-Type")
        fields.pop("access_token", None)
        for key, value in fields.items():
            if len(value) > MAX_FIELD:
                raise Problem(422, "invalid-field", f"longer than {MAX_FIELD} characters",
                              field=key)
        if not fields.get("report") and not fields.get("message_status") and \
                not fields.get("type"):
            raise Problem(422, "invalid-field", "expected the receipt (report, Jasmin's "
                          "message_status, or Kannel's type)", field="report")
        receipt = receipt_from_fields(fields)
        now = self.clock()
        peer = f"api:{request['token'].name}"
        stored = await self.write(lambda store: store_receipt(store, receipt, received_at=now,
                                                              peer=peer))
        self.metrics.received.labels("http", str(stored.duplicate).lower(),
                                     Channel.SMS.value).inc()
        log.info("message.received", message_id=stored.id, duplicate=stored.duplicate,
                 channel=Channel.SMS.value, peer=peer, protocol="http",
                 smsc_message_id=message_id_of(receipt))
        if "message_status" in fields and \
                "application/json" not in request.headers.get("Accept", ""):
            # Jasmin re-sends a receipt until the answer is exactly this.
            return web.Response(text="ACK/Jasmin", content_type="text/plain")
        return web.json_response({"message_id": stored.id, "duplicate": stored.duplicate})

    async def register(self, request: web.Request) -> web.Response:
        """Which recipient each sent message went to: ``{"messages": [{"id", "channel",
        "recipient"}, ...]}`` (or one such object)."""
        body = await self._json(request, required=True)
        items = body.get("messages", [body] if "id" in body else None)
        if not isinstance(items, list) or not items or len(items) > MAX_REGISTER:
            raise Problem(422, "invalid-field", f"expected 1 to {MAX_REGISTER} messages",
                          field="messages")
        rules = self.rules
        sent = []
        for index, item in enumerate(items):
            where = f"messages[{index}]" if "messages" in body else ""
            if not isinstance(item, dict):
                raise Problem(422, "invalid-field", "expected an object", field=where or "body")
            message_id = item.get("id")
            if not isinstance(message_id, str) or not message_id.strip() or \
                    len(message_id) > 200:
                raise Problem(422, "invalid-field", "expected the message id (a string)",
                              field=f"{where}.id".lstrip("."))
            recipient = item.get("recipient")
            if not isinstance(recipient, str):
                raise Problem(422, "invalid-field", "expected an address",
                              field=f"{where}.recipient".lstrip("."))
            address = self._address(recipient, f"{where}.recipient".lstrip("."))
            channel = item.get("channel", channel_of(address).value)
            if channel not in [each.value for each in Channel] or \
                    channel != channel_of(address).value:
                raise Problem(422, "invalid-field", f"expected the recipient's channel "
                              f"({channel_of(address).value})",
                              field=f"{where}.channel".lstrip("."))
            sent.append(SentMessage(Channel(channel), message_id.strip(),
                                    canonical_address(address, rules)))
        now = self.clock()
        count = await self.write(lambda store: register_messages(store, sent, now))
        return web.json_response({"registered": count, "at": format_time(now)})


def _encode_cursor(address: str) -> str:
    return base64.urlsafe_b64encode(address.encode()).decode().rstrip("=")


def _cursor(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        return base64.b64decode(value + "=" * (-len(value) % 4), altchars=b"-_",
                                validate=True).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise Problem(422, "invalid-field", "not a cursor this API gave", field="cursor") from None
