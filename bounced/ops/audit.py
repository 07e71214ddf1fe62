"""The read side of operator workflows: why an address is where it is (issue 4, items 1, 5).

``check`` answers the sender's question ("may I send to these addresses, and if not,
why?") from the ``addresses`` row and the address's last bounce. ``explain`` lays the
whole story of one address out in time order: every bounce that touched it, its
normalized text and what qualified it (which rule, which table row, which status code),
every verdict an operator command changed since, and every change of state with its
cause. Both only read the public schema, so what they print is what an operator would
find with ``sqlite3``; they never need the daemon to be stopped (WAL readers).

Also here, because every operator command needs them: :func:`parse_when` for times on the
command line (ISO-8601 or relative to a clock passed in) and :func:`render_table`.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from bounced.core.addresses import NO_FOLDING, AddressRules, canonical_address
from bounced.core.times import format_optional, parse_time
from bounced.model import (
    FailureType,
    QualificationStatus,
    QualifiedBy,
    QualifiedBySource,
    QuarantineState,
    Reason,
)


def normalize_address(text: str, rules: AddressRules = NO_FOLDING) -> str:
    """The stored key of an address typed by an operator: ``<Jane@Example.org>`` finds
    ``jane@example.org``, and an internationalized domain its IDNA form, exactly as the
    pipeline stored it (:func:`bounced.core.addresses.canonical_address`)."""
    return canonical_address(text.strip().strip("<>").strip(), rules)


# --------------------------------------------------------------------------- check


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
class AddressReport:
    """The answer to "may I send to this address?" and the why behind it.

    ``known`` is False for an address bounced never seen: it is ``valid`` and
    deliverable, which is worth saying explicitly (a typo in the address checked looks
    exactly like that).
    """

    address: str
    known: bool
    state: QuarantineState
    reason: Reason | None
    since: datetime | None
    error_count: int
    last_error_at: datetime | None
    release_at: datetime | None
    last_bounce: LastBounce | None

    @property
    def deliverable(self) -> bool:
        return self.state.deliverable

    def to_json(self) -> dict[str, object]:
        last = self.last_bounce
        return {
            "address": self.address,
            "known": self.known,
            "state": self.state.value,
            "deliverable": self.deliverable,
            "reason_code": int(self.reason) if self.reason is not None else None,
            "reason": self.reason.label if self.reason is not None else None,
            "since": format_optional(self.since),
            "error_count": self.error_count,
            "last_error_at": format_optional(self.last_error_at),
            "release_at": format_optional(self.release_at),
            "last_bounce": None
            if last is None
            else {
                "id": last.bounce_id,
                "at": format_optional(last.at),
                "kind": last.kind,
                "failure_type": last.failure_type.value if last.failure_type else None,
                "reason_code": int(last.reason) if last.reason is not None else None,
                "diagnostic": last.diagnostic,
            },
        }


def _reason(code: object) -> Reason | None:
    return Reason(int(code)) if code is not None else None  # type: ignore[call-overload]


def _failure_type(value: object) -> FailureType | None:
    return FailureType(str(value)) if value else None


def last_bounce(conn: sqlite3.Connection, address: str) -> LastBounce | None:
    """The newest bounce row of ``address`` (by the time it counted at, then id)."""
    row = conn.execute(
        "SELECT id, COALESCE(at, received_at), kind, failure_type, reason_code, "
        "COALESCE(diagnostic, '') FROM bounces WHERE recipient = ? "
        "ORDER BY COALESCE(at, received_at) DESC, id DESC LIMIT 1",
        (address,),
    ).fetchone()
    if row is None:
        return None
    return LastBounce(int(row[0]), parse_time(row[1]), row[2], _failure_type(row[3]),
                      _reason(row[4]), row[5])


def check_address(
    conn: sqlite3.Connection, address: str, rules: AddressRules = NO_FOLDING
) -> AddressReport:
    """One address's state and why; two indexed lookups, so it answers in milliseconds
    on a database of millions of addresses. ``rules``: the ``[addresses]`` folding the
    pipeline stored keys with."""
    key = normalize_address(address, rules)
    row = conn.execute(
        "SELECT state, reason_code, quarantined_at, updated_at, error_count, last_error_at, "
        "release_at FROM addresses WHERE address = ?",
        (key,),
    ).fetchone()
    if row is None:
        return AddressReport(key, False, QuarantineState.VALID, None, None, 0, None, None,
                             last_bounce(conn, key))
    state = QuarantineState(row[0])
    since = parse_time(row[2]) if state is QuarantineState.QUARANTINE else None
    since = since or parse_time(row[3])
    # A valid or allowlisted address keeps the reason of its last error in the row;
    # shown as the answer to "why?" it would read as a reason not to send.
    why = state in (QuarantineState.ERRONEOUS, QuarantineState.QUARANTINE,
                    QuarantineState.DENYLISTED)
    return AddressReport(
        address=key,
        known=True,
        state=state,
        reason=_reason(row[1]) if why else None,
        since=since,
        error_count=int(row[4]),
        last_error_at=parse_time(row[5]),
        release_at=parse_time(row[6]),
        last_bounce=last_bounce(conn, key),
    )


# --------------------------------------------------------------------------- history


@dataclass(frozen=True, slots=True)
class HistoryEvent:
    """One row of ``address_events``."""

    id: int
    at: datetime | None
    old_state: QuarantineState | None
    new_state: QuarantineState
    cause: str
    bounce_id: int | None

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "at": format_optional(self.at),
            "old_state": self.old_state.value if self.old_state else None,
            "new_state": self.new_state.value,
            "cause": self.cause,
            "bounce_id": self.bounce_id,
        }


def history(
    conn: sqlite3.Connection, address: str, rules: AddressRules = NO_FOLDING
) -> tuple[HistoryEvent, ...]:
    """The address's append-only history, oldest first."""
    rows = conn.execute(
        "SELECT id, at, old_state, new_state, cause, bounce_id FROM address_events "
        "WHERE address = ? ORDER BY at, id",
        (normalize_address(address, rules),),
    ).fetchall()
    return tuple(
        HistoryEvent(int(r[0]), parse_time(r[1]), QuarantineState(r[2]) if r[2] else None,
                     QuarantineState(r[3]), r[4], int(r[5]) if r[5] is not None else None)
        for r in rows
    )


# --------------------------------------------------------------------------- explain


@dataclass(frozen=True, slots=True)
class VerdictChange:
    """A stored verdict changed by ``reprocess`` or ``rollback`` (``verdict_changes``)."""

    at: datetime | None
    action: str
    old: str
    new: str
    cause: str


@dataclass(frozen=True, slots=True)
class BounceStep:
    """One bounce of the address, with what qualified it."""

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
    decided_by: str
    changes: tuple[VerdictChange, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "type": "bounce",
            "bounce_id": self.bounce_id,
            "at": format_optional(self.at),
            "message_id": self.message_id,
            "kind": self.kind,
            "status": self.status,
            "diagnostic": self.diagnostic,
            "qualification_id": self.text_id,
            "text": self.text,
            "text_status": self.text_status.value if self.text_status else None,
            "failure_type": self.failure_type.value if self.failure_type else None,
            "reason_code": int(self.reason) if self.reason is not None else None,
            "reason": self.reason.label if self.reason is not None else None,
            "qualified_by": self.qualified_by,
            "decided_by": self.decided_by,
            "verdict_changes": [
                {"at": format_optional(c.at), "action": c.action, "old": c.old, "new": c.new,
                 "cause": c.cause}
                for c in self.changes
            ],
        }


@dataclass(frozen=True, slots=True)
class Explanation:
    """Everything known about one address, in time order."""

    current: AddressReport
    steps: tuple[BounceStep | HistoryEvent, ...]

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.current.address,
            "current": self.current.to_json(),
            "timeline": [
                step.to_json() if isinstance(step, BounceStep)
                else {"type": "state_change", **step.to_json()}
                for step in self.steps
            ],
        }


def describe_qualified_by(conn: sqlite3.Connection, qualified_by: str | None) -> str:
    """Say in words what decided a verdict (docs/qualification.md): each piece of its
    evidence chain (``status:5.1.1+stage:RCPT``), the deciding one first."""
    if not qualified_by:
        return "no verdict (not a failure)"
    try:
        parsed = QualifiedBy.parse(qualified_by)
    except ValueError:
        return qualified_by
    return "; ".join(_describe_evidence(conn, each) for each in parsed.chain)


_EVIDENCE_WORDS = {
    QualifiedBySource.PROVIDER: "the receiving provider's own code or wording",
    QualifiedBySource.PHRASE: "the wording of the failure class",
    QualifiedBySource.CLASS: "the status class",
    QualifiedBySource.STAGE: "the SMTP command the error answered",
}


def _describe_evidence(conn: sqlite3.Connection, source: QualifiedBy) -> str:
    if source.source is QualifiedBySource.RULE and source.ref:
        row = conn.execute(
            "SELECT pattern, origin, enabled FROM rules WHERE id = ?", (source.ref,)
        ).fetchone()
        if row is None:
            return f"rule #{source.ref} (since removed)"
        pattern = row[0] if len(row[0]) <= 70 else row[0][:67] + "..."
        disabled = "" if row[2] else ", now disabled"
        return f"{row[1]} rule #{source.ref}{disabled}: /{pattern}/"
    if source.source is QualifiedBySource.TABLE and source.ref:
        row = conn.execute(
            "SELECT status FROM qualification WHERE id = ?", (source.ref,)
        ).fetchone()
        status = row[0] if row else "removed"
        return f"qualification table row #{source.ref} (operator: {status})"
    if source.source is QualifiedBySource.STATUS:
        code = f" {source.ref}" if source.ref else ""
        return f"status code{code} (RFC 3463 / SMTP reply code table)"
    if source.source is QualifiedBySource.KIND:
        return "the message kind alone (complaint, auto-reply, ...)"
    if source.source in _EVIDENCE_WORDS:
        return f"{_EVIDENCE_WORDS[source.source]} ({source.ref or '-'})"
    return "nothing matched: undefined, waiting in the qualification queue"


def _verdict_label(failure_type: object, reason: object, qualified_by: object) -> str:
    reason_text = Reason(int(reason)).label if reason is not None else "-"  # type: ignore[call-overload]
    return f"{failure_type or '-'}/{reason_text} ({qualified_by or '-'})"


def explain(
    conn: sqlite3.Connection, address: str, rules: AddressRules = NO_FOLDING
) -> Explanation:
    """The address's bounces and state changes, merged in time order.

    A state change caused by a bounce sorts right after that bounce, even when the
    bounce was replayed with an older ``--at`` than the time the event was written.
    """
    key = normalize_address(address, rules)
    rows = conn.execute(
        "SELECT b.id, COALESCE(b.at, b.received_at), b.message_id, b.kind, b.status, "
        "COALESCE(b.diagnostic, ''), b.qualification_id, q.text, q.status, b.failure_type, "
        "b.reason_code, b.qualified_by FROM bounces b "
        "LEFT JOIN qualification q ON q.id = b.qualification_id "
        "WHERE b.recipient = ? ORDER BY COALESCE(b.at, b.received_at), b.id",
        (key,),
    ).fetchall()
    changes: dict[int, list[VerdictChange]] = {}
    for change in conn.execute(
        "SELECT c.bounce_id, c.at, c.action, c.old_failure_type, c.old_reason_code, "
        "c.old_qualified_by, c.new_failure_type, c.new_reason_code, c.new_qualified_by, "
        "c.cause FROM verdict_changes c JOIN bounces b ON b.id = c.bounce_id "
        "WHERE b.recipient = ? ORDER BY c.id",
        (key,),
    ):
        changes.setdefault(int(change[0]), []).append(
            VerdictChange(parse_time(change[1]), change[2],
                          _verdict_label(change[3], change[4], change[5]),
                          _verdict_label(change[6], change[7], change[8]), change[9])
        )
    bounces = [
        BounceStep(
            bounce_id=int(r[0]),
            at=parse_time(r[1]),
            message_id=int(r[2]),
            kind=r[3],
            status=r[4],
            diagnostic=r[5],
            text_id=int(r[6]) if r[6] is not None else None,
            text=r[7],
            text_status=QualificationStatus(r[8]) if r[8] else None,
            failure_type=_failure_type(r[9]),
            reason=_reason(r[10]),
            qualified_by=r[11],
            decided_by=describe_qualified_by(conn, r[11]),
            changes=tuple(changes.get(int(r[0]), ())),
        )
        for r in rows
    ]
    events = history(conn, key)
    by_bounce: dict[int, list[HistoryEvent]] = {}
    loose: list[HistoryEvent] = []
    bounce_ids = {b.bounce_id for b in bounces}
    for event in events:
        if event.bounce_id is not None and event.bounce_id in bounce_ids:
            by_bounce.setdefault(event.bounce_id, []).append(event)
        else:
            loose.append(event)
    # Merge: each bounce followed by the events it caused; other events by time.
    steps: list[BounceStep | HistoryEvent] = []
    floor = datetime.min.replace(tzinfo=UTC)
    pending = sorted(loose, key=lambda e: (e.at or floor, e.id))
    for bounce in bounces:
        while pending and (pending[0].at or floor) < (bounce.at or floor):
            steps.append(pending.pop(0))
        steps.append(bounce)
        steps.extend(by_bounce.get(bounce.bounce_id, ()))
    steps.extend(pending)
    return Explanation(check_address(conn, key), tuple(steps))
