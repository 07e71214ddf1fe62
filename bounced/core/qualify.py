"""Qualify stage: a recipient's failure -> type, reason and what decided them
(docs/qualification.md).

The order, first match wins, and what each verdict records in ``qualified_by``:

0. the message's **kind** decides alone when it is no failure report: ``delivered`` and
   ``not_bounce`` get no verdict, a ``feedback`` (ARF spam complaint) is hard/Denylisted,
   an ``autoreply`` is ignored/Not defined (``kind``);
1. the **qualification-table entry** of the normalized text: ``keep`` uses the operator's
   type and reason, ``ignore`` makes it ignored, ``to_qualify`` falls through
   (``table:<entry id>``);
2. the **processing rules**: regular expressions over the normalized text, by priority
   then id (``rule:<rule id>``): an operator's own (ids from 10000) and the few shipped
   ones (``bounced/data/rules.toml``: other channels' error names, a sending service's
   suppression, a mail system's own statement about its directory);
3. the **shipped knowledge**: the evidence procedure of :mod:`bounced.core.evidence`
   weighs the receiving provider's own codes and sentences, the status code, the SMTP
   stage and the wording of each failure class in a fixed order, then class fallbacks.
   It names its evidence chain (``provider:google:userunknown``,
   ``status:5.1.1+stage:RCPT``, ``phrase:userunknown+stage:DATA``, ``class:5.7``), and
   says *hard* only on strong evidence that the address is gone;
4. otherwise undefined/Not defined (``none``), and the text waits for an operator.

Steps 1 and 2 are the operators' steering, so they come before anything shipped in
step 3: an operator's ``keep``/``ignore`` and own rules always win.

A ``delay`` (DSN ``Action: delayed``) goes through the same steps for its reason, but its
type is always ``ignored``: the MTA is still retrying, nothing is known yet. A failure
whose code is transient (the MTA gave up after its retries) keeps the cause its code or
words name ("4.2.2 mailbox full" is a full mailbox, which has its own release policy);
with no cause named it is an expiry, soft/Unreachable (docs/qualification.md).

Everything is pure: same inputs, same verdict. Rule sets are compiled once; a rule's
regex only runs when one of the literal strings every match of it must contain occurs
in the text (see :func:`required_literals`); and the result of the rule search is
cached per (text, status code, SMTP command), since bounce texts repeat a lot.
"""

from __future__ import annotations

import functools
import importlib
import re
import tomllib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import Any

from bounced.core import evidence, statuscodes
from bounced.core.normalize import MAX_NORMALIZED
from bounced.model import (
    DEFAULT_PRIORITY,
    Action,
    FailureType,
    Kind,
    Qualification,
    QualificationStatus,
    QualifiedBy,
    QualifiedBySource,
    Reason,
    RecipientReport,
    Rule,
    TableEntry,
)

FIRST_USER_RULE_ID = 10_000
"""Operators' rules are numbered from here, so they never collide with a default."""

DEFAULT_IDS = range(1, FIRST_USER_RULE_ID)
"""Rule ids reserved for the shipped defaults."""

USER_IDS = range(FIRST_USER_RULE_ID, 2**63)
"""Rule ids of operators' rules."""


_RULE_KEYS = frozenset(
    {"id", "pattern", "type", "reason", "priority", "comment", "enabled", "status", "command",
     "source"}
)
_REQUIRED_KEYS = ("id", "pattern", "type", "reason")
_TEXT_CACHE_SIZE = 8192
_CACHED_TEXT_MAX = 2048
"""Longer texts are not cached: real normalized diagnostics are shorter, and 8,192
attacker-chosen texts of 16 KB would hold 128 MB."""

MAX_MATCHED = MAX_NORMALIZED
"""Rules are matched against at most this many characters of a text, whoever calls: a
normalized text is never longer, and an operator's pattern that backtracks badly costs
at most what it costs on 16 KB (``docs/qualification.md``)."""


class RuleError(ValueError):
    """A processing rule file that cannot be used, naming the rule and the key at fault."""


# --------------------------------------------------------------------------- loading


def _fail(source: str, rule_id: object, key: str, message: str) -> RuleError:
    return RuleError(f"{source}: rule {rule_id}: key {key!r}: {message}")


def _rule_from_table(raw: Mapping[str, Any], source: str, index: int) -> Rule:
    rule_id = raw.get("id", f"#{index + 1} (no id)")
    for key in _REQUIRED_KEYS:
        if key not in raw:
            raise _fail(source, rule_id, key, "missing")
    unknown = sorted(set(raw) - _RULE_KEYS)
    if unknown:
        raise _fail(source, rule_id, unknown[0], f"unknown key (allowed: {sorted(_RULE_KEYS)})")
    if not isinstance(rule_id, int) or isinstance(rule_id, bool) or rule_id < 1:
        raise _fail(source, rule_id, "id", "must be a positive integer")
    pattern = raw["pattern"]
    if not isinstance(pattern, str) or not pattern.strip():
        raise _fail(source, rule_id, "pattern", "must be a non-empty string")
    try:
        compiled = re.compile(pattern, re.IGNORECASE)
    except re.error as error:
        raise _fail(source, rule_id, "pattern", f"invalid regular expression: {error}") from None
    if compiled.search(""):
        raise _fail(source, rule_id, "pattern", "matches the empty text, so every text")
    try:
        failure_type = FailureType(str(raw["type"]).strip().lower())
    except ValueError:
        allowed = [t.value for t in FailureType]
        raise _fail(source, rule_id, "type", f"unknown type {raw['type']!r} ({allowed})") from None
    reason_value = raw["reason"]
    try:
        reason = Reason.from_name(str(reason_value))
    except ValueError:
        raise _fail(source, rule_id, "reason", f"unknown reason {reason_value!r}") from None
    priority = raw.get("priority", DEFAULT_PRIORITY)
    if not isinstance(priority, int) or isinstance(priority, bool):
        raise _fail(source, rule_id, "priority", "must be an integer")
    comment = raw.get("comment", "")
    if not isinstance(comment, str):
        raise _fail(source, rule_id, "comment", "must be a string")
    enabled = raw.get("enabled", True)
    if not isinstance(enabled, bool):
        raise _fail(source, rule_id, "enabled", "must be true or false")
    origin = raw.get("source", "")
    if not isinstance(origin, str):
        raise _fail(source, rule_id, "source", "must be a string")
    conditions: dict[str, str | None] = {}
    for key in ("status", "command"):
        value = raw.get(key)
        if value is not None:
            if not isinstance(value, str) or not value.strip():
                raise _fail(source, rule_id, key, "must be a non-empty string")
            try:
                re.compile(value, re.IGNORECASE)
            except re.error as error:
                raise _fail(source, rule_id, key, f"invalid regular expression: {error}") from None
        conditions[key] = value
    return Rule(
        rule_id, pattern, failure_type, reason, priority, comment.strip(), enabled,
        conditions["status"], conditions["command"], origin.strip(),
    )


def parse_rules(
    document: str, *, source: str = "<rules>", ids: range | None = None
) -> tuple[Rule, ...]:
    """Read and validate a TOML rule document (``[[rule]]`` tables), in priority order.

    Every problem raises :class:`RuleError` naming the rule id and the key, because an
    operator fixing a rule file must find the line at once. ``ids`` restricts the id
    range (defaults and user rules have separate ranges). A shipped rule (id below
    10000) must say in ``source`` where its wording comes from.
    """
    try:
        data = tomllib.loads(document)
    except tomllib.TOMLDecodeError as error:
        raise RuleError(f"{source}: not valid TOML: {error}") from None
    extra = sorted(set(data) - {"rule"})
    if extra:
        raise RuleError(f"{source}: unknown top-level key {extra[0]!r} (expected [[rule]])")
    tables = data.get("rule", [])
    if not isinstance(tables, list):
        raise RuleError(f"{source}: 'rule' must be an array of tables ([[rule]])")
    rules: list[Rule] = []
    seen: set[int] = set()
    for index, raw in enumerate(tables):
        if not isinstance(raw, dict):
            raise RuleError(f"{source}: rule #{index + 1}: not a table ([[rule]])")
        rule = _rule_from_table(raw, source, index)
        if rule.id in seen:
            raise _fail(source, rule.id, "id", "duplicate id")
        if ids is not None and rule.id not in ids:
            raise _fail(source, rule.id, "id", f"must be in {ids.start}..{ids.stop - 1}")
        if rule.id < FIRST_USER_RULE_ID and not rule.source:
            raise _fail(source, rule.id, "source",
                        "missing: a shipped rule (id below 10000) says where its wording "
                        "comes from")
        seen.add(rule.id)
        rules.append(rule)
    return order_rules(rules)


def order_rules(rules: Iterable[Rule]) -> tuple[Rule, ...]:
    """Rules in the order they are tried: priority (lower first), then id."""
    return tuple(sorted(rules, key=lambda rule: (rule.priority, rule.id)))


@functools.cache
def load_default_rules() -> tuple[Rule, ...]:
    """The shipped default rules (``bounced/data/rules.toml``), read and validated once;
    always the same tuple, so its compiled form is reused too."""
    document = resources.files("bounced").joinpath("data/rules.toml").read_text("utf-8")
    return parse_rules(document, source="bounced/data/rules.toml", ids=DEFAULT_IDS)


# -------------------------------------------------------------------------- matching


# A rule's pattern is only searched when one of its *required literals* occurs in the
# lowercased text: a cheap substring test rules out most of the ~40 regexes, each of
# which would otherwise scan the text with dozens of alternatives. The literals come
# from Python's own regex parser and are conservative: a rule gets none (always
# searched) whenever its pattern is not a plain composition of literals, groups,
# alternatives and repeats.
try:
    _SRE_PARSER: Any = importlib.import_module("re._parser")
except ImportError:  # pragma: no cover - other Python implementations
    _SRE_PARSER = None

_MIN_LITERAL = 3


def required_literals(pattern: str) -> frozenset[str] | None:
    """Lowercase ASCII strings one of which occurs in every match of ``pattern``, or
    ``None`` when no such set can be proved."""
    if _SRE_PARSER is None:
        return None
    try:
        parsed = _SRE_PARSER.parse(pattern, re.IGNORECASE)
    except Exception:  # an invalid pattern is reported by the loader, not here
        return None
    return _sequence_literals(list(parsed))


def _sequence_literals(items: list[tuple[Any, Any]]) -> frozenset[str] | None:
    """All items of a sequence must match, so the best required set of any one is
    required: take the one whose shortest string is longest (the most selective)."""
    candidates: list[frozenset[str]] = []
    run: list[str] = []
    for op, arg in items:
        if str(op) == "LITERAL":
            run.append(chr(arg))
            continue
        if run:
            candidates.append(frozenset({"".join(run).lower()}))
            run = []
        found = _item_literals(str(op), arg)
        if found is not None:
            candidates.append(found)
    if run:
        candidates.append(frozenset({"".join(run).lower()}))
    usable = [
        each for each in candidates
        if each and min(map(len, each)) >= _MIN_LITERAL and all(s.isascii() for s in each)
    ]
    if not usable:
        return None
    return max(usable, key=lambda each: (min(map(len, each)), -len(each)))


def _item_literals(op: str, arg: Any) -> frozenset[str] | None:
    if op == "SUBPATTERN":
        return _sequence_literals(list(arg[-1]))
    if op == "ATOMIC_GROUP":
        return _sequence_literals(list(arg))
    if op == "BRANCH":
        union: set[str] = set()
        for branch in arg[1]:
            found = _sequence_literals(list(branch))
            if found is None:
                return None
            union |= found
        return frozenset(union)
    if op in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT") and arg[0] >= 1:
        return _sequence_literals(list(arg[2]))
    return None


def _condition(pattern: str | None) -> re.Pattern[str] | None:
    return None if pattern is None else re.compile(pattern, re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class _CompiledRule:
    rule: Rule
    pattern: re.Pattern[str]
    status: re.Pattern[str] | None
    command: re.Pattern[str] | None
    literals: frozenset[str] | None

    def matches(self, text: str, lowered: str | None, status: str | None,
                command: str | None) -> bool:
        """``lowered`` is the lowercased text when it is ASCII (so that lowercasing is
        exactly what case-insensitive matching does), else ``None``: no prefilter."""
        if lowered is not None and self.literals is not None:
            for literal in self.literals:
                if literal in lowered:
                    break
            else:
                return False
        if self.status is not None and not self.status.fullmatch(status or ""):
            return False
        if self.command is not None and not self.command.fullmatch(command or ""):
            return False
        return self.pattern.search(text) is not None


@dataclass(slots=True)
class _Matcher:
    """A rule set compiled once, with the rule search cached per (text, status, command).

    The cache only memoizes a pure function of its key, so it never changes a verdict.
    """

    source: Sequence[Rule]
    rules: tuple[_CompiledRule, ...]
    cache: dict[tuple[str, str | None, str | None], Rule | None] = field(default_factory=dict)

    def first(self, text: str, status: str | None, command: str | None) -> Rule | None:
        key = (text, status, command)
        try:
            return self.cache[key]
        except KeyError:
            pass
        lowered = text.lower() if text.isascii() else None
        found = next(
            (each.rule for each in self.rules if each.matches(text, lowered, status, command)),
            None,
        )
        if len(text) > _CACHED_TEXT_MAX:
            return found
        if len(self.cache) >= _TEXT_CACHE_SIZE:
            self.cache.clear()
        self.cache[key] = found
        return found


_MATCHERS: dict[int, _Matcher] = {}


def _matcher(rules: Sequence[Rule]) -> _Matcher:
    """The compiled form of ``rules``, kept for tuples (immutable, so safe to reuse)."""
    cached = _MATCHERS.get(id(rules))
    if cached is not None and cached.source is rules:
        return cached
    compiled = tuple(
        _CompiledRule(
            rule,
            re.compile(rule.pattern, re.IGNORECASE),
            _condition(rule.status),
            _condition(rule.command),
            required_literals(rule.pattern),
        )
        for rule in order_rules(rule for rule in rules if rule.enabled)
    )
    matcher = _Matcher(rules, compiled)
    if isinstance(rules, tuple):
        if len(_MATCHERS) >= 16:
            _MATCHERS.clear()
        _MATCHERS[id(rules)] = matcher
    return matcher


def match_rule(
    text: str, rules: Sequence[Rule], *, status: str | None = None, command: str | None = None
) -> Rule | None:
    """The first enabled rule (by priority, then id) whose pattern is found in ``text``
    and whose ``status``/``command`` conditions, if any, hold. Only the first
    :data:`MAX_MATCHED` characters of ``text`` are searched."""
    if not text or not rules:
        return None
    return _matcher(rules).first(text[:MAX_MATCHED], status, command)


# ------------------------------------------------------------------------ qualifying


def facts_of(recipient: RecipientReport, text: str) -> evidence.Facts:
    """The facts of one recipient's report that the evidence procedure weighs.

    The wording is read from the diagnostic as the MTA wrote it (normalization would
    hide the host names and identifiers some providers' wordings contain), or from the
    normalized text when the report has no diagnostic. A report with no code at all
    takes the codes written in its text.
    """
    status, reply_code = recipient.status, recipient.reply_code
    if status is None and reply_code is None:
        status, reply_code = statuscodes.codes_in_text(text)
    return evidence.Facts(
        text=evidence.haystack(recipient.diagnostic or text),
        status=status,
        reply=reply_code,
        stage=recipient.smtp_command.upper() if recipient.smtp_command else None,
        provider=evidence.provider_of(
            recipient.remote_mta, recipient.address, reporting_mta=recipient.reporting_mta
        ),
        delayed=recipient.kind is Kind.DELAY or recipient.action is Action.DELAYED,
    )


def _qualify_failure(
    recipient: RecipientReport, text: str, entry: TableEntry | None, rules: Sequence[Rule]
) -> Qualification:
    """Steps 1 to 4 of the order for a failure or a delay (before the delay's override)."""
    if entry is not None:
        by_table = QualifiedBy(QualifiedBySource.TABLE, str(entry.id))
        if entry.status is QualificationStatus.KEEP:
            return Qualification(entry.failure_type, entry.reason, by_table)
        if entry.status is QualificationStatus.IGNORE:
            return Qualification(FailureType.IGNORED, entry.reason, by_table)
    rule = match_rule(
        text, rules, status=recipient.status, command=recipient.smtp_command
    )
    if rule is not None:
        return Qualification(rule.failure_type, rule.reason, rule.qualified_by)
    found = evidence.weigh(facts_of(recipient, text))
    if found is not None:
        return Qualification(found.failure_type, found.reason, found.qualified_by)
    return Qualification(FailureType.UNDEFINED, Reason.NOT_DEFINED)


_FEEDBACK = Qualification(
    FailureType.HARD, Reason.DENYLISTED, QualifiedBy(QualifiedBySource.KIND)
)
_AUTOREPLY = Qualification(
    FailureType.IGNORED, Reason.NOT_DEFINED, QualifiedBy(QualifiedBySource.KIND)
)


def qualify(
    recipient: RecipientReport,
    text: str,
    *,
    entry: TableEntry | None = None,
    rules: Sequence[Rule] = (),
) -> Qualification | None:
    """Judge one recipient's failure (see the module docstring for the order).

    ``text`` is the normalized diagnostic (:func:`bounced.core.normalize.normalize`), ``entry``
    its qualification-table row if the caller has one, ``rules`` the processing rules
    (pass a tuple, e.g. :func:`load_default_rules`, to benefit from the compiled cache).
    Returns ``None`` for kinds that are no failure (delivered, not_bounce).
    """
    kind = recipient.kind
    if kind in (Kind.DELIVERED, Kind.NOT_BOUNCE):
        return None
    if kind is Kind.FEEDBACK:
        return _FEEDBACK
    if kind is Kind.AUTOREPLY:
        return _AUTOREPLY
    verdict = _qualify_failure(recipient, text, entry, rules)
    if kind is Kind.DELAY and verdict.failure_type is not FailureType.IGNORED:
        verdict = replace(verdict, failure_type=FailureType.IGNORED)
    return verdict
