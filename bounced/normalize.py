"""Normalization of diagnostic texts (SPEC §5).

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

VARIABLE = "#xxx#"
ADDRESS = "*"
SMS_MESSAGE = "#MESSAGE#"

_MONTH = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?"
_DAY = r"(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*\.?"
_TIME = r"\d{1,2}:\d{2}(?::\d{2}(?:[.,]\d+)?)?(?:\s*[ap]\.?m\.?)?"
_ZONE = r"(?:[+-]\d{4}|z|utc|gmt|[a-z]{3,4}t)(?:\s*\([a-z ]+\))?"

# Order matters: each pattern may only see what earlier ones left.
_SUBSTITUTIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), replacement)
    for pattern, replacement in (
        # URLs, whole (they hold host names, paths, query strings and numbers).
        (r"\b(?:https?|ftp)://[^\s<>\"')\]]+", VARIABLE),
        # Email addresses, including quoted local parts and SMTPUTF8 ones.
        (r"(?:\"[^\"\s]+\"|[\w.!#$%&'*+/=?^`{|}~-]+)@[\w-]+(?:\.[\w-]+)*", ADDRESS),
        # Dates: RFC 5322 ("Thu, 29 Apr 2009 00:00:00 -0000"), ISO 8601, ctime-like.
        (rf"(?:{_DAY},?\s+)?\d{{1,2}}\s+{_MONTH}\s+\d{{2,4}}(?:,?\s+{_TIME})?(?:\s+{_ZONE})?",
         VARIABLE),
        (rf"(?:{_DAY},?\s+)?{_MONTH}\s+\d{{1,2}},?(?:\s+{_TIME})?(?:\s+\d{{4}})?(?:\s+{_ZONE})?",
         VARIABLE),
        (r"\b\d{4}-\d{2}-\d{2}(?:[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)?\b",
         VARIABLE),
        (r"\b\d{1,2}/\d{1,2}/\d{2,4}\b", VARIABLE),
        (rf"\b{_TIME}(?:\s+{_ZONE})?", VARIABLE),
        # IP addresses: IPv6 (with optional "IPv6:" tag) and IPv4, with an optional port.
        (r"(?:ipv6:)?(?<![\w:])(?=[0-9a-f:]*\d)(?:[0-9a-f]{0,4}:){2,7}[0-9a-f]{0,4}(?![\w:])",
         VARIABLE),
        (r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b", VARIABLE),
        # A port after a bracketed address or host: "[192.0.2.1]:25".
        (r"(?<=\]):\d{1,5}\b", ":" + VARIABLE),
        # Host names: dotted names ending in an alphabetic label (keeps "5.1.1").
        (r"\b(?:[a-z0-9](?:[a-z0-9_-]{0,61}[a-z0-9])?\.)+[a-z][a-z0-9-]*[a-z]\b\.?", VARIABLE),
        # Phone numbers: international form, spaced or dashed groups.
        (r"\+\d[\d\s().-]{6,}\d", VARIABLE),
        # Identifiers: tokens mixing letters and digits (queue IDs, message IDs, hashes).
        (r"\b(?=[\w.-]*\d)(?=[\w.-]*[a-z])\w[\w.-]{4,}\w\b", VARIABLE),
        # Long numbers (ports, sizes, counters); 3-digit SMTP reply codes stay.
        (r"\b\d{4,}\b", VARIABLE),
    )
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
    for pattern, replacement in _SUBSTITUTIONS:
        result = pattern.sub(replacement, result)
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


def normalize_sms(report: str, smsc: str = "Generic") -> tuple[str, str]:
    """Normalize an SMS status report to ``SR <smsc> <stat> <err>|#MESSAGE#``.

    Returns ``(normalized, first_text)``: the first text keeps the receipt itself after
    the pipe, as the reference's "First text" column does.
    """
    fields = parse_sms_status_report(report)
    head = f"SR {smsc} {fields.get('stat', '')} {fields.get('err', '')}".rstrip()
    return f"{head}|{SMS_MESSAGE}", f"{head}|{report.strip()}"
