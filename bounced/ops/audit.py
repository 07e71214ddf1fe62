"""The read side of operator workflows: why an address is where it is.

``check`` answers the sender's question ("may I send to these addresses, and if not,
why?") from the ``addresses`` row and the address's last bounce. ``explain`` lays the
whole story of one address out in time order: every bounce that touched it, its
normalized text and what qualified it (which rule, which table row, which status code),
every verdict an operator command changed since, and every change of state with its
cause. Both only read the public schema, so what they print is what an operator would
find with ``sqlite3``; they never need the daemon to be stopped (WAL readers).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import UTC, datetime

from bounced.core.addresses import NO_FOLDING, AddressRules, canonical_address
from bounced.core.push import ROWS as PUSH_ROWS
from bounced.core.times import format_optional
from bounced.model import (
    QualifiedBy,
    QualifiedBySource,
    QuarantineState,
    Reason,
)
from bounced.store import Store
from bounced.store.addresses import HistoryEvent
from bounced.store.bounces import LastBounce, LoggedBounce

# --------------------------------------------------------------------------- check


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


def check_address(store: Store, address: str, rules: AddressRules = NO_FOLDING
                  ) -> AddressReport:
    """One address's state and why; two indexed lookups, so it answers in milliseconds
    on a database of millions of addresses. ``rules``: the ``[addresses]`` folding the
    pipeline stored keys with."""
    key = canonical_address(address, rules)
    last = store.bounces.last_of(key)
    state = store.addresses.get(key)
    if state is None:
        return AddressReport(key, False, QuarantineState.VALID, None, None, 0, None, None, last)
    since = state.quarantined_at if state.state is QuarantineState.QUARANTINE else None
    since = since or state.updated_at
    # A valid or allowlisted address keeps the reason of its last error in the row;
    # shown as the answer to "why?" it would read as a reason not to send.
    why = state.state in (QuarantineState.ERRONEOUS, QuarantineState.QUARANTINE,
                          QuarantineState.DENYLISTED)
    return AddressReport(
        address=key,
        known=True,
        state=state.state,
        reason=state.reason if why else None,
        since=since,
        error_count=state.error_count,
        last_error_at=state.last_error_at,
        release_at=state.release_at,
        last_bounce=last,
    )


def history(store: Store, address: str, rules: AddressRules = NO_FOLDING
            ) -> tuple[HistoryEvent, ...]:
    """The address's append-only history, oldest first."""
    return store.addresses.history(canonical_address(address, rules))


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
class BounceStep(LoggedBounce):
    """One bounce of the address, with what qualified it, in words, and its later
    changes."""

    decided_by: str = ""
    changes: tuple[VerdictChange, ...] = ()

    @classmethod
    def of(cls, logged: LoggedBounce, decided_by: str,
           changes: tuple[VerdictChange, ...]) -> BounceStep:
        values = {field.name: getattr(logged, field.name) for field in fields(LoggedBounce)}
        return cls(**values, decided_by=decided_by, changes=changes)

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
class Timeline:
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


def describe_qualified_by(store: Store, qualified_by: str | None) -> str:
    """Say in words what decided a verdict (docs/qualification.md): each piece of its
    evidence chain (``status:5.1.1+stage:RCPT``), the deciding one first."""
    if not qualified_by:
        return "no verdict (not a failure)"
    try:
        parsed = QualifiedBy.parse(qualified_by)
    except ValueError:
        return qualified_by
    return "; ".join(_describe_evidence(store, each) for each in parsed.chain)


_EVIDENCE_WORDS = {
    QualifiedBySource.PROVIDER: "the receiving provider's own code or wording",
    QualifiedBySource.PHRASE: "the wording of the failure class",
    QualifiedBySource.CLASS: "the status class",
    QualifiedBySource.STAGE: "the SMTP command the error answered",
}


def _describe_evidence(store: Store, source: QualifiedBy) -> str:
    if source.source is QualifiedBySource.RULE and source.ref:
        row = store.rules.get(int(source.ref)) if source.ref.isdigit() else None
        if row is None:
            return f"rule #{source.ref} (since removed)"
        pattern = row.rule.pattern
        pattern = pattern if len(pattern) <= 70 else pattern[:67] + "..."
        disabled = "" if row.enabled else ", now disabled"
        return f"{row.origin} rule #{source.ref}{disabled}: /{pattern}/"
    if source.source is QualifiedBySource.TABLE and source.ref:
        text = store.qualification.get(int(source.ref)) if source.ref.isdigit() else None
        status = text.status.value if text else "removed"
        return f"qualification table row #{source.ref} (operator: {status})"
    if source.source is QualifiedBySource.STATUS:
        code = f" {source.ref}" if source.ref else ""
        return f"status code{code} (RFC 3463 / SMTP reply code table)"
    if source.source is QualifiedBySource.REFERENCE:
        push = next((r for rows in PUSH_ROWS.values() for r in rows if r.id == source.ref),
                    None)
        scenario = f": {push.scenario} (retry: {'yes' if push.retry else 'no'})" if push else ""
        return f"the product reference's push table, row {source.ref}{scenario}"
    if source.source is QualifiedBySource.KIND:
        return "the message kind alone (complaint, auto-reply, ...)"
    if source.source in _EVIDENCE_WORDS:
        return f"{_EVIDENCE_WORDS[source.source]} ({source.ref or '-'})"
    return "nothing matched: undefined, waiting in the qualification queue"


def _verdict_label(verdict: tuple[str | None, int | None, str | None]) -> str:
    failure_type, reason, qualified_by = verdict
    reason_text = Reason(int(reason)).label if reason is not None else "-"
    return f"{failure_type or '-'}/{reason_text} ({qualified_by or '-'})"


def explain(store: Store, address: str, rules: AddressRules = NO_FOLDING) -> Timeline:
    """The address's bounces and state changes, merged in time order.

    A state change caused by a bounce sorts right after that bounce, even when the
    bounce was replayed with an older ``--at`` than the time the event was written.
    """
    key = canonical_address(address, rules)
    changes: dict[int, list[VerdictChange]] = {}
    for change in store.bounces.changes_of(key):
        changes.setdefault(change.bounce_id, []).append(VerdictChange(
            change.at, change.action, _verdict_label(change.old), _verdict_label(change.new),
            change.cause))
    bounces = [
        BounceStep.of(row, describe_qualified_by(store, row.qualified_by),
                      tuple(changes.get(row.bounce_id, ())))
        for row in store.bounces.of_address(key)
    ]
    by_bounce: dict[int, list[HistoryEvent]] = {}
    loose: list[HistoryEvent] = []
    bounce_ids = {b.bounce_id for b in bounces}
    for event in store.addresses.history(key):
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
    return Timeline(check_address(store, key), tuple(steps))
