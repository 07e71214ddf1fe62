"""Reading an import file of addresses exported by another system."""

from __future__ import annotations

from bounced.ops.quarantine import parse_import


def test_import_reads_a_header_column_and_numbers_bad_lines() -> None:
    plan = parse_import("name;x,Email\nJo,jo@example.org\nbad,@example.org\n# comment\n"
                        "Al,AL@EXAMPLE.ORG\nAl again,al@example.org\nshort\n")
    assert plan.addresses == ((2, "jo@example.org"), (5, "al@example.org"))
    assert [(bad.line, bad.problem) for bad in plan.bad] == [
        (3, "not an email address: '@example.org'"), (7, "no column 2")]
    assert plan.duplicates == 1


def test_import_without_header_takes_the_first_column() -> None:
    plan = parse_import("a@example.org,2026-01-01\nb@example.org\n")
    assert [address for _, address in plan.addresses] == ["a@example.org", "b@example.org"]
    assert plan.bad == ()
