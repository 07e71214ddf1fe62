"""Normalization of diagnostic texts (docs/normalization.md).

Two bounces for the same failure almost never carry the same text: the address, the
queue ID, the date and the refusing host change every time. Normalization removes what
varies so that identical failures share one row of the qualification table, while what
carries meaning (SMTP reply codes, RFC 3463 status codes, the words) stays::

    550 5.1.1 <jane.doe@example.org>: Recipient address rejected: User unknown
    -> 550 5.1.1 <*>: Recipient address rejected: User unknown

Email addresses become ``*``; everything else that varies becomes ``#xxx#``.
The substitutions run in a fixed order, most specific first, so that a URL is replaced
as a whole before its host name or its digits could be.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

VARIABLE = "#xxx#"
ADDRESS = "*"
SMS_MESSAGE = "#MESSAGE#"

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?"
_TIME = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[ap]\.?m\.?)?"
_ZONE = r"(?:[+-]\d{4}|z|utc|gmt|[a-z]{3,4}t)(?:\s*\([a-z ]+\))?"

@dataclass(frozen=True, slots=True)
class _Substitution:
    """One replacement step. ``needs`` is a substring without which the pattern cannot
    match: checking it first skips most regex scans (normalize runs once per bounce)."""

    pattern: re.Pattern[str]
    replacement: str
    needs: str | None = None
    #: A case-sensitive regex over the lowercased text that must match first (the
    #: IGNORECASE patterns are several times slower than a plain search).
    guard: re.Pattern[str] | None = None


def _step(
    pattern: str,
    replacement: str = VARIABLE,
    needs: str | None = None,
    guard: str | None = None,
    flags: re.RegexFlag = re.IGNORECASE,
) -> _Substitution:
    return _Substitution(
        re.compile(pattern, flags), replacement, needs, re.compile(guard) if guard else None
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
    _step(r"(?:\"[^\"\s]+\"|[\w.!#$%&'*+/=?^`{|}~-]+)@[\w-]+(?:\.[\w-]+)*", ADDRESS, needs="@",
          flags=re.NOFLAG),
    # Dates: RFC 5322 ("Thu, 29 Apr 2009 00:00:00 -0000"), ISO 8601, ctime-like.
    _step(rf"\b(?:{_DAY},?\s+)?\d{{1,2}}\s+{_MONTH}\s+\d{{2,4}}(?:,?\s+{_TIME})?(?:\s+{_ZONE})?",
          guard=_MONTHS),
    _step(rf"\b(?:{_DAY},?\s+)?{_MONTH}\s+\d{{1,2}},?(?:\s+{_TIME})?(?:\s+\d{{4}})?"
          rf"(?:\s+{_ZONE})?", guard=_MONTHS),
    _step(r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?\b",
          needs="-"),
    _step(r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", needs="/", flags=re.NOFLAG),
    _step(rf"\b{_TIME}(?:\s+{_ZONE})?", needs=":"),
    # IP addresses: IPv6 (with optional "IPv6:" tag) and IPv4, with an optional port.
    _step(r"(?:[Ii][Pp][Vv]6:)?(?<![\w:])(?=[0-9a-fA-F:]*\d)(?:[0-9a-fA-F]{0,4}:){2,7}"
          r"[0-9a-fA-F]{0,4}(?![\w:])", needs=":", flags=re.NOFLAG),
    _step(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", needs=".", flags=re.NOFLAG),
    # A port after a bracketed address or host: "[192.0.2.1]:25".
    _step(r"(?<=\]):\d{1,5}\b", ":" + VARIABLE, needs="]:", flags=re.NOFLAG),
    # Host names: dotted names ending in an alphabetic label (keeps "5.1.1").
    _step(r"\b(?:[a-zA-Z0-9](?:[a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z]\b\.?",
          needs=".", flags=re.NOFLAG),
    # Phone numbers: international form, spaced or dashed groups.
    _step(r"\+\d[\d\s().-]{6,}\d", needs="+", flags=re.NOFLAG),
    # Identifiers: tokens mixing letters and digits (queue IDs, message IDs, hashes).
    _step(r"\b(?=[\w.-]*\d)(?=[\w.-]*[a-zA-Z])\w[\w.-]{4,}\w\b", flags=re.NOFLAG),
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

    Pure and idempotent: ``normalize(normalize(t)) == normalize(t)``.
    """
    if not text:
        return ""
    result = _WHITESPACE.sub(" ", text).strip()
    result = _MULTILINE_REPLY.sub(r"\1 ", result)
    # Substitutions only remove content, so a guard false on the original stays false.
    lowered = result.lower()
    for step in _SUBSTITUTIONS:
        if step.needs is not None and step.needs not in result:
            continue
        if step.guard is not None and not step.guard.search(lowered):
            continue
        result = step.pattern.sub(step.replacement, result)
    result = _REPEATED_VARIABLE.sub(VARIABLE, result)
    return _WHITESPACE.sub(" ", result).strip()


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
