"""The three normalization steps made linear (issue #9) replace exactly what their plain
patterns replaced: the plain patterns are kept here as the reference, and compared on
texts made of the characters that decide where a match starts, ends or fails.

They were quadratic because a failed match was retried from every position of a long
token; the rewrites skip what cannot match any more (``bounced/core/normalize.py``).
"""

from __future__ import annotations

import re

from hypothesis import given
from hypothesis import strategies as st

from bounced.core import normalize as module
from bounced.core.normalize import ADDRESS, VARIABLE
from tests.fuzzing import FUZZ

PLAIN_ADDRESS = re.compile(r"(?:\"[^\"\s]+\"|[\w.!#$%&'*+/=?^`{|}~-]+)@[\w-]+(?:\.[\w-]+)*")
PLAIN_HOST_NAME = re.compile(
    r"\b(?:[a-zA-Z0-9](?:[a-zA-Z0-9_-]{0,61}[a-zA-Z0-9])?\.)+[a-zA-Z][a-zA-Z0-9-]*[a-zA-Z]\b\.?"
)
PLAIN_IDENTIFIER = re.compile(r"\b(?=[\w.-]*\d)(?=[\w.-]*[a-zA-Z])\w[\w.-]{4,}\w\b")

PIECES = ("a", "Z", "1", "_", "-", ".", "@", "!", '"', " ", "é", "/", "+", "#", ":", "com",
          "x1", "a" * 61, "a" * 62, "a" * 63, "b" * 64, "9" * 62, "x@y.z", "a.b", "--", "..")
texts = st.lists(st.sampled_from(PIECES), max_size=24).map("".join)


@FUZZ
@given(texts)
def test_addresses_are_replaced_as_the_plain_pattern_did(text: str) -> None:
    assert module._replace_addresses(text) == PLAIN_ADDRESS.sub(ADDRESS, text)


@FUZZ
@given(texts)
def test_host_names_are_replaced_as_the_plain_pattern_did(text: str) -> None:
    linear = re.compile(module._HOST_NAME).sub(module._variable_unless_skipped, text)
    assert linear == PLAIN_HOST_NAME.sub(VARIABLE, text)


@FUZZ
@given(texts)
def test_identifiers_are_replaced_as_the_plain_pattern_did(text: str) -> None:
    linear = re.compile(module._IDENTIFIER).sub(module._variable_unless_skipped, text)
    assert linear == PLAIN_IDENTIFIER.sub(VARIABLE, text)


def test_the_cases_that_decide_it() -> None:
    """Runs without "@" or with it, a resumed scan, labels at the 63 limit, a token
    whose first word fails (then every later one does)."""
    for text in ("a@b.c!d@e.f", "a@b..c@d", "x" * 5000 + " @", '"q"@d@e', "_dmarc.example.com",
                 "a@b.c/d@e.f", '"a b"@c', 'x"y"@z',
                 "a" * 63 + ".com", "a" * 64 + ".com", "-a-a.b.cd", "a.b.c1", "ab.cd1.x",
                 "id=ab12.cd34-ef", "abcdef.1", "é1abcd"):
        assert module._replace_addresses(text) == PLAIN_ADDRESS.sub(ADDRESS, text)
        host = re.compile(module._HOST_NAME).sub(module._variable_unless_skipped, text)
        assert host == PLAIN_HOST_NAME.sub(VARIABLE, text)
        identifier = re.compile(module._IDENTIFIER).sub(module._variable_unless_skipped, text)
        assert identifier == PLAIN_IDENTIFIER.sub(VARIABLE, text)
