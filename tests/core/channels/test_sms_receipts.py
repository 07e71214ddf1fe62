"""SMS status reports: extraction of stat and err, the SR text, the verdict."""

from __future__ import annotations

import tomllib

from bounced.core.qualify import load_default_rules
from bounced.core.sms import (
    Receipt,
    judge_receipt,
    read_receipt,
    receipt_raw,
    sr_texts,
    status_and_error,
)
from bounced.model import (
    FailureType,
    Kind,
    QualificationStatus,
    Reason,
    TableEntry,
)
from tests.paths import DATA

RULES = load_default_rules()
APPENDIX_B = ("id:m-1 sub:001 dlvrd:000 submit date:2611221305 done date:2611221310 "
              "stat:UNDELIV err:012 text:Your code is 4711")


def nothing(_text: str) -> TableEntry | None:
    return None


def test_the_sr_text_keeps_the_receipt_only_in_the_first_text() -> None:
    stat, err = status_and_error(Receipt("smpp", "acme", text=APPENDIX_B))
    assert (stat, err) == ("UNDELIV", "012")
    assert sr_texts("Generic", stat, err, APPENDIX_B) == (
        "SR Generic UNDELIV 012|#MESSAGE#", f"SR Generic UNDELIV 012|{APPENDIX_B}")


def test_each_smsc_extracts_with_its_own_regexes() -> None:
    case = tomllib.loads((DATA / "sms" / "custom-smsc.toml").read_text())
    receipt = Receipt("smpp", "telco", "Telco", text=case["text"])
    stat, err = status_and_error(receipt, case["status_regex"], case["error_regex"])
    assert sr_texts("Telco", stat, err, case["text"]) == (case["expected"], case["first_text"])


def test_the_tlvs_stand_in_for_a_missing_text() -> None:
    receipt = Receipt("smpp", "acme", message_state=5, network_error_code="030045")
    assert status_and_error(receipt) == ("UNDELIV", "069")


def test_an_unqualified_deliv_status_is_a_success_and_anything_else_hard_refused() -> None:
    for text, kind, verdict in (
        (APPENDIX_B.replace("UNDELIV", "DELIVRD"), Kind.DELIVERED, FailureType.IGNORED),
        (APPENDIX_B.replace("UNDELIV", "DELIVERED"), Kind.DELIVERED, FailureType.IGNORED),
        (APPENDIX_B, Kind.FAILURE, FailureType.HARD),
        (APPENDIX_B.replace("UNDELIV", "EXPIRED"), Kind.FAILURE, FailureType.HARD),
    ):
        report, (judged,) = judge_receipt(
            Receipt("smpp", "acme", text=text, source="33612345678", source_ton=1),
            rules=RULES, lookup=nothing)
        assert report.kind is kind and judged.failure_type is verdict, text
        assert judged.recipient.address == "tel:+33612345678"
        if verdict is FailureType.HARD:
            assert judged.reason is Reason.REFUSED


def test_an_operator_qualification_of_the_sr_text_wins() -> None:
    entry = TableEntry(7, QualificationStatus.KEEP, FailureType.SOFT, Reason.MAILBOX_FULL)
    _report, (judged,) = judge_receipt(Receipt("smpp", "acme", text=APPENDIX_B),
                                       rules=RULES, lookup=lambda _text: entry)
    assert (judged.failure_type, judged.reason) == (FailureType.SOFT, Reason.MAILBOX_FULL)
    assert str(judged.qualification.qualified_by) == "table:7"  # type: ignore[union-attr]


def test_a_receipt_without_a_status_waits_for_an_operator() -> None:
    _report, (judged,) = judge_receipt(Receipt("smpp", "acme", text="hello there"),
                                       rules=RULES, lookup=nothing)
    assert judged.failure_type is FailureType.UNDEFINED and judged.text == "SR Generic|#MESSAGE#"


def test_the_registered_number_wins_over_the_source_address() -> None:
    receipt = Receipt("smpp", "acme", text=APPENDIX_B, source="0611111111")
    _report, (judged,) = judge_receipt(receipt, registered="tel:+33622222222", region="FR",
                                       rules=RULES, lookup=nothing)
    assert judged.recipient.address == "tel:+33622222222"
    assert judged.recipient.original_recipient == "tel:+33611111111"


def test_the_stored_form_is_canonical_and_reads_back() -> None:
    receipt = Receipt("smpp", "acme", "Acme", text=APPENDIX_B, source="33612345678",
                      source_ton=1, message_state=5)
    assert receipt_raw(receipt) == receipt_raw(read_receipt(receipt_raw(receipt)))
    assert read_receipt(b"not json").problems
