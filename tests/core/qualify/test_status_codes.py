"""RFC 3463 enhanced status codes and RFC 5321 reply codes -> type and reason."""

from __future__ import annotations

import pytest

from bounced.core import statuscodes
from bounced.core.statuscodes import codes_in_text, from_codes, from_enhanced, from_reply
from bounced.model import FailureType, Reason

HARD, SOFT = FailureType.HARD, FailureType.SOFT


@pytest.mark.parametrize(
    ("code", "failure_type", "reason"),
    [
        ("5.1.1", HARD, Reason.USER_UNKNOWN),
        ("5.1.10", SOFT, Reason.INVALID_DOMAIN),  # RFC 7505 null MX
        ("5.1.2", SOFT, Reason.INVALID_DOMAIN),
        ("5.1.6", HARD, Reason.USER_UNKNOWN),
        ("5.1.8", SOFT, Reason.REFUSED),  # the sender's domain, not the recipient
        ("5.2.1", SOFT, Reason.ACCOUNT_DISABLED),
        ("5.2.2", SOFT, Reason.MAILBOX_FULL),
        ("4.2.2", SOFT, Reason.MAILBOX_FULL),
        ("5.2.3", SOFT, Reason.REFUSED),
        ("5.3.4", SOFT, Reason.REFUSED),
        ("5.4.4", SOFT, Reason.INVALID_DOMAIN),
        ("4.4.4", SOFT, Reason.INVALID_DOMAIN),
        ("4.4.7", SOFT, Reason.UNREACHABLE),
        ("5.4.6", SOFT, Reason.UNREACHABLE),
        ("5.5.2", SOFT, Reason.UNREACHABLE),
        ("5.6.1", SOFT, Reason.REFUSED),
        ("5.7.1", SOFT, Reason.REFUSED),
        ("5.7.26", SOFT, Reason.REFUSED),
        ("5.7.509", SOFT, Reason.REFUSED),  # unregistered detail: the subject decides
        ("5.7.13", SOFT, Reason.ACCOUNT_DISABLED),
        ("5.7.17", HARD, Reason.USER_UNKNOWN),
    ],
)
def test_enhanced_codes(code: str, failure_type: FailureType, reason: Reason) -> None:
    verdict = from_enhanced(code)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason, verdict.code) == (failure_type, reason, code)


def test_a_transient_code_is_never_hard() -> None:
    verdict = from_enhanced("4.1.1")
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (SOFT, Reason.USER_UNKNOWN)


@pytest.mark.parametrize("code", ["5.0.0", "4.0.0", "5.0.911", "2.1.5", "", None, "550", "x.y.z"])
def test_codes_that_say_nothing_specific(code: str | None) -> None:
    assert from_enhanced(code) is None


@pytest.mark.parametrize(
    ("code", "failure_type", "reason"),
    [
        ("550", SOFT, Reason.REFUSED),  # unknown user or policy: not enough to quarantine
        ("551", HARD, Reason.USER_UNKNOWN),
        ("552", SOFT, Reason.MAILBOX_FULL),
        ("553", HARD, Reason.USER_UNKNOWN),
        ("554", SOFT, Reason.REFUSED),
        ("556", SOFT, Reason.INVALID_DOMAIN),
        ("421", SOFT, Reason.UNREACHABLE),
        ("452", SOFT, Reason.UNREACHABLE),
        ("571", SOFT, Reason.REFUSED),  # unregistered: the class decides
    ],
)
def test_reply_codes(code: str, failure_type: FailureType, reason: Reason) -> None:
    verdict = from_reply(code)
    assert verdict is not None
    assert (verdict.failure_type, verdict.reason) == (failure_type, reason)


@pytest.mark.parametrize("code", ["250", "", None, "55", "abc"])
def test_reply_codes_that_are_no_failure(code: str | None) -> None:
    assert from_reply(code) is None


def test_a_specific_enhanced_code_wins_over_the_reply_code() -> None:
    verdict = from_codes("5.2.2", "550")
    assert verdict is not None and verdict.reason is Reason.MAILBOX_FULL


def test_a_generic_enhanced_code_leaves_the_decision_to_the_reply_code() -> None:
    verdict = from_codes("5.0.0", "551")
    assert verdict is not None and verdict.reason is Reason.USER_UNKNOWN
    assert verdict.code == "551"


def test_a_generic_enhanced_code_alone_decides_nothing() -> None:
    assert from_codes("5.0.0", None) is None


@pytest.mark.parametrize(
    ("text", "codes"),
    [
        ("550 5.1.1 #xxx#; not found", ("5.1.1", "550")),
        ("host #xxx# said: 550-5.1.1 The email account does not exist", ("5.1.1", "550")),
        ("554 Sorry, no valid recipients", (None, "554")),
        ("Remote Server returned '550 5.1.351 Remote server returned unknown recipient'",
         ("5.1.351", "550")),
        ("250 2.1.5 Ok", (None, None)),  # success codes are not failures
        ("version 1.2.3 and 5.1.1.2", (None, None)),  # dotted numbers are no codes
        ("Could not deliver for the last #xxx# seconds", (None, None)),
    ],
)
def test_codes_written_in_the_text(text: str, codes: tuple[str | None, str | None]) -> None:
    assert codes_in_text(text) == codes


def test_status_codes_in_text() -> None:
    assert statuscodes.find_status("550 5.1.1 <a@b>: unknown") == "5.1.1"
    assert statuscodes.find_status("connect to 192.0.2.10:25 refused") is None
    assert statuscodes.find_status("Sorry (#5.4.4)") == "5.4.4"
    assert statuscodes.find_status("250 2.1.5 Ok ... 451 4.3.0 Error") == "4.3.0"


def test_reply_codes_in_text() -> None:
    assert statuscodes.find_reply_code("550-5.1.1 The account") == "550"
    assert statuscodes.find_reply_code("host x said: 552 Mailbox full") == "552"
    assert statuscodes.find_reply_code("Mailbox full") is None


def test_diagnostic_code_wins_over_the_status_summary() -> None:
    assert statuscodes.prefer_status("5.0.0", "5.1.1") == "5.1.1"
    assert statuscodes.prefer_status("4.4.7", "4.7.1") == "4.7.1"
    assert statuscodes.prefer_status("5.1.1", None) == "5.1.1"


def test_reply_code_alone_gives_its_class() -> None:
    assert statuscodes.status_from_reply("550") == "5.0.0"
    assert statuscodes.status_from_reply("421") == "4.0.0"
    assert statuscodes.status_from_reply(None) is None


def test_generic_code_in_the_text_does_not_hide_a_specific_field() -> None:
    assert statuscodes.prefer_status("4.5.0", "4.0.0") == "4.5.0"
    assert statuscodes.prefer_status("5.0.0", "5.0.0") == "5.0.0"
