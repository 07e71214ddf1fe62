"""The delivery-log qualification table: one row per distinct normalized text.

Every text lands here, whichever step qualified it, with its first raw occurrence,
how often it came (capped) and when; an operator's decision on a row (``keep`` with a
type and reason, or ``ignore``) then wins over every rule (``docs/qualification.md``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bounced.core.times import format_time
from bounced.model import (
    FailureType,
    Qualification,
    QualificationStatus,
    QualifiedBy,
    QualifiedBySource,
    Reason,
    TableEntry,
)
from bounced.store.engine import lock_key

if TYPE_CHECKING:
    from bounced.store import Store

#: Occurrence counter cap (``docs/qualification.md``).
MAX_OCCURRENCES = 100_000


@dataclass(frozen=True, slots=True)
class TextRow:
    """A row as an operator sees it before and after a decision."""

    id: int
    text: str
    status: QualificationStatus
    failure_type: str | None
    reason_code: int | None


@dataclass(frozen=True, slots=True)
class WaitingText:
    """A ``to_qualify`` row with what decided it at its last occurrence."""

    id: int
    text: str
    first_text: str
    occurrences: int
    last_seen: str | None
    failure_type: str | None
    reason_code: int | None
    qualified_by: str | None


@dataclass(frozen=True, slots=True)
class DecidedText:
    """A text an operator decided on (``keep`` or ``ignore``)."""

    id: int
    text: str
    status: QualificationStatus
    failure_type: FailureType
    reason: Reason


class QualificationTable:
    """Normalized texts, their counts and the operators' decisions on them."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def lookup(self, text: str) -> TableEntry | None:
        """The row of a normalized text, as qualifying needs it."""
        row = self._store.conn.execute(
            "SELECT id, status, failure_type, reason_code FROM qualification WHERE text = ?",
            (text,),
        ).fetchone()
        if row is None:
            return None
        return TableEntry(
            id=int(row[0]),
            status=QualificationStatus(row[1]),
            failure_type=FailureType(row[2]) if row[2] else FailureType.UNDEFINED,
            reason=Reason(row[3]) if row[3] is not None else Reason.NOT_DEFINED,
        )

    def count(self, text: str, first_text: str, qualification: Qualification,
              at: datetime) -> int:
        """Count one occurrence of ``text`` (a new row starts ``to_qualify``); returns
        the row's id. On a row nobody decided yet, what qualified it this time is
        recorded, so the queue shows what the rules decide; an operator's decision is
        left alone."""
        seen = format_time(at)
        dialect = self._store.dialect
        row = self._store.conn.execute(
            "INSERT INTO qualification (text, first_text, failure_type, reason_code, "
            "qualified_by, status, occurrences, first_seen, last_seen) "
            "VALUES (?, ?, ?, ?, ?, 'to_qualify', 1, ?, ?) "
            f"ON CONFLICT({dialect.text_key}) DO UPDATE SET "
            f"occurrences = {dialect.least}(qualification.occurrences + 1, {MAX_OCCURRENCES}), "
            f"first_seen = {dialect.least}(qualification.first_seen, excluded.first_seen), "
            f"last_seen = {dialect.greatest}(qualification.last_seen, excluded.last_seen), "
            "failure_type = CASE WHEN qualification.status = 'to_qualify' "
            "THEN excluded.failure_type ELSE qualification.failure_type END, "
            "reason_code = CASE WHEN qualification.status = 'to_qualify' "
            "THEN excluded.reason_code ELSE qualification.reason_code END, "
            "qualified_by = CASE WHEN qualification.status = 'to_qualify' "
            "THEN excluded.qualified_by ELSE qualification.qualified_by END "
            "RETURNING id",
            (text, first_text, qualification.failure_type.value, int(qualification.reason),
             str(qualification.qualified_by), seen, seen),
        ).fetchone()
        return int(row[0])

    def lock(self, texts: Iterable[str]) -> None:
        """Inside a transaction, make the other hosts wait for ``texts`` until it ends
        (nothing on SQLite). Counting a text is an upsert: on PostgreSQL its row (or
        the unique index entry of a new one) stays locked until commit, so two hosts
        counting the same texts in another order would wait for each other in a
        circle; locking them all first, in one order, keeps them in line."""
        self._store.lock_keys(lock_key("text", text) for text in texts)

    def get(self, text_id: int) -> TextRow | None:
        row = self._store.conn.execute(
            "SELECT id, text, status, failure_type, reason_code FROM qualification WHERE id = ?",
            (text_id,),
        ).fetchone()
        if row is None:
            return None
        return TextRow(int(row[0]), row[1], QualificationStatus(row[2]), row[3], row[4])

    def decide(self, text_id: int, status: QualificationStatus, failure_type: FailureType,
               reason: Reason) -> None:
        """Record an operator's decision on a row (it then qualifies as ``table:ID``)."""
        by = QualifiedBy(QualifiedBySource.TABLE, str(text_id))
        self._store.conn.execute(
            "UPDATE qualification SET status = ?, failure_type = ?, reason_code = ?, "
            "qualified_by = ? WHERE id = ?",
            (status.value, failure_type.value, int(reason), str(by), text_id),
        )

    def waiting_count(self) -> int:
        """How many texts the ``to_qualify`` view holds."""
        return int(self._store.conn.execute("SELECT count(*) FROM to_qualify").fetchone()[0])

    def waiting(self, limit: int) -> list[WaitingText]:
        """The ``to_qualify`` view: texts no operator decided on, most frequent first."""
        rows = self._store.conn.execute(
            "SELECT t.id, t.text, t.first_text, t.occurrences, t.last_seen, q.failure_type, "
            "q.reason_code, q.qualified_by FROM to_qualify t "
            "JOIN qualification q ON q.id = t.id "
            "ORDER BY t.occurrences DESC, t.last_seen DESC, t.id LIMIT ?",
            (limit,),
        ).fetchall()
        return [WaitingText(int(r[0]), r[1], r[2], int(r[3]), r[4], r[5], r[6], r[7])
                for r in rows]

    def decided(self, *statuses: QualificationStatus) -> list[DecidedText]:
        """The rows an operator decided on with one of ``statuses``, by id."""
        wanted = statuses or (QualificationStatus.KEEP, QualificationStatus.IGNORE)
        marks = ",".join("?" * len(wanted))
        rows = self._store.conn.execute(
            "SELECT id, text, status, failure_type, reason_code FROM qualification "
            f"WHERE status IN ({marks}) AND failure_type IS NOT NULL "
            "AND reason_code IS NOT NULL ORDER BY id",
            tuple(status.value for status in wanted),
        ).fetchall()
        return [DecidedText(int(r[0]), r[1], QualificationStatus(r[2]), FailureType(r[3]),
                            Reason(r[4])) for r in rows]
