"""Addresses are stored under one canonical key (bounced.core.addresses), so equivalent
spellings share one quarantine row, and operators find them however they type them."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path


def test_mixed_case_and_unicode_domains_are_stored_under_their_canonical_key(
    db: Path, mail_file: Callable[..., Path], bounced: Callable, sql: Callable
) -> None:
    mail = mail_file("hard-user-unknown", address="Jane.Doe@Exämple.ORG")
    assert bounced(["ingest", "--db", str(db), str(mail)]).status == 0
    assert sql("SELECT address, state FROM addresses") == [
        ("jane.doe@xn--exmple-cua.org", "quarantine")
    ]
    assert sql("SELECT recipient FROM bounces") == [("jane.doe@xn--exmple-cua.org",)]


def test_check_finds_an_address_typed_with_its_unicode_domain(
    db: Path, mail_file: Callable[..., Path], bounced: Callable
) -> None:
    bounced(["ingest", "--db", str(db), str(mail_file("hard-user-unknown",
                                                      address="jane@exämple.org"))])
    result = bounced(["check", "--db", str(db), "<Jane@EXÄMPLE.org>"])
    assert result.status == 1
    assert "quarantine" in result.out


def test_configured_folding_makes_tagged_variants_one_address(
    tmp_path: Path, db: Path, mail_file: Callable[..., Path], bounced: Callable, sql: Callable
) -> None:
    config = tmp_path / "bounced.toml"
    config.write_text('[addresses]\nplus_tag_domains = ["example.org"]\n')
    for address, day in (("jane+news@example.org", 1), ("jane+promo@example.org", 3)):
        mail = mail_file("soft-mailbox-full", address=address)
        assert bounced(["ingest", "--db", str(db), "--config", str(config),
                        "--at", f"2026-11-0{day}T10:00:00Z", str(mail)]).status == 0
    assert sql("SELECT address, state, error_count FROM addresses") == [
        ("jane@example.org", "erroneous", 2)
    ]


def test_without_folding_tagged_variants_stay_apart(
    db: Path, mail_file: Callable[..., Path], bounced: Callable, sql: Callable
) -> None:
    for address in ("jane+news@example.org", "jane+promo@example.org"):
        bounced(["ingest", "--db", str(db), str(mail_file("soft-mailbox-full", address=address))])
    assert [row[0] for row in sql("SELECT address FROM addresses ORDER BY 1")] == [
        "jane+news@example.org", "jane+promo@example.org"
    ]
