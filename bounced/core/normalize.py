"""Normalization of diagnostic texts (``docs/normalization.md``).

Two bounces for the same failure almost never carry the same text: the address, the
queue ID, the date and the refusing host change every time. Normalization removes what
varies so that identical failures share one row of the qualification table, while what
carries meaning (SMTP reply codes, RFC 3463 status codes, the words) stays::

    550 5.1.1 <jane.doe@example.org>: Recipient address rejected: User unknown
    -> 550 5.1.1 <*>: Recipient address rejected: User unknown

Email addresses become ``*``; everything else that varies becomes ``#xxx#``.
The substitutions run in a fixed order, most specific first, so that a URL is replaced
as a whole before its host name or its digits could be.

Anyone can send a bounce, so every step is linear in the length of the text: no pattern
may start, from each position of a long token, a scan to the token's end (the e-mail
address, host name and identifier steps used to, and a 40 KB ``'a.' * 20000 + ' @'``
took a minute). Those three steps find their matches exactly as before but skip the
rest of a token once a match is impossible in it. Only the first :data:`MAX_NORMALIZED`
characters of a text are normalized, and the result is never longer: real diagnostics
are under 2 KB, and this bounds what processing rules are matched against too
(``docs/normalization.md``).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

VARIABLE = "#xxx#"
ADDRESS = "*"
SMS_MESSAGE = "#MESSAGE#"

MAX_NORMALIZED = 16 * 1024
"""Characters of a diagnostic that are normalized, and the longest normalized text.

The rest of a longer text is dropped: it is kept whole in the report and the raw message,
but it is neither grouped on nor matched by rules. Real diagnostics are under 2 KB; the
bound caps the work of normalization and of every processing rule (operators' included)
on a hostile text. The result is cut again at this length (at a space when there is one)
because a few replacements are longer than what they replace."""

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?"
_TIME = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[ap]\.?m\.?)?"
_ZONE = r"(?:[+-]\d{4}|z|utc|gmt|[a-z]{3,4}t)(?:\s*\([a-z ]+\))?"
_END_OF_WORD = r"(?!(?!(?:st|nd|rd|th)\b)\w)"

@dataclass(frozen=True, slots=True)
class _Substitution:
    """One replacement step. ``needs`` is a substring without which the pattern cannot
    match: checking it first skips most regex scans (normalize runs once per bounce)."""

    pattern: re.Pattern[str]
    replacement: str | Callable[[re.Match[str]], str]
    needs: str | None = None
    #: A case-sensitive regex over the lowercased text that must match first (the
    #: IGNORECASE patterns are several times slower than a plain search).
    guard: re.Pattern[str] | None = None
    #: Replaces ``pattern.sub`` when a step needs a loop of its own (see
    #: :func:`_replace_addresses`).
    apply: Callable[[str], str] | None = None


def _step(
    pattern: str,
    replacement: str | Callable[[re.Match[str]], str] = VARIABLE,
    needs: str | None = None,
    guard: str | None = None,
    flags: re.RegexFlag = re.IGNORECASE,
    apply: Callable[[str], str] | None = None,
) -> _Substitution:
    return _Substitution(
        re.compile(pattern, flags), replacement, needs, re.compile(guard) if guard else None,
        apply,
    )


def _variable_unless_skipped(match: re.Match[str]) -> str:
    """Replacement of the host name and identifier steps: their patterns have a second
    branch that matches what must stay (the rest of a token in which no match can start
    any more), so that the scan jumps over it instead of retrying from each position."""
    return VARIABLE if match.lastgroup == "hit" else match.group(0)


# E-mail addresses: a quoted local part, or a run of local-part characters, then a domain.
# A run of local-part characters is tried once, from its first character: from any later
# character of the run the same run ends at the same place, so it fails or succeeds the
# same way (trying them all made a long run without "@" quadratic). The one exception is
# a run that starts right after a replaced address ("a@b.c!d@e.f"): the scan resumes
# there, so :func:`_replace_addresses` tries that position on its own.
_LOCAL_CHAR = r"[\w.!#$%&'*+/=?^`{|}~-]"
_DOMAIN = r"@[\w-]+(?:\.[\w-]+)*"
_ADDRESS_HERE = re.compile(rf"(?:\"[^\"\s]++\"|{_LOCAL_CHAR}++){_DOMAIN}")
_ADDRESS_NEXT = re.compile(rf"(?:\"[^\"\s]++\"|(?<!{_LOCAL_CHAR}){_LOCAL_CHAR}++){_DOMAIN}")


def _replace_addresses(text: str) -> str:
    """Every address of ``text`` replaced by ``*``: what ``re.sub`` of the plain pattern
    (quoted or unquoted local part, ``@``, domain) gives, in linear time."""
    pieces: list[str] = []
    position = 0
    match = _ADDRESS_NEXT.search(text)
    while match is not None:
        pieces.append(text[position : match.start()])
        pieces.append(ADDRESS)
        position = match.end()
        match = _ADDRESS_HERE.match(text, position) or _ADDRESS_NEXT.search(text, position)
    pieces.append(text[position:])
    return "".join(pieces)


# Host names: labels ending in a dot, then an alphabetic last label. When no host name
# starts at the first label of a chain of valid labels, none starts at a later one either
# (it would have been found from the first): the "skip" branch steps over the chain. A
# label is 1 to 63 of [a-zA-Z0-9_-], first and last alphanumeric, then a dot; taken
# possessively, as the dot must follow the run anyway (no backtracking inside it).
_LABEL = r"(?=[a-zA-Z0-9])[a-zA-Z0-9_-]{1,63}+(?<=[a-zA-Z0-9])\."
_HOST_NAME = (
    rf"\b(?:(?P<hit>(?:{_LABEL})+[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z]\b\.?)|(?P<skip>(?:{_LABEL})++))"
)
# Identifiers: a token of six characters or more holding a digit and an ASCII letter. If
# the token's first word fails, every later word of the same token fails too (fewer
# digits, letters and characters after it): the "skip" branch steps over the token.
_IDENTIFIER = (
    r"\b(?:(?P<hit>(?=[\w.-]*\d)(?=[\w.-]*[a-zA-Z])\w[\w.-]{4,}\w\b)"
    r"|(?P<skip>\w++(?:[.-]++\w++)++))"
)


_MONTHS = "jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec"
_UNITS = (
    r"seconds?|secs?|minutes?|mins?|hours?|hrs?|days?|weeks?|bytes?|octets?|[kmg]i?b"
    r"|[kmg]bytes|messages?|msgs?|recipients?|rcpts?|connections?|attempts?|times"
)
#: "554 Message rejected" is a reply code before a sentence, not a count of messages.
_REPLY_CODE_BEFORE_WORD = r"(?![245]\d\d\s+(?:messages?|msgs?|recipients?|rcpts?|connections?)\b)"


# Order matters: each pattern may only see what earlier ones left.
_SUBSTITUTIONS: tuple[_Substitution, ...] = (
    # URLs, whole (they hold host names, paths, query strings and numbers).
    _step(r"\b(?:https?|ftp)://[^\s<>\"')\]]+", needs="://"),
    # Email addresses, including quoted local parts and SMTPUTF8 ones.
    _step(_ADDRESS_NEXT.pattern, ADDRESS, needs="@", flags=re.NOFLAG, apply=_replace_addresses),
    # Dates: RFC 5322 ("Thu, 29 Apr 2009 00:00:00 -0000"), ISO 8601, ctime-like. Like every
    # step that starts at a word boundary, they end at one (or before an ordinal suffix,
    # "May 5th"): replaced in the middle of a word, they would make a boundary where the
    # next one could start on the next normalization only, one more each time
    # ("12:3012:3012:30...", see normalize()).
    _step(rf"\b(?:{_DAY},?\s+)?\d{{1,2}}\s+{_MONTH}\s+\d{{2,4}}(?:,?\s+{_TIME})?(?:\s+{_ZONE})?"
          rf"{_END_OF_WORD}", guard=_MONTHS),
    _step(rf"\b(?:{_DAY},?\s+)?{_MONTH}\s+\d{{1,2}},?(?:\s+{_TIME})?(?:\s+\d{{4}})?"
          rf"(?:\s+{_ZONE})?{_END_OF_WORD}", guard=_MONTHS),
    _step(r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?\b",
          needs="-"),
    _step(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", needs="/", flags=re.NOFLAG),
    _step(rf"\b{_TIME}(?:\s+{_ZONE})?{_END_OF_WORD}", needs=":"),
    # IP addresses: IPv6 (with optional "IPv6:" tag) and IPv4, with an optional port.
    _step(r"(?:[Ii][Pp][Vv]6:)?(?<![\w:])(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{0,4}:){2,7}"
          r"[0-9a-fA-F]{0,4}(?![\w:])", needs=":", flags=re.NOFLAG),
    _step(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", needs=".", flags=re.NOFLAG),
    # A port after a bracketed address or host: "[192.0.2.1]:25".
    _step(r"(?<=\]):\d{1,5}\b", ":" + VARIABLE, needs="]:", flags=re.NOFLAG),
    # Host names: dotted names ending in an alphabetic label (keeps "5.1.1").
    _step(_HOST_NAME, _variable_unless_skipped, needs=".", flags=re.NOFLAG),
    # Phone numbers: international form, spaced or dashed groups.
    _step(r"\+\d[\d\s().-]{6,}\d", needs="+", flags=re.NOFLAG),
    # Identifiers: tokens mixing letters and digits (queue IDs, message IDs, hashes).
    _step(_IDENTIFIER, _variable_unless_skipped, flags=re.NOFLAG),
    # Quantities: a number with its unit, or a usage ratio ("512/500"); what they
    # measure stays, how much does not.
    _step(rf"(?<![\d.])\b{_REPLY_CODE_BEFORE_WORD}\d+(?:[.,]\d+)?\s*(?:{_UNITS})\b",
          guard=rf"\d\s*(?:{_UNITS})\b"),
    _step(r"(?<![\d.])\d+/\d+(?![\d.])", needs="/", flags=re.NOFLAG),
    # Long numbers (ports, sizes, counters); 3-digit SMTP reply codes stay.
    _step(r"\b\d{4,}\b", flags=re.NOFLAG),
)
# A status code written "550-5.1.1" on a multi-line reply: the dash is layout, not content.
_MULTILINE_REPLY = re.compile(r"\b([245]\d\d)-(?=[245]\.\d{1,3}\.\d{1,3}\b)")
_REPEATED_VARIABLE = re.compile(rf"{re.escape(VARIABLE)}(?:[\s,:;./-]*{re.escape(VARIABLE)})+")
_WHITESPACE = re.compile(r"\s+")

_SMS_FIELD = re.compile(r"\b(id|sub|dlvrd|submit date|done date|stat|err|text):\s*", re.IGNORECASE)


def normalize(text: str) -> str:
    """Return ``text`` with its variable parts replaced and its whitespace collapsed.

    Pure and idempotent: ``normalize(normalize(t)) == normalize(t)``. Reads at most the
    first :data:`MAX_NORMALIZED` characters of ``text`` and returns at most as many.

    One pass of the substitutions nearly always settles a text. It does not when a
    replacement gives an earlier step a new place to start: ``#xxx#`` put right before a
    word makes a word boundary there (``12:3012:30`` -> ``#xxx#12:30``), ``#`` and ``*``
    are local-part characters before an ``@`` (``a@b@c`` -> ``*@c``). Only a text where a
    placeholder touches such a character goes through the substitutions again, until it
    no longer changes.
    """
    if not text:
        return ""
    result = _substitute(text[:MAX_NORMALIZED])
    for _ in range(_MAX_PASSES - 1):
        if not _UNSETTLED.search(result):
            break
        again = _substitute(result)
        if again == result:
            break
        result = again
    return _bounded(result)


_MAX_PASSES = 4
_V = re.escape(VARIABLE)
_UNSETTLED = re.compile(
    rf"{_V}(?:[\w@]|:[0-9a-fA-F]{{0,4}}:|(?<=\w{_V})|(?<=[0-9a-fA-F:]:{_V}))"
    rf"|{re.escape(ADDRESS)}@|\"@"
)
"""A placeholder next to what an earlier step may start or end a match with: a word
character (``\\b``), the colons of an IPv6 address, the ``@`` after a local part; or a
quoted local part, which a replacement may have rid of its spaces. Every branch starts
with a literal character, which the regex engine looks for first (this runs on every
normalized text)."""


def _substitute(text: str) -> str:
    """One pass: whitespace collapsed, then every substitution in order."""
    result = _WHITESPACE.sub(" ", text).strip()
    result = _MULTILINE_REPLY.sub(r"\1 ", result)
    # Substitutions only remove content, so a guard false on the original stays false.
    lowered = result.lower()
    for step in _SUBSTITUTIONS:
        if step.needs is not None and step.needs not in result:
            continue
        if step.guard is not None and not step.guard.search(lowered):
            continue
        if step.apply is not None:
            result = step.apply(result)
        else:
            result = step.pattern.sub(step.replacement, result)
    result = _REPEATED_VARIABLE.sub(VARIABLE, result)
    return _WHITESPACE.sub(" ", result).strip()


def _bounded(text: str) -> str:
    """``text`` cut to :data:`MAX_NORMALIZED` characters (a few replacements are longer
    than what they replace), after its last whole word: a prefix of a normalized text
    that ends before a space is normalized too, so normalizing it again changes nothing.
    A text with no space to cut at is one hostile word: it is cut where it must be and
    substituted again until that settles."""
    if len(text) <= MAX_NORMALIZED:
        return text
    space = text.rfind(" ", 0, MAX_NORMALIZED + 1)
    if space > 0:
        return text[:space]
    for _ in range(_MAX_PASSES):
        cut = text[:MAX_NORMALIZED]
        text = _substitute(cut)
        if text == cut:
            break
    return text[:MAX_NORMALIZED]


def parse_sms_status_report(report: str) -> dict[str, str]:
    """Split an SMPP 3.4 Appendix B delivery receipt into its fields.

    ``id:123 sub:001 dlvrd:001 submit date:2611221305 done date:2611221306 stat:DELIVRD
    err:000 text:Hello`` gives ``{"id": "123", ..., "stat": "DELIVRD", "err": "000"}``;
    ``text`` runs to the end of the report since it may contain anything.
    """
    fields: dict[str, str] = {}
    matches = list(_SMS_FIELD.finditer(report))
    for index, match in enumerate(matches):
        name = match.group(1).lower()
        end = len(report) if name == "text" else (
            matches[index + 1].start() if index + 1 < len(matches) else len(report)
        )
        fields[name] = report[match.end():end].strip()
        if name == "text":
            break
    return fields


def normalize_sms(report: str, smsc: str = "Generic", *, stat: str | None = None,
                  err: str | None = None) -> tuple[str, str]:
    """Normalize an SMS status report to ``SR <smsc> <stat> <err>|#MESSAGE#``.

    Returns ``(normalized, first_text)``: the first text keeps the receipt itself after
    the pipe, as the reference's "First text" column does. ``stat`` and ``err``, when
    given, are what the SMSC account's extraction found (bounced/core/sms.py); by
    default the Appendix B ``stat:`` and ``err:`` fields.
    """
    fields = parse_sms_status_report(report)
    stat = fields.get("stat", "") if stat is None else stat
    err = fields.get("err", "") if err is None else err
    head = f"SR {smsc} {stat} {err}".rstrip()
    return f"{head}|{SMS_MESSAGE}", f"{head}|{report.strip()}"
