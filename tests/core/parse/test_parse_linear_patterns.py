"""The parser's patterns and helpers made linear (issue #9) find exactly what the plain
ones found: the plain versions are kept here as the reference and compared on texts made
of the characters that decide where a match starts, ends or fails.

Each plain version retried, from every position of a long run, a scan to the run's end
(or gave a run of blanks back one at a time); the rewrites try a run once, keep
possessively what the next element cannot take, or skip what cannot match any more.
"""

from __future__ import annotations

import html as html_module
import re

from hypothesis import example, given
from hypothesis import strategies as st

from bounced.core.parse import arf, commands, dsn, message, vendors
from tests.fuzzing import FUZZ

_ADDR = r"[^\s<>()\[\]\"',;:@]+@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]"
PLAIN_ADDRESS = re.compile(_ADDR)
PLAIN_DSN_EMAIL = re.compile(r"[^\s<>()\[\]\"',;:@|]+@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]")
_QUOTED_ADDR = rf"(?:\"[^\"]*\"\s*)?[\"']?<?({_ADDR})>?[\"']?"
PLAIN_ADDRESS_LINE = re.compile(
    rf"^(?P<indent>[ \t]*)(?:>+\s*|[*\u2022-]\s+|(?P<code>[245]\d\d)[ -]+)?"
    rf"(?:(?:(?:final-|original-)?recipient(?:\s+address)?|address|rcpt to|mailbox)\s*:\s*"
    rf"(?:rfc822;\s*)?)?"
    rf"{_QUOTED_ADDR}\s*(?::|\.{{3}})?\s*(?P<rest>.*)$",
    re.IGNORECASE,
)
PLAIN_SENTENCE_RECIPIENT = re.compile(
    rf"(?:\b(?:to|for|recipient(?:s)?|address(?:es)?|RCPT TO:?|Original-Recipient:|user|"
    rf"Final-Recipient:(?:\s*rfc822;)?|mailbox)\s*[:;]?\s*)<({_ADDR})>"
    rf"|(?:\b(?:RCPT TO|Final-Recipient|Original-Recipient)\s*:\s*(?:rfc822;\s*)?)({_ADDR})"
    rf"|\b(?:message|mail|e-?mail|undeliverable|delivery|deliver(?:ed)?)\s+(?:sent\s+)?"
    rf"(?:to|for)\s*:?\s*<?({_ADDR})\b"
    rf"|^(?![ \t]*(?:from|to|cc|bcc|reply-to|sender|return-path|delivered-to|mail from|"
    rf"rcpt to|message-id|in-reply-to|references|resent-[a-z-]+|x-[a-z0-9-]+)\b)"
    rf"[^\n:<>@]{{3,80}}:\s*<?({_ADDR})>?\s*$",
    re.IGNORECASE | re.MULTILINE,
)
PLAIN_SECTION_COMMAND = re.compile(
    r"^[ \t]*[-=_*]*[ \t]*(?:smtp[ \t]+|failed[ \t]+|last[ \t]+)?command[ \t]*[-=_*:]*[ \t]*"
    r"(?:\n[ \t]*)?(rcpt to|rcpt|mail from|mail|data|helo|ehlo|starttls|auth)\b",
    re.IGNORECASE | re.MULTILINE,
)
PLAIN_HUMAN_SUBJECT = re.compile(r"\s*(?:re|fwd?|aw|wg|tr|sv|vs|rv|ynt)\s*(?:\[\d+\])?\s*:", re.I)
_TAG = re.compile(r"<[^>]*>")
_BREAK = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|p|div|tr|li|h\d)[^>]*>", re.IGNORECASE)
_SCRIPT = re.compile(r"<(script|style)[^>]*>.*?</\1>", re.IGNORECASE | re.DOTALL)
_CONTROL = dict.fromkeys([*range(0, 32), *range(127, 160)], " ")


def plain_html_to_text(html: str) -> str:
    text = _SCRIPT.sub(" ", html)
    text = _BREAK.sub("\n", text)
    return html_module.unescape(_TAG.sub(" ", text))


def plain_unfold(text: str) -> list[str | None]:
    lines: list[str | None] = []
    for raw in text.split("\n"):
        line = raw.rstrip()
        if not line:
            lines.append(None)
        elif line[0] in " \t" and lines and lines[-1] is not None:
            lines[-1] = f"{lines[-1]} {line.strip()}"
        else:
            lines.append(line.strip())
    return lines


def plain_collapse(text: str, limit: int) -> str:
    return " ".join(text.translate(_CONTROL).split())[:limit]


def made_of(*pieces: str, size: int = 16) -> st.SearchStrategy[str]:
    return st.lists(st.sampled_from(pieces), max_size=size).map("".join)


addresses = made_of("a", "1", "@", ".", "-", "|", " ", "<", ">", "_", "é", ":", "x@y.z", "!",
                    "/", ",", "@-", '"', "'", "550", "--", "- ", "\t", ">>>", "recipient:")
sentences = made_of("user", "to", "for", " ", "\n", "\t", ":", ";", "<", ">", "a@b.cc", "x",
                    "mail", "sent", "rfc822;", "Final-Recipient", "RCPT TO", "from", "@", "abc")
commands_text = made_of(" ", "\t", "-", "=", ":", "*", "\n", "command", "smtp", "failed",
                        "last", "rcpt to", "data", "x", "_", "RCPT", "mail from")
subjects = made_of("re", "Re", "fwd", " ", "\t", "[", "]", "1", ":", "x", "aw")
html = made_of("<", ">", "script", "style", "</script>", "</style>", "<script>", "<STYLE x>",
               "</Script>", "a", " ", "br", "<br>", "<p", "/", "&amp;", "\n", "<  div>")
folded = made_of("a", " ", "\t", "\n", "b:", " c", "\n ", "\r")


@FUZZ
@given(addresses)
@example("a@b.c_d@e.f")  # a match resumes right before local-part characters
@example("aaaa aaa|b@c.de")
@example("x" * 3000 + " @")
def test_address_searches_find_what_the_plain_patterns_found(text: str) -> None:
    def span(match: re.Match[str] | None) -> tuple[int, int] | None:
        return match.span() if match else None

    assert span(vendors.ADDRESS.search(text)) == span(PLAIN_ADDRESS.search(text))
    assert span(dsn._EMAIL.search(text)) == span(PLAIN_DSN_EMAIL.search(text))
    assert arf._addresses(text) == PLAIN_ADDRESS.findall(text)


@FUZZ
@given(addresses)
@example("550--@example.org")  # only the last dash after a code can start the address
@example("550 -@550' -a@|:")
@example("550-@recipient:")  # one dash alone: no reply code, the address is "550-@..."
@example("550 - - <a@example.org>: unknown")
@example("550" + "-" * 3000 + "x @")
def test_address_lines_are_read_as_the_plain_pattern_read_them(text: str) -> None:
    def read(match: re.Match[str] | None) -> tuple[object, ...] | None:
        return (match.groupdict(), match.group(3)) if match else None

    assert read(vendors._ADDRESS_LINE.match(text)) == read(PLAIN_ADDRESS_LINE.match(text))


@FUZZ
@given(sentences)
@example("user \n :\t <a@b.cc>")
@example("Final-Recipient:  rfc822; a@b.cc")
@example("mail   sent to: <a@b.cc>\nabc: a@b.cc \n\n")
def test_sentence_recipients_are_found_as_the_plain_pattern_found_them(text: str) -> None:
    def found(pattern: re.Pattern[str]) -> list[tuple[object, ...]]:
        return [(m.span(), m.groups()) for m in pattern.finditer(text)]

    assert found(vendors._SENTENCE_RECIPIENT) == found(PLAIN_SENTENCE_RECIPIENT)


@FUZZ
@given(commands_text, subjects)
@example(" \t-- \tsmtp  command:\n\t rcpt to", "Re [2] :")
@example("--  -- command", " re \t:")
def test_commands_and_reply_subjects_as_the_plain_patterns(text: str, subject: str) -> None:
    new, old = commands._SECTION_COMMAND.search(text), PLAIN_SECTION_COMMAND.search(text)
    assert (new and (new.span(), new.group(1))) == (old and (old.span(), old.group(1)))
    new, old = message._HUMAN_SUBJECT.match(subject), PLAIN_HUMAN_SUBJECT.match(subject)
    assert (new and new.span()) == (old and old.span())


@FUZZ
@given(html)
@example("<script<script>x</script>")  # the first ">" after a start is the close's
@example("<style><script>a</style>b</script>")
@example("<script>a<script>b</script>")
@example("<br <p>x")
def test_html_becomes_the_text_it_became(text: str) -> None:
    assert message.html_to_text(text) == plain_html_to_text(text)


@FUZZ
@given(folded, st.integers(min_value=0, max_value=12))
def test_unfolding_and_collapsing_give_what_they_gave(text: str, limit: int) -> None:
    assert list(dsn.unfold(text)) == plain_unfold(text)
    assert vendors.collapse(text, limit) == plain_collapse(text, limit)
