"""Services some tests need (a Postfix, systemd-analyze, ...): skipped on a developer's
machine that lacks them, a failure in CI, where ``.ci/run`` installs them.

CI sets ``CI=true``; a missing service there means the tests that exercise it did not
run, which must not pass unnoticed.
"""

from __future__ import annotations

import os

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(reason: str | None) -> None:
    """``reason`` says why a needed service is unavailable (``None``: it is there)."""
    if reason is None:
        return
    if in_ci():
        pytest.fail(f"CI=true and a service the tests need is missing: {reason}")
    pytest.skip(reason)
