"""Re-qualify stored raw messages with today's rules (issue 4, item 5).

Operators fix qualifications after the fact: a rule was too broad, a text in the queue
gets its real meaning, a default rule changes in an upgrade. ``reprocess`` parses the
stored raw messages again, qualifies them with today's rules and qualification table,
and works out what that changes: which bounces get another verdict, and which
addresses would leave or enter quarantine once the policy is replayed over the
corrected verdicts (:func:`bounced.ops.quarantine.replay`).

:func:`plan` only reads, so ``--dry-run`` is exactly what :func:`apply_plan` would do.
Applying is safe to run twice (a second run finds every verdict already up to date)
and keeps the history: each changed verdict gets a ``verdict_changes`` row with the
old one, each changed state an ``address_events`` row; nothing is deleted.

Bounces left alone on purpose:

- reason 25 (Error ignored): the policy rewrote them because the address was on the
  allowlist, that is no qualification to redo;
- bounces rolled back by ``quarantine rollback``: an operator decided they do not count;
- messages whose raw bytes were purged by the retention cleanup.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from bounced.config import Config
from bounced.core.judge import judge
from bounced.core.parse import parse_message
from bounced.core.times import format_time
from bounced.model import FailureType, Kind, Reason
from bounced.ops.quarantine import (
    BATCH,
    AddressChange,
    Override,
    recompute,
    state_of,
    write_recomputed,
)
from bounced.store import Store


@dataclass(frozen=True, slots=True)
class Requalified:
    """A stored bounce that today's rules judge differently."""

    bounce_id: int
    address: str | None
    text: str
    old_type: FailureType | None
    old_reason: Reason | None
    old_by: str | None
    new_type: FailureType
    new_reason: Reason
    new_by: str

    def describe(self) -> str:
        old_reason = self.old_reason.label if self.old_reason is not None else "-"
        old = f"{self.old_type.value if self.old_type else '-'}/{old_reason} ({self.old_by})"
        return (f"bounce #{self.bounce_id} now {self.new_type.value}/{self.new_reason.label} "
                f"({self.new_by}), was {old}")


@dataclass(frozen=True, slots=True)
class ReprocessPlan:
    """What a reprocess changes: verdicts, and address states that follow from them."""

    since: datetime | None
    messages: int
    bounces: tuple[Requalified, ...]
    changes: tuple[AddressChange, ...]
    unmatched: int


def _candidate_messages(store: Store, since: datetime | None) -> list[int]:
    """Processed messages with raw bytes and a bounce counted since ``since`` (by
    ``bounces.at``, indexed, so ``--since 1d`` does not scan months of bounces)."""
    rows = store.conn.execute(
        "SELECT DISTINCT m.id FROM bounces b JOIN messages m ON m.id = b.message_id "
        "WHERE b.at >= ? AND m.state = 'processed' AND length(m.raw) > 0 ORDER BY m.id",
        (format_time(since) if since is not None else "",),
    ).fetchall()
    return [int(row[0]) for row in rows]


def requalify(store: Store, message_ids: Sequence[int]) -> tuple[list[Requalified], int]:
    """Today's verdicts for the stored bounces of ``message_ids`` that differ in type or
    reason; also how many bounce rows could not be matched to a re-parsed recipient."""
    rules = store.load_rules()
    changed: list[Requalified] = []
    unmatched = 0
    for message_id in message_ids:
        # One raw message in memory at a time: a reprocess of months of bounces must
        # not load them all.
        raw_row = store.conn.execute(
            "SELECT raw FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if raw_row is None or not raw_row[0]:
            continue
        verdicts = [
            v for v in judge(parse_message(bytes(raw_row[0])), rules, store.lookup_text)
            if v.recipient.kind is not Kind.NOT_BOUNCE
        ]
        stored = store.conn.execute(
            "SELECT b.id, b.recipient, b.failure_type, b.reason_code, b.qualified_by, "
            "EXISTS (SELECT 1 FROM verdict_changes c WHERE c.bounce_id = b.id "
            "AND c.action = 'rollback') FROM bounces b WHERE b.message_id = ? ORDER BY b.id",
            (message_id,),
        ).fetchall()
        if len(stored) != len(verdicts):
            unmatched += abs(len(stored) - len(verdicts))
        for (bounce_id, recipient, old_type, old_reason, old_by, rolled_back), verdict in zip(
            stored, verdicts, strict=False
        ):
            address = verdict.recipient.address.strip().lower() if verdict.recipient.address \
                else None
            if address != recipient:
                unmatched += 1
                continue
            new = verdict.qualification
            if new is None or rolled_back or old_reason == int(Reason.ERROR_IGNORED):
                continue
            if (old_type, old_reason) == (new.failure_type.value, int(new.reason)):
                continue
            changed.append(Requalified(
                int(bounce_id), recipient, verdict.text,
                FailureType(old_type) if old_type else None,
                Reason(old_reason) if old_reason is not None else None, old_by,
                new.failure_type, new.reason, str(new.qualified_by),
            ))
    return changed, unmatched


def _overrides(bounces: Sequence[Requalified]) -> dict[int, Override]:
    return {b.bounce_id: Override(b.new_type, b.new_reason, b.new_by) for b in bounces}


def plan(store: Store, *, since: datetime | None, config: Config) -> ReprocessPlan:
    """Everything a reprocess would change, read-only."""
    ids = _candidate_messages(store, since)
    bounces, unmatched = requalify(store, ids)
    overrides = _overrides(bounces)
    changes = []
    for address in sorted({b.address for b in bounces if b.address}):
        current, target = recompute(store.conn, address, config.policy, overrides)
        if state_of(current) is not target.state:
            changes.append(AddressChange(address, state_of(current), target.state))
    return ReprocessPlan(since, len(ids), tuple(bounces), tuple(changes), unmatched)


def apply_plan(store: Store, planned: ReprocessPlan, *, config: Config,
               at: datetime) -> tuple[AddressChange, ...]:
    """Write the plan's verdicts and the address states that follow, :data:`BATCH`
    addresses per transaction.

    A verdict is only rewritten if the bounce still has the verdict the plan saw (the
    daemon, or another operator, may have moved on in between); the address is then
    recomputed inside the same transaction from what the database holds at that moment.
    """
    by_address: dict[str | None, list[Requalified]] = {}
    for bounce in planned.bounces:
        by_address.setdefault(bounce.address, []).append(bounce)
    keys = sorted(by_address, key=lambda a: a or "")
    changes: list[AddressChange] = []
    stamp = format_time(at)
    for start in range(0, len(keys), BATCH):
        with store.transaction() as conn:
            for address in keys[start:start + BATCH]:
                described = []
                for bounce in by_address[address]:
                    old_type = bounce.old_type.value if bounce.old_type else None
                    old_reason = int(bounce.old_reason) if bounce.old_reason is not None \
                        else None
                    # old and new verdicts are columns of the row: the cause says why
                    cause = "reprocess with today's rules"
                    updated = conn.execute(
                        "UPDATE bounces SET failure_type = ?, reason_code = ?, qualified_by = ?, "
                        "qualification_id = COALESCE((SELECT id FROM qualification "
                        "WHERE text = ?), qualification_id) "
                        "WHERE id = ? AND failure_type IS ? AND reason_code IS ?",
                        (bounce.new_type.value, int(bounce.new_reason), bounce.new_by,
                         bounce.text, bounce.bounce_id, old_type, old_reason),
                    ).rowcount
                    if not updated:
                        continue
                    conn.execute(
                        "INSERT INTO verdict_changes (bounce_id, at, action, old_failure_type, "
                        "old_reason_code, old_qualified_by, new_failure_type, new_reason_code, "
                        "new_qualified_by, cause) VALUES (?, ?, 'reprocess', ?, ?, ?, ?, ?, ?, ?)",
                        (bounce.bounce_id, stamp, old_type, old_reason, bounce.old_by,
                         bounce.new_type.value, int(bounce.new_reason), bounce.new_by, cause),
                    )
                    described.append(bounce)
                if address is None or not described:
                    continue
                current, target = recompute(conn, address, config.policy, {})
                summary = described[-1].describe()
                more = f" (+{len(described) - 1} more)" if len(described) > 1 else ""
                change = write_recomputed(
                    conn, current, target, at, f"reprocess with today's rules: {summary}{more}"
                )
                if change is not None:
                    changes.append(change)
    return tuple(changes)
