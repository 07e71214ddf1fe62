"""Configuration: one TOML file (``config/bounced.toml`` is the documented example).

Every setting has a default, so ``bounced`` runs with no file at all. A file only needs
the keys it changes. Unknown keys and wrong values are errors that name the key and what
was expected (``policy.soft_error_threshold: expected an integer >= 1, got 'five'``),
because a typo silently ignored in a quarantine policy is an outage found weeks later.

Durations are written with a unit: ``"90s"``, ``"15m"``, ``"24h"``, ``"10d"``.
"""

from __future__ import annotations

import base64
import binascii
import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any, get_type_hints

import phonenumbers

from bounced.core.times import parse_duration
from bounced.model import EventType


class ConfigError(ValueError):
    """A configuration value is missing, unknown or of the wrong kind."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


@dataclass(frozen=True)
class DatabaseConfig:
    #: Where the database is: ``sqlite:///path/bounced.db`` or
    #: ``postgresql://user@host/db`` (several hosts on one database). Empty: ``path``.
    url: str = ""
    #: The SQLite file when ``url`` is empty (how it was set before URLs).
    path: str = "bounced.db"
    #: Raw messages and bounce rows older than this are purged by the cleanup job.
    retention: timedelta = timedelta(days=180)
    #: SQLite page cache (MiB) of each connection of the daemon and ``bounced ingest``.
    cache_mb: int = 16
    #: The daemon reads the b-trees each bounce reaches at random into that cache at
    #: start, when they fit (:meth:`bounced.store.Store.prewarm`).
    prewarm: bool = True
    #: Size (MiB) the WAL file is brought back to once its content is copied into the
    #: database (``PRAGMA journal_size_limit``; past it the checkpoint thread truncates
    #: it, see :class:`bounced.store.tuning.Checkpointer`).
    wal_limit_mb: int = 64
    #: A WAL that a reader keeps from being copied back (an open ``sqlite3`` session)
    #: and that grew past this (MiB) is logged as ``database.wal_pinned``.
    wal_warn_mb: int = 256

    @property
    def location(self) -> str:
        """The database every part of bounced opens: ``url``, else ``path``."""
        return self.url or self.path


@dataclass(frozen=True)
class PolicyConfig:
    """Quarantine policy thresholds (docs/policy.md)."""

    #: Counted soft errors that put an address in quarantine.
    soft_error_threshold: int = 5
    #: Two soft errors count separately only when at least this far apart.
    soft_error_interval: timedelta = timedelta(hours=24)
    #: A counter whose last counted error is older than this starts again from zero.
    counter_reset_after: timedelta = timedelta(days=10)
    #: ``Mailbox full`` quarantines are released after this long by the cleanup job.
    mailbox_full_release_after: timedelta = timedelta(days=30)
    #: Undefined (not yet qualified) errors for one address that change nothing before
    #: the next ones start counting like soft errors.
    undefined_grace: int = 1


@dataclass(frozen=True)
class VerpConfig:
    """Variable envelope return path (docs/correlation.md)."""

    #: Separator between the local part and the token: ``bounces+TOKEN@bounce.example``.
    separator: str = "+"
    #: HMAC secret for signed tokens; empty means tokens are not signed nor checked.
    secret: str = ""
    #: With a secret: a bounce without a validly signed token changes no address. False
    #: only while senders move to signed return paths (a forged signature never counts).
    required: bool = True


@dataclass(frozen=True)
class SmtpConfig:
    """The SMTP listener (for a bounce domain whose MX points at bounced)."""

    #: ``HOST:PORT``; empty disables the SMTP listener.
    listen: str = "127.0.0.1:2525"
    #: Name used in the greeting and EHLO reply; never looked up in DNS.
    hostname: str = "bounced.localhost"
    #: Largest accepted message in bytes (bigger gets ``552 5.3.4``).
    max_message_size: int = 32 * 1024 * 1024
    #: Domains whose every address is a bounce address; empty means accept all (loopback only!).
    bounce_domains: tuple[str, ...] = ()
    #: Individual bounce addresses (VERP forms ``local+token@domain`` are accepted too).
    bounce_addresses: tuple[str, ...] = ()
    #: Client networks allowed to connect (CIDR); empty means any.
    allowed_networks: tuple[str, ...] = ()
    #: Silence limit: a client that sends no byte for this long (between commands, or
    #: during DATA) gets ``421 4.4.2`` and is disconnected; a command line must also be
    #: complete within it.
    timeout: timedelta = timedelta(minutes=5)
    #: The silence limit while the connection table is more than 80% full (Postfix's
    #: "stress" mode): idle clients make room for those that deliver. Never longer than
    #: ``timeout``.
    stress_timeout: timedelta = timedelta(seconds=10)
    #: Slowest DATA transfer (bytes/s) allowed: DATA must end within ``timeout`` plus
    #: the bytes received so far divided by this rate (Postfix's smtpd_min_data_rate).
    min_data_rate: int = 1024
    #: Recipients accepted in one envelope; more get ``452 4.5.3`` (RFC 5321 asks for >= 100).
    max_recipients: int = 1000
    #: Simultaneous client connections (SMTP and LMTP together); more get ``421 4.3.2``.
    #: Bounds memory under a flood: each connection holds at most one message.
    max_connections: int = 200
    #: Simultaneous connections from one client IP; more get ``421 4.7.0`` (0: no limit).
    #: Leaves room for other clients under ``max_connections`` (Postfix's anvil(8)).
    max_connections_per_client: int = 50
    #: New connections per minute from one client IP; more get ``421 4.7.0`` (0: no limit).
    connection_rate_per_client: int = 600
    #: Commands that deliver nothing (NOOP, RSET, HELP, VRFY, EXPN) allowed since the
    #: session's last delivered message; one more gets ``421 4.7.0`` (0: no limit).
    max_junk_commands: int = 100
    #: A session that has delivered no message for this long (since it connected or
    #: since its last ``250`` after DATA) gets ``421 4.7.0``, outside DATA.
    idle_session_limit: timedelta = timedelta(minutes=10)


@dataclass(frozen=True)
class StorageConfig:
    """Room on the database's file system for the work already accepted."""

    #: Free space (MiB) kept in reserve: below it new mail gets ``452 4.3.1`` while the
    #: worker still processes what was stored (0: no reserve).
    min_free_mb: int = 256


@dataclass(frozen=True)
class LmtpConfig:
    """The LMTP listener (for delivery from a local Postfix or Exim)."""

    #: ``HOST:PORT`` or ``unix:/path/to/socket``; empty disables LMTP.
    listen: str = ""


@dataclass(frozen=True)
class ProcessingConfig:
    """Work after the raw message is safely stored."""

    #: Messages waiting for processing beyond which SMTP answers ``451 4.3.2``.
    max_pending: int = 50_000
    #: Messages processed per database transaction.
    batch_size: int = 200
    #: Longest the parsing and judging of one message may take; a message that takes
    #: longer is set aside as ``failed`` with that reason, and the others go on.
    message_budget: timedelta = timedelta(seconds=10)
    #: Processing attempts of one message that never finished (the worker crashed or
    #: was killed on it) after which it is set aside as ``failed``.
    max_attempts: int = 3


@dataclass(frozen=True)
class MaintenanceConfig:
    """The periodic cleanup job inside the daemon."""

    interval: timedelta = timedelta(hours=1)


@dataclass(frozen=True)
class AddressesConfig:
    """Canonical address keys (:mod:`bounced.core.addresses`): which spellings are one mailbox.

    Addresses are always compared lowercased with the domain in IDNA form. Folding
    ``+tags`` or dots is only true of some providers, so it is off unless listed here.
    """

    #: Domains where ``local+tag@`` is ``local@`` (``"*"``: every domain).
    plus_tag_domains: tuple[str, ...] = ()
    #: Domains where dots in the local part do not matter (Gmail: ``j.doe@`` = ``jdoe@``).
    dot_insensitive_domains: tuple[str, ...] = ()
    #: ``"alias=domain"`` pairs naming one mail system twice (``"googlemail.com=gmail.com"``).
    domain_aliases: tuple[str, ...] = ()
    #: ISO 3166 region code (``"FR"``) of phone numbers written in national form
    #: (``tel:06 12 34 56 78``, an SMSC's source address without country code); empty:
    #: only international forms are read.
    phone_region: str = ""


@dataclass(frozen=True)
class DnsConfig:
    """DNS evidence and provider look-ups (:mod:`bounced.ops.dns`). DNS never blocks
    processing: a look-up that times out is recorded as ``unknown``."""

    #: Query DNS at all; false (an air-gapped host): no evidence is recorded and reports
    #: use only answers already in ``dns_cache``.
    enabled: bool = True
    #: Resolvers as ``"IP"`` or ``"IP:PORT"``; empty means the system's (/etc/resolv.conf).
    nameservers: tuple[str, ...] = ()
    #: Total time allowed for one name's look-ups before the answer is ``unknown``.
    timeout: timedelta = timedelta(seconds=2)
    #: How long a definite answer (MX, NXDOMAIN, null MX) is reused from ``dns_cache``.
    cache_ttl: timedelta = timedelta(days=1)
    #: How long an ``unknown`` answer (timeout, SERVFAIL) is reused before trying again.
    failure_ttl: timedelta = timedelta(minutes=10)


#: What an HTTP token may do: ``read`` (check, list, export, history, metrics) and
#: ``write`` (denylist, release, import).
SCOPES = ("read", "write")
#: The events webhooks can subscribe to (``docs/webhooks.md``).
WEBHOOK_EVENTS = tuple(event.value for event in EventType)


@dataclass(frozen=True)
class HttpToken:
    """One client of the HTTP API (an ``[[http.tokens]]`` table)."""

    #: Who the client is: written as the actor of what it changes (``api:NAME``).
    name: str = ""
    #: The bearer token it sends (at least 16 characters); or ``secret_file``.
    secret: str = ""
    #: A file holding the secret (read at start; relative to the configuration file).
    secret_file: str = ""
    #: ``read`` and/or ``write``.
    scopes: tuple[str, ...] = ("read",)


@dataclass(frozen=True)
class HttpConfig:
    """The HTTP API, signed webhooks' admin and ``/metrics`` (README: "HTTP API")."""

    #: ``HOST:PORT``; empty disables the HTTP listener.
    listen: str = ""
    #: Largest request body accepted (an import of 10,000 addresses is ~300 KB).
    max_body_bytes: int = 4 * 1024 * 1024
    #: The clients allowed in; without a token nothing but /healthz and /readyz answers.
    tokens: tuple[HttpToken, ...] = ()


@dataclass(frozen=True)
class WebhookConfig:
    """One endpoint that receives signed events (a ``[[webhooks]]`` table)."""

    #: Where the events are POSTed.
    url: str = ""
    #: The Standard Webhooks secret (``whsec_`` + base64), or ``secret_file``.
    secret: str = ""
    secret_file: str = ""
    #: The events it wants (empty: all of them).
    events: tuple[str, ...] = ()
    #: Longest wait for the endpoint's answer to one delivery.
    timeout: timedelta = timedelta(seconds=10)
    #: The first retry of a failed delivery; each next one waits twice as long (at most
    #: an hour).
    retry_after: timedelta = timedelta(seconds=10)
    #: How long failed deliveries are retried before the delivery is given up ("dead";
    #: ``bounced webhooks retry`` sends it again).
    give_up_after: timedelta = timedelta(days=3)


#: How an ``[[smpp]]`` account binds: receive only, or send and receive.
SMPP_BINDS = ("receiver", "transceiver")


@dataclass(frozen=True)
class SmppAccount:
    """One SMSC account whose delivery receipts bounced receives (an ``[[smpp]]`` table,
    docs/channels.md): the daemon binds to it over SMPP 3.4, keeps the session alive and
    rebinds after a failure."""

    #: The account's name (logs, ``messages.peer``, the stored receipts).
    name: str = ""
    host: str = ""
    port: int = 2775
    system_id: str = ""
    #: The bind password (SMPP 3.4: 8 characters at most), or ``password_file``.
    password: str = ""
    password_file: str = ""
    system_type: str = ""
    #: The SMSC implementation name, written in the SR text ``SR <smsc> <stat> <err>``:
    #: the same error code means different things at different providers.
    smsc: str = "Generic"
    #: ``receiver`` or ``transceiver`` (when the SMSC sends receipts only on the bind
    #: that submitted the messages, the sending side binds; bounced then needs its own
    #: receiver bind, or a transceiver one if the SMSC allows only that).
    bind: str = "receiver"
    #: SMPP over TLS, the SMSC's certificate checked against the system's trust store
    #: or ``tls_ca_file``.
    tls: bool = False
    tls_ca_file: str = ""
    #: Regular expressions that extract the status and the error code from a receipt's
    #: text (group 1, or the whole match): SMPP 3.4 Appendix B's ``stat:`` and ``err:``
    #: fields by default.
    status_regex: str = r"\bstat:(\S*)"
    error_regex: str = r"\berr:(\S*)"
    #: Idle time after which an ``enquire_link`` checks the session.
    enquire_link: timedelta = timedelta(seconds=30)
    #: Longest wait for the SMSC's answer (bind, enquire_link) before the session is
    #: considered dead and rebound.
    response_timeout: timedelta = timedelta(seconds=10)
    #: First wait before rebinding after a failure; each next one doubles, up to
    #: ``reconnect_max``.
    reconnect_min: timedelta = timedelta(seconds=1)
    reconnect_max: timedelta = timedelta(seconds=60)


@dataclass(frozen=True)
class LoggingConfig:
    #: ``auto`` (readable on a terminal, JSON otherwise), ``json`` or ``console``.
    format: str = "auto"
    level: str = "info"


@dataclass(frozen=True)
class Config:
    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    verp: VerpConfig = field(default_factory=VerpConfig)
    smtp: SmtpConfig = field(default_factory=SmtpConfig)
    lmtp: LmtpConfig = field(default_factory=LmtpConfig)
    processing: ProcessingConfig = field(default_factory=ProcessingConfig)
    maintenance: MaintenanceConfig = field(default_factory=MaintenanceConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    addresses: AddressesConfig = field(default_factory=AddressesConfig)
    dns: DnsConfig = field(default_factory=DnsConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    webhooks: tuple[WebhookConfig, ...] = ()
    storage: StorageConfig = field(default_factory=StorageConfig)
    smpp: tuple[SmppAccount, ...] = ()


_CHOICES = {
    "logging.format": ("auto", "json", "console"),
    "bind": SMPP_BINDS,
    "logging.level": ("debug", "info", "warning", "error"),
}


def _convert(key: str, expected: Any, value: Any) -> Any:
    if expected is timedelta:
        if isinstance(value, str):
            try:
                return parse_duration(value)
            except ValueError:
                pass
        raise ConfigError(
            key, f"expected a duration such as \"90s\", \"24h\" or \"10d\", got {value!r}"
        )
    if expected is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(key, f"expected true or false, got {value!r}")
    if expected is int:
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            return value
        raise ConfigError(key, f"expected an integer >= 0, got {value!r}")
    if expected == tuple[str, ...]:
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return tuple(value)
        raise ConfigError(key, f"expected a list of strings, got {value!r}")
    tables = _table_type(expected)
    if tables is not None:
        if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
            raise ConfigError(key, f"expected an array of tables ([[{key}]]), got {value!r}")
        return tuple(_section(f"{key}[{index}]", tables, item)
                     for index, item in enumerate(value))
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"expected a string, got {value!r}")
        choices = _CHOICES.get(key) or _CHOICES.get(key.rpartition(".")[2]
                                                    if key.startswith("smpp[") else "")
        if choices and value not in choices:
            raise ConfigError(key, f"expected one of {', '.join(choices)}, got {value!r}")
        return value
    raise ConfigError(key, f"unsupported setting type {expected!r}")  # pragma: no cover


def _table_type(expected: Any) -> type | None:
    """The dataclass of a ``tuple[SomeConfig, ...]`` setting (an array of tables)."""
    arguments: tuple[Any, ...] = tuple(getattr(expected, "__args__", ()))
    if getattr(expected, "__origin__", None) is not tuple or len(arguments) != 2:
        return None
    item, rest = arguments
    if rest is Ellipsis and isinstance(item, type) and is_dataclass(item):
        return item
    return None


def _section(name: str, cls: type, values: Any) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(name, f"expected a table [{name}], got {values!r}")
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls)}
    for key in values:
        if key not in known:
            known_keys = ", ".join(sorted(known))
            raise ConfigError(f"{name}.{key}", f"unknown setting (known: {known_keys})")
    converted = {key: _convert(f"{name}.{key}", hints[key], value) for key, value in values.items()}
    instance = cls(**converted)
    _check(name, instance)
    return instance


def _check(name: str, section: Any) -> None:
    """Cross-field and range checks that a type alone cannot express."""
    if isinstance(section, PolicyConfig) and section.soft_error_threshold < 1:
        raise ConfigError(f"{name}.soft_error_threshold", "expected an integer >= 1, got 0")
    if isinstance(section, VerpConfig) and len(section.separator) != 1:
        raise ConfigError(f"{name}.separator", f"expected one character, got {section.separator!r}")
    if isinstance(section, DatabaseConfig) and section.url and not section.url.startswith(
            ("sqlite:///", "postgresql://", "postgres://")):
        raise ConfigError(f"{name}.url", "expected sqlite:///PATH or "
                                         f"postgresql://USER@HOST/DB, got {section.url!r}")
    if isinstance(section, DatabaseConfig):
        for key in ("cache_mb", "wal_limit_mb", "wal_warn_mb"):
            if getattr(section, key) < 1:
                raise ConfigError(f"{name}.{key}",
                                  f"expected an integer >= 1, got {getattr(section, key)}")
    if isinstance(section, SmtpConfig):
        _check_smtp(name, section)
    if isinstance(section, ProcessingConfig) and section.batch_size < 1:
        raise ConfigError(f"{name}.batch_size", "expected an integer >= 1, got 0")
    if isinstance(section, ProcessingConfig) and section.max_attempts < 1:
        raise ConfigError(f"{name}.max_attempts", "expected an integer >= 1, got 0")
    if isinstance(section, ProcessingConfig) and section.message_budget.total_seconds() <= 0:
        raise ConfigError(f"{name}.message_budget", "expected a duration > 0")
    if isinstance(section, AddressesConfig):
        for pair in section.domain_aliases:
            alias, equals, target = pair.partition("=")
            if not equals or not alias.strip() or not target.strip():
                raise ConfigError(
                    f"{name}.domain_aliases", f"expected \"alias=domain\" pairs, got {pair!r}"
                )
    if isinstance(section, DnsConfig) and section.timeout.total_seconds() <= 0:
        raise ConfigError(f"{name}.timeout", "expected a duration > 0")
    if isinstance(section, HttpToken):
        _check_token(name, section)
    if isinstance(section, HttpConfig):
        names = [token.name for token in section.tokens]
        for duplicate in sorted({each for each in names if names.count(each) > 1}):
            raise ConfigError(f"{name}.tokens", f"expected unique names, {duplicate!r} twice")
    if isinstance(section, WebhookConfig):
        _check_webhook(name, section)
    if isinstance(section, SmppAccount):
        _check_smpp(name, section)
    if isinstance(section, AddressesConfig) and section.phone_region and \
            section.phone_region.upper() not in phonenumbers.SUPPORTED_REGIONS:
        raise ConfigError(f"{name}.phone_region", "expected an ISO 3166 region code such as "
                                                  f"\"FR\" or \"US\", got {section.phone_region!r}")


def _check_smpp(name: str, account: SmppAccount) -> None:
    if not account.name.strip() or any(c.isspace() for c in account.name):
        raise ConfigError(f"{name}.name", f"expected a name without spaces, got {account.name!r}")
    if not account.host.strip():
        raise ConfigError(f"{name}.host", "expected the SMSC's host name or address")
    if not 1 <= account.port <= 65535:
        raise ConfigError(f"{name}.port", f"expected a port 1..65535, got {account.port}")
    if not account.system_id or len(account.system_id) > 15:
        raise ConfigError(f"{name}.system_id", "expected 1 to 15 characters (SMPP 3.4)")
    if account.password and account.password_file:
        raise ConfigError(f"{name}.password", "expected a password or a password_file, not both")
    if len(account.password) > 8:
        raise ConfigError(f"{name}.password", "expected 8 characters at most (SMPP 3.4)")
    if len(account.system_type) > 12:
        raise ConfigError(f"{name}.system_type", "expected 12 characters at most (SMPP 3.4)")
    if not account.smsc.strip() or any(c.isspace() for c in account.smsc):
        raise ConfigError(f"{name}.smsc", f"expected a name without spaces, got {account.smsc!r}")
    for key in ("status_regex", "error_regex"):
        try:
            re.compile(getattr(account, key))
        except re.error as error:
            raise ConfigError(f"{name}.{key}", f"invalid regular expression: {error}") from None
    for key in ("enquire_link", "response_timeout", "reconnect_min", "reconnect_max"):
        if getattr(account, key).total_seconds() <= 0:
            raise ConfigError(f"{name}.{key}", "expected a duration > 0")
    if account.reconnect_max < account.reconnect_min:
        raise ConfigError(f"{name}.reconnect_max", "expected a duration >= reconnect_min")


def _check_token(name: str, token: HttpToken) -> None:
    if not token.name.strip():
        raise ConfigError(f"{name}.name", "expected the client's name")
    if bool(token.secret) == bool(token.secret_file):
        raise ConfigError(f"{name}.secret", "expected a secret or a secret_file (one of them)")
    if token.secret and len(token.secret) < 16:
        raise ConfigError(f"{name}.secret", "expected at least 16 characters")
    unknown = [scope for scope in token.scopes if scope not in SCOPES]
    if unknown or not token.scopes:
        raise ConfigError(f"{name}.scopes", f"expected some of {', '.join(SCOPES)}, "
                                            f"got {list(token.scopes)!r}")


def _check_webhook(name: str, webhook: WebhookConfig) -> None:
    if not webhook.url.startswith(("http://", "https://")):
        raise ConfigError(f"{name}.url", f"expected an http(s):// URL, got {webhook.url!r}")
    if bool(webhook.secret) == bool(webhook.secret_file):
        raise ConfigError(f"{name}.secret", "expected a secret or a secret_file (one of them)")
    if webhook.secret:
        _check_webhook_secret(f"{name}.secret", webhook.secret)
    unknown = [event for event in webhook.events if event not in WEBHOOK_EVENTS]
    if unknown:
        raise ConfigError(f"{name}.events", f"expected some of {', '.join(WEBHOOK_EVENTS)}, "
                                            f"got {unknown!r}")
    if webhook.timeout.total_seconds() <= 0:
        raise ConfigError(f"{name}.timeout", "expected a duration > 0")


def _check_webhook_secret(key: str, secret: str) -> None:
    """A Standard Webhooks secret: ``whsec_`` and the base64 of at least 24 bytes."""
    body = secret.removeprefix("whsec_")
    try:
        raw = base64.b64decode(body + "==", validate=False)
    except (ValueError, binascii.Error):
        raw = b""
    if not secret.startswith("whsec_") or len(raw) < 24:
        raise ConfigError(key, "expected whsec_ followed by the base64 of 24 bytes or more "
                               "(python3 -c 'import base64, secrets; "
                               "print(\"whsec_\" + base64.b64encode(secrets.token_bytes(32))"
                               ".decode())')")


def _check_smtp(name: str, section: SmtpConfig) -> None:
    for key in ("timeout", "stress_timeout", "idle_session_limit"):
        if getattr(section, key).total_seconds() <= 0:
            raise ConfigError(f"{name}.{key}", "expected a duration > 0")
    if section.min_data_rate < 1:
        raise ConfigError(f"{name}.min_data_rate", "expected an integer >= 1 (bytes/s), got 0")
    if section.max_connections < 1:
        raise ConfigError(f"{name}.max_connections", "expected an integer >= 1, got 0")


def config_from_mapping(data: dict[str, Any], base: Path | None = None) -> Config:
    """Build a :class:`Config` from parsed TOML, validating every key; ``secret_file``
    settings are read (relative to ``base``, the configuration file's directory)."""
    hints = get_type_hints(Config)
    known = {f.name for f in fields(Config)}
    sections = {}
    for name, values in data.items():
        if name not in known:
            raise ConfigError(name, f"unknown section (known: {', '.join(sorted(known))})")
        expected = hints[name]
        sections[name] = (_convert(name, expected, values) if _table_type(expected)
                          else _section(name, expected, values))
    return _read_secret_files(replace(Config(), **sections), base or Path.cwd())


def _read_secret(key: str, path: str, base: Path) -> str:
    try:
        secret = (base / path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigError(key, f"cannot read {base / path}: {error.strerror or error}") from None
    if not secret:
        raise ConfigError(key, f"{base / path} is empty")
    return secret


def _read_secret_files(config: Config, base: Path) -> Config:
    tokens = tuple(
        replace(token, secret=_read_secret(f"http.tokens[{index}].secret_file",
                                           token.secret_file, base))
        if token.secret_file else token
        for index, token in enumerate(config.http.tokens)
    )
    webhooks = []
    for index, webhook in enumerate(config.webhooks):
        if webhook.secret_file:
            key = f"webhooks[{index}].secret_file"
            webhook = replace(webhook, secret=_read_secret(key, webhook.secret_file, base))
            _check_webhook_secret(key, webhook.secret)
        webhooks.append(webhook)
    for index, token in enumerate(tokens):
        if len(token.secret) < 16:
            raise ConfigError(f"http.tokens[{index}].secret_file",
                              "expected a secret of at least 16 characters")
    accounts = []
    for index, account in enumerate(config.smpp):
        if account.password_file:
            key = f"smpp[{index}].password_file"
            account = replace(account, password=_read_secret(key, account.password_file, base))
            if len(account.password) > 8:
                raise ConfigError(key, "expected a password of 8 characters at most (SMPP 3.4)")
        accounts.append(account)
    names = [account.name for account in accounts]
    for duplicate in sorted({each for each in names if names.count(each) > 1}):
        raise ConfigError("smpp", f"expected unique names, {duplicate!r} twice")
    return replace(config, http=replace(config.http, tokens=tokens), webhooks=tuple(webhooks),
                   smpp=tuple(accounts))


def load_config(path: str | Path | None) -> Config:
    """Load the TOML file at ``path``; ``None`` gives the embedded defaults."""
    if path is None:
        return Config()
    try:
        with Path(path).open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(str(path), "configuration file not found") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(str(path), f"not valid TOML: {error}") from None
    return config_from_mapping(data, Path(path).resolve().parent)
