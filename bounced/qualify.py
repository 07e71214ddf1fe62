"""Qualify stage: a recipient's failure -> type, reason and what decided them (SPEC §4).

PLACEHOLDER: being written (qualification table entry, processing rules, RFC 3463 codes).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bounced.model import (
    FailureType,
    Kind,
    Qualification,
    QualificationStatus,
    QualifiedBy,
    QualifiedBySource,
    Reason,
    RecipientReport,
)


@dataclass(frozen=True, slots=True)
class TableEntry:
    """The qualification-table row of a normalized text, as far as qualifying needs it."""

    id: int
    status: QualificationStatus
    failure_type: FailureType
    reason: Reason


@dataclass(frozen=True, slots=True)
class Rule:
    """One email processing rule."""

    id: str
    pattern: str
    failure_type: FailureType
    reason: Reason
    priority: int = 100
    comment: str = ""


def load_default_rules() -> tuple[Rule, ...]:
    return ()


def qualify(
    recipient: RecipientReport,
    text: str,
    *,
    entry: TableEntry | None = None,
    rules: Sequence[Rule] = (),
) -> Qualification | None:
    if recipient.kind in (Kind.DELIVERED, Kind.NOT_BOUNCE):
        return None
    return Qualification(FailureType.UNDEFINED, Reason.NOT_DEFINED, QualifiedBy(QualifiedBySource.NONE))
