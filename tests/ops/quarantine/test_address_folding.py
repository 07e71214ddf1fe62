"""Operator commands find an address under the key the pipeline stored it with, folding
included: with ``[addresses]`` folding in ``--config``, any spelling of a folded address
reaches its one row."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest


@pytest.fixture
def folding(tmp_path: Path) -> Path:
    config = tmp_path / "bounced.toml"
    config.write_text('[addresses]\nplus_tag_domains = ["example.org"]\n')
    return config


@pytest.fixture
def quarantined(db: Path, folding: Path, mail_file: Callable[..., Path],
                bounced: Callable) -> Path:
    mail = mail_file("hard-user-unknown", address="jane+news@example.org")
    assert bounced(["ingest", "--db", str(db), "--config", str(folding), str(mail)]).status == 0
    return db


def test_check_folds_a_tagged_spelling_to_the_stored_address(
    quarantined: Path, folding: Path, bounced: Callable
) -> None:
    result = bounced(["check", "--db", str(quarantined), "--config", str(folding),
                      "Jane+Promo@Example.org"])
    assert result.status == 1
    assert "jane@example.org" in result.out
    assert "quarantine" in result.out


def test_without_the_configuration_a_tagged_spelling_is_another_address(
    quarantined: Path, bounced: Callable
) -> None:
    result = bounced(["check", "--db", str(quarantined), "jane+promo@example.org"])
    assert result.status == 0
    assert "never seen" in result.out


def test_release_explain_and_show_reach_the_folded_row(
    quarantined: Path, folding: Path, bounced: Callable, sql: Callable
) -> None:
    db = str(quarantined)
    explained = bounced(["explain", "--db", db, "--config", str(folding), "jane+x@example.org"])
    assert explained.status == 0
    assert "hard bounce" in explained.out
    released = bounced(["quarantine", "release", "--db", db, "--config", str(folding),
                        "jane+x@example.org", "--note", "ticket 7"])
    assert released.status == 0
    assert sql("SELECT address, state FROM addresses") == [("jane@example.org", "valid")]
    shown = bounced(["quarantine", "show", "--db", db, "--config", str(folding),
                     "JANE+y@example.org"])
    assert "released by operator: ticket 7" in shown.out


def test_an_imported_tagged_address_is_denylisted_under_its_folded_key(
    db: Path, folding: Path, tmp_path: Path, bounced: Callable, sql: Callable
) -> None:
    csv_file = tmp_path / "crm.csv"
    csv_file.write_text("email\nbob+crm@example.org\n")
    assert bounced(["quarantine", "import", "--db", str(db), "--config", str(folding),
                    str(csv_file)]).status == 0
    assert sql("SELECT address, state FROM addresses") == [("bob@example.org", "denylisted")]
