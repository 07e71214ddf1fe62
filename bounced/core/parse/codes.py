"""SMTP reply codes (RFC 5321) and enhanced status codes (RFC 3463) found in text."""

from __future__ import annotations

import re

STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
"""An enhanced status code ``class.subject.detail`` not embedded in a longer dotted
number (an IP address or a version)."""

_REPLY_AT_START = re.compile(r"^\s*([245]\d\d)(?=[\s\-.,;:)\]]|$)")
_REPLY_NEAR_STATUS = re.compile(r"(?<![\d.])([245]\d\d)[\s\-]+[245]\.\d{1,3}\.\d{1,3}(?![\d.]*\d)")
_REPLY_SAID = re.compile(
    r"(?:said|says|replied|response(?: was)?|returned|reply(?: was)?|error|code|status|reason)"
    r"\s*(?:[:=]\s*)?\(?([245]\d\d)(?=[\s\-.,;:)\]]|$)",
    re.IGNORECASE,
)
_REPLY_AFTER_PUNCTUATION = re.compile(
    r"(?:^|(?<=[:;'\"(\[<>#]))\s*([45][0-5]\d)(?=[ ,-]+(?:[245]\.\d|[A-Za-z<'\"(\[]))"
)
_REPLY_PATTERNS = (_REPLY_AT_START, _REPLY_NEAR_STATUS, _REPLY_SAID, _REPLY_AFTER_PUNCTUATION)
_QMAIL_STATUS = re.compile(r"\(#([245])\.(\d{1,3})\.(\d{1,3})\)")


def find_status(text: str) -> str | None:
    """The first plausible enhanced status code in ``text`` (``"5.1.1"``).

    A transcript shows the successful replies before the failing one (``250 2.1.5
    Ok`` ... ``451 4.3.0 Error``): a 4.x.x or 5.x.x code wins over earlier 2.x.x ones.
    """
    if not text:
        return None
    match = _QMAIL_STATUS.search(text)
    if match is None:
        matches = list(STATUS.finditer(text)) if "2." in text else [STATUS.search(text)]
        failing = [m for m in matches if m is not None and m.group(1) != "2"]
        match = failing[0] if failing else (matches[0] if matches else None)
    if match is None:
        return None
    return f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"


def find_reply_code(text: str) -> str | None:
    """The SMTP reply code of an error text, by the places MTAs put it, most telling
    first: leading the text, before an enhanced code, after a "said:"-like word, or
    right after punctuation (``Deferred: 421 ...``, ``<<< 550 ...``).

    As for status codes, a failing (4xx/5xx) reply wins over a transcript's earlier
    ``250`` ones; a lone ``2xx`` is returned only when nothing failed.
    """
    if not text:
        return None
    success = None
    for pattern in _REPLY_PATTERNS:
        for match in pattern.finditer(text):
            code = match.group(1)
            if code[0] != "2":
                return code
            success = success or code
    return success


def prefer_status(field: str | None, diagnostic_status: str | None) -> str | None:
    """Choose between a DSN ``Status`` field and the code inside the diagnostic text.

    The diagnostic's code wins: it is what the server that refused the mail said,
    while the field is the reporting MTA's summary of it, often generic (Exim always
    writes ``5.0.0``) or about the retry outcome rather than the cause (Sendmail's
    ``4.4.7`` for an expired message whose last error was ``4.7.1``). Only a generic
    ``X.0.0`` in the text does not override a specific field. Sisimai, whose labels the
    corpus uses, chooses the same way.
    """
    if diagnostic_status is None:
        return field
    if field is not None and is_generic(diagnostic_status) and not is_generic(field):
        return field
    return diagnostic_status


def is_generic(status: str) -> bool:
    """``X.0.0`` says no more than "failed" or "delayed"."""
    return status.endswith(".0.0")


def status_from_reply(reply_code: str | None) -> str | None:
    """The class-only status a bare reply code implies (``550`` -> ``5.0.0``).

    RFC 3463 ``X.0.0`` means "other or undefined" in the class the reply code gives,
    so this claims no more than the reply code itself says; used when a text has a
    reply code but no enhanced status code at all.
    """
    if reply_code and reply_code[0] in "245":
        return f"{reply_code[0]}.0.0"
    return None


_COMMAND_WORDS = re.compile(
    r"(?:after|in reply to|in response to|did not like our|while sending|during|"
    r"sending|after sending|after end of|error following)\s+(?:the\s+)?"
    r"(?P<said>rcpt to|rcpt|mail from|mail|data|end of data|final data|message body|"
    r"initial connection|connect|helo|ehlo|starttls|auth)\b"
    # how qmail-remote, Yahoo and Postfix name the failed step in words:
    r"|(?P<RCPT>does not like recipient|most progress was rcpt|\[rcpt_to\])"
    r"|(?P<MAIL>sender was rejected|\[mail_from\])"
    r"|(?P<DATA>failed after i sent the message|\[data\])"
    r"|(?P<EHLO>my name was rejected)"
    r"|(?P<CONN>refused to talk to me)"
    r"|(?P<HELO>performing the (?:helo|ehlo) handshake)"
)
"""Searched in the lowercased text (an IGNORECASE alternation is several times slower)."""
_COMMAND_HINTS = (
    "after", "reply to", "response to", "did not like", "sending", "during", "following",
    "does not like", "most progress", "_to]", "_from]", "[data]", "rejected", "handshake",
    "talk to me",
)
"""Literal words one of which every :data:`_COMMAND_WORDS` match contains: a cheap test
that spares the regex most texts (it costs ~20 us on a long one)."""
_TRANSCRIPT_COMMAND = re.compile(r">>>\s*(RCPT|MAIL|DATA|HELO|EHLO|STARTTLS|AUTH|\.)", re.I)
_TRANSCRIPT_FAILURE = re.compile(r"<<<\s*[45]\d\d")
_COMMANDS = {
    "rcpt to": "RCPT", "rcpt": "RCPT", "mail from": "MAIL", "mail": "MAIL", "data": "DATA",
    "end of data": "DATA", "final data": "DATA", "message body": "DATA", ".": "DATA",
    "initial connection": "CONN", "connect": "CONN", "helo": "HELO", "ehlo": "EHLO",
    "starttls": "STARTTLS", "auth": "AUTH",
}


_SECTION_COMMAND = re.compile(
    r"^[ \t]*[-=_*]*[ \t]*(?:smtp[ \t]+|failed[ \t]+|last[ \t]+)?command[ \t]*[-=_*:]*[ \t]*"
    r"(?:\n[ \t]*)?(rcpt to|rcpt|mail from|mail|data|helo|ehlo|starttls|auth)\b",
    re.IGNORECASE | re.MULTILINE,
)


def find_section_command(text: str) -> str | None:
    """The SMTP command a notice names under a label of its own, on the label's line or
    the next one: m-FILTER's "-------SMTP command" section, "SMTP command: RCPT TO",
    "Failed command: DATA". Read from the multi-line prose (a label only counts at the
    start of a line), for a notice about one recipient."""
    if "ommand" not in text:
        return None
    match = _SECTION_COMMAND.search(text)
    return _COMMANDS.get(match.group(1).lower()) if match else None


def find_command(text: str) -> str | None:
    """The SMTP command an error answered (``RCPT``, ``DATA``, ``CONN``...), when the text
    says so: in words ("in reply to RCPT TO command", "after end of data") or as a
    transcript, where it is the last ``>>>`` command before the first failing ``<<<``."""
    if not text:
        return None
    lowered = text.lower()
    if any(hint in lowered for hint in _COMMAND_HINTS):
        match = _COMMAND_WORDS.search(lowered)
        if match is not None:
            said = match.group("said")
            return _COMMANDS.get(said) if said else match.lastgroup
    if "<<<" not in text:
        return None
    failure = _TRANSCRIPT_FAILURE.search(text)
    if failure is None:
        return None
    sent = [m.group(1).lower() for m in _TRANSCRIPT_COMMAND.finditer(text, 0, failure.start())]
    return _COMMANDS.get(sent[-1]) if sent else None
