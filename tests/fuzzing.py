"""Hypothesis settings shared by the fuzz tests, and the checks they make of every result.

Everywhere a fuzz test runs a bounded number of examples with no per-example deadline
(the machine is shared, and a slow example is not what these tests are about; the hostile
inputs of ``tests/core/parse/test_parse_hostile.py`` are). In CI (``CI`` set, as
``.ci/run`` runs) the examples are derandomized and no example database is kept, so a
run can be repeated exactly and a failure is no matter of luck; a developer's runs are
random, and the failures they find are replayed from ``.hypothesis/``.
"""

from __future__ import annotations

import os
import re
from datetime import datetime
from typing import Any

from hypothesis import HealthCheck, settings

from bounced.core.judge import judge
from bounced.core.normalize import MAX_NORMALIZED, normalize
from bounced.core.parse.message import MAX_RECIPIENTS
from bounced.core.qualify import load_default_rules
from bounced.model import (
    Action,
    BounceReport,
    FailureType,
    Kind,
    Qualification,
    Reason,
    RecipientReport,
)

IN_CI = bool(os.environ.get("CI"))

_ci_only: dict[str, Any] = {"derandomize": True, "database": None} if IN_CI else {}
FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=(HealthCheck.too_slow, HealthCheck.data_too_large),
    **_ci_only,
)

STATUS = re.compile(r"^[245]\.\d{1,3}\.\d{1,3}$")
REPLY_CODE = re.compile(r"^[245]\d\d$")
COMMANDS = frozenset({"RCPT", "MAIL", "DATA", "CONN", "HELO", "EHLO", "STARTTLS", "AUTH"})


def optional(value: object, kind: type) -> bool:
    return value is None or isinstance(value, kind)


def check_recipient(recipient: RecipientReport) -> None:
    """The types ``RecipientReport`` documents, and the forms of its codes."""
    assert isinstance(recipient, RecipientReport)
    assert optional(recipient.address, str)
    assert isinstance(recipient.kind, Kind)
    assert optional(recipient.action, Action)
    assert recipient.status is None or STATUS.match(recipient.status), recipient.status
    assert recipient.reply_code is None or REPLY_CODE.match(recipient.reply_code)
    assert isinstance(recipient.diagnostic, str)
    assert optional(recipient.remote_mta, str)
    assert optional(recipient.original_recipient, str)
    assert recipient.smtp_command is None or recipient.smtp_command in COMMANDS
    assert optional(recipient.feedback_type, str)


def check_report(report: BounceReport) -> None:
    """What ``parse_message`` promises of any input, and what judging it gives."""
    assert isinstance(report, BounceReport)
    assert isinstance(report.kind, Kind)
    assert isinstance(report.recipients, tuple)
    assert len(report.recipients) <= MAX_RECIPIENTS
    for recipient in report.recipients:
        check_recipient(recipient)
    assert optional(report.original_message_id, str)
    assert all(isinstance(n, str) and isinstance(v, str) for n, v in report.original_headers)
    assert optional(report.verp_token, str)
    assert optional(report.subject, str)
    assert report.date is None or (
        isinstance(report.date, datetime) and report.date.tzinfo is not None
    )
    assert optional(report.sender, str)
    assert all(isinstance(problem, str) for problem in report.problems)
    internal = [p for p in report.problems if p.startswith("parser error")]
    assert internal == [], internal
    texts = set()
    for verdict in judge(report, load_default_rules()):
        assert isinstance(verdict.text, str)
        assert len(verdict.text) <= MAX_NORMALIZED
        texts.add(verdict.text)
        qualification = verdict.qualification
        if qualification is not None:
            assert isinstance(qualification, Qualification)
            assert isinstance(qualification.failure_type, FailureType)
            assert isinstance(qualification.reason, Reason)
    assert all(normalize(text) == text for text in texts)
