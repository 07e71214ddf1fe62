"""Fuzzing ``normalize``: any text gives a text, normalizing it again changes nothing,
and what is read and returned is bounded (``docs/normalization.md``).

Random unicode rarely holds an address, a date or a host name, so most examples are
built from the pieces normalization replaces, glued with what may sit around them.
Settings: ``tests/fuzzing.py``.
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bounced.core.normalize import MAX_NORMALIZED, normalize
from tests.fuzzing import FUZZ

PIECES = (
    "jane.doe@example.org", "<müller@exämple.de>", '"odd name"@example.org', "a@b@c", "@",
    "https://support.google.com/mail/?p=NoSuchUser", "http://", "Thu, 29 Apr 2009 00:00:00 -0000",
    "29 Apr 2009", "Apr 29, 2009 13:05", "2026-11-22T13:05:00Z", "22/11/2026", "12:30",
    "13:05 UTC", "(PST)", "IPv6:2001:db8::1", "fe80::1", "::", "192.0.2.10", "[192.0.2.1]:25",
    "]:", "mx1.example.com", "_dmarc.example.com", "a.", "1a.", "-a", "+33 6 12 34 56 78",
    "3F2A91C0B4", "41si8793925qgp.72", "5 days", "512/500", "554 messages", "123456", "550",
    "550-5.1.1", "5.1.1", "#xxx#", "*", "#MESSAGE#", ":", ".", "-", "_", "/", "+", '"', "'",
    "(", ")", "[", "]", "<", ">", " ", "  ", "\n", "\t", "\r\n", "é", "x", "1", "Z",
    "user unknown", "Recipient address rejected",
)
pieces = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)
texts = st.one_of(
    st.text(), pieces, st.lists(st.text(max_size=8) | pieces, max_size=6).map("".join)
)


@FUZZ
@given(texts)
def test_normalize_gives_a_bounded_text_that_it_leaves_as_it_is(text: str) -> None:
    once = normalize(text)
    assert isinstance(once, str)
    assert len(once) <= MAX_NORMALIZED
    assert normalize(once) == once


@FUZZ
@given(pieces, st.integers(min_value=1, max_value=4000))
def test_long_texts_are_bounded_and_idempotent_too(unit: str, count: int) -> None:
    """Texts around the bound, where the input is cut and the result may be."""
    text = (unit + " ") * count
    once = normalize(text)
    assert len(once) <= MAX_NORMALIZED
    assert normalize(once) == once


@FUZZ
@given(texts.filter(bool), texts)
def test_only_the_first_characters_are_read(unit: str, tail: str) -> None:
    text = (unit * (MAX_NORMALIZED // len(unit) + 1))[:MAX_NORMALIZED]
    assert normalize(text + tail) == normalize(text)
