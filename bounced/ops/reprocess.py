"""Re-qualify stored raw messages with today's rules.

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
from bounced.core.addresses import canonical_address, rules_from_config
from bounced.core.judge import judge
from bounced.core.parse import parse_message
from bounced.model import Channel, FailureType, Kind, Reason
from bounced.ops.processing import judge_stored
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


def requalify(store: Store, message_ids: Sequence[int], config: Config | None = None
              ) -> tuple[list[Requalified], int]:
    """Today's verdicts for the stored bounces of ``message_ids`` that differ in type or
    reason; also how many bounce rows could not be matched to a re-parsed recipient.
    An SMS receipt or a push answer is judged again as its channel is
    (:func:`bounced.ops.processing.judge_stored`)."""
    rules = store.rules.enabled()
    settings = config if config is not None else Config()
    address_rules = rules_from_config(settings.addresses)
    changed: list[Requalified] = []
    unmatched = 0
    for message_id in message_ids:
        # One raw message in memory at a time: a reprocess of months of bounces must
        # not load them all.
        row = store.messages.get(message_id)
        if row is None or not row.raw:
            continue
        if row.channel is Channel.EMAIL:
            judged = judge(parse_message(row.raw), rules, store.qualification.lookup)
        else:
            judged = judge_stored(store, row, config=settings, rules=rules,
                                  lookup=store.qualification.lookup)[1]
        verdicts = [v for v in judged if v.recipient.kind is not Kind.NOT_BOUNCE]
        stored = store.bounces.of_message(message_id)
        if len(stored) != len(verdicts):
            unmatched += abs(len(stored) - len(verdicts))
        for old, verdict in zip(stored, verdicts, strict=False):
            address = (
                canonical_address(verdict.recipient.address, address_rules)
                if row.channel is not Channel.EMAIL else verdict.recipient.address.strip().lower()
            ) if verdict.recipient.address else None
            if address != old.recipient:
                unmatched += 1
                continue
            new = verdict.qualification
            if new is None or old.rolled_back or old.reason_code == int(Reason.ERROR_IGNORED):
                continue
            if (old.failure_type, old.reason_code) == (new.failure_type.value, int(new.reason)):
                continue
            changed.append(Requalified(
                old.bounce_id, old.recipient, verdict.text,
                FailureType(old.failure_type) if old.failure_type else None,
                Reason(old.reason_code) if old.reason_code is not None else None,
                old.qualified_by, new.failure_type, new.reason, str(new.qualified_by),
            ))
    return changed, unmatched


def _overrides(bounces: Sequence[Requalified]) -> dict[int, Override]:
    return {b.bounce_id: Override(b.new_type, b.new_reason, b.new_by) for b in bounces}


def plan(store: Store, *, since: datetime | None, config: Config) -> ReprocessPlan:
    """Everything a reprocess would change, read-only."""
    ids = store.messages.processed_with_bounces_since(since)
    bounces, unmatched = requalify(store, ids, config)
    overrides = _overrides(bounces)
    changes = []
    for address in sorted({b.address for b in bounces if b.address}):
        current, target = recompute(store, address, config.policy, overrides)
        if state_of(current) is not target.state:
            changes.append(AddressChange(address, state_of(current), target.state))
    return ReprocessPlan(since, len(ids), tuple(bounces), tuple(changes), unmatched)


def apply_plan(store: Store, planned: ReprocessPlan, *, config: Config,
               at: datetime, actor: str | None = None) -> tuple[AddressChange, ...]:
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
    cause = "reprocess with today's rules"
    for start in range(0, len(keys), BATCH):
        with store.atomic():
            for address in keys[start:start + BATCH]:
                described = [
                    bounce for bounce in by_address[address]
                    if store.bounces.requalify(
                        bounce.bounce_id, old=(bounce.old_type, bounce.old_reason),
                        new=(bounce.new_type, bounce.new_reason, bounce.new_by),
                        text=bounce.text, old_by=bounce.old_by, at=at, cause=cause)
                ]
                if address is None or not described:
                    continue
                current, target = recompute(store, address, config.policy, {})
                summary = described[-1].describe()
                more = f" (+{len(described) - 1} more)" if len(described) > 1 else ""
                change = write_recomputed(store, current, target, at,
                                          f"{cause}: {summary}{more}", actor)
                if change is not None:
                    changes.append(change)
    return tuple(changes)
