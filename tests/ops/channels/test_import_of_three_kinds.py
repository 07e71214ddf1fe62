"""``quarantine import`` (and the API's import) read the three address kinds."""

from __future__ import annotations

from bounced.core.addresses import AddressRules
from bounced.ops.quarantine import parse_import
from tests.paths import DATA


def test_phone_numbers_and_push_tokens_are_imported_and_bad_ones_named() -> None:
    text = (DATA / "operations" / "import-three-kinds.csv").read_text()
    plan = parse_import(text, AddressRules(phone_region="FR"))
    assert [address for _line, address in plan.addresses] == [
        "jane@example.org", "tel:+33612345678", "push:com.example.app:dXNlcjE6APA91bH"]
    assert plan.duplicates == 1  # the national and the international spelling
    assert [(bad.line, bad.problem.split(":")[0]) for bad in plan.bad] == [
        (6, "not a phone number"), (7, "not a push token (push")]
