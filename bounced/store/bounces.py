"""The delivery log: ``bounces`` (one verdict per recipient) and ``verdict_changes``.

A ``bounces`` row carries the verdict in force; ``verdict_changes`` keeps what it was
before an operator command changed it (``reprocess``: today's rules judge it
differently; ``rollback``: it no longer counts, e.g. an ISP outage), when and why, so
the log stays auditable and a rolled-back bounce is never counted again
(``docs/schema.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from bounced.core.replay import StoredVerdict
from bounced.core.times import format_time, parse_time
from bounced.model import Channel, FailureType, Kind, QualificationStatus, Reason
from bounced.store.engine import BEGINNING, END_OF_TIME

if TYPE_CHECKING:
    from bounced.store import Store

#: A bounce counts unless an operator rolled it back.
_NOT_ROLLED_BACK = (
    "NOT EXISTS (SELECT 1 FROM verdict_changes c WHERE c.bounce_id = b.id "
    "AND c.action = 'rollback')"
)


@dataclass(frozen=True, slots=True)
class NewBounce:
    """A ``bounces`` row about to be written (the pipeline's verdict on a recipient)."""

    message_id: int
    recipient: str | None
    kind: Kind
    action: str | None
    status: str | None
    reply_code: str | None
    diagnostic: str
    qualification_id: int | None
    failure_type: FailureType | None
    reason: Reason | None
    qualified_by: str | None
    original_message_id: str | None
    received_at: datetime
    at: datetime
    original_recipient: str | None
    remote_mta: str | None
    smtp_command: str | None
    verp_token: str | None
    feedback_type: str | None
    #: Whether the verdict could change the address's state (its bounce's VERP trust
    #: covered the address); a verdict that could not is recorded, never applied.
    trusted: bool = True
    channel: Channel = Channel.EMAIL


@dataclass(frozen=True, slots=True)
class LastBounce:
    """The most recent bounce of an address: what the sender sees as "the last error"."""

    bounce_id: int
    at: datetime | None
    kind: str
    failure_type: FailureType | None
    reason: Reason | None
    diagnostic: str


@dataclass(frozen=True, slots=True)
class VerdictChange:
    """A stored verdict changed by ``reprocess`` or ``rollback``."""

    bounce_id: int
    at: datetime | None
    action: str
    old: tuple[str | None, int | None, str | None]
    new: tuple[str | None, int | None, str | None]
    cause: str


@dataclass(frozen=True, slots=True)
class LoggedBounce:
    """A bounce of an address with the qualification-table row of its text."""

    bounce_id: int
    at: datetime | None
    message_id: int
    kind: str
    status: str | None
    diagnostic: str
    text_id: int | None
    text: str | None
    text_status: QualificationStatus | None
    failure_type: FailureType | None
    reason: Reason | None
    qualified_by: str | None


@dataclass(frozen=True, slots=True)
class MessageVerdict:
    """A stored verdict of one message, as ``reprocess`` compares it with today's."""

    bounce_id: int
    recipient: str | None
    failure_type: str | None
    reason_code: int | None
    qualified_by: str | None
    rolled_back: bool


def _failure_type(value: object) -> FailureType | None:
    return FailureType(str(value)) if value else None


def _reason(value: object) -> Reason | None:
    return Reason(int(str(value))) if value is not None else None


class BounceLog:
    """Verdicts per recipient, and their later changes."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def add(self, bounce: NewBounce) -> int:
        """Write one verdict; returns its id."""
        row = self._store.conn.execute(
            "INSERT INTO bounces (message_id, recipient, kind, action, status, reply_code, "
            "diagnostic, qualification_id, failure_type, reason_code, qualified_by, "
            "original_message_id, received_at, at, original_recipient, remote_mta, "
            "smtp_command, verp_token, feedback_type, trusted, channel) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (
                bounce.message_id, bounce.recipient, bounce.kind.value, bounce.action,
                bounce.status, bounce.reply_code, bounce.diagnostic, bounce.qualification_id,
                bounce.failure_type.value if bounce.failure_type else None,
                int(bounce.reason) if bounce.reason is not None else None,
                bounce.qualified_by, bounce.original_message_id,
                format_time(bounce.received_at), format_time(bounce.at),
                bounce.original_recipient, bounce.remote_mta, bounce.smtp_command,
                bounce.verp_token, bounce.feedback_type, int(bounce.trusted),
                bounce.channel.value,
            ),
        ).fetchone()
        return int(row[0])

    # ---- one address

    def last_of(self, address: str) -> LastBounce | None:
        """The newest bounce of ``address`` (by the time it counted at, then id)."""
        row = self._store.conn.execute(
            "SELECT id, COALESCE(at, received_at), kind, failure_type, reason_code, "
            "COALESCE(diagnostic, '') FROM bounces WHERE recipient = ? "
            "ORDER BY COALESCE(at, received_at) DESC, id DESC LIMIT 1",
            (address,),
        ).fetchone()
        if row is None:
            return None
        return LastBounce(int(row[0]), parse_time(row[1]), row[2], _failure_type(row[3]),
                          _reason(row[4]), row[5])

    def of_address(self, address: str) -> list[LoggedBounce]:
        """Every bounce of ``address``, in the order they count."""
        rows = self._store.conn.execute(
            "SELECT b.id, COALESCE(b.at, b.received_at), b.message_id, b.kind, b.status, "
            "COALESCE(b.diagnostic, ''), b.qualification_id, q.text, q.status, "
            "b.failure_type, b.reason_code, b.qualified_by FROM bounces b "
            "LEFT JOIN qualification q ON q.id = b.qualification_id "
            "WHERE b.recipient = ? ORDER BY COALESCE(b.at, b.received_at), b.id",
            (address,),
        ).fetchall()
        return [
            LoggedBounce(
                int(r[0]), parse_time(r[1]), int(r[2]), r[3], r[4], r[5],
                int(r[6]) if r[6] is not None else None, r[7],
                QualificationStatus(r[8]) if r[8] else None,
                _failure_type(r[9]), _reason(r[10]), r[11],
            )
            for r in rows
        ]

    def changes_of(self, address: str) -> list[VerdictChange]:
        """The verdict changes of the bounces of ``address``, oldest first."""
        rows = self._store.conn.execute(
            "SELECT c.bounce_id, c.at, c.action, c.old_failure_type, c.old_reason_code, "
            "c.old_qualified_by, c.new_failure_type, c.new_reason_code, c.new_qualified_by, "
            "c.cause FROM verdict_changes c JOIN bounces b ON b.id = c.bounce_id "
            "WHERE b.recipient = ? ORDER BY c.id",
            (address,),
        ).fetchall()
        return [
            VerdictChange(int(r[0]), parse_time(r[1]), r[2], (r[3], r[4], r[5]),
                          (r[6], r[7], r[8]), r[9])
            for r in rows
        ]

    def counted_for(self, address: str, after: datetime | None) -> list[StoredVerdict]:
        """The bounces of ``address`` after ``after`` that changed (or could have
        changed) its state: trusted for that address (the verdict's own flag, else its
        message's, for rows older than the flag), not rolled back, in counting order."""
        rows = self._store.conn.execute(
            "SELECT b.id, COALESCE(b.at, b.received_at), b.kind, b.failure_type, "
            "b.reason_code, b.qualified_by, b.feedback_type FROM bounces b "
            "JOIN messages m ON m.id = b.message_id "
            "WHERE b.recipient = ? AND COALESCE(b.trusted, m.trusted, 1) = 1 "
            f"AND COALESCE(b.at, b.received_at) > ? AND {_NOT_ROLLED_BACK} "
            "ORDER BY COALESCE(b.at, b.received_at), b.id",
            (address, format_time(after) if after is not None else BEGINNING),
        ).fetchall()
        return [
            StoredVerdict(
                int(r[0]), parse_time(r[1]) or datetime.min, Kind(r[2]), _failure_type(r[3]),
                _reason(r[4]), r[5], r[6],
            )
            for r in rows
        ]

    # ---- operator commands

    def countable(self, *, text_id: int | None = None, rule_id: int | None = None,
                  since: datetime, until: datetime | None) -> list[tuple[int, str]]:
        """``(bounce id, recipient)`` of the counting verdicts of one normalized text or
        one rule in a time window (what a rollback un-counts)."""
        if (text_id is None) == (rule_id is None):
            raise ValueError("give exactly one of a text id or a rule id")
        where, value = (("b.qualification_id = ?", text_id) if text_id is not None
                        else ("b.qualified_by = ?", f"rule:{rule_id}"))
        rows = self._store.conn.execute(
            f"SELECT b.id, b.recipient FROM bounces b WHERE {where} "
            # b.at (always written by the pipeline) rather than a COALESCE, so that the
            # window can use the index on bounces(at) for a rule.
            "AND b.recipient IS NOT NULL AND b.at >= ? AND b.at <= ? "
            f"AND COALESCE(b.failure_type, '') NOT IN ('', 'ignored') AND {_NOT_ROLLED_BACK} "
            "ORDER BY b.id",
            (value, format_time(since), format_time(until) if until else END_OF_TIME),
        ).fetchall()
        return [(int(r[0]), r[1]) for r in rows]

    def roll_back(self, bounce_id: int, at: datetime, cause: str) -> None:
        """The bounce no longer counts: its type becomes ``ignored``, the old verdict
        is kept in ``verdict_changes``."""
        conn = self._store.conn
        conn.execute(
            "INSERT INTO verdict_changes (bounce_id, at, action, old_failure_type, "
            "old_reason_code, old_qualified_by, new_failure_type, new_reason_code, "
            "new_qualified_by, cause) SELECT id, ?, 'rollback', failure_type, "
            "reason_code, qualified_by, 'ignored', reason_code, qualified_by, ? "
            "FROM bounces WHERE id = ?",
            (format_time(at), cause, bounce_id),
        )
        conn.execute("UPDATE bounces SET failure_type = 'ignored' WHERE id = ?", (bounce_id,))

    def of_message(self, message_id: int) -> list[MessageVerdict]:
        """The stored verdicts of one message, in the order they were written."""
        rows = self._store.conn.execute(
            "SELECT b.id, b.recipient, b.failure_type, b.reason_code, b.qualified_by, "
            f"NOT {_NOT_ROLLED_BACK} FROM bounces b WHERE b.message_id = ? ORDER BY b.id",
            (message_id,),
        ).fetchall()
        return [MessageVerdict(int(r[0]), r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    def requalify(self, bounce_id: int, *, old: tuple[FailureType | None, Reason | None],
                  new: tuple[FailureType, Reason, str], text: str, old_by: str | None,
                  at: datetime, cause: str) -> bool:
        """Give a bounce today's verdict, if it still has the ``old`` one (the daemon or
        another operator may have moved on meanwhile); the change is recorded. Returns
        whether it was changed."""
        conn = self._store.conn
        old_type = old[0].value if old[0] else None
        old_reason = int(old[1]) if old[1] is not None else None
        new_type, new_reason, new_by = new
        same = self._store.dialect.same_as
        updated = conn.execute(
            "UPDATE bounces SET failure_type = ?, reason_code = ?, qualified_by = ?, "
            "qualification_id = COALESCE((SELECT id FROM qualification WHERE text = ?), "
            f"qualification_id) WHERE id = ? AND failure_type {same} ? "
            f"AND reason_code {same} ?",
            (new_type.value, int(new_reason), new_by, text, bounce_id, old_type, old_reason),
        ).rowcount
        if not updated:
            return False
        conn.execute(
            "INSERT INTO verdict_changes (bounce_id, at, action, old_failure_type, "
            "old_reason_code, old_qualified_by, new_failure_type, new_reason_code, "
            "new_qualified_by, cause) VALUES (?, ?, 'reprocess', ?, ?, ?, ?, ?, ?, ?)",
            (bounce_id, format_time(at), old_type, old_reason, old_by, new_type.value,
             int(new_reason), new_by, cause),
        )
        return True

    # ---- DNS evidence on Invalid-domain verdicts

    def waiting_for_evidence(self, reason: Reason, limit: int) -> list[tuple[int, str | None]]:
        """The newest bounces of ``reason`` that carry no DNS evidence yet (a partial
        index keeps this cheap on a large log)."""
        rows = self._store.conn.execute(
            "SELECT id, recipient FROM bounces WHERE reason_code = ? AND dns_status IS NULL "
            "ORDER BY id DESC LIMIT ?",
            (int(reason), limit),
        ).fetchall()
        return [(int(r[0]), r[1]) for r in rows]

    def set_evidence(self, evidence: Sequence[tuple[int, str, str]]) -> None:
        """``(bounce id, dns status, detail)`` written on each bounce."""
        self._store.conn.executemany(
            "UPDATE bounces SET dns_status = ?, dns_detail = ? WHERE id = ?",
            [(status, detail, bounce_id) for bounce_id, status, detail in evidence],
        )
