"""The qualification queue and processing-rule management, over the database.

An operator steers qualification (``docs/qualification.md``) in two places, and this
module is both:

- the **qualification table** (``qualification``, view ``to_qualify``): every distinct
  normalized text, waiting for a decision. :func:`queue` lists the waiting texts by
  occurrences, each with what decides it today and a *suggested* type and reason
  (:mod:`bounced.core.suggest`); :func:`qualify_text` records the operator's decision
  (``keep`` with a type and reason, or ``ignore``), which then wins over every rule;
- the **processing rules** (``rules``): :func:`add_rule`, :func:`set_rule_enabled`,
  :func:`trace_text` (which step and which rule would qualify a text, computed by the
  real :func:`bounced.core.qualify.qualify`, never by a copy of its logic), and the
  :func:`export_rules` / :func:`import_rules` pair that moves rules between instances in
  the TOML format of ``bounced/data/rules.toml``.

Import policy: rules in the shipped-defaults id range (below ``FIRST_USER_RULE_ID``)
are never written by an import (defaults belong to the bounced release and are reseeded
on every open), so importing another instance's defaults cannot overwrite anything; a
user rule equal to one already present (same pattern, conditions, type and reason) is
left alone; a user rule whose id is taken by a *different* rule is added under a new id
unless ``replace`` is asked for explicitly.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from enum import StrEnum

from bounced.core.normalize import normalize
from bounced.core.qualify import (
    USER_IDS,
    RuleError,
    load_default_rules,
    match_rule,
    parse_rules,
    qualify,
)
from bounced.core.rulefile import rule_to_toml, rules_to_toml
from bounced.core.suggest import Knowledge, Suggestion, codes_in, suggest
from bounced.model import (
    Action,
    FailureType,
    Kind,
    Qualification,
    QualificationStatus,
    QualifiedBySource,
    Reason,
    RecipientReport,
    Rule,
)
from bounced.ops import RequestError
from bounced.store import FIRST_USER_RULE_ID, Rollback, Store
from bounced.store.qualification import TextRow
from bounced.store.rules import RuleRow


class AdminError(RequestError):
    """A rule or qualification request that cannot be carried out."""


# --------------------------------------------------------------------------- the queue


@dataclass(frozen=True, slots=True)
class QueueItem:
    """One waiting text: what it is, how often it came, what decides it now, and the
    suggestion for the operator."""

    id: int
    text: str
    first_text: str
    occurrences: int
    last_seen: str | None
    current_type: str | None
    current_reason: int | None
    qualified_by: str | None
    suggestion: Suggestion


def knowledge_of(store: Store) -> Knowledge:
    """What suggestions are made from: the rules and the texts operators kept."""
    kept = [(text.id, text.text, text.failure_type, text.reason)
            for text in store.qualification.decided(QualificationStatus.KEEP)]
    return Knowledge.of(store.rules.enabled(), kept)


def queue(store: Store, limit: int = 50) -> list[QueueItem]:
    """The ``to_qualify`` texts, most frequent first, each with its suggestion."""
    knowledge = knowledge_of(store)
    return [
        QueueItem(
            id=row.id, text=row.text, first_text=row.first_text, occurrences=row.occurrences,
            last_seen=row.last_seen, current_type=row.failure_type,
            current_reason=row.reason_code, qualified_by=row.qualified_by,
            suggestion=suggest(row.text, knowledge, row.qualified_by,
                               _current(row.failure_type, row.reason_code)),
        )
        for row in store.qualification.waiting(limit)
    ]


def _current(failure_type: str | None, reason: int | None
             ) -> tuple[FailureType, Reason] | None:
    if failure_type is None or reason is None:
        return None
    return FailureType(failure_type), Reason(reason)


def _text_row(store: Store, text_id: int) -> TextRow:
    row = store.qualification.get(text_id)
    if row is None:
        raise AdminError(f"no text #{text_id} in the qualification table")
    return row


def qualify_text(
    store: Store,
    text_id: int,
    *,
    status: QualificationStatus,
    failure_type: FailureType | None = None,
    reason: Reason | None = None,
) -> tuple[TextRow, TextRow]:
    """Record an operator's decision on a text; returns the row before and after.

    ``keep`` needs a type and a reason (``undefined`` is no decision). ``ignore`` makes
    the type ``ignored`` (never causes quarantine); the reason is kept unless one is
    given. Later bounces with this text are qualified by it (``table:<id>``); bounces
    already stored are not changed (``bounced reprocess`` does that).
    """
    if status is QualificationStatus.KEEP:
        if failure_type is None or reason is None:
            raise AdminError("keep needs --type and --reason")
        if failure_type is FailureType.UNDEFINED:
            raise AdminError("type 'undefined' is not a decision: use hard, soft or ignored")
    elif status is QualificationStatus.IGNORE:
        failure_type = FailureType.IGNORED
    else:
        raise AdminError("a decision is keep or ignore")
    with store.atomic():
        before = _text_row(store, text_id)
        new_reason = reason if reason is not None else (
            Reason(before.reason_code) if before.reason_code is not None else Reason.NOT_DEFINED
        )
        store.qualification.decide(text_id, status, failure_type, new_reason)
        after = _text_row(store, text_id)
    return before, after


# --------------------------------------------------------------------------- rules


def list_rules(store: Store, origin: str | None = None) -> list[RuleRow]:
    """All rules (enabled or not) in the order they are tried; ``origin`` filters."""
    return store.rules.listing(origin)


def _validated(rule: Rule) -> Rule:
    """The rule read back through the real rule-file validator (regex compiles, does
    not match the empty text, id in the user range, ...)."""
    return parse_rules(rule_to_toml(rule), source="rule", ids=USER_IDS)[0]


def add_rule(
    store: Store,
    pattern: str,
    failure_type: FailureType,
    reason: Reason,
    *,
    priority: int = 100,
    comment: str = "",
    status: str | None = None,
    command: str | None = None,
) -> Rule:
    """Add an operator's rule under the next free user id; returns it.

    ``status`` / ``command`` are the optional conditions of :class:`bounced.core.qualify.Rule`
    (regular expressions the enhanced code / SMTP command must match in full).
    """
    with store.atomic():
        candidate = Rule(store.rules.next_user_id(), pattern, failure_type, reason, priority,
                         comment.strip(), True, status or None, command or None)
        try:
            rule = _validated(candidate)
        except RuleError as error:
            raise AdminError(str(error).removeprefix("rule: ")) from None
        store.rules.add(rule)
    return rule


def set_rule_enabled(store: Store, rule_id: int, enabled: bool) -> RuleRow:
    """Enable or disable a rule (a default one too: the choice survives upgrades)."""
    with store.atomic():
        changed = store.rules.set_enabled(rule_id, enabled)
    row = store.rules.get(rule_id)
    if not changed or row is None:
        raise AdminError(f"no rule {rule_id}")
    return row


# --------------------------------------------------------------------------- test a text


class Step(StrEnum):
    """The step of the qualification order (``docs/qualification.md``) that decided a text."""

    TABLE = "1. qualification table"
    RULE = "2. processing rule"
    PROVIDER = "3. shipped knowledge: the receiving provider's own code or wording"
    STATUS = "3. shipped knowledge: status code"
    PHRASE = "3. shipped knowledge: wording of a failure class"
    STAGE = "3. shipped knowledge: SMTP stage"
    CLASS = "3. shipped knowledge: status class fallback"
    NONE = "4. nothing: undefined, waits for an operator"


_STEPS = {
    QualifiedBySource.TABLE: Step.TABLE,
    QualifiedBySource.RULE: Step.RULE,
    QualifiedBySource.PROVIDER: Step.PROVIDER,
    QualifiedBySource.STATUS: Step.STATUS,
    QualifiedBySource.PHRASE: Step.PHRASE,
    QualifiedBySource.STAGE: Step.STAGE,
    QualifiedBySource.CLASS: Step.CLASS,
}


@dataclass(frozen=True, slots=True)
class TextTrace:
    """What the real qualify function decides for a text, and why."""

    text: str
    normalized: str
    status: str | None
    reply_code: str | None
    table_id: int | None
    table_status: QualificationStatus | None
    qualification: Qualification
    step: Step
    rule: Rule | None
    matching_rules: tuple[Rule, ...]


def trace_text(
    store: Store,
    text: str,
    *,
    status: str | None = None,
    reply_code: str | None = None,
    command: str | None = None,
) -> TextTrace:
    """Qualify ``text`` as the pipeline would for a failed recipient: the stored rules,
    the qualification-table row of its normalized form, :func:`bounced.core.qualify.qualify`.

    Missing codes are read from the text, as a DSN would usually carry the same ones.
    ``matching_rules`` lists every enabled rule that matches, in order: the first one
    decides, the others show what it shadows.
    """
    normalized = normalize(text)
    found_status, found_reply = codes_in(normalized)
    status = status or found_status
    reply_code = reply_code or found_reply
    entry = store.qualification.lookup(normalized) if normalized else None
    rules = store.rules.enabled()
    recipient = RecipientReport(
        address=None, kind=Kind.FAILURE, action=Action.FAILED, status=status,
        reply_code=reply_code, diagnostic=text, smtp_command=command,
    )
    verdict = qualify(recipient, normalized, entry=entry, rules=rules)
    assert verdict is not None  # a failure always gets a verdict
    source = verdict.qualified_by.source
    by_id = {rule.id: rule for rule in rules}
    rule = by_id.get(int(verdict.qualified_by.ref or 0)) if source is QualifiedBySource.RULE \
        else None
    step = _STEPS.get(source, Step.NONE)
    matching = tuple(
        each for each in rules
        if match_rule(normalized, [each], status=status, command=command) is not None
    )
    return TextTrace(
        text=text, normalized=normalized, status=status, reply_code=reply_code,
        table_id=entry.id if entry else None, table_status=entry.status if entry else None,
        qualification=verdict, step=step, rule=rule, matching_rules=matching,
    )


# --------------------------------------------------------------------------- export/import


#: Priority of rules made from qualified texts: before every shipped rule, as the
#: qualification table comes before the rules in the qualification order.
TEXT_RULE_PRIORITY = 1


def _escape(text: str) -> str:
    """``re.escape`` without escaping spaces (rules are never compiled verbose), so the
    exported pattern stays readable."""
    return re.escape(text).replace("\\ ", " ")


def text_rules(store: Store, first_id: int) -> list[Rule]:
    """The operator's decisions on texts (``keep`` / ``ignore``) as rules: the exact
    normalized text, anchored and escaped, with the decided type and reason.

    The qualification table matches a text exactly; an anchored rule of the lowest
    priority number does the same on another instance, where the table row does not
    exist. Ids are numbered from ``first_id`` (an import renumbers them if taken).
    """
    return [
        Rule(first_id + index, f"^{_escape(text.text)}$", text.failure_type, text.reason,
             TEXT_RULE_PRIORITY, f"qualified text #{text.id} ({text.status.value})")
        for index, text in enumerate(store.qualification.decided())
    ]


def export_rules(store: Store, *, include_defaults: bool = False,
                 include_texts: bool = False) -> str:
    """The operator's rules (disabled ones too, as ``enabled = false``) as a TOML rule
    file that :func:`import_rules` and ``bounced/data/rules.toml`` readers accept;
    ``include_texts`` adds the operator's text decisions (:func:`text_rules`)."""
    shipped = {rule.id: rule.source for rule in load_default_rules()}
    rules = [  # the table does not keep where a shipped rule's wording comes from
        dataclasses.replace(row.rule, source=row.rule.source or shipped.get(row.rule.id, ""))
        for row in list_rules(store, None if include_defaults else "user")
    ]
    if include_texts:
        rules += text_rules(store, store.rules.next_user_id())
    header = (
        "bounced processing rules, exported from the rules table.\n"
        "Format: bounced/data/rules.toml. Import with: bounced rules import --db PATH FILE"
    )
    return rules_to_toml(rules, header)


class ImportAction(StrEnum):
    ADDED = "added"
    RENUMBERED = "added under a new id"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"
    SKIPPED_DEFAULT = "skipped (shipped default, never imported)"


@dataclass(frozen=True, slots=True)
class ImportLine:
    """What the import did with one rule of the file."""

    file_id: int
    action: ImportAction
    db_id: int | None
    note: str = ""


def _same(left: Rule, right: Rule) -> bool:
    """Same decision on the same texts (priority, comment and enabled aside)."""
    return (left.pattern, left.failure_type, left.reason, left.status, left.command) == (
        right.pattern, right.failure_type, right.reason, right.status, right.command)


def import_rules(
    store: Store, document: str, *, source: str = "<rules>", replace: bool = False,
    dry_run: bool = False,
) -> list[ImportLine]:
    """Import a TOML rule file (policy in the module docstring), all or nothing.

    Raises :class:`AdminError` for an invalid file, naming the rule and the key.
    """
    try:
        rules = parse_rules(document, source=source)
    except RuleError as error:
        raise AdminError(str(error)) from None
    lines: list[ImportLine] = []
    with store.atomic():
        existing = {row.rule.id: row for row in list_rules(store)}
        for rule in rules:
            if rule.id < FIRST_USER_RULE_ID:
                lines.append(ImportLine(rule.id, ImportAction.SKIPPED_DEFAULT, None))
                continue
            twin = next(
                (row for row in existing.values()
                 if row.origin == "user" and _same(row.rule, rule)), None)
            if twin is not None:
                lines.append(ImportLine(rule.id, ImportAction.UNCHANGED, twin.rule.id))
                continue
            holder = existing.get(rule.id)
            if holder is None:
                store.rules.add(rule)
                action, db_id, note = ImportAction.ADDED, rule.id, ""
            elif replace and holder.origin == "user":
                store.rules.replace(rule)
                action, db_id, note = ImportAction.REPLACED, rule.id, ""
            else:
                db_id = store.rules.next_user_id()
                store.rules.add(dataclasses.replace(rule, id=db_id))
                action = ImportAction.RENUMBERED
                note = f"id {rule.id} is a different rule here"
            lines.append(ImportLine(rule.id, action, db_id, note))
            existing = {row.rule.id: row for row in list_rules(store)}
        if dry_run:
            raise Rollback
    return lines
