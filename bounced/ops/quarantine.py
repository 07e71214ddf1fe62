"""Operator actions on addresses: release, allow, deny, import, rollback (issue 4, items 2, 6).

Every action is a state change like the ones bounces cause, so it goes through the same
types (:class:`~bounced.core.policy.AddressState`, :class:`~bounced.core.policy.AddressEvent`)
and the same writers (:func:`~bounced.store.write_state`,
:func:`~bounced.store.write_event`) as the pipeline: one ``addresses`` row updated and
one ``address_events`` row appended, in one transaction, with a cause that says who did
it ("released by operator: customer fixed the mailbox"). An audit with ``sqlite3`` then
tells operator decisions and bounce-driven ones apart by their cause alone.

The decisions themselves are pure functions (``released``, ``allowed``, ``denied``) of
the current state and a time passed in; the store functions only read, decide and write.

Rollback and reprocess need to know "what would this address's state be if these
bounces had been judged differently?". :func:`replay` answers it, purely: it runs the
quarantine policy again over the address's stored verdicts, in time order, from the
last operator decision (an operator's release, allow or deny is a fact to build on, not
something to recompute), simulating the periodic cleanup between bounces.
"""

from __future__ import annotations

import csv
import io
import re
import sqlite3
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

from bounced.config import Config, PolicyConfig
from bounced.core.addresses import NO_FOLDING, AddressRules
from bounced.core.policy import PolicyFacts, apply, cleanup
from bounced.core.times import format_time, parse_time
from bounced.model import AddressEvent, AddressState, FailureType, Kind, QuarantineState, Reason
from bounced.ops.audit import normalize_address
from bounced.store import Store, read_state, write_event, write_state

#: Causes of operator decisions start with one of these; :func:`replay` builds on them.
RELEASED = "released by operator"
ALLOWLISTED = "allowlisted by operator"
DENYLISTED = "denylisted by operator"
OPERATOR_CAUSES = (RELEASED, ALLOWLISTED, DENYLISTED)

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


# --------------------------------------------------------------------------- decisions


def _cause(base: str, note: str | None) -> str:
    return f"{base}: {note.strip()}" if note and note.strip() else base


def _decide(
    current: AddressState | None,
    address: str,
    target: AddressState,
    at: datetime,
    cause: str,
) -> tuple[AddressState, AddressEvent | None]:
    old = current.state if current is not None else None
    if old is target.state:
        return current or target, None
    return target, AddressEvent(address, at, old, target.state, cause)


def released(current: AddressState | None, address: str, at: datetime,
             note: str | None = None) -> tuple[AddressState, AddressEvent | None]:
    """Back to ``valid`` with counters at zero: the operator knows the address works.

    Releasing an address that is already valid changes nothing and writes no event, so
    running the same release twice leaves one line of history.
    """
    base = current or AddressState(address)
    target = replace(
        base, state=QuarantineState.VALID, error_count=0, last_counted_error_at=None,
        reason=None, quarantined_at=None, release_at=None, undefined_count=0, updated_at=at,
    )
    return _decide(current, address, target, at, _cause(RELEASED, note))


def allowed(current: AddressState | None, address: str, at: datetime,
            note: str | None = None) -> tuple[AddressState, AddressEvent | None]:
    """On the allowlist: never quarantined again, its errors carry reason 25 (the
    pipeline's policy does that for the ``allowlisted`` state)."""
    base = current or AddressState(address)
    target = replace(
        base, state=QuarantineState.ALLOWLISTED, error_count=0, last_counted_error_at=None,
        reason=None, quarantined_at=None, release_at=None, undefined_count=0, updated_at=at,
    )
    return _decide(current, address, target, at, _cause(ALLOWLISTED, note))


def denied(current: AddressState | None, address: str, at: datetime,
           note: str | None = None) -> tuple[AddressState, AddressEvent | None]:
    """On the denylist (reason 8), for good: no cleanup job ever releases it."""
    base = current or AddressState(address)
    target = replace(
        base, state=QuarantineState.DENYLISTED, reason=Reason.DENYLISTED, quarantined_at=at,
        release_at=None, updated_at=at,
    )
    return _decide(current, address, target, at, _cause(DENYLISTED, note))


#: ``(current, address, at, note) -> (new state, event or None)``: the decisions above.
Decision = Callable[[AddressState | None, str, datetime, str | None],
                    tuple[AddressState, AddressEvent | None]]


def act(store: Store, decide: Decision, addresses: Iterable[str], at: datetime,
        note: str | None = None, rules: AddressRules = NO_FOLDING) -> list[ActionResult]:
    """Apply one decision to many addresses, :data:`BATCH` per transaction."""
    results: list[ActionResult] = []
    keys = [normalize_address(address, rules) for address in addresses]
    for start in range(0, len(keys), BATCH):
        with store.transaction() as conn:
            for key in keys[start:start + BATCH]:
                current = read_state(conn, key)
                new, event = decide(current, key, at, note)
                if event is not None:
                    write_state(conn, new, at)
                    write_event(conn, event, None)
                results.append(ActionResult(
                    key, current.state if current else None, new.state, event))
    return results


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
        candidate = normalize_address(row[column], rules)
        if not candidate:
            bad.append(BadLine(index, raw, "empty address"))
        elif not _ADDRESS.match(candidate):
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


def import_denylist(store: Store, plan: ImportPlan, at: datetime, source: str) -> ImportResult:
    """Denylist the plan's addresses. An address an operator put on the allowlist stays
    there: an export from another system is no reason to override a local decision
    (``bounced quarantine deny`` does, explicitly)."""
    denylisted = already = 0
    kept: list[str] = []
    items = list(plan.addresses)
    for start in range(0, len(items), BATCH):
        with store.transaction() as conn:
            for line, key in items[start:start + BATCH]:
                current = read_state(conn, key)
                if current is not None and current.state is QuarantineState.ALLOWLISTED:
                    kept.append(key)
                    continue
                new, event = denied(current, key, at, f"import of {source} line {line}")
                if event is None:
                    already += 1
                    continue
                write_state(conn, new, at)
                write_event(conn, event, None)
                denylisted += 1
    return ImportResult(denylisted, already, tuple(kept))


# --------------------------------------------------------------------------- replay


@dataclass(frozen=True, slots=True)
class StoredVerdict:
    """A ``bounces`` row as the policy sees it."""

    bounce_id: int
    at: datetime
    kind: Kind
    failure_type: FailureType | None
    reason: Reason | None
    qualified_by: str | None
    feedback_type: str | None

    def facts(self) -> PolicyFacts:
        return PolicyFacts(self.kind, self.failure_type, self.reason, self.qualified_by,
                           self.feedback_type)


@dataclass(frozen=True, slots=True)
class Override:
    """A verdict as it would be judged now (reprocess); ``counts=False``: rolled back."""

    failure_type: FailureType | None
    reason: Reason | None
    qualified_by: str | None
    counts: bool = True


def replay_base(conn: sqlite3.Connection, address: str) -> tuple[AddressState | None,
                                                                 datetime | None]:
    """Where a replay of ``address`` starts: its last operator decision (the state it
    set, counters at zero, since every operator action zeroes them) or nothing."""
    row = conn.execute(
        "SELECT at, new_state FROM address_events WHERE address = ? AND ("
        + " OR ".join("cause LIKE ?" for _ in OPERATOR_CAUSES)
        + ") ORDER BY at DESC, id DESC LIMIT 1",
        (address, *(f"{cause}%" for cause in OPERATOR_CAUSES)),
    ).fetchone()
    if row is None:
        return None, None
    at = parse_time(row[0])
    state = QuarantineState(row[1])
    denylisted = state is QuarantineState.DENYLISTED
    return AddressState(
        address, state,
        reason=Reason.DENYLISTED if denylisted else None,
        quarantined_at=at if denylisted else None,
        updated_at=at,
    ), at


def stored_verdicts(conn: sqlite3.Connection, address: str,
                    after: datetime | None) -> list[StoredVerdict]:
    """The address's bounces that changed (or could have changed) its state: from
    trusted messages, not rolled back, in the order they count."""
    rows = conn.execute(
        "SELECT b.id, COALESCE(b.at, b.received_at), b.kind, b.failure_type, b.reason_code, "
        "b.qualified_by, b.feedback_type FROM bounces b JOIN messages m ON m.id = b.message_id "
        "WHERE b.recipient = ? AND COALESCE(m.trusted, 1) = 1 "
        "AND COALESCE(b.at, b.received_at) > ? "
        "AND NOT EXISTS (SELECT 1 FROM verdict_changes c WHERE c.bounce_id = b.id "
        "AND c.action = 'rollback') ORDER BY COALESCE(b.at, b.received_at), b.id",
        (address, format_time(after) if after is not None else ""),
    ).fetchall()
    return [
        StoredVerdict(
            int(r[0]), parse_time(r[1]) or datetime.min, Kind(r[2]),
            FailureType(r[3]) if r[3] else None,
            Reason(r[4]) if r[4] is not None else None, r[5], r[6],
        )
        for r in rows
    ]


def replay(
    base: AddressState | None,
    address: str,
    verdicts: Sequence[StoredVerdict],
    config: PolicyConfig,
    overrides: Mapping[int, Override] | None = None,
) -> AddressState | None:
    """The state ``address`` would have after ``verdicts`` (time-ordered), starting from
    ``base``, with some verdicts judged differently. Pure.

    The periodic cleanup is simulated before each bounce (the daemon runs it hourly,
    so a due Mailbox-full release would have happened by then); the final state is
    left as the bounces made it, like the stored one until the next cleanup run.
    """
    state = base
    for verdict in verdicts:
        override = (overrides or {}).get(verdict.bounce_id)
        if override is not None and not override.counts:
            continue
        facts = verdict.facts()
        if override is not None:
            facts = replace(facts, failure_type=override.failure_type, reason=override.reason,
                            qualified_by=override.qualified_by)
        if state is not None:
            state = cleanup(state, verdict.at, config).state or state
        outcome = apply(state, facts, verdict.at, config, address=address)
        state = outcome.state if outcome.state is not None else state
    return state


def same_state(a: AddressState | None, b: AddressState | None) -> bool:
    """Equal for the policy (what quarantines, what counts), ignoring bookkeeping times."""
    def key(s: AddressState | None) -> tuple[object, ...]:
        if s is None:
            return (QuarantineState.VALID, 0, None, None, None, None)
        return (s.state, s.error_count, s.last_counted_error_at, s.reason, s.quarantined_at,
                s.release_at)
    return key(a) == key(b)


def state_of(s: AddressState | None) -> QuarantineState:
    return s.state if s is not None else QuarantineState.VALID


def recompute(conn: sqlite3.Connection, address: str, config: PolicyConfig,
              overrides: Mapping[int, Override]) -> tuple[AddressState | None, AddressState]:
    """``(current, as it would be)`` for one address under ``overrides``; an address
    that nothing would have touched comes back ``valid`` with counters at zero."""
    current = read_state(conn, address)
    base, after = replay_base(conn, address)
    target = replay(base, address, stored_verdicts(conn, address, after), config, overrides)
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


def write_recomputed(conn: sqlite3.Connection, current: AddressState | None,
                     target: AddressState, at: datetime,
                     cause: str) -> AddressChange | None:
    """Write ``target`` over ``current`` (with an event when the state changes)."""
    if same_state(current, target):
        return None
    new = replace(target, updated_at=at)
    write_state(conn, new, at)
    old = state_of(current)
    if old is new.state:
        return None
    write_event(conn, AddressEvent(new.address, at, current.state if current else None,
                                   new.state, cause), None)
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


def _selector(text_id: int | None, rule_id: int | None) -> tuple[str, str, object]:
    if (text_id is None) == (rule_id is None):
        raise ValueError("give exactly one of a text id or a rule id")
    if text_id is not None:
        return f"text #{text_id}", "b.qualification_id = ?", text_id
    return f"rule #{rule_id}", "b.qualified_by = ?", f"rule:{rule_id}"


def _matched(conn: sqlite3.Connection, where: str, value: object, since: datetime,
             until: datetime | None) -> list[tuple[int, str]]:
    rows = conn.execute(
        "SELECT b.id, b.recipient FROM bounces b WHERE " + where + " "
        # b.at (always written by the pipeline) rather than a COALESCE, so that the
        # window can use the index on bounces(at) for --rule.
        "AND b.recipient IS NOT NULL AND b.at >= ? AND b.at <= ? "
        "AND COALESCE(b.failure_type, '') NOT IN ('', 'ignored') "
        "AND NOT EXISTS (SELECT 1 FROM verdict_changes c WHERE c.bounce_id = b.id "
        "AND c.action = 'rollback') ORDER BY b.id",
        (value, format_time(since), format_time(until) if until else "9999"),
    ).fetchall()
    return [(int(r[0]), r[1]) for r in rows]


def plan_rollback(conn: sqlite3.Connection, *, since: datetime, until: datetime | None,
                  text_id: int | None, rule_id: int | None,
                  config: Config) -> RollbackPlan:
    """What a rollback would do, without writing anything (``--dry-run``)."""
    label, where, value = _selector(text_id, rule_id)
    bounces = _matched(conn, where, value, since, until)
    overrides = {bounce_id: Override(None, None, None, counts=False) for bounce_id, _ in bounces}
    changes = []
    for address in sorted({address for _, address in bounces}):
        current, target = recompute(conn, address, config.policy, overrides)
        if state_of(current) is not target.state:
            changes.append(AddressChange(address, state_of(current), target.state))
    return RollbackPlan(label, since, until, tuple(bounces), tuple(changes))


def rollback(store: Store, *, since: datetime, until: datetime | None, text_id: int | None,
             rule_id: int | None, config: Config, at: datetime) -> RollbackPlan:
    """Un-count the bounces of one text or one rule in a time window and restore the
    state each address would have without them, writing the undo to the history.

    The bounces stay in the delivery log, with type ``ignored`` and a ``verdict_changes``
    row keeping their old verdict; every restored address gets an ``address_events`` row
    (the quarantine stays in the history too, followed by its undo). Runs in batches of
    addresses; a second run finds nothing left to roll back.
    """
    label, where, value = _selector(text_id, rule_id)
    window = f"since {format_time(since)}" + (f" until {format_time(until)}" if until else "")
    cause_base = f"rollback of {label} {window}"
    bounces = _matched(store.conn, where, value, since, until)
    by_address: dict[str, list[int]] = {}
    for bounce_id, address in bounces:
        by_address.setdefault(address, []).append(bounce_id)
    addresses = sorted(by_address)
    changes: list[AddressChange] = []
    for start in range(0, len(addresses), BATCH):
        with store.transaction() as conn:
            for address in addresses[start:start + BATCH]:
                ids = by_address[address]
                for bounce_id in ids:
                    conn.execute(
                        "INSERT INTO verdict_changes (bounce_id, at, action, old_failure_type, "
                        "old_reason_code, old_qualified_by, new_failure_type, new_reason_code, "
                        "new_qualified_by, cause) SELECT id, ?, 'rollback', failure_type, "
                        "reason_code, qualified_by, 'ignored', reason_code, qualified_by, ? "
                        "FROM bounces WHERE id = ?",
                        (format_time(at), cause_base, bounce_id),
                    )
                    conn.execute("UPDATE bounces SET failure_type = 'ignored' WHERE id = ?",
                                 (bounce_id,))
                current, target = recompute(conn, address, config.policy, {})
                cause = f"{cause_base}: {len(ids)} bounce(s) no longer count"
                change = write_recomputed(conn, current, target, at, cause)
                if change is not None:
                    changes.append(change)
    return RollbackPlan(label, since, until, tuple(bounces), tuple(changes))
