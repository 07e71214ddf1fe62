"""Plain-text tables for operators: aligned columns under a header line.

No colours, no box drawing: a table reads the same on a terminal, in a log and pasted
into a ticket. Machines get JSON instead (every command that prints a table has
``--json``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: How an absent value (``None``) is shown.
MISSING = "-"


def render_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """``rows`` under ``headers``, two spaces between columns; ``None`` shows as ``-``.

    A column whose every cell is a number (``12``, ``3.5``, ``27.8%``, ``1,024``, or
    ``-`` for none) is right-aligned, so magnitudes line up; text is left-aligned.
    """
    cells = [[MISSING if value is None else str(value) for value in row] for row in rows]
    widths = [len(header) for header in headers]
    for row in cells:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    numeric = [bool(cells) and all(_is_number(row[index]) for row in cells)
               for index in range(len(headers))]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            value.rjust(width) if right else value.ljust(width)
            for value, width, right in zip(values, widths, numeric, strict=True)
        ).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in cells)])


def _is_number(cell: str) -> bool:
    plain = cell.replace(".", "", 1).replace("%", "").replace(",", "").strip()
    return plain.isdigit() or cell == MISSING
