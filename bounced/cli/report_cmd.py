"""``bounced report`` (placeholder, filled in below)."""

from __future__ import annotations

from typing import Any


def register(subparsers: Any) -> None:
    subparsers.add_parser("report", help="bounce report")
