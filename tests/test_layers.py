"""The package's layers, read from its source: who may import whom, and where SQL lives.

The README's "Architecture" section is the rule this test holds the code to:

- ``bounced.core`` is pure: it imports no other layer, no database, socket or process
  module, reads no clock and no environment;
- ``bounced.store`` is the only package that imports ``sqlite3`` (or ``sqlite_utils``,
  ``psycopg``) and the only one that runs SQL; it knows no workflow, daemon or command;
- ``bounced.ops`` works over the store and the core, never the daemon or the CLI;
- ``bounced.daemon`` never imports the CLI, and its receiving side never the store
  (``receive`` and ``store`` meet in ``bounced.model``);
- ``bounced.cli`` runs no SQL.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import ROOT

PACKAGE = ROOT / "bounced"

#: What a layer may not import (module prefixes).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "core": ("bounced.store", "bounced.daemon", "bounced.ops", "bounced.cli", "sqlite3",
             "sqlite_utils", "socket", "asyncio", "subprocess", "os", "time", "dns",
             "aiosmtpd"),
    "store": ("bounced.daemon", "bounced.ops", "bounced.cli"),
    "ops": ("bounced.daemon", "bounced.cli"),
    "daemon": ("bounced.cli",),
    "model": ("bounced.core", "bounced.store", "bounced.daemon", "bounced.ops", "bounced.cli"),
}
#: Calls that read a clock or the environment, not allowed in the pure core.
IMPURE_CALLS = {("datetime", "now"), ("datetime", "utcnow"), ("date", "today"),
                ("time", "time"), ("time", "monotonic"), ("os", "getenv")}
SQL_CALLS = {"execute", "executemany", "executescript"}
#: Database drivers: only ``bounced.store`` talks to them (SQLite and PostgreSQL).
DRIVERS = ("sqlite3", "sqlite_utils", "psycopg", "psycopg_pool")


@dataclass(frozen=True)
class Source:
    path: Path
    module: str
    tree: ast.Module

    @property
    def layer(self) -> str:
        parts = self.module.split(".")
        return parts[1] if len(parts) > 1 else ""

    def imports(self) -> Iterator[tuple[int, str]]:
        """Every imported module (also inside functions), with its line."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield node.lineno, alias.name
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield node.lineno, node.module

    def calls(self) -> Iterator[tuple[int, str, str]]:
        """``(line, receiver name, attribute)`` of every ``x.attr(...)`` call."""
        for node in ast.walk(self.tree):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                target = node.func.value
                name = target.id if isinstance(target, ast.Name) else (
                    target.attr if isinstance(target, ast.Attribute) else "")
                yield node.lineno, name, node.func.attr


def sources() -> list[Source]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(ROOT).with_suffix("")
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append(Source(path, ".".join(parts), ast.parse(path.read_text("utf-8"))))
    return found


SOURCES = sources()


def _matches(module: str, prefix: str) -> bool:
    return module == prefix or module.startswith(prefix + ".")


def violations_of(source: Source) -> list[str]:
    found = []
    forbidden = FORBIDDEN.get(source.layer, ())
    for line, module in source.imports():
        if any(_matches(module, prefix) for prefix in forbidden):
            found.append(f"{source.path.name}:{line} imports {module}")
        if any(_matches(module, driver) for driver in DRIVERS) and source.layer != "store":
            found.append(f"{source.path.name}:{line} imports {module} outside bounced.store")
        if source.module == "bounced.daemon.receive" and _matches(module, "bounced.store"):
            found.append(f"{source.path.name}:{line}: receive imports the store")
    for line, name, attribute in source.calls():
        if attribute in SQL_CALLS and source.layer != "store":
            found.append(f"{source.path.name}:{line} runs SQL ({name}.{attribute})")
        if source.layer == "core" and (name, attribute) in IMPURE_CALLS:
            found.append(f"{source.path.name}:{line} reads a clock ({name}.{attribute})")
    return found


@pytest.mark.parametrize("source", SOURCES, ids=[s.module for s in SOURCES])
def test_each_module_keeps_to_its_layer(source: Source) -> None:
    assert violations_of(source) == []


def test_every_module_belongs_to_a_known_layer() -> None:
    layers = {source.layer for source in SOURCES}
    assert layers <= {"", "core", "store", "daemon", "ops", "cli", "model", "config", "log",
                      "__main__"}


@pytest.mark.parametrize(("module", "code", "expected"), [
    ("bounced.core.example", "import sqlite3\n", "imports sqlite3"),
    ("bounced.core.example", "from bounced.store import Store\n", "imports bounced.store"),
    ("bounced.core.example", "import socket\n", "imports socket"),
    ("bounced.core.example", "from datetime import datetime\nx = datetime.now()\n",
     "reads a clock"),
    ("bounced.ops.example", "import sqlite3\n", "outside bounced.store"),
    ("bounced.daemon.example", "import psycopg.errors\n", "outside bounced.store"),
    ("bounced.cli.example", "def f(store):\n    store.conn.execute('SELECT 1')\n", "runs SQL"),
    ("bounced.daemon.receive", "from bounced.store import Store\n", "receive imports"),
])
def test_the_checker_catches_what_it_forbids(module: str, code: str, expected: str) -> None:
    planted = Source(PACKAGE / "example.py", module, ast.parse(code))
    assert any(expected in line for line in violations_of(planted))
