"""Suggestions for the qualification queue: a likely type and reason for a new text.

How a suggestion is made (:func:`suggest`), strongest evidence first; the ``basis``
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
them, so qualifying them would change nothing. A hard suggestion is turned soft when
the text carries a transient (4.X.Z / 4XX) code: a transient code never proves an
address dead.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from bounced.core import statuscodes
from bounced.core.qualify import match_rule
from bounced.model import FailureType, QualifiedBySource, Reason, Rule

#: Similarity from which a neighbour is a suggestion on its own.
STRONG_SIMILARITY = 0.5
#: Similarity from which a neighbour is still worth showing when nothing better exists.
WEAK_SIMILARITY = 0.25

_WORD = re.compile(r"[^\W\d_](?:[^\W\d_]|')+")
_REGEX_ESCAPE = re.compile(r"\\[a-zA-Z]|\(\?[:!=<]+|\{\d*,?\d*\}")
_STOP = frozenset((
    "the", "an", "to", "of", "in", "for", "is", "and", "or", "this", "that", "on", "at",
    "by", "be", "your", "you", "please", "with", "from", "it", "as", "are", "was", "has",
    "have", "had", "will", "can", "may", "our", "we", "us", "its", "into",
))


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
