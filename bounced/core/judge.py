"""The pure heart of the pipeline: a parsed report -> one verdict per recipient.

``judge`` chains normalize and qualify over a :class:`~bounced.model.BounceReport`. It
does no I/O: the qualification table is reached through the ``lookup`` function the
caller passes in (the database for ``ingest`` and the daemon, nothing for ``parse``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bounced.core.normalize import normalize
from bounced.core.qualify import qualify
from bounced.model import BounceReport, RecipientReport, Rule, TableEntry, Verdict

TableLookup = Callable[[str], TableEntry | None]


def no_table(_text: str) -> TableEntry | None:
    """The lookup used without a database: every text is new."""
    return None


def recipients_of(report: BounceReport) -> tuple[RecipientReport, ...]:
    """The report's recipients, or one address-less row so that a message with no
    recipient (a human reply, an unreadable bounce) still shows up once."""
    return report.recipients or (RecipientReport(address=None, kind=report.kind),)


def judge(
    report: BounceReport, rules: Sequence[Rule], lookup: TableLookup = no_table
) -> tuple[Verdict, ...]:
    verdicts = []
    for recipient in recipients_of(report):
        text = normalize(recipient.diagnostic)
        entry = lookup(text) if text else None
        verdicts.append(
            Verdict(recipient, text, qualify(recipient, text, entry=entry, rules=rules))
        )
    return tuple(verdicts)
