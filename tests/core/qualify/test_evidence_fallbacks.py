"""Evidence step "class fallbacks": when no class has evidence, the code's class and the
reply code still say something, and a reply code alone never says hard."""

from __future__ import annotations

import pytest

from bounced.core.evidence import Facts, weigh
from bounced.model import FailureType, Reason
from tests.core.qualify.evidence_helpers import judged, verdict

SOFT = FailureType.SOFT
TEXT = "the frobnicator is sad"  # no wording of any class


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("5.6.1", (SOFT, Reason.REFUSED, "status:5.6.1")),  # a code the table names
        ("5.6.20", (SOFT, Reason.REFUSED, "class:5.6")),  # media: content error
        ("5.7.99", (SOFT, Reason.REFUSED, "class:5.7")),  # security or policy
        ("4.7.99", (SOFT, Reason.REFUSED, "class:4.7")),
    ],
)
def test_the_code_s_subject_decides_when_its_detail_is_unknown(
    status: str, expected: tuple[FailureType, Reason, str]
) -> None:
    assert verdict(judged(TEXT, status=status)) == expected


@pytest.mark.parametrize("reply", ["500", "501", "502", "503", "504"])
def test_a_syntax_reply_is_a_protocol_error(reply: str) -> None:
    assert verdict(judged(f"{reply} {TEXT}", reply=reply)) == (
        SOFT, Reason.UNREACHABLE, f"status:{reply}")


@pytest.mark.parametrize(("status", "reply", "delayed"),
                         [("4.0.0", None, False), (None, "421", False), (None, None, True)])
def test_a_transient_failure_or_a_delay_is_an_expiry(
    status: str | None, reply: str | None, delayed: bool
) -> None:
    assert verdict(judged(TEXT, status=status, reply=reply, delayed=delayed)) == (
        SOFT, Reason.UNREACHABLE, "class:4")


@pytest.mark.parametrize(
    ("reply", "reason"),
    [("550", Reason.REFUSED), ("554", Reason.REFUSED), ("552", Reason.MAILBOX_FULL),
     ("551", Reason.USER_UNKNOWN), ("553", Reason.USER_UNKNOWN)],
)
def test_a_reply_code_alone_is_never_hard(reply: str, reason: Reason) -> None:
    found = judged(f"{reply} {TEXT}", status="5.0.0", reply=reply)
    assert verdict(found) == (SOFT, reason, f"status:{reply}")


def test_without_a_code_a_stage_or_words_nothing_is_decided() -> None:
    assert weigh(Facts(TEXT, stage="DATA")) is None
    assert weigh(Facts("")) is None
