"""A running ``bounced serve`` with its HTTP listener, its tokens, and real bounces in it.

The daemon is a real process (``tests/harness/process.py``) configured from a TOML file
the way an operator writes one; bounces reach it over SMTP from the mta-lab captures
(real Postfix DSNs) and a real ARF complaint of the corpus.
"""

from __future__ import annotations

import json
import smtplib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from openapi_core import OpenAPI

from tests.harness.http import ApiClient, openapi_of
from tests.harness.process import ServerProcess, query, wait_until_processed
from tests.paths import DATA

#: name -> (secret, scopes)
TOKENS = {
    "reader": ("reader-token-0123456789abcdef", ("read",)),
    "crm": ("crm-token-0123456789abcdef01", ("read", "write")),
    "importer": ("importer-token-0123456789abc", ("write",)),
}
WEBHOOK_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#: Real Postfix DSNs (tests/data/mta-lab) and a real ARF complaint (the corpus).
SEED = [*sorted((DATA / "mta-lab").glob("postfix-*-failed.eml")),
        DATA / "corpus" / "sisimai" / "eml" / "arf-01.eml"]


def config_text(*, webhooks: Sequence[str] = (), extra: str = "") -> str:
    """The configuration file of the test daemon (``webhooks``: ``[[webhooks]]`` tables)."""
    tokens = "".join(
        f'[[http.tokens]]\nname = "{name}"\nsecret = "{secret}"\n'
        f"scopes = {json.dumps(list(scopes))}\n"
        for name, (secret, scopes) in TOKENS.items())
    return (
        '[database]\npath = "bounced.db"\n'
        '[smtp]\nlisten = "127.0.0.1:0"\nhostname = "bounced.test"\n'
        'bounce_domains = ["bounce.lab.test", "bounce.example"]\n'
        '[dns]\nenabled = false\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
        f"{tokens}{''.join(webhooks)}{extra}"
    )


def webhook_table(url: str, *, retry_after: str = "0.2s", give_up_after: str = "1h",
                  events: Sequence[str] = ()) -> str:
    return (f'[[webhooks]]\nurl = "{url}"\nsecret = "{WEBHOOK_SECRET}"\n'
            f'retry_after = "{retry_after}"\ngive_up_after = "{give_up_after}"\n'
            f"events = {json.dumps(list(events))}\n")


def send(port: int, path: Path, rcpt: str | None = None) -> None:
    """One message over SMTP with the envelope it was captured with (if known)."""
    envelope = path.with_suffix(".json")
    rcpt_to = json.loads(envelope.read_text())["rcpt_tos"] if envelope.exists() else [
        rcpt or "bounces@bounce.example"]
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as client:
        client.sendmail("", rcpt_to, path.read_bytes())


@dataclass
class ApiServer:
    """A running daemon, its HTTP base URL, and clients for each token."""

    process: ServerProcess
    directory: Path
    clients: list[ApiClient] = field(default_factory=list)
    _openapi: OpenAPI | None = None

    @property
    def db(self) -> Path:
        return self.directory / "bounced.db"

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.process.port('http')}"

    @property
    def smtp_port(self) -> int:
        return self.process.port("smtp")

    def client(self, token: str | None = "reader", *, validate: bool = True) -> ApiClient:
        """A client as the token named (None: no token, a str not in TOKENS: that text);
        its responses checked against the OpenAPI document unless ``validate`` is False."""
        secret = TOKENS[token][0] if token in TOKENS else token
        if validate and self._openapi is None:
            self._openapi = openapi_of(self.base_url, TOKENS["reader"][0])[1]
        client = ApiClient(self.base_url, secret, self._openapi if validate else None)
        self.clients.append(client)
        return client

    def seed(self) -> None:
        for path in SEED:
            send(self.smtp_port, path)
        wait_until_processed(self.db)

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
        return query(self.db, sql, params)

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.process.kill()


def start_server(directory: Path, text: str) -> ApiServer:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bounced.toml").write_text(text)
    process = ServerProcess(["--config", "bounced.toml"], cwd=directory,
                            log=directory / f"serve-{len(list(directory.glob('serve-*')))}.log")
    return ApiServer(process.ready(), directory)


@pytest.fixture(scope="module")
def seeded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    """One daemon per test module with the seed bounces processed: 4 addresses
    quarantined (User unknown), one denylisted (the complaint), 7 erroneous."""
    server = start_server(tmp_path_factory.mktemp("api"), config_text())
    try:
        server.seed()
        yield server
    finally:
        server.close()


@pytest.fixture
def fresh(tmp_path: Path) -> Iterator[ApiServer]:
    """A daemon of its own, with an empty database."""
    server = start_server(tmp_path / "daemon", config_text())
    try:
        yield server
    finally:
        server.close()
