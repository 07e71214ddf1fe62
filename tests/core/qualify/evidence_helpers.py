"""Shared helper of the evidence-procedure tests: weigh one report's facts."""

from __future__ import annotations

from bounced.core.evidence import Facts, Finding, haystack, weigh
from bounced.model import FailureType, Reason


def judged(text: str, status: str | None = None, reply: str | None = None,
           stage: str | None = None, provider: str | None = None,
           delayed: bool = False) -> Finding:
    """The finding for one diagnostic text and the facts around it; fails when the
    procedure says nothing."""
    found = weigh(Facts(haystack(text), status, reply, stage, provider, delayed))
    assert found is not None, f"nothing decided {text!r}"
    return found


def verdict(found: Finding) -> tuple[FailureType, Reason, str]:
    return found.failure_type, found.reason, str(found.qualified_by)
