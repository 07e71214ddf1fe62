"""Addresses of the three channels share one key space: e-mail, ``tel:``, ``push:``."""

from __future__ import annotations

import pytest

from bounced.core.addresses import (
    AddressRules,
    address_problem,
    canonical_address,
    channel_of,
)
from bounced.model import Channel

FRANCE = AddressRules(phone_region="FR")


@pytest.mark.parametrize(("written", "key"), [
    ("tel:+33612345678", "tel:+33612345678"),
    ("tel:+33 6 12 34 56 78", "tel:+33612345678"),
    ("TEL:06.12.34.56.78", "tel:+33612345678"),
    ("tel:0612345678", "tel:+33612345678"),
    ("tel:+1 (650) 253-0000", "tel:+16502530000"),
])
def test_a_phone_number_is_keyed_in_e164(written: str, key: str) -> None:
    assert canonical_address(written, FRANCE) == key
    assert channel_of(written) is Channel.SMS


def test_a_national_number_needs_a_region() -> None:
    assert address_problem("tel:0612345678", AddressRules()) is not None
    assert "phone_region" in (address_problem("tel:0612345678", AddressRules()) or "")
    assert address_problem("tel:0612345678", FRANCE) is None


def test_a_push_token_keeps_its_case_unless_it_is_apns_hex() -> None:
    fcm = "push:my-project:dXNlcjE6APA91bHUN-Mixed_Case"
    assert canonical_address(fcm) == fcm
    apns = "push:com.example.app:" + "ABCDEF01" * 8
    assert canonical_address(apns) == "push:com.example.app:" + "abcdef01" * 8
    assert channel_of(apns) is Channel.PUSH


@pytest.mark.parametrize("bad", ["push:", "push:app", "push::token", "push:app:",
                                 "tel:", "tel:12", "tel:not-a-number", "nobody"])
def test_unreadable_addresses_are_named(bad: str) -> None:
    assert address_problem(bad, FRANCE) is not None


def test_an_email_address_is_keyed_as_before() -> None:
    assert canonical_address("Jane.Doe@Example.ORG", FRANCE) == "jane.doe@example.org"
    assert channel_of("jane@example.org") is Channel.EMAIL
