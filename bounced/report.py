"""Reports over the delivery log: counts, rates, the qualification queue, quarantines.

(Report building is below; :func:`render_table` is shared with ``bounced rules list``.)
"""

from __future__ import annotations

from collections.abc import Sequence


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows as aligned columns under a header line; numbers right-aligned.

    Plain text with no colours or box drawing, so it reads the same on a terminal, in
    a log and in an e-mail.
    """
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [max(width, len(cell)) for width, cell in zip(widths, row, strict=True)]
    numeric = [
        bool(rows) and all(_is_number(row[index]) for row in rows) for index in range(len(headers))
    ]

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(width) if right else cell.ljust(width)
            for cell, width, right in zip(cells, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def _is_number(cell: str) -> bool:
    plain = cell.replace(".", "", 1).replace("%", "").replace(",", "").strip()
    return plain.isdigit() or cell == "-"
