"""Normalization (docs/normalization.md): variants of one failure collapse, different
failures stay apart."""

from __future__ import annotations

import tomllib

import pytest

from bounced.core.normalize import normalize, normalize_sms, parse_sms_status_report
from tests.paths import DATA

GROUPS = tomllib.loads(
    (DATA / "normalize" / "groups.toml").read_text("utf-8")
)["group"]


@pytest.mark.parametrize("group", GROUPS, ids=[g["name"] for g in GROUPS])
def test_variants_of_one_failure_collapse_to_one_text(group: dict) -> None:
    assert len({normalize(text) for text in group["texts"]}) == 1


def test_different_failures_stay_apart() -> None:
    representatives = {group["name"]: normalize(group["texts"][0]) for group in GROUPS}
    by_text: dict[str, list[str]] = {}
    for name, text in representatives.items():
        by_text.setdefault(text, []).append(name)
    assert [names for names in by_text.values() if len(names) > 1] == []


def test_the_reference_example() -> None:
    assert (
        normalize("550 5.1.1 <jane.doe@example.org>: Recipient address rejected: User unknown")
        == "550 5.1.1 <*>: Recipient address rejected: User unknown"
    )


@pytest.mark.parametrize(
    ("text", "kept"),
    [
        ("550 5.1.1 user unknown", "550 5.1.1"),
        ("451 4.7.1 greylisted", "451 4.7.1"),
        ("554 5.7.26 unauthenticated email", "554 5.7.26"),
        ("552 5.3.4 Message size exceeds fixed limit", "552 5.3.4 Message size"),
        ("452 4.5.3 Too many recipients", "452 4.5.3 Too many recipients"),
    ],
)
def test_reply_codes_and_status_codes_stay(text: str, kept: str) -> None:
    assert normalize(text).startswith(kept)


def test_addresses_become_a_star_and_variable_content_becomes_xxx() -> None:
    text = normalize("mail for a.b@example.org from 192.0.2.1 at mx.example.net id AB12CD34EF")
    assert text == "mail for * from #xxx# at #xxx# id #xxx#"


def test_utf8_addresses_are_replaced_too() -> None:
    assert normalize("550 5.1.1 <müller@exämple.de>: unknown") == "550 5.1.1 <*>: unknown"


def test_whitespace_is_collapsed() -> None:
    assert normalize("  550  5.2.2\r\n\tMailbox   full  ") == "550 5.2.2 Mailbox full"


def test_normalization_is_idempotent() -> None:
    for group in GROUPS:
        for text in group["texts"]:
            once = normalize(text)
            assert normalize(once) == once


def test_empty_text_stays_empty() -> None:
    assert normalize("") == ""
    assert normalize(" \n ") == ""


def test_sms_status_report_normalizes_to_sr_form() -> None:
    report = ("id:1234567890 sub:001 dlvrd:001 submit date:2611221305 done date:2611221306 "
              "stat:UNDELIV err:011 text:Your code is 4242")
    normalized, first_text = normalize_sms(report, smsc="Generic")
    assert normalized == "SR Generic UNDELIV 011|#MESSAGE#"
    assert first_text.startswith("SR Generic UNDELIV 011|id:1234567890")


def test_sms_reports_of_one_status_share_one_text_whatever_the_message() -> None:
    one = normalize_sms("id:1 stat:DELIVRD err:000 text:hello")[0]
    two = normalize_sms("id:99 submit date:2611221305 stat:DELIVRD err:000 text:other words")[0]
    assert one == two == "SR Generic DELIVRD 000|#MESSAGE#"


def test_sms_text_field_runs_to_the_end_even_with_colons() -> None:
    fields = parse_sms_status_report("id:7 stat:EXPIRED err:001 text:a: b: stat:fake")
    assert fields["stat"] == "EXPIRED"
    assert fields["text"] == "a: b: stat:fake"


def test_a_reply_code_before_a_sentence_is_not_a_quantity() -> None:
    assert normalize("554 Message not allowed - policy") == "554 Message not allowed - policy"
    assert normalize("550 Recipients refused") == "550 Recipients refused"


def test_quantities_lose_their_figure_but_keep_their_meaning() -> None:
    assert normalize("Delivery failed after 20 attempts") == "Delivery failed after #xxx#"
    assert normalize("still undelivered after 4 hours") == "still undelivered after #xxx#"
