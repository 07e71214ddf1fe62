"""The reference's push tables as data: which row an answer falls in."""

from __future__ import annotations

from bounced.core.push import APNS_ROWS, FCM_ROWS, Feedback, judge_feedback, row_of
from bounced.model import FailureType, QualificationStatus, Reason, TableEntry


def test_the_tables_have_every_reference_row() -> None:
    assert len(APNS_ROWS) == 9 and len(FCM_ROWS) == 24
    assert len({row.id for row in (*APNS_ROWS, *FCM_ROWS)}) == 33


def test_an_unknown_apns_reason_is_another_error_soft_refused() -> None:
    row = row_of("apns", 400, "SomethingApple")
    assert (row.failure_type, row.reason, row.retry) == (FailureType.SOFT, Reason.REFUSED,
                                                         False)
    assert row.text("SomethingApple") == "SomethingApple"


def test_codes_match_case_insensitively_as_a_fallback() -> None:
    assert row_of("fcm", 404, "unregistered").id == "fcm-unregistered"
    assert row_of("fcm", 404, "UNREGISTERED").id == "fcm-unregistered"


def test_an_operator_can_requalify_a_push_text_but_not_its_retry() -> None:
    entry = TableEntry(3, QualificationStatus.KEEP, FailureType.SOFT, Reason.REFUSED)
    feedback = Feedback("fcm", "p", "t", 404, "UNREGISTERED")
    _report, (verdict,), row = judge_feedback(feedback, lambda _text: entry)
    assert verdict.failure_type is FailureType.SOFT and row.retry is False
