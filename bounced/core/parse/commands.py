"""The SMTP command a failure answered (RCPT, DATA, ...), as bounce texts name it.

Status codes found in text are :mod:`bounced.core.statuscodes`' business."""

from __future__ import annotations

import re

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
    "rcpt to": "RCPT", "rcpt": "RCPT", "quit": "QUIT", "mail from": "MAIL", "mail": "MAIL",
    "data": "DATA",
    "end of data": "DATA", "final data": "DATA", "message body": "DATA", ".": "DATA",
    "initial connection": "CONN", "connect": "CONN", "helo": "HELO", "ehlo": "EHLO",
    "starttls": "STARTTLS", "auth": "AUTH",
}


_SECTION_COMMAND = re.compile(
    r"^[ \t]*+[-=_*]*+[ \t]*+(?:smtp[ \t]++|failed[ \t]++|last[ \t]++)?command[ \t]*+[-=_*:]*+"
    r"[ \t]*+(?:\n[ \t]*+)?(rcpt to|rcpt|mail from|mail|data|helo|ehlo|starttls|auth)\b",
    re.IGNORECASE | re.MULTILINE,
)
"""Possessive runs: the two runs of blanks around an optional run of rule characters
passed a long run of blanks back and forth (quadratic); each run is followed by what it
cannot hold, so giving back never helped a match."""


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


_TRANSCRIPT_LINE = re.compile(r"^[ \t]*(>>>|<<<)[ \t]*(.*)$", re.MULTILINE)
_SENT_COMMAND = re.compile(r"(RCPT|MAIL|DATA|HELO|EHLO|STARTTLS|AUTH|QUIT|\.)", re.I)
_FAILING_REPLY = re.compile(r"[45]\d\d\b")


def find_transcript_command(text: str, address: str | None = None) -> str | None:
    """In a session transcript (Sendmail's "----- Transcript of session follows -----":
    ``>>> RCPT To:<a>`` then ``<<< 550 ...``), the command a failing reply answered.

    The failure about ``address`` (named in the reply or in the command it answered)
    when there is one, else the first failure: a transcript may show sessions with
    several hosts, each refusing its own recipients.
    """
    if "<<<" not in text or ">>>" not in text:
        return None
    command: str | None = None
    sent = ""
    first: str | None = None
    wanted = (address or "").lower()
    for match in _TRANSCRIPT_LINE.finditer(text):
        arrow, rest = match.groups()
        if arrow == ">>>":
            said = _SENT_COMMAND.match(rest)
            command = _COMMANDS.get(said.group(1).lower()) if said else None
            sent = rest.lower()
            continue
        if command is None or not _FAILING_REPLY.match(rest):
            continue
        if wanted and (wanted in rest.lower() or wanted in sent):
            return command
        first = first or command
    return first


def sent_command(line: str) -> str | None:
    """The command of a transcript line showing what was sent (``>>> RCPT To:<a>``)."""
    match = _TRANSCRIPT_LINE.match(line)
    if match is None or match.group(1) != ">>>":
        return None
    said = _SENT_COMMAND.match(match.group(2))
    return _COMMANDS.get(said.group(1).lower()) if said else None
