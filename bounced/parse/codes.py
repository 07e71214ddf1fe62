"""SMTP reply codes (RFC 5321) and enhanced status codes (RFC 3463) found in text."""

from __future__ import annotations

import re

STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
"""An enhanced status code ``class.subject.detail`` not embedded in a longer dotted
number (an IP address or a version)."""

_REPLY_AT_START = re.compile(r"^\s*([245]\d\d)(?=[\s\-.,;:)\]]|$)")
_REPLY_NEAR_STATUS = re.compile(r"(?<![\d.#])([245]\d\d)[\s\-]+[245]\.\d{1,3}\.\d{1,3}(?![\d.]*\d)")
_REPLY_SAID = re.compile(
    r"(?:said|says|replied|response(?: was)?|returned|reply(?: was)?|error|code|status)"
    r"\s*(?:[:=]\s*)?\(?([245]\d\d)(?=[\s\-.,;:)\]]|$)",
    re.IGNORECASE,
)
_QMAIL_STATUS = re.compile(r"\(#([245])\.(\d{1,3})\.(\d{1,3})\)")

GENERIC_DETAIL = "0.0"


def find_status(text: str) -> str | None:
    """The first plausible enhanced status code in ``text`` (``"5.1.1"``)."""
    if not text:
        return None
    match = _QMAIL_STATUS.search(text) or STATUS.search(text)
    if match is None:
        return None
    return f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"


def find_reply_code(text: str) -> str | None:
    """The SMTP reply code of an error text: leading, next to an enhanced code, or after
    a "said:"-like word."""
    if not text:
        return None
    for pattern in (_REPLY_AT_START, _REPLY_NEAR_STATUS, _REPLY_SAID):
        match = pattern.search(text)
        if match is not None:
            return match.group(1)
    return None


def is_generic(status: str | None) -> bool:
    """``X.0.0`` says only "failed" or "delayed": a diagnostic's code says more."""
    return status is not None and status.endswith(".0.0")


def prefer_status(field: str | None, diagnostic_status: str | None) -> str | None:
    """Choose between a DSN ``Status`` field and the code inside the diagnostic text.

    The field wins, except when it is generic (``X.0.0``, as Exim always writes) and the
    diagnostic carries a specific code of a compatible class: then the specific one says
    what really happened (Sisimai does the same).
    """
    if field is None:
        return diagnostic_status
    if diagnostic_status is None or diagnostic_status == field:
        return field
    if is_generic(field) and not is_generic(diagnostic_status):
        if field[0] == diagnostic_status[0] or field[0] == "5":
            return diagnostic_status
    return field


def status_from_reply(reply_code: str | None) -> str | None:
    """The class-only status a bare reply code implies (``550`` -> ``5.0.0``)."""
    if reply_code and reply_code[0] in "245":
        return f"{reply_code[0]}.0.0"
    return None
