#!/usr/bin/env python3
"""The two commands of bounced, on a machine with nothing but Python 3.11+:

    python3 tasks.py serve [bounced serve options]   # the daemon: SMTP 127.0.0.1:2525, ./bounced.db
    python3 tasks.py test  [pytest options]          # ruff, mypy, then the test suite

Each one creates the virtual environment ``.venv`` on first use (and brings it up to
date when ``pyproject.toml`` changed since), then runs in it. Only the standard library
is used here, so nothing has to be installed first. ``.ci/run`` calls ``tasks.py test``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
#: Written after a successful install; older than pyproject.toml means "install again".
STAMP = VENV / ".installed"
#: pytest's exit status when it collected no test: a broken suite, not a success.
NO_TESTS = 5


def ensure_environment() -> None:
    """``.venv`` with bounced (editable) and its test tools, created or updated."""
    project = ROOT / "pyproject.toml"
    if STAMP.exists() and STAMP.stat().st_mtime >= project.stat().st_mtime:
        return
    if not (BIN / "python").exists():
        print(f"tasks: creating {VENV}", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(VENV)
    print("tasks: installing bounced and its test tools into .venv", file=sys.stderr)
    subprocess.run(
        [str(BIN / "python"), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
         "--editable", f"{ROOT}[test]"],
        check=True,
    )
    STAMP.touch()


def run(*command: str) -> int:
    return subprocess.run(command, cwd=ROOT, check=False).returncode


def serve(arguments: list[str]) -> int:
    """Run the daemon in the foreground (Ctrl-C stops it gracefully)."""
    os.execv(str(BIN / "bounced"), [str(BIN / "bounced"), "serve", *arguments])
    return 1  # pragma: no cover - execv does not return


def test(arguments: list[str]) -> int:
    """Lint, type-check, then the whole test suite; the first failure stops."""
    for step in ((str(BIN / "ruff"), "check", "."), (str(BIN / "mypy"), "bounced")):
        status = run(*step)
        if status:
            return status
    status = run(str(BIN / "python"), "-m", "pytest", *arguments)
    if status == NO_TESTS:
        print("tasks: pytest collected no tests", file=sys.stderr)
        return 1
    return status


COMMANDS = {"serve": serve, "test": test}


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in COMMANDS:
        print(__doc__, file=sys.stderr)
        return 2
    ensure_environment()
    return COMMANDS[argv[0]](argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
