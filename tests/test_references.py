"""Every reference in the code, its tests and its configuration points at a file of this
repository: a maintainer who follows one finds something."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.paths import ROOT

SCANNED = ("bounced", "tests", "bench", "config", "systemd", "docs")
SUFFIXES = {".py", ".toml", ".md", ".service", ".socket", ".txt"}
#: A repository path as code writes it: ``docs/policy.md``, ``bounced/data/rules.toml``.
PATH = re.compile(
    r"(?<![\w/.-])((?:docs|bounced|tests|bench|config|systemd)/[\w./-]*\w\.(?:md|py|toml|json|"
    r"service|socket|eml|sh))\b"
)
#: Documents that are not in the repository and must not be cited.
ABSENT = re.compile(r"SPEC §|\bissue \d+\b", re.IGNORECASE)


def scanned_files() -> list[Path]:
    found = []
    for top in SCANNED:
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix in SUFFIXES and path.is_file() and "data" not in path.relative_to(
                    ROOT).parts[1:2]:
                found.append(path)
    return found


FILES = scanned_files()


def _name(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_every_repository_path_named_exists(path: Path) -> None:
    text = path.read_text("utf-8", errors="replace")
    missing = sorted({ref for ref in PATH.findall(text) if not (ROOT / ref).exists()})
    assert missing == [], f"{_name(path)} names files that do not exist"


@pytest.mark.parametrize("path", FILES, ids=_name)
def test_no_reference_to_documents_outside_the_repository(path: Path) -> None:
    text = path.read_text("utf-8", errors="replace")
    if path == Path(__file__):
        return
    found = [line.strip() for line in text.splitlines() if ABSENT.search(line)]
    assert found == [], f"{_name(path)} cites documents that are not in the repository"
