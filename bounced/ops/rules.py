"""The qualification queue and processing-rule management, over the database.

An operator steers qualification (SPEC §4) in two places, and this module is both:

- the **qualification table** (``qualification``, view ``to_qualify``): every distinct
  normalized text, waiting for a decision. :func:`queue` lists the waiting texts by
  occurrences, each with what decides it today and a *suggested* type and reason;
  :func:`qualify_text` records the operator's decision (``keep`` with a type and reason,
  or ``ignore``), which then wins over every rule (step 1 of the order);
- the **processing rules** (``rules``): :func:`add_rule`, :func:`set_rule_enabled`,
  :func:`explain_text` (which step and which rule would qualify a text, computed by the
  real :func:`bounced.core.qualify.qualify`, never by a copy of its logic), and the
  :func:`export_rules` / :func:`import_rules` pair that moves rules between instances in
  the TOML format of ``bounced/data/rules.toml``.

How a suggestion is made (:func:`suggest`), strongest evidence first, and the ``basis``
string says which one it was, because an operator must know how much to trust it:

1. a processing rule already matches the text: that rule's verdict (the text is in the
   queue only because every text is; confirming it freezes the decision);
2. an operator-qualified text (``keep``) is similar (token Dice coefficient >= 0.5): its
   type and reason, since the operator already decided a near-identical wording;
3. the status code (the one the pipeline used, else the first code in the text), read
   by :mod:`bounced.core.statuscodes`, the RFC 3463 table;
4. a rule whose wording is similar (>= 0.5), then anything similar at >= 0.25;
5. nothing: undefined.

"Similar" on its own (steps 2 and 4) also needs two shared words: a single common word
between two short texts is a coincidence. Texts decided by the message *kind* (spam
complaints, auto-replies) are flagged as such: qualify does not consult the table for
them, so qualifying them would change nothing.

A hard suggestion is turned soft when the text carries a transient (4.X.Z / 4XX) code:
a transient code never proves an address dead.

Import policy: rules in the shipped-defaults id range (below ``FIRST_USER_RULE_ID``)
are never written by an import (defaults belong to the bounced release and are reseeded
on every open), so importing another instance's defaults cannot overwrite anything; a
user rule equal to one already present (same pattern, conditions, type and reason) is
left alone; a
user rule whose id is taken by a *different* rule is added under a new id unless
``replace`` is asked for explicitly.
"""

from __future__ import annotations

import dataclasses
import json
import re
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from bounced.core import statuscodes
from bounced.core.normalize import normalize
from bounced.core.qualify import (
    RuleError,
    load_default_rules,
    match_rule,
    parse_rules,
    qualify,
)
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
from bounced.store import FIRST_USER_RULE_ID, Store

#: Similarity from which a neighbour is a suggestion on its own.
STRONG_SIMILARITY = 0.5
#: Similarity from which a neighbour is still worth showing when nothing better exists.
WEAK_SIMILARITY = 0.25
USER_IDS = range(FIRST_USER_RULE_ID, 2**63)

_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|')+")
_REGEX_ESCAPE = re.compile(r"\\[a-zA-Z]|\(\?[:!=<]+|\{\d*,?\d*\}")
_STOP = frozenset((
    "the", "an", "to", "of", "in", "for", "is", "and", "or", "this", "that", "on", "at",
    "by", "be", "your", "you", "please", "with", "from", "it", "as", "are", "was", "has",
    "have", "had", "will", "can", "may", "our", "we", "us", "its", "into",
))


class AdminError(ValueError):
    """An operator request that cannot be carried out; the message says why."""


# --------------------------------------------------------------------------- similarity


def tokens(text: str) -> frozenset[str]:
    """The words of a normalized text that carry meaning (placeholders and stop words
    dropped), the unit of similarity."""
    cleaned = text.lower().replace("#xxx#", " ")
    return frozenset(word.strip("'") for word in _WORD.findall(cleaned)) - _STOP


def pattern_alternatives(pattern: str) -> tuple[frozenset[str], ...]:
    """The word sets of a rule pattern's ``|`` alternatives (regex syntax removed).

    A rule is a list of wordings; comparing a text with each wording, not with the union
    of all of them, keeps a big rule from looking close to everything.
    """
    plain = _REGEX_ESCAPE.sub(" ", pattern)
    words = (tokens(part) for part in plain.split("|"))
    return tuple(part for part in words if part)


def similarity(left: frozenset[str], right: frozenset[str]) -> float:
    """Dice coefficient of two word sets: 1.0 same words, 0.0 nothing in common."""
    if not left or not right:
        return 0.0
    return 2 * len(left & right) / (len(left) + len(right))


# --------------------------------------------------------------------------- suggestions


@dataclass(frozen=True, slots=True)
class Neighbour:
    """An existing decision close to a text: a ``keep`` text or a rule."""

    source: str  # "text" or "rule"
    ref: int
    failure_type: FailureType
    reason: Reason
    similarity: float
    shared: int = 0

    @property
    def strong(self) -> bool:
        """Close enough to suggest on its own: similar, and on more than one word (one
        shared word between two one-word texts is a coincidence, not a resemblance)."""
        return self.similarity >= STRONG_SIMILARITY and self.shared >= 2

    def describe(self) -> str:
        name = f"text #{self.ref}" if self.source == "text" else f"rule {self.ref}"
        return f"like {name} (similarity {self.similarity:.2f})"


@dataclass(frozen=True, slots=True)
class Suggestion:
    """A suggested type and reason for a text, and how it was arrived at (``basis``)."""

    failure_type: FailureType
    reason: Reason
    basis: str


@dataclass(frozen=True, slots=True)
class Knowledge:
    """What suggestions are made from: the rules, and the operator-qualified texts with
    their word sets (computed once per queue listing)."""

    rules: tuple[Rule, ...]
    kept: tuple[tuple[int, frozenset[str], FailureType, Reason], ...]
    rule_words: tuple[tuple[Rule, tuple[frozenset[str], ...]], ...]

    @classmethod
    def of(cls, rules: Sequence[Rule], kept: Sequence[tuple[int, str, FailureType, Reason]]
           ) -> Knowledge:
        ordered = tuple(rules)
        return cls(
            ordered,
            tuple((ref, tokens(text), ftype, reason) for ref, text, ftype, reason in kept),
            tuple((rule, pattern_alternatives(rule.pattern)) for rule in ordered),
        )

    def neighbours(self, words: frozenset[str]) -> list[Neighbour]:
        found = [
            Neighbour("text", ref, ftype, reason, similarity(words, other),
                      len(words & other))
            for ref, other, ftype, reason in self.kept
        ]
        for rule, alternatives in self.rule_words:
            best = max(alternatives, key=lambda alt: similarity(words, alt), default=frozenset())
            found.append(Neighbour("rule", rule.id, rule.failure_type, rule.reason,
                                   similarity(words, best), len(words & best)))
        found = [each for each in found if each.similarity >= WEAK_SIMILARITY]
        found.sort(key=lambda each: (-each.similarity, each.source != "text", each.ref))
        return found


def codes_in(text: str, qualified_by: str | None = None) -> tuple[str | None, str | None]:
    """``(enhanced, reply)`` status codes of a text: the one the pipeline qualified it by
    (``status:5.1.1``) first, else the failure codes written in the text."""
    enhanced, reply = statuscodes.codes_in_text(text)
    if qualified_by and qualified_by.startswith("status:"):
        code = qualified_by.partition(":")[2].partition("+")[0]
        if statuscodes.parse_enhanced(code) is not None:
            enhanced = code
        elif code.isdigit():
            reply = code
    return enhanced, reply


def _transient(enhanced: str | None, reply: str | None) -> bool:
    code = enhanced or reply or ""
    return code.startswith("4")


def suggest(text: str, knowledge: Knowledge, qualified_by: str | None = None,
            current: tuple[FailureType, Reason] | None = None) -> Suggestion:
    """Suggest a type and reason for a normalized text (order: module docstring).

    ``qualified_by`` and ``current`` are what decided the text at its last occurrence.
    """
    enhanced, reply = codes_in(text, qualified_by)
    transient = _transient(enhanced, reply)
    if qualified_by == QualifiedBySource.KIND.value and current is not None:
        return Suggestion(current[0], current[1],
                          "decided by the message kind (complaint or auto-reply), "
                          "not by this text: qualifying it changes nothing")

    def soften(ftype: FailureType, reason: Reason, basis: str) -> Suggestion:
        if transient and ftype is FailureType.HARD:
            return Suggestion(FailureType.SOFT, reason,
                              f"{basis}; soft: transient code {enhanced or reply}")
        return Suggestion(ftype, reason, basis)

    rule = match_rule(text, knowledge.rules, status=enhanced)
    if rule is not None:
        return soften(rule.failure_type, rule.reason, f"matches rule {rule.id}")
    near = knowledge.neighbours(tokens(text))
    texts = [each for each in near if each.source == "text"]
    if texts and texts[0].strong:
        best = texts[0]
        return soften(best.failure_type, best.reason, best.describe())
    code = statuscodes.from_codes(enhanced, reply)
    if code is not None:
        basis = f"status code {code.code}"
        if near and near[0].strong and near[0].reason is code.reason:
            basis += f", agrees with {near[0].describe().removeprefix('like ')}"
        return Suggestion(code.failure_type, code.reason, basis)
    if near:
        best = near[0]
        weak = "" if best.strong else "weakly "
        return soften(best.failure_type, best.reason, weak + best.describe())
    return Suggestion(FailureType.UNDEFINED, Reason.NOT_DEFINED, "no code, nothing similar")


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


def _kept_texts(conn: sqlite3.Connection) -> list[tuple[int, str, FailureType, Reason]]:
    rows = conn.execute(
        "SELECT id, text, failure_type, reason_code FROM qualification "
        "WHERE status = 'keep' AND failure_type IS NOT NULL AND reason_code IS NOT NULL"
    ).fetchall()
    return [(int(r[0]), r[1], FailureType(r[2]), Reason(r[3])) for r in rows]


def knowledge_of(store: Store) -> Knowledge:
    return Knowledge.of(store.load_rules(), _kept_texts(store.conn))


def queue(store: Store, limit: int = 50) -> list[QueueItem]:
    """The ``to_qualify`` texts, most frequent first, each with its suggestion."""
    rows = store.conn.execute(
        "SELECT t.id, t.text, t.first_text, t.occurrences, t.last_seen, q.failure_type, "
        "q.reason_code, q.qualified_by FROM to_qualify t JOIN qualification q ON q.id = t.id "
        "ORDER BY t.occurrences DESC, t.last_seen DESC, t.id LIMIT ?",
        (limit,),
    ).fetchall()
    knowledge = knowledge_of(store)
    return [
        QueueItem(
            id=int(row[0]), text=row[1], first_text=row[2], occurrences=int(row[3]),
            last_seen=row[4], current_type=row[5], current_reason=row[6],
            qualified_by=row[7],
            suggestion=suggest(row[1], knowledge, row[7], _current(row[5], row[6])),
        )
        for row in rows
    ]


def _current(failure_type: str | None, reason: int | None
             ) -> tuple[FailureType, Reason] | None:
    if failure_type is None or reason is None:
        return None
    return FailureType(failure_type), Reason(reason)


@dataclass(frozen=True, slots=True)
class TextRow:
    id: int
    text: str
    status: QualificationStatus
    failure_type: str | None
    reason_code: int | None


def _text_row(conn: sqlite3.Connection, text_id: int) -> TextRow:
    row = conn.execute(
        "SELECT id, text, status, failure_type, reason_code FROM qualification WHERE id = ?",
        (text_id,),
    ).fetchone()
    if row is None:
        raise AdminError(f"no text #{text_id} in the qualification table")
    return TextRow(int(row[0]), row[1], QualificationStatus(row[2]), row[3], row[4])


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
    the type ``ignored`` (SPEC §4: never causes quarantine); the reason is kept unless
    one is given. Later bounces with this text are qualified by it (``table:<id>``);
    bounces already stored are not changed (``bounced reprocess`` does that).
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
    with store.transaction() as conn:
        before = _text_row(conn, text_id)
        new_reason = reason if reason is not None else (
            Reason(before.reason_code) if before.reason_code is not None else Reason.NOT_DEFINED
        )
        conn.execute(
            "UPDATE qualification SET status = ?, failure_type = ?, reason_code = ?, "
            "qualified_by = ? WHERE id = ?",
            (status.value, failure_type.value, int(new_reason),
             f"{QualifiedBySource.TABLE.value}:{text_id}", text_id),
        )
        after = _text_row(conn, text_id)
    return before, after


# --------------------------------------------------------------------------- rules


@dataclass(frozen=True, slots=True)
class RuleRow:
    """A ``rules`` row as an operator lists it."""

    rule: Rule
    origin: str

    @property
    def enabled(self) -> bool:
        return self.rule.enabled


def list_rules(store: Store, origin: str | None = None) -> list[RuleRow]:
    """All rules (enabled or not) in the order they are tried; ``origin`` filters."""
    sql = ("SELECT id, pattern, failure_type, reason_code, priority, comment, enabled, origin, "
           "status, command FROM rules")
    params: tuple[str, ...] = ()
    if origin is not None:
        sql += " WHERE origin = ?"
        params = (origin,)
    rows = store.conn.execute(sql + " ORDER BY priority, id", params).fetchall()
    return [
        RuleRow(
            Rule(int(r[0]), r[1], FailureType(r[2]), Reason(r[3]), int(r[4]), r[5] or "",
                 bool(r[6]), r[8] or None, r[9] or None),
            r[7],
        )
        for r in rows
    ]


def _toml_string(value: str) -> str:
    """A TOML string for ``value``: a literal ``'''...'''`` (regexes stay readable, no
    backslash doubling) when it can be one, a basic string otherwise."""
    if ("'''" not in value and not value.endswith("'") and "\n" not in value
            and "\r" not in value and value.isprintable()):
        return f"'''{value}'''"
    return json.dumps(value, ensure_ascii=False)


def rule_to_toml(rule: Rule) -> str:
    """One ``[[rule]]`` table in the format of ``bounced/data/rules.toml``."""
    lines = [
        "[[rule]]",
        f"id = {rule.id}",
        f"priority = {rule.priority}",
        f'type = "{rule.failure_type.value}"',
        f'reason = "{rule.reason.label}"',
        f"pattern = {_toml_string(rule.pattern)}",
    ]
    if rule.status is not None:
        lines.append(f"status = {_toml_string(rule.status)}")
    if rule.command is not None:
        lines.append(f"command = {_toml_string(rule.command)}")
    if not rule.enabled:
        lines.append("enabled = false")
    if rule.source:
        lines.append(f"source = {_toml_string(rule.source)}")
    if rule.comment:
        lines.append(f"comment = {_toml_string(rule.comment)}")
    return "\n".join(lines) + "\n"


def rules_to_toml(rules: Sequence[Rule], header: str = "") -> str:
    head = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    body = "\n".join(rule_to_toml(rule) for rule in rules)
    return head + ("\n" if head and body else "") + body


def _validated(rule: Rule) -> Rule:
    """The rule read back through the real rule-file validator (regex compiles, does
    not match the empty text, id in the user range, ...)."""
    return parse_rules(rule_to_toml(rule), source="rule", ids=USER_IDS)[0]


def _next_user_id(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT max(id) FROM rules WHERE id >= ?", (FIRST_USER_RULE_ID,)).fetchone()
    return max(int(row[0] or 0) + 1, FIRST_USER_RULE_ID)


def _insert(conn: sqlite3.Connection, rule: Rule) -> None:
    conn.execute(
        "INSERT INTO rules (id, pattern, failure_type, reason_code, priority, origin, "
        "enabled, comment, status, command) VALUES (?, ?, ?, ?, ?, 'user', ?, ?, ?, ?)",
        (rule.id, rule.pattern, rule.failure_type.value, int(rule.reason), rule.priority,
         int(rule.enabled), rule.comment, rule.status, rule.command),
    )


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
    with store.transaction() as conn:
        candidate = Rule(_next_user_id(conn), pattern, failure_type, reason, priority,
                         comment.strip(), True, status or None, command or None)
        try:
            rule = _validated(candidate)
        except RuleError as error:
            raise AdminError(str(error).removeprefix("rule: ")) from None
        _insert(conn, rule)
    return rule


def set_rule_enabled(store: Store, rule_id: int, enabled: bool) -> RuleRow:
    """Enable or disable a rule (a default one too: the choice survives upgrades)."""
    with store.transaction() as conn:
        changed = conn.execute(
            "UPDATE rules SET enabled = ? WHERE id = ?", (int(enabled), rule_id)
        ).rowcount
    if not changed:
        raise AdminError(f"no rule {rule_id}")
    return next(row for row in list_rules(store) if row.rule.id == rule_id)


# --------------------------------------------------------------------------- test a text


class Step(StrEnum):
    """The step of the qualification order (docs/qualification.md) that decided a text."""

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
class Explanation:
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


def explain_text(
    store: Store,
    text: str,
    *,
    status: str | None = None,
    reply_code: str | None = None,
    command: str | None = None,
) -> Explanation:
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
    entry = store.lookup_text(normalized) if normalized else None
    rules = store.load_rules()
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
    return Explanation(
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
    rows = store.conn.execute(
        "SELECT id, text, status, failure_type, reason_code FROM qualification "
        "WHERE status IN ('keep', 'ignore') AND failure_type IS NOT NULL "
        "AND reason_code IS NOT NULL ORDER BY id"
    ).fetchall()
    return [
        Rule(first_id + index, f"^{_escape(text)}$", FailureType(ftype), Reason(reason),
             TEXT_RULE_PRIORITY, f"qualified text #{ident} ({status})")
        for index, (ident, text, status, ftype, reason) in enumerate(rows)
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
        rules += text_rules(store, _next_user_id(store.conn))
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
    store.conn.execute("BEGIN IMMEDIATE")
    try:
        conn = store.conn
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
                _insert(conn, rule)
                action, db_id, note = ImportAction.ADDED, rule.id, ""
            elif replace and holder.origin == "user":
                conn.execute(
                    "UPDATE rules SET pattern = ?, failure_type = ?, reason_code = ?, "
                    "priority = ?, enabled = ?, comment = ?, status = ?, command = ? "
                    "WHERE id = ?",
                    (rule.pattern, rule.failure_type.value, int(rule.reason), rule.priority,
                     int(rule.enabled), rule.comment, rule.status, rule.command, rule.id),
                )
                action, db_id, note = ImportAction.REPLACED, rule.id, ""
            else:
                db_id = _next_user_id(conn)
                _insert(conn, dataclasses.replace(rule, id=db_id))
                action = ImportAction.RENUMBERED
                note = f"id {rule.id} is a different rule here"
            lines.append(ImportLine(rule.id, action, db_id, note))
            existing = {row.rule.id: row for row in list_rules(store)}
        store.conn.execute("ROLLBACK" if dry_run else "COMMIT")
    except BaseException:
        if store.conn.in_transaction:
            store.conn.execute("ROLLBACK")
        raise
    return lines
