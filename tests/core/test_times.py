"""Times as operators type them and as bounced stores them (``bounced.core.times``)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bounced.core.times import parse_when

NOW = datetime(2026, 11, 22, 13, 5, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected"), [
    ("2026-11-22T13:05:00Z", NOW),
    ("2026-11-22", datetime(2026, 11, 22, tzinfo=UTC)),
    ("2026-11-22T14:05:00+01:00", NOW),
    ("7d", NOW - timedelta(days=7)),
    ("24h", NOW - timedelta(hours=24)),
    ("90m", NOW - timedelta(minutes=90)),
    ("2w", NOW - timedelta(weeks=2)),
])
def test_times_on_the_command_line_are_iso_or_relative_to_the_clock_given(
        text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


def test_a_time_that_is_neither_names_the_accepted_forms() -> None:
    with pytest.raises(ValueError, match="7d, 24h"):
        parse_when("last tuesday", NOW)
