"""Canonical address keys: one ``addresses`` row for every spelling of one mailbox.

Bounces name the same mailbox in different spellings: ``Jane.Doe@Example.ORG``, the
domain in Unicode or in its IDNA (``xn--``) form, Gmail's ``janedoe`` and ``jane.doe``,
``jane+news@`` and ``jane@`` where the provider ignores the tag. If each spelling got its
own row, a quarantine would not protect the other spellings and counters would be split,
so addresses are compared through a *canonical key*:

- the whole address is lowercased (docs/schema.md stores addresses lowercased; RFC 5321 lets a
  local part be case-sensitive, but no mainstream provider uses that, and an operator
  expects ``Jane@`` and ``jane@`` to be one row);
- the domain is in IDNA ASCII form (``bücher.example`` -> ``xn--bcher-kva.example``), the
  trailing root dot removed, so Unicode and ``xn--`` spellings meet;
- per-domain folding, only where configured (``[addresses]`` in the configuration),
  because it is only true of some providers: ``+tag`` removal (``jane+x@`` -> ``jane@``)
  and dot removal in the local part (Gmail: ``j.a.n.e@`` -> ``jane@``). Domain aliases
  (``googlemail.com`` -> ``gmail.com``) are applied first, so the folding rules of the
  target domain apply.

Everything here is pure and total: a malformed address (no ``@``, a domain IDNA refuses)
still gets a key, the lowercased text, because a bounce must never fail on an odd
address. The Python ``idna`` codec (IDNA 2003) is used: it needs no extra dependency
and is what dnspython falls back to, so the key and the DNS look-up agree.

The other channels (docs/channels.md) have addresses of their own, told apart by a
prefix, so that one ``addresses`` table and one key space hold all three:

- ``tel:+33612345678``: a phone number, in E.164 (``phonenumbers``); a national form
  (``tel:06 12 34 56 78``) is read in ``[addresses] phone_region``;
- ``push:APP_ID:TOKEN``: a push token of one application. Tokens are case-sensitive
  (FCM's), except APNs' 64 hex digits, which are lowercased; the token is everything
  after the second colon (FCM tokens contain one).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import phonenumbers

from bounced.config import AddressesConfig
from bounced.model import Channel

WILDCARD = "*"
#: The prefixes of the non-e-mail address forms.
TEL, PUSH = "tel:", "push:"
_APNS_TOKEN = re.compile(r"[0-9a-fA-F]{64}")


@dataclass(frozen=True, slots=True)
class AddressRules:
    """Which domains fold which spellings (see :class:`bounced.config.AddressesConfig`).

    Domain lists hold ASCII/IDNA or Unicode names (they are canonicalised too); ``"*"``
    in ``plus_tag_domains`` means every domain.
    """

    plus_tag_domains: tuple[str, ...] = ()
    dot_insensitive_domains: tuple[str, ...] = ()
    domain_aliases: tuple[tuple[str, str], ...] = ()
    tag_separator: str = "+"
    #: ISO 3166 region of phone numbers written in national form (``"FR"``); empty:
    #: only international forms (``+33...``) are understood.
    phone_region: str = ""

    def folds_tags(self, domain: str) -> bool:
        return WILDCARD in self.plus_tag_domains or domain in _domains(self.plus_tag_domains)

    def ignores_dots(self, domain: str) -> bool:
        return domain in _domains(self.dot_insensitive_domains)

    def alias_of(self, domain: str) -> str:
        for alias, target in self.domain_aliases:
            if canonical_domain(alias) == domain:
                return canonical_domain(target)
        return domain


NO_FOLDING = AddressRules()


def _domains(names: tuple[str, ...]) -> frozenset[str]:
    return frozenset(canonical_domain(name) for name in names if name != WILDCARD)


def canonical_domain(domain: str) -> str:
    """``Bücher.Example.`` -> ``xn--bcher-kva.example`` (lowercase, IDNA, no root dot).

    Labels IDNA refuses (too long, empty) stay lowercased as they are: the key is still
    stable, and the bounce is not lost over a broken domain.
    """
    name = domain.strip().rstrip(".").lower()
    if name.isascii():
        return name
    labels = []
    for label in name.split("."):
        try:
            labels.append(label.encode("idna").decode("ascii") if label else label)
        except UnicodeError:
            labels.append(label)
    return ".".join(labels).lower()


def split_address(address: str) -> tuple[str, str] | None:
    """``(local, domain)`` of ``local@domain`` (the LAST ``@``, since a quoted local part
    may contain one), with angle brackets and spaces removed; ``None`` without ``@``."""
    text = address.strip().strip("<>").strip()
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain:
        return None
    return local, domain


def channel_of(address: str) -> Channel:
    """The channel an address (in any of the three written forms) belongs to."""
    head = address.lstrip()[:5].lower()
    if head.startswith(TEL):
        return Channel.SMS
    if head.startswith(PUSH):
        return Channel.PUSH
    return Channel.EMAIL


def parse_phone(text: str, region: str = "") -> str | None:
    """``+E164`` of a phone number (international, or national in ``region``), or
    ``None`` when it is no possible number."""
    try:
        number = phonenumbers.parse(text.strip(), region.upper() or None)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return str(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164))


def canonical_phone(text: str, region: str = "") -> str:
    """``tel:+E164`` of ``tel:NUMBER`` or of a bare number; a number that cannot be read
    keeps its characters (spaces removed), so a receipt is never lost over it."""
    body = text.strip()
    if body[:4].lower() == TEL:
        body = body[4:]
    e164 = parse_phone(body, region)
    return TEL + (e164 if e164 is not None else "".join(body.split()))


def split_push(address: str) -> tuple[str, str] | None:
    """``(app, token)`` of ``push:APP:TOKEN``, or ``None`` when a part is missing."""
    text = address.strip()
    if text[:5].lower() != PUSH:
        return None
    app, colon, token = text[5:].partition(":")
    app, token = app.strip(), token.strip()
    if not colon or not app or not token:
        return None
    return app, token


def canonical_push(app: str, token: str) -> str:
    """``push:APP:TOKEN``, an APNs hex token lowercased (FCM tokens are case-sensitive)."""
    token = token.strip()
    if _APNS_TOKEN.fullmatch(token):
        token = token.lower()
    return f"{PUSH}{app.strip()}:{token}"


def address_problem(address: str, rules: AddressRules = NO_FOLDING) -> str | None:
    """Why ``address`` is none of the three forms (for input an operator or a client
    typed), or ``None`` when it is fine."""
    text = address.strip()
    channel = channel_of(text)
    if channel is Channel.SMS:
        if parse_phone(text[4:], rules.phone_region) is None:
            hint = "" if rules.phone_region else (
                " (a national form needs [addresses] phone_region)")
            return f"not a phone number: {address[:100]!r}{hint}"
        return None
    if channel is Channel.PUSH:
        parts = split_push(text)
        if parts is None or any(c.isspace() for c in parts[0] + parts[1]):
            return f"not a push token (push:APP_ID:TOKEN): {address[:100]!r}"
        return None
    local, at, domain = text.rpartition("@")
    if not at or not local or not domain or any(c.isspace() or c in "<>" for c in text):
        return f"not an email address: {address[:100]!r}"
    return None


def canonical_address(address: str, rules: AddressRules = NO_FOLDING) -> str:
    """The key under which ``address`` is stored and compared (see the module docstring).

    >>> canonical_address("Jane.Doe+News@GoogleMail.com", AddressRules(
    ...     plus_tag_domains=("gmail.com",), dot_insensitive_domains=("gmail.com",),
    ...     domain_aliases=(("googlemail.com", "gmail.com"),)))
    'janedoe@gmail.com'
    """
    channel = channel_of(address)
    if channel is Channel.SMS:
        return canonical_phone(address, rules.phone_region)
    if channel is Channel.PUSH:
        pushed = split_push(address)
        if pushed is not None:
            return canonical_push(*pushed)
        return address.strip()
    parts = split_address(address)
    if parts is None:
        return address.strip().strip("<>").strip().lower()
    local, domain = parts
    local = local.lower()
    domain = rules.alias_of(canonical_domain(domain))
    quoted = local.startswith('"') and local.endswith('"')
    if not quoted:
        if rules.folds_tags(domain) and rules.tag_separator:
            base, separator, _tag = local.partition(rules.tag_separator)
            if separator and base:
                local = base
        if rules.ignores_dots(domain):
            local = local.replace(".", "") or local
    return f"{local}@{domain}"


def domain_of(address: str) -> str | None:
    """The canonical domain of an address, or ``None`` when it has none."""
    parts = split_address(address)
    return canonical_domain(parts[1]) if parts else None


def rules_from_config(config: AddressesConfig) -> AddressRules:
    """The folding rules of the ``[addresses]`` configuration section."""
    aliases = tuple(
        (alias.strip(), target.strip())
        for alias, _equals, target in (pair.partition("=") for pair in config.domain_aliases)
    )
    return AddressRules(
        plus_tag_domains=config.plus_tag_domains,
        dot_insensitive_domains=config.dot_insensitive_domains,
        domain_aliases=aliases,
        phone_region=config.phone_region,
    )
