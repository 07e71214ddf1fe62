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
"""

from __future__ import annotations

from dataclasses import dataclass

from bounced.config import AddressesConfig

WILDCARD = "*"


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


def canonical_address(address: str, rules: AddressRules = NO_FOLDING) -> str:
    """The key under which ``address`` is stored and compared (see the module docstring).

    >>> canonical_address("Jane.Doe+News@GoogleMail.com", AddressRules(
    ...     plus_tag_domains=("gmail.com",), dot_insensitive_domains=("gmail.com",),
    ...     domain_aliases=(("googlemail.com", "gmail.com"),)))
    'janedoe@gmail.com'
    """
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
    )
