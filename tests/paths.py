"""Where the tests find their files: sample mails under ``tests/data``, the repository."""

from __future__ import annotations

from pathlib import Path

TESTS = Path(__file__).resolve().parent
#: Sample mails and tables, organised by what they exercise.
DATA = TESTS / "data"
#: The repository's top directory (``config/``, ``systemd/``, ``bounced/``).
ROOT = TESTS.parent
