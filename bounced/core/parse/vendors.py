"""Human-readable bounces (qmail, Exim, Sendmail without DSN, Gmail, Yahoo, Exchange,
Notes, Courier, ...): recipients and error text from the prose.

Rather than one parser per vendor, this reads what nearly all of them share: a list of
failed addresses, each followed by its error text. The layouts recognised are:

- an address alone on its line, possibly in ``<>`` or quotes, followed by ``:``, after
  a ``>>>`` / bullet / reply-code prefix or a ``Recipient address:`` label (qmail,
  Exim, Yahoo, Gmail, Courier, Sun Messaging Server), the error text being the lines
  under it, the more indented ones when the address itself is indented (Exim), and
  the paragraph after a label line such as ``because:`` (Notes), or the first titled
  section after it (m-FILTER's ``-------server message``);
- an address followed on the same line by its error (``<a>: host ... said: 550 ...``,
  Sendmail's ``554 <a>... User unknown`` transcript lines, ``a Invalid Address``); in a
  Sendmail transcript, the remote reply (``<<< 501 ...``) or local mailer complaint
  written just above such a summary line is its cause and joins its text;
- an address inside a sentence that names it as the recipient (``delivering your mail
  to <a>``, ``after RCPT TO:<a>``, ``Your message to a couldn't be delivered``), or
  ending a line after the reason (``Unknown user: a``, ``Mailbox is full: <a>``).

The returned original message (after a "copy of the message" separator or where a
header block starts) is cut off first so its addresses never count as recipients.
Which of these a mail uses is never decided by its sender or vendor name: the same
reading applies to every prose bounce, so an unseen vendor with a familiar layout works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_ADDR = r"[^\s<>()\[\]\"',;:@]+@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]"
ADDRESS = re.compile(
    r"(?<![^\s<>()\[\]\"',;:@])[^\s<>()\[\]\"',;:@]++@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]"
)
"""An address, for :meth:`re.Pattern.search`: :data:`_ADDR`, its local part tried only
from the start of a run of local-part characters. From any later character the run
ends at the same place, so the first match is the same; trying them all made a long
line without "@" quadratic."""
_QUOTED_ADDR = rf"(?:\"[^\"]*\"\s*)?[\"']?<?({_ADDR})>?[\"']?"

_ADDRESS_LINE = re.compile(
    # After a reply code, the spaces and dashes are not given back one by one to be
    # retried as the start of the address (quadratic on "550-----..."): only the last
    # dash can start it, and only when "@" follows (an address "-@host").
    rf"^(?P<indent>[ \t]*)(?:>+\s*|[*\u2022-]\s+|(?P<code>[245]\d\d)(?:[ -]+(?=-@)|[ -]++))?"
    rf"(?:(?:(?:final-|original-)?recipient(?:\s+address)?|address|rcpt to|mailbox)\s*:\s*"
    rf"(?:rfc822;\s*)?)?"
    rf"{_QUOTED_ADDR}\s*(?::|\.{{3}})?\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
_SENTENCE_RECIPIENT = re.compile(
    rf"(?:\b(?:to|for|recipient(?:s)?|address(?:es)?|RCPT TO:?|Original-Recipient:|user|"
    rf"Final-Recipient:(?:\s*+rfc822;)?|mailbox)\s*+[:;]?\s*+)<({_ADDR})>"
    rf"|(?:\b(?:RCPT TO|Final-Recipient|Original-Recipient)\s*+:\s*+(?:rfc822;\s*+)?)({_ADDR})"
    rf"|\b(?:message|mail|e-?mail|undeliverable|delivery|deliver(?:ed)?)\s++(?:sent\s++)?"
    rf"(?:to|for)\s*+:?\s*+<?({_ADDR})\b"
    rf"|^(?![ \t]*+(?:from|to|cc|bcc|reply-to|sender|return-path|delivered-to|mail from|"
    rf"rcpt to|message-id|in-reply-to|references|resent-[a-z-]+|x-[a-z0-9-]+)\b)"
    rf"[^\n:<>@]{{3,80}}:\s*+<?({_ADDR})>?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
"""Blanks are possessive (``\\s*+``): what follows them is no blank, and "user" then a
long run of blanks gave them back and forth between two ``\\s*`` (quadratic)."""
_HEADER_NAMES = (
    r"Return-Path|Received|Message-I[dD]|Date|From|To|Subject|Reply-To|MIME-Version|"
    r"Content-Type|Content-Transfer-Encoding|X-[A-Za-z0-9-]+|DKIM-Signature|Delivered-To|Cc|"
    r"Sender|References|In-Reply-To|User-Agent|Authentication-Results|ARC-[A-Za-z-]+"
)
_HEADER_LINE = re.compile(rf"^(?:{_HEADER_NAMES})\s*:", re.IGNORECASE)
_SEPARATOR = re.compile(
    # a rule titled "server message" / "error message" heads the error text, not the copy
    r"^\s*(?:[-=_*]{3,}+(?!\s*(?:server|error|smtp|remote|diagnostic)\s+message\b\W*$)"
    r".*?(?:original|copy|returned|message|headers?|below|attached|"
    r"undelivered|unsent)"
    r"|(?:original message|the original message|message headers follow|"
    r"below this line is a copy|a copy of the original message|"
    r"enclosed is a copy|this is a copy of the message|original message headers?|"
    r"headers of the original message|the header of the original message|"
    r"the first \d+ lines of the original message)(?![^\n]*\breceived\b)[^\n]{0,40}$)",
    re.IGNORECASE,
)
_SEPARATOR_STARTS = frozenset("-=_*OoTtMmBbAaEeHh")
_ORIGINAL_HEADER = re.compile(
    r"^(?:Return-Path|Received|Message-I[dD]|MIME-Version|Content-Type|DKIM-Signature|"
    r"X-[A-Za-z0-9-]+)\s*:",
    re.IGNORECASE,
)
_RULE_LINE = re.compile(r"^[-=_*]{3,}")
_TRANSCRIPT_LINE = re.compile(r"^(?:[245]\d\d[ -]|>>>|<<<|while talking to)", re.IGNORECASE)
_TRANSCRIPT_START = re.compile(r"^(?:>>>|\.*\s*while talking to)", re.IGNORECASE)
"""A line after which the transcript shows the replies to a new command or session."""
_CODE = re.compile(r"(?<![\d.])(?:[245]\.\d{1,3}\.\d{1,3}|[45]\d\d)(?![\d.]*\d)")
_BOILERPLATE_ADDRESS = re.compile(r"^(?:mailer-daemon|mailer_daemon)@", re.I)


@dataclass(frozen=True, slots=True)
class TextRecipient:
    """An address the prose names as failed, with the error text written about it."""

    address: str
    diagnostic: str


def human_text(text: str) -> str:
    """The notification prose without the returned message that often follows it."""
    lines = text.split("\n")
    for index, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped or (line[0] in " \t" and stripped[0] not in _SEPARATOR_STARTS):
            continue  # an indented line may be a separator, never a header
        if index and _SEPARATOR.match(line) and not ADDRESS.search(line.split(":", 1)[-1]):
            return "\n".join(lines[:index])
        if ":" in line and _starts_header_run(lines, index):
            return "\n".join(lines[:index])
    return text


def header_start(text: str) -> int | None:
    """Offset of the first run of header lines (a quoted original message) in text."""
    lines = text.split("\n")
    offset = 0
    for index, line in enumerate(lines):
        if _starts_header_run(lines, index):
            return offset
        offset += len(line) + 1
    return None


def _starts_header_run(lines: list[str], index: int) -> bool:
    """Whether a quoted header block starts at ``lines[index]``: header lines in a row
    (continuation lines allowed), at least one of them a header only a real message has
    (``Received``, ``Message-ID``, ``MIME-Version``...). Plain ``To:``/``Subject:``/
    ``Date:`` lines alone are the summary many vendors write inside the prose."""
    if not _HEADER_LINE.match(lines[index]):
        return False
    count = 0
    strong = False
    for line in lines[index : index + 12]:
        if _HEADER_LINE.match(line):
            count += 1
            strong = strong or bool(_ORIGINAL_HEADER.match(line))
        elif not (line[:1] in (" ", "\t") and line.strip()):
            break
        if count >= 2 and strong:
            return True
    return False


def scan_recipients(text: str) -> list[TextRecipient]:
    """The failed recipients the prose lists, each with its error text.

    Address lines win over addresses in sentences: when some line starts with an
    address, only such lines count, so an address quoted inside an error text is not
    mistaken for another recipient.
    """
    lines = text.split("\n")
    found = _address_blocks(lines)
    if found:
        return found
    return _sentence_recipients(text)


@dataclass(slots=True)
class _Block:
    address: str
    indent: int
    line: int
    parts: list[str]
    same_line: bool = False


def _address_blocks(lines: list[str]) -> list[TextRecipient]:
    """Address lines and the error text under each.

    A block ends at a blank line once it has text, unless that text is only a label
    ("because:", "For the following reason:") whose content follows the blank line;
    at a dashed section rule; at a line less indented than its address; and, for an
    address with its error on the same line, at the next line of an SMTP transcript
    (Sendmail lists one ``554 <a>... reason`` line per recipient).

    Such a line keeps its reply code when its text has none (``550 No such user``). In
    a transcript, that summary is Sendmail's own wording ("Remote protocol error",
    "Service unavailable"); the cause is what the transcript showed just above it, the
    remote reply (``<<< 553 ...``) or the local mailer's complaint (``procmail: Quota
    exceeded``), so those lines are appended to it. A recipient with the same summary
    right after it (a refused MAIL FROM fails every recipient of the session) shares them.
    """
    blocks: list[_Block] = []
    current: _Block | None = None
    transcript = False
    replies: list[str] = []  # transcript lines since the last command or recipient line
    repeated: tuple[str, list[str]] = ("", [])  # the last summary line and its replies
    for number, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            if current is not None and current.parts and not current.parts[-1].endswith(":"):
                current = None
            replies, repeated = [], ("", [])
            continue
        if _RULE_LINE.match(stripped):
            current = None
            transcript = transcript or "transcript" in stripped.lower()
            replies, repeated = [], ("", [])
            continue
        indent = len(line) - len(line.lstrip())
        match = _ADDRESS_LINE.match(line) if "@" in line else None
        if match is not None and _starts_block(current, indent):
            rest = match.group("rest").strip()
            code = match.group("code")
            if rest and code and not has_code(rest):
                summary = f"{code} {rest}"  # "550 <a>... No such user"
                if not replies and summary == repeated[0]:
                    replies = repeated[1]  # the next recipient refused in the same way
                # Sendmail: "<<< 501 ..." then "554 <a>... Remote protocol error"
                rest = f"{summary}: {' '.join(replies)}" if replies else summary
                repeated = (summary, replies)
            replies = []
            current = _Block(match.group(3), indent, number, [rest] if rest else [], bool(rest))
            blocks.append(current)
            continue
        if _TRANSCRIPT_START.match(stripped):
            transcript = True
            replies, repeated = [], ("", [])
        elif transcript and not stripped.endswith(":"):
            replies = [*replies[-2:], stripped.removeprefix("<<<").strip()]
        if current is not None and (
            indent > current.indent
            or (indent == current.indent
                and not (current.same_line and _TRANSCRIPT_LINE.match(stripped)))
        ):
            current.parts.append(stripped)
        else:
            current = None
    merged: dict[str, tuple[TextRecipient, int]] = {}
    for block in blocks:
        if _BOILERPLATE_ADDRESS.match(block.address):
            continue
        own = collapse(" ".join(block.parts))
        diagnostic = own if own and not own.endswith(":") else _following(own, lines, block)
        rank = 2 if has_code(diagnostic) else 1 if own else 0
        key = block.address.lower()
        known = merged.get(key)
        if known is None or rank > known[1]:
            address = known[0].address if known else unescape_octal(block.address)
            merged[key] = (TextRecipient(address, diagnostic), rank)
    return [item for item, _ in merged.values()]


def _following(label: str, lines: list[str], block: _Block) -> str:
    """When a block says nothing but a label, the prose after its address line, up to
    the next address line or the next section rule once some text is taken (m-FILTER's
    "-------server message" section then its "-------SMTP command" one)."""
    taken: list[str] = []
    for line in lines[block.line + 1 : block.line + 1 + FOLLOWING_LINES]:
        stripped = line.strip()
        if _RULE_LINE.match(stripped):
            if any(taken):
                break
            continue
        if _ADDRESS_LINE.match(line) and len(line) - len(line.lstrip()) <= block.indent:
            break
        taken.append(stripped)
    return collapse(" ".join([label, *taken]))


FOLLOWING_LINES = 25


def has_code(text: str) -> bool:
    """Whether an error text carries an SMTP reply or enhanced status code: of two
    blocks about one address (a summary and the details), the one with codes wins."""
    return bool(_CODE.search(text))


def _starts_block(current: _Block | None, indent: int) -> bool:
    """An address line starts a recipient unless it is the more indented continuation
    of the recipient above (Exim repeats the address inside its error text)."""
    return current is None or indent <= current.indent or not current.parts


def _sentence_recipients(text: str) -> list[TextRecipient]:
    """Addresses a sentence names as recipients; the error text is that line and the
    prose after it (section rules skipped), since vendors state the reason around it.

    Each line's text is made once and the start of the line is found from the previous
    match on: thousands of recipients on one long line must not each copy or scan it."""
    seen: dict[str, TextRecipient] = {}
    texts: dict[int, str] = {}
    line_start = scanned = 0
    for match in _SENTENCE_RECIPIENT.finditer(text):
        address = next(group for group in match.groups() if group)
        if _BOILERPLATE_ADDRESS.match(address) or address.lower() in seen:
            continue
        line_start = text.rfind("\n", scanned, match.start()) + 1 or line_start
        scanned = match.start()
        if line_start not in texts:
            texts[line_start] = _lines_from(text, line_start)
        seen[address.lower()] = TextRecipient(unescape_octal(address), texts[line_start])
    return list(seen.values())


def _lines_from(text: str, line_start: int) -> str:
    """The line starting at ``line_start`` and the ones after it, section rules left out
    (:data:`FOLLOWING_LINES` of them: only those are split off the text)."""
    end = line_start
    for _ in range(FOLLOWING_LINES + 1):
        end = text.find("\n", end) + 1
        if end == 0:
            end = len(text)
            break
    lines = text[line_start:end].split("\n")[: FOLLOWING_LINES + 1]
    return collapse(" ".join(line for line in lines if not _RULE_LINE.match(line.strip())))


_CONTROL = dict.fromkeys([*range(0, 32), *range(127, 160)], " ")


_OCTAL = re.compile(r"(?:\\[0-3][0-7]{2})+")


def unescape_octal(address: str) -> str:
    """Exim writes non-ASCII bytes of addresses as octal escapes (``m\\303\\274ller``):
    turn runs of them back into UTF-8 text when they decode as such."""
    if "\\" not in address:
        return address

    def decode(match: re.Match[str]) -> str:
        octets = bytes(int(code, 8) for code in match.group(0).split("\\")[1:])
        try:
            return octets.decode("utf-8")
        except UnicodeDecodeError:
            return match.group(0)

    return _OCTAL.sub(decode, address)


def collapse(text: str, limit: int = 2000) -> str:
    """Whitespace collapsed, control characters dropped, length bounded: diagnostics
    are stored, shown and grouped on.

    Only a head of ``text`` is read, grown until it gives ``limit`` characters: the
    collapsed head is a prefix of the collapsed whole, so the result is the same, and
    a notice of megabytes costs what its first kilobytes do."""
    size = 2 * limit + 256
    while True:
        head = " ".join(text[:size].translate(_CONTROL).split())
        if len(head) >= limit or size >= len(text):
            return head[:limit]
        size *= 4
