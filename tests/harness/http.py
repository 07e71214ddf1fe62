"""Test harness for the HTTP side: an API client whose every answer is checked against
the daemon's own OpenAPI document, and a real webhook receiver.

- :class:`ApiClient` is ``httpx`` over loopback to a running ``bounced serve``; each
  response it gets is validated by ``openapi-core`` against ``GET /v1/openapi.json``
  (status, content type, body schema), so a handler that drifts from the document fails
  the test that called it.
- :class:`WebhookReceiver` is an aiohttp server on its own loop thread that answers the
  first ``fail_first`` deliveries with 500 and keeps every request it got (headers and
  bytes), for the tests to verify with the ``standardwebhooks`` library.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

import httpx
from aiohttp import web
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters
from werkzeug.datastructures import Headers, ImmutableMultiDict


class _Request:
    """An httpx request as openapi-core reads one."""

    def __init__(self, request: httpx.Request) -> None:
        self.host_url = f"{request.url.scheme}://{request.url.netloc.decode()}"
        self.path = request.url.path
        self.method = request.method.lower()
        self.body = request.content or None
        self.content_type = request.headers.get("content-type", "").split(";")[0]
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(list(request.url.params.multi_items())),
            header=Headers(list(request.headers.items())),
            cookie=ImmutableMultiDict(),
        )


class _Response:
    """An httpx response as openapi-core reads one."""

    def __init__(self, response: httpx.Response) -> None:
        self.status_code = response.status_code
        self.content_type = response.headers.get("content-type", "").split(";")[0].strip()
        self.headers = Headers(list(response.headers.items()))
        self.data = response.content


class ApiClient:
    """Requests to the daemon's HTTP listener, as ``token`` (None: no Authorization)."""

    def __init__(self, base_url: str, token: str | None, openapi: OpenAPI | None) -> None:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        self.http = httpx.Client(base_url=base_url, headers=headers, timeout=60)
        self.openapi = openapi
        #: How many responses were validated against the document.
        self.validated = 0

    def request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = self.http.request(method, path, **kwargs)
        if self.openapi is not None:
            self.openapi.validate_response(_Request(response.request), _Response(response))
            self.validated += 1
        return response

    def get(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self.http.close()


def openapi_of(base_url: str, token: str) -> tuple[dict[str, Any], OpenAPI]:
    """The daemon's document, as served, and its openapi-core reader (which validates
    the document itself on construction)."""
    document = httpx.get(f"{base_url}/v1/openapi.json",
                         headers={"Authorization": f"Bearer {token}"}, timeout=60).json()
    # openapi-core reads application/json only: problem details are JSON too (RFC 9457),
    # and the CSV export is text.
    config = Config(extra_media_type_deserializers={
        "application/problem+json": json.loads, "text/csv": bytes.decode})
    return document, OpenAPI.from_dict(document, config=config)


@dataclass
class Received:
    """One request the receiver got."""

    headers: dict[str, str]
    body: bytes
    answered: int

    @property
    def event(self) -> dict[str, Any]:
        return dict(json.loads(self.body))


@dataclass
class WebhookReceiver:
    """A webhook endpoint on loopback; ``fail_first`` requests get a 500."""

    fail_first: int = 0
    requests: list[Received] = field(default_factory=list)
    port: int = 0

    def __post_init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._runner: web.AppRunner | None = None
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    async def _receive(self, request: web.Request) -> web.Response:
        body = await request.read()
        with self._lock:
            status = 500 if len(self.requests) < self.fail_first else 204
            self.requests.append(Received(dict(request.headers), body, status))
        return web.Response(status=status)

    async def _start(self, port: int) -> int:
        app = web.Application()
        app.router.add_post("/hooks", self._receive)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", port, reuse_address=True).start()
        return int(self._runner.addresses[0][1])

    def start(self, port: int = 0) -> WebhookReceiver:
        """Listen (on ``port``: a restarted receiver takes its old one)."""
        if not self._thread.is_alive():
            self._thread.start()
        self.port = asyncio.run_coroutine_threadsafe(self._start(port), self._loop).result(30)
        return self

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(30)
            self._runner = None

    def close(self) -> None:
        self.stop()
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(30)

    def accepted(self) -> list[Received]:
        with self._lock:
            return [each for each in self.requests if each.answered < 300]
