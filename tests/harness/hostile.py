"""Hostile bounces: texts that made a pattern scan quadratically, and the places in a
message where the parser reads them (issue #9).

Shared by ``tests/core/parse/test_parse_hostile.py`` (every shape at 1 MB must parse and
judge at once) and ``bench/adversarial.py`` (how the parse time grows with the size).
Each shape is a function of a size in characters; each place wraps the text in a whole
message that names one recipient, ``victim@example.org``, so the text is really read
(as its diagnostic, its notice, its subject...).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

VICTIM = "victim@example.org"


def dsn(diagnostic: str = "unknown user", *, recipient: str = f"rfc822; {VICTIM}",
        blocks: str | None = None,
        notice: str = "This is the mail system at host mx.example.net.") -> bytes:
    """A Postfix-like ``multipart/report`` whose one recipient block carries
    ``diagnostic`` as its ``Diagnostic-Code`` (or whose blocks are ``blocks``), after
    the human-readable ``notice``."""
    status = blocks if blocks is not None else (
        f"Final-Recipient: {recipient}\nAction: failed\nStatus: 5.1.1\n"
        f"Diagnostic-Code: smtp; 550 5.1.1 {diagnostic}\n"
    )
    return (
        "From: MAILER-DAEMON@mx.example.net\nTo: bounces@example.com\n"
        "Subject: Undelivered Mail Returned to Sender\nMIME-Version: 1.0\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\n\n'
        f"--b\nContent-Type: text/plain\n\n{notice}\n\n"
        "--b\nContent-Type: message/delivery-status\n\n"
        f"Reporting-MTA: dns; mx.example.net\n\n{status}\n--b--\n"
    ).encode()


def prose(text: str = "", *, subject: str = "Undelivered Mail Returned to Sender",
          content_type: str = "text/plain", sentence: bool = False,
          sender: str = "MAILER-DAEMON@mx.example.net") -> bytes:
    """A bounce in prose only (no DSN part). ``text`` follows the line naming the
    recipient, so it is read as that recipient's error text; with ``sentence`` the
    recipient is named in a sentence instead (Exchange-like), which the prose scanner
    reads only when no line starts with an address."""
    named = (
        f"Your message to <{VICTIM}> could not be delivered:\n" if sentence
        else f"<{VICTIM}>: host mx.example.org[192.0.2.1] said: 550 5.1.1 unknown user\n"
    )
    if content_type == "text/html":
        named = named.replace("<", "&lt;").replace(">", "&gt;")
    notice = f"This is the mail system at host mx.example.net.\n\n{named}{text}\n"
    if content_type == "text/html":
        notice = f"<html><body><p>{notice}</p></body></html>"
    return (
        f"From: {sender}\nTo: bounces@example.com\n"
        f"Subject: {subject}\nMIME-Version: 1.0\n"
        f"Content-Type: {content_type}; charset=utf-8\n\n{notice}"
    ).encode()


@dataclass(frozen=True)
class Case:
    """One hostile shape in one place of a message: how to build it at a size, what it
    made quadratic, and whether the parse still reports :data:`VICTIM`."""

    shape: str
    place: str
    build: Callable[[int], bytes]
    why: str
    names_victim: bool = True


def _text_cases(shape: str, text: Callable[[int], str], why: str) -> list[Case]:
    return [
        Case(shape, "dsn", lambda size: dsn(text(size)), why),
        Case(shape, "prose", lambda size: prose(text(size)), why),
    ]


CASES: tuple[Case, ...] = (
    # The three shapes of issue #9, read as a DSN diagnostic and as prose.
    *_text_cases("'a.' * N + ' @'", lambda n: "a." * (n // 2) + " @",
                 "normalize: host name and identifier steps, address searches"),
    *_text_cases("'a' * N + ' @'", lambda n: "a" * n + " @",
                 "normalize: address step; vendors, dsn and arf address searches"),
    *_text_cases("'1a.' * N + '1'", lambda n: "1a." * (n // 3) + "1",
                 "normalize: host name and identifier steps"),
    # Shapes found while fixing those.
    *_text_cases("'550' + '-' * N + 'x @'", lambda n: "550" + "-" * n + "x @",
                 "vendors._ADDRESS_LINE: dashes after a reply code"),
    Case("'command' + ' \\t' * N", "prose", lambda n: prose("command" + " \t" * (n // 2)),
         "commands._SECTION_COMMAND: two runs of blanks"),
    Case("'user' + ' ' * N + 'x'", "prose",
         lambda n: prose("unknown user" + " " * n + "x", sentence=True),
         "vendors._SENTENCE_RECIPIENT: blanks after a keyword given back"),
    Case("'<' * N", "html", lambda n: prose("<" * n, content_type="text/html"),
         "html_to_text: a tag never closed"),
    Case("'<script>' * N", "html", lambda n: prose("<script>" * (n // 8), content_type="text/html"),
         "html_to_text: a script never closed"),
    # Not a reply's subject (no colon), and the notice opens with Postfix's own sentence:
    # a bounce whoever sent it (docs/kinds.md), so the victim is read.
    Case("'Re' + ' ' * N + 'x'", "subject",
         lambda n: prose(subject="Re" + " " * n + "x", sender="jane@example.net"),
         "message._HUMAN_SUBJECT: blanks given back"),
    Case("'=?a?q? ' * N", "subject", lambda n: prose(subject="=?a?q? " * (n // 7)),
         "mime.decode_words: encoded words never closed"),
    Case("'x\\n ' * N", "dsn", lambda n: dsn("x\n " * (n // 3)),
         "dsn.unfold: a field folded over many lines"),
    Case("'rfc822; ' + 'a' * N", "final-recipient",
         lambda n: dsn(recipient="rfc822; " + "a" * n + " <" + VICTIM + ">"),
         "dsn.address_of: a recipient field without an address first"),
    Case("'mail to <uI@example.org> ' * N", "prose",
         lambda n: prose("".join(f"mail to <u{i}@example.org> " for i in range(n // 28)),
                         sentence=True),
         "vendors._sentence_recipients: many recipients on one line"),
    Case("recipient blocks", "dsn", lambda n: dsn(blocks="".join(
        f"Final-Recipient: rfc822; u{i}@example.org\nAction: failed\nStatus: 5.1.1\n\n"
        for i in range(n // 60))),
         "dsn: one report naming thousands of recipients", names_victim=False),
    Case("blocks without Diagnostic-Code", "dsn", lambda n: dsn(
        blocks="".join(f"Final-Recipient: rfc822; u{i}@example.org\nAction: failed\n\n"
                       for i in range(1000)),
        notice="Delivery failed, host said: 550 5.7.1 no. " * (n // 42)),
         "message._reports_of: 1,000 blocks that each take their text from the prose",
         names_victim=False),
)
"""Every hostile case, in the order the bench prints them."""


def size_of(label: str) -> int:
    """``"64K"`` -> 65536, ``"1M"`` -> 1048576, ``"1000"`` -> 1000."""
    units = {"K": 1024, "M": 1024 * 1024}
    label = label.strip().upper()
    if label[-1:] in units:
        return int(float(label[:-1]) * units[label[-1]])
    return int(label)
