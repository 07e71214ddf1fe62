"""Canonical address keys: which spellings become one row, which stay apart."""

from __future__ import annotations

import pytest

from bounced.config import config_from_mapping
from bounced.core.addresses import (
    NO_FOLDING,
    AddressRules,
    canonical_address,
    canonical_domain,
    domain_of,
    rules_from_config,
)

GMAIL = AddressRules(
    plus_tag_domains=("gmail.com",),
    dot_insensitive_domains=("gmail.com",),
    domain_aliases=(("googlemail.com", "gmail.com"),),
)


@pytest.mark.parametrize(
    ("spelling", "key"),
    [
        ("Jane.Doe@Example.ORG", "jane.doe@example.org"),
        ("<jane.doe@example.org>", "jane.doe@example.org"),
        ("  jane.doe@example.org.  ", "jane.doe@example.org"),
        ("jane@Bücher.Example", "jane@xn--bcher-kva.example"),
        ("jane@xn--bcher-kva.example", "jane@xn--bcher-kva.example"),
        ("Müller@Bücher.example", "müller@xn--bcher-kva.example"),
    ],
)
def test_case_and_idna_spellings_share_one_key(spelling: str, key: str) -> None:
    assert canonical_address(spelling) == key


def test_without_folding_rules_tags_and_dots_stay_apart() -> None:
    assert canonical_address("jane+news@gmail.com") == "jane+news@gmail.com"
    assert canonical_address("j.ane@gmail.com") != canonical_address("jane@gmail.com")


@pytest.mark.parametrize(
    "spelling",
    ["Jane.Doe@gmail.com", "janedoe+news@gmail.com", "j.a.n.e.d.o.e+x+y@GMAIL.com",
     "jane.doe@googlemail.com"],
)
def test_gmail_folding_maps_every_spelling_to_one_mailbox(spelling: str) -> None:
    assert canonical_address(spelling, GMAIL) == "janedoe@gmail.com"


def test_folding_applies_only_to_the_configured_domains() -> None:
    assert canonical_address("jane.doe+news@example.org", GMAIL) == "jane.doe+news@example.org"


def test_wildcard_folds_tags_everywhere_but_not_dots() -> None:
    rules = AddressRules(plus_tag_domains=("*",))
    assert canonical_address("jane.doe+news@example.org", rules) == "jane.doe@example.org"


def test_a_local_part_that_is_only_a_tag_or_quoted_is_kept() -> None:
    rules = AddressRules(plus_tag_domains=("*",), dot_insensitive_domains=("example.org",))
    assert canonical_address("+only@example.org", rules) == "+only@example.org"
    assert canonical_address('"j.o+e"@example.org', rules) == '"j.o+e"@example.org'


def test_malformed_addresses_still_get_a_stable_key() -> None:
    assert canonical_address("MAILER-DAEMON") == "mailer-daemon"
    assert canonical_address("jane@" + "a" * 70 + "é.example") == (
        "jane@" + "a" * 70 + "é.example")
    assert domain_of("nobody") is None


def test_domain_helpers_agree_with_the_address_key() -> None:
    assert canonical_domain("Bücher.Example.") == "xn--bcher-kva.example"
    assert domain_of("x@Bücher.example") == "xn--bcher-kva.example"


def test_rules_come_from_the_addresses_section_of_the_configuration() -> None:
    config = config_from_mapping({"addresses": {
        "plus_tag_domains": ["gmail.com"], "dot_insensitive_domains": ["gmail.com"],
        "domain_aliases": ["googlemail.com = gmail.com"]}})
    rules = rules_from_config(config.addresses)
    assert canonical_address("J.Doe+x@googlemail.com", rules) == "jdoe@gmail.com"
    assert rules_from_config(config_from_mapping({}).addresses) == NO_FOLDING


def test_a_malformed_alias_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError, match=r"addresses\.domain_aliases"):
        config_from_mapping({"addresses": {"domain_aliases": ["googlemail.com"]}})
