"""One table renderer for every operator command."""

from __future__ import annotations

from bounced.core.tables import render_table


def test_text_columns_align_left_and_missing_values_show_as_dashes() -> None:
    assert render_table(("A", "B"), [("x", None), ("wide value", "y")]).splitlines() == [
        "A           B",
        "----------  -",
        "x           -",
        "wide value  y",
    ]


def test_number_columns_align_right_so_magnitudes_line_up() -> None:
    rows = [("a", 5, "27.8%"), ("bb", 1234, "-"), ("c", None, "3.0%")]
    assert render_table(("KEY", "COUNT", "RATE"), rows).splitlines() == [
        "KEY  COUNT   RATE",
        "---  -----  -----",
        "a        5  27.8%",
        "bb    1234      -",
        "c        -   3.0%",
    ]


def test_an_empty_table_is_its_header() -> None:
    assert render_table(("ADDRESS", "STATE"), []).splitlines() == [
        "ADDRESS  STATE",
        "-------  -----",
    ]
