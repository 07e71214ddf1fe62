"""Operator actions on addresses: release, allow, deny, import, rollback.

Every action is a state change like the ones bounces cause, so it is written the same
way as the pipeline writes them (``store.addresses``): one ``addresses`` row updated
and one ``address_events`` row appended, in one transaction, with a cause that says who
did it. The decisions themselves are pure (:mod:`bounced.core.decisions`), and so is
the answer to "what would this address's state be if these bounces had been judged
differently?" (:mod:`bounced.core.replay`); this module reads, decides and writes.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TextIO

from bounced.config import Config, PolicyConfig
from bounced.core.addresses import (
    NO_FOLDING,
    AddressRules,
    address_problem,
    canonical_address,
    channel_of,
)
from bounced.core.decisions import OPERATOR_CAUSES, Decision, denied
from bounced.core.replay import Override, replay, replay_base, same_state, state_of
from bounced.core.times import format_time
from bounced.model import AddressEvent, AddressState, Channel, QuarantineState
from bounced.store import Store
from bounced.store.addresses import Suppressed

#: Addresses written per transaction by bulk actions, so the daemon's writer never waits
#: long for the lock (``busy_timeout`` covers a short wait, not a minutes-long one).
BATCH = 200


# --------------------------------------------------------------------------- results


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What an operator action did to one address (``event`` is None: nothing to do)."""

    address: str
    old: QuarantineState | None
    new: QuarantineState
    event: AddressEvent | None

    @property
    def changed(self) -> bool:
        return self.event is not None


def act(store: Store, decide: Decision, addresses: Iterable[str], at: datetime,
        note: str | None = None, rules: AddressRules = NO_FOLDING,
        actor: str | None = None) -> list[ActionResult]:
    """Apply one decision to many addresses, :data:`BATCH` per transaction; ``actor``
    (``cli:USER``, ``api:TOKEN``) is recorded with each change."""
    results: list[ActionResult] = []
    keys = [canonical_address(address, rules) for address in addresses]
    for start in range(0, len(keys), BATCH):
        with store.atomic():
            for key in keys[start:start + BATCH]:
                current = store.addresses.get(key)
                new, event = decide(current, key, at, note)
                if event is not None:
                    store.addresses.change(new, event, at, actor=actor)
                results.append(ActionResult(
                    key, current.state if current else None, new.state, event))
    return results


# --------------------------------------------------------------------------- export

#: The columns of the suppression list, as ``quarantine export`` and the API write them.
EXPORT_COLUMNS = ("address", "state", "reason", "since")


def write_suppressions_csv(rows: Iterable[Suppressed], out: TextIO) -> None:
    """The suppression list as CSV with a header line: what a sending platform loads."""
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EXPORT_COLUMNS)
    writer.writerows((row.address, row.state, row.reason, row.since) for row in rows)


# --------------------------------------------------------------------------- import

_ADDRESS = re.compile(r"^[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\".]+$")
_ADDRESS_COLUMNS = ("address", "email", "e-mail", "mail", "email_address", "recipient")


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line of an import file that was not used, and why."""

    line: int
    text: str
    problem: str


@dataclass(frozen=True, slots=True)
class ImportPlan:
    """The addresses of an import file (first line number of each) and its bad lines."""

    addresses: tuple[tuple[int, str], ...]
    bad: tuple[BadLine, ...]
    duplicates: int


def parse_import(text: str, rules: AddressRules = NO_FOLDING) -> ImportPlan:
    """Read a CSV of addresses exported by another system.

    The address is the column named ``address``/``email``/... when the first line is a
    header, else the first column. Blank lines and ``#`` comments are skipped. Every
    other line either gives a plausible address or is reported by its line number, so
    the operator can fix the export instead of guessing what was dropped.
    """
    rows = list(csv.reader(io.StringIO(text)))
    column = 0
    first = 0
    if rows:
        header = [cell.strip().lower() for cell in rows[0]]
        for name in _ADDRESS_COLUMNS:
            if name in header:
                column, first = header.index(name), 1
                break
    lines = text.splitlines()
    seen: dict[str, int] = {}
    addresses: list[tuple[int, str]] = []
    bad: list[BadLine] = []
    duplicates = 0
    # csv.reader does not give line numbers per row; it equals the physical line as
    # long as no quoted field spans lines, which an address list never needs.
    for index, row in enumerate(rows[first:], start=first + 1):
        raw = lines[index - 1] if index - 1 < len(lines) else ",".join(row)
        if not row or not "".join(row).strip() or raw.lstrip().startswith("#"):
            continue
        if column >= len(row):
            bad.append(BadLine(index, raw, f"no column {column + 1}"))
            continue
        candidate = canonical_address(row[column], rules)
        other_channel = channel_of(candidate) is not Channel.EMAIL
        problem = address_problem(row[column], rules) if other_channel else None
        if not candidate:
            bad.append(BadLine(index, raw, "empty address"))
        elif problem is not None:
            bad.append(BadLine(index, raw, problem))
        elif not other_channel and not _ADDRESS.match(candidate):
            bad.append(BadLine(index, raw, f"not an email address: {row[column].strip()!r}"))
        elif candidate in seen:
            duplicates += 1
        else:
            seen[candidate] = index
            addresses.append((index, candidate))
    return ImportPlan(tuple(addresses), tuple(bad), duplicates)


@dataclass(frozen=True, slots=True)
class ImportResult:
    denylisted: int
    already: int
    kept_allowlisted: tuple[str, ...]


def import_denylist(store: Store, plan: ImportPlan, at: datetime, source: str,
                    actor: str | None = None) -> ImportResult:
    """Denylist the plan's addresses. An address an operator put on the allowlist stays
    there: an export from another system is no reason to override a local decision
    (``bounced quarantine deny`` does, explicitly)."""
    denylisted = already = 0
    kept: list[str] = []
    items = list(plan.addresses)
    for start in range(0, len(items), BATCH):
        with store.atomic():
            for line, key in items[start:start + BATCH]:
                current = store.addresses.get(key)
                if current is not None and current.state is QuarantineState.ALLOWLISTED:
                    kept.append(key)
                    continue
                new, event = denied(current, key, at, f"import of {source} line {line}")
                if event is None:
                    already += 1
                    continue
                store.addresses.change(new, event, at, actor=actor)
                denylisted += 1
    return ImportResult(denylisted, already, tuple(kept))


# --------------------------------------------------------------------------- replay


def recompute(store: Store, address: str, config: PolicyConfig,
              overrides: Mapping[int, Override]) -> tuple[AddressState | None, AddressState]:
    """``(current, as it would be)`` for one address under ``overrides``; an address
    that nothing would have touched comes back ``valid`` with counters at zero."""
    current = store.addresses.get(address)
    base, after = replay_base(address, store.addresses.last_event_caused_by(
        address, OPERATOR_CAUSES))
    target = replay(base, address, store.bounces.counted_for(address, after), config,
                    overrides)
    return current, target if target is not None else AddressState(address)


@dataclass(frozen=True, slots=True)
class AddressChange:
    """An address whose state a reprocess or rollback changes."""

    address: str
    old: QuarantineState
    new: QuarantineState

    @property
    def direction(self) -> str:
        if not self.old.deliverable and self.new.deliverable:
            return "leaves quarantine"
        if self.old.deliverable and not self.new.deliverable:
            return "enters quarantine"
        return "changes state"


def write_recomputed(store: Store, current: AddressState | None, target: AddressState,
                     at: datetime, cause: str, actor: str | None = None
                     ) -> AddressChange | None:
    """Write ``target`` over ``current`` (with an event when the state changes)."""
    if same_state(current, target):
        return None
    new = replace(target, updated_at=at)
    store.addresses.put(new, at)
    old = state_of(current)
    if old is new.state:
        return None
    store.addresses.record(
        AddressEvent(new.address, at, current.state if current else None, new.state, cause),
        reason=new.reason, actor=actor)
    return AddressChange(new.address, old, new.state)


# --------------------------------------------------------------------------- rollback


@dataclass(frozen=True, slots=True)
class RollbackPlan:
    """The bounces a rollback un-counts and the addresses whose state it restores."""

    selector: str
    since: datetime
    until: datetime | None
    bounces: tuple[tuple[int, str], ...]
    changes: tuple[AddressChange, ...]


def _label(text_id: int | None, rule_id: int | None) -> str:
    return f"text #{text_id}" if text_id is not None else f"rule #{rule_id}"


def plan_rollback(store: Store, *, since: datetime, until: datetime | None,
                  text_id: int | None, rule_id: int | None, config: Config) -> RollbackPlan:
    """What a rollback would do, without writing anything (``--dry-run``)."""
    bounces = store.bounces.countable(text_id=text_id, rule_id=rule_id, since=since,
                                      until=until)
    overrides = {bounce_id: Override(None, None, None, counts=False) for bounce_id, _ in bounces}
    changes = []
    for address in sorted({address for _, address in bounces}):
        current, target = recompute(store, address, config.policy, overrides)
        if state_of(current) is not target.state:
            changes.append(AddressChange(address, state_of(current), target.state))
    return RollbackPlan(_label(text_id, rule_id), since, until, tuple(bounces), tuple(changes))


def rollback(store: Store, *, since: datetime, until: datetime | None, text_id: int | None,
             rule_id: int | None, config: Config, at: datetime,
             actor: str | None = None) -> RollbackPlan:
    """Un-count the bounces of one text or one rule in a time window and restore the
    state each address would have without them, writing the undo to the history.

    The bounces stay in the delivery log, with type ``ignored`` and a ``verdict_changes``
    row keeping their old verdict; every restored address gets an ``address_events`` row
    (the quarantine stays in the history too, followed by its undo). Runs in batches of
    addresses; a second run finds nothing left to roll back.
    """
    label = _label(text_id, rule_id)
    window = f"since {format_time(since)}" + (f" until {format_time(until)}" if until else "")
    cause_base = f"rollback of {label} {window}"
    bounces = store.bounces.countable(text_id=text_id, rule_id=rule_id, since=since,
                                      until=until)
    by_address: dict[str, list[int]] = {}
    for bounce_id, address in bounces:
        by_address.setdefault(address, []).append(bounce_id)
    addresses = sorted(by_address)
    changes: list[AddressChange] = []
    for start in range(0, len(addresses), BATCH):
        with store.atomic():
            for address in addresses[start:start + BATCH]:
                ids = by_address[address]
                for bounce_id in ids:
                    store.bounces.roll_back(bounce_id, at, cause_base)
                current, target = recompute(store, address, config.policy, {})
                cause = f"{cause_base}: {len(ids)} bounce(s) no longer count"
                change = write_recomputed(store, current, target, at, cause, actor)
                if change is not None:
                    changes.append(change)
    return RollbackPlan(label, since, until, tuple(bounces), tuple(changes))
