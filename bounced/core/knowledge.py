"""The shipped knowledge as data: failure classes, their wordings, the class each status
code names, and the receiving providers' own codes and wordings.

The data is ``bounced/data/knowledge.toml`` (its header gives the layout, the licence and
the provenance of every entry); :mod:`bounced.core.evidence` weighs it. This module only
reads and checks it, so that a broken entry fails loudly when the package loads (and in
``tests/core/qualify/test_knowledge_data.py``) instead of silently never matching.

A *class* is a cause of failure as the reference data names it (Sisimai's reason names:
``userunknown``, ``mailboxfull``, ``filtered``, ...). Each maps to one type and reason of
ours, the mapping of docs/accuracy.md ("Sisimai reasons and ours"): :data:`CLASS_VERDICTS`.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from bounced.model import FailureType, Reason

HARD, SOFT = FailureType.HARD, FailureType.SOFT

CLASS_VERDICTS: Mapping[str, tuple[FailureType, Reason]] = {
    # the address is gone: the only classes that are hard
    "userunknown": (HARD, Reason.USER_UNKNOWN),
    "hasmoved": (HARD, Reason.USER_UNKNOWN),
    "suppressed": (HARD, Reason.QUARANTINED),
    # the domain
    "hostunknown": (SOFT, Reason.INVALID_DOMAIN),
    "notaccept": (SOFT, Reason.INVALID_DOMAIN),
    # the mailbox exists
    "mailboxfull": (SOFT, Reason.MAILBOX_FULL),
    "suspend": (SOFT, Reason.ACCOUNT_DISABLED),
    # the way there
    "expired": (SOFT, Reason.UNREACHABLE),
    "networkerror": (SOFT, Reason.UNREACHABLE),
    "systemerror": (SOFT, Reason.UNREACHABLE),
    "systemfull": (SOFT, Reason.UNREACHABLE),
    "mailererror": (SOFT, Reason.UNREACHABLE),
    "syntaxerror": (SOFT, Reason.UNREACHABLE),
    "failedstarttls": (SOFT, Reason.UNREACHABLE),
    # a refusal of the sender or of this message: never the address's fault
    "blocked": (SOFT, Reason.REFUSED),
    "badreputation": (SOFT, Reason.REFUSED),
    "requireptr": (SOFT, Reason.REFUSED),
    "rejected": (SOFT, Reason.REFUSED),
    "spamdetected": (SOFT, Reason.REFUSED),
    "virusdetected": (SOFT, Reason.REFUSED),
    "policyviolation": (SOFT, Reason.REFUSED),
    "contenterror": (SOFT, Reason.REFUSED),
    "securityerror": (SOFT, Reason.REFUSED),
    "authfailure": (SOFT, Reason.REFUSED),
    "norelaying": (SOFT, Reason.REFUSED),
    "notcompliantrfc": (SOFT, Reason.REFUSED),
    "mesgtoobig": (SOFT, Reason.REFUSED),
    "exceedlimit": (SOFT, Reason.REFUSED),
    "filtered": (SOFT, Reason.REFUSED),
    "toomanyconn": (SOFT, Reason.REFUSED),
    "speeding": (SOFT, Reason.REFUSED),
}
"""Class -> (type, reason). A class the reference data has but that says nothing
(``onhold``, ``undefined``) is absent: such an entry decides nothing."""

UNDECIDED_CLASSES = frozenset({"onhold", "undefined"})

_ENHANCED = re.compile(r"^[45]\.\d{1,3}\.(?:\d{1,3})?$")
_REPLY = re.compile(r"^[45]\d\d$")


class KnowledgeError(ValueError):
    """A knowledge file that cannot be used, naming the entry and the key at fault."""


@dataclass(frozen=True, slots=True)
class Wording:
    """How MTAs word one class: fragments of which one suffices (``any``), and fragment
    sequences that must appear in order (``ordered``), unless one of the ``unless``
    fragments is in the text too (words that look like this class's but belong to
    another's). All lower-case."""

    klass: str
    source: str
    any: tuple[str, ...]
    ordered: tuple[tuple[str, ...], ...]
    unless: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ProviderWording:
    """A sentence a provider writes for one class. ``status`` is a full code, or a
    ``"5.7."`` prefix with ``details`` bounding the last number; ``reply`` a reply code."""

    klass: str
    text: str
    status: str | None = None
    details: tuple[int, int] | None = None
    reply: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderCode:
    """One of a provider's own error codes (or a numeric range of them) and its class."""

    code: str
    klass: str
    up_to: str | None = None

    def covers(self, found: str) -> bool:
        if self.up_to is None:
            return found.upper() == self.code.upper()
        return found.isdigit() and int(self.code) <= int(found) <= int(self.up_to)


@dataclass(frozen=True, slots=True)
class Provider:
    """A receiving provider: how to recognise it (its MX host names, its mail domains)
    and what its own codes and sentences mean."""

    name: str
    label: str
    source: str
    hosts: tuple[str, ...]
    domains: tuple[str, ...]
    wordings: tuple[ProviderWording, ...] = ()
    code_pattern: re.Pattern[str] | None = None
    codes: tuple[ProviderCode, ...] = ()


@dataclass(frozen=True, slots=True)
class Knowledge:
    """The whole file, checked."""

    status_source: str
    status_classes: Mapping[str, str]
    wordings: tuple[Wording, ...]
    providers: tuple[Provider, ...]


# --------------------------------------------------------------------------- reading


def _fail(where: str, key: str, message: str) -> KnowledgeError:
    return KnowledgeError(f"{where}: key {key!r}: {message}")


def _string(raw: Mapping[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = raw.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip():
        raise _fail(where, key, "must be a non-empty string")
    return value


def _class(raw: Mapping[str, Any], where: str) -> str:
    name = _string(raw, "class", where)
    if name not in CLASS_VERDICTS and name not in UNDECIDED_CLASSES:
        raise _fail(where, "class", f"unknown class {name!r}")
    return name


def _fragments(value: Any, where: str, key: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(each, str) and each for each in value):
        raise _fail(where, key, "must be a list of non-empty strings")
    if any(each != each.lower() for each in value):
        raise _fail(where, key, "fragments are matched in lower-cased text: write them so")
    return tuple(value)


def _wording(raw: Mapping[str, Any], index: int) -> Wording:
    where = f"wording #{index + 1}"
    unknown = sorted(set(raw) - {"class", "source", "any", "ordered", "unless"})
    if unknown:
        raise _fail(where, unknown[0], "unknown key")
    klass = _class(raw, where)
    where = f"wording #{index + 1} ({klass})"
    source = _string(raw, "source", where)
    fragments = _fragments(raw.get("any", []), where, "any")
    sequences = raw.get("ordered", [])
    if not isinstance(sequences, list):
        raise _fail(where, "ordered", "must be a list of lists")
    ordered = tuple(_fragments(each, where, "ordered") for each in sequences)
    if not fragments and not ordered:
        raise _fail(where, "any", "a wording entry needs 'any' or 'ordered'")
    unless = _fragments(raw.get("unless", []), where, "unless")
    return Wording(klass, source, fragments, ordered, unless)


def _provider_wording(raw: Any, where: str) -> ProviderWording:
    if not isinstance(raw, dict):
        raise _fail(where, "wordings", "each wording must be a table")
    unknown = sorted(set(raw) - {"class", "text", "status", "details", "reply"})
    if unknown:
        raise _fail(where, unknown[0], "unknown key in a wording")
    klass = _class(raw, where)
    text = _fragments([raw.get("text")], where, "text")[0]
    status = raw.get("status")
    if status is not None and (not isinstance(status, str) or not _ENHANCED.match(status)):
        raise _fail(where, "status", f"not an enhanced status code: {status!r}")
    details = raw.get("details")
    if details is not None:
        if (not isinstance(details, list) or len(details) != 2
                or not all(isinstance(n, int) for n in details)):
            raise _fail(where, "details", "must be [lowest, highest]")
        if status is None or not status.endswith("."):
            raise _fail(where, "details", "needs a status prefix ending in '.'")
    reply = raw.get("reply")
    if reply is not None and (not isinstance(reply, str) or not _REPLY.match(reply)):
        raise _fail(where, "reply", f"not a failure reply code: {reply!r}")
    return ProviderWording(klass, text, status, tuple(details) if details else None, reply)


def _provider(raw: Mapping[str, Any], index: int) -> Provider:
    where = f"provider #{index + 1}"
    allowed = {"name", "label", "source", "hosts", "domains", "wordings", "code_pattern", "codes"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise _fail(where, unknown[0], "unknown key")
    name = _string(raw, "name", where)
    where = f"provider {name}"
    source = _string(raw, "source", where)
    hosts = _fragments(raw.get("hosts", []), where, "hosts")
    domains = _fragments(raw.get("domains", []), where, "domains")
    if not hosts and not domains:
        raise _fail(where, "hosts", "a provider needs hosts or domains to be recognised")
    wordings = tuple(_provider_wording(each, where) for each in raw.get("wordings", []))
    pattern = None
    if "code_pattern" in raw:
        try:
            pattern = re.compile(_string(raw, "code_pattern", where), re.IGNORECASE)
        except re.error as error:
            raise _fail(where, "code_pattern", f"invalid regular expression: {error}") from None
        if pattern.groups < 1:
            raise _fail(where, "code_pattern", "needs a group around the code")
    codes = []
    for each in raw.get("codes", []):
        if not isinstance(each, dict) or set(each) - {"code", "up_to", "class"}:
            raise _fail(where, "codes", "each code is { code, up_to?, class }")
        codes.append(ProviderCode(_string(each, "code", where), _class(each, where),
                                  each.get("up_to")))
    if codes and pattern is None:
        raise _fail(where, "codes", "codes need a code_pattern to find them in the text")
    if not wordings and not codes:
        raise _fail(where, "wordings", "a provider needs wordings or codes")
    return Provider(name, _string(raw, "label", where), source, hosts, domains, wordings,
                    pattern, tuple(codes))


def parse_knowledge(document: str, *, source: str = "<knowledge>") -> Knowledge:
    """Read and check a knowledge document; every problem names the entry and the key."""
    try:
        data = tomllib.loads(document)
    except tomllib.TOMLDecodeError as error:
        raise KnowledgeError(f"{source}: not valid TOML: {error}") from None
    unknown = sorted(set(data) - {"about", "status", "wording", "provider"})
    if unknown:
        raise KnowledgeError(f"{source}: unknown top-level key {unknown[0]!r}")
    try:
        status = data.get("status", {})
        status_source = _string(status, "source", "status")
        classes = status.get("classes", {})
        for code, klass in classes.items():
            if not _ENHANCED.match(code) or code.endswith("."):
                raise _fail("status", code, "not an enhanced status code")
            _class({"class": klass}, f"status {code}")
        wordings = tuple(_wording(raw, i) for i, raw in enumerate(data.get("wording", [])))
        providers = tuple(_provider(raw, i) for i, raw in enumerate(data.get("provider", [])))
    except KnowledgeError as error:
        raise KnowledgeError(f"{source}: {error}") from None
    names = [provider.name for provider in providers]
    if len(set(names)) != len(names):
        raise KnowledgeError(f"{source}: a provider name is used twice")
    return Knowledge(status_source, dict(classes), wordings, providers)


@functools.cache
def load_knowledge() -> Knowledge:
    """The shipped knowledge (``bounced/data/knowledge.toml``), read and checked once."""
    document = resources.files("bounced").joinpath("data/knowledge.toml").read_text("utf-8")
    return parse_knowledge(document, source="bounced/data/knowledge.toml")
