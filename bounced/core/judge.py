"""The pure heart of the pipeline: a parsed report -> one verdict per recipient.

``judge`` chains normalize and qualify over a :class:`~bounced.model.BounceReport`. It
does no I/O: the qualification table is reached through the ``lookup`` function the
caller passes in (the database for ``ingest`` and the daemon, nothing for ``parse``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from bounced.core.normalize import normalize
from bounced.core.qualify import qualify
from bounced.model import (
    BounceReport,
    Qualification,
    RecipientReport,
    Rule,
    TableEntry,
    Verdict,
)

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
    """One verdict per recipient. A text shared by several recipients (one error for a
    whole batch, up to the parser's 1,000) is normalized, looked up and qualified once
    (qualify reads nothing else of a recipient than the fields in the key below)."""
    verdicts = []
    texts: dict[str, tuple[str, TableEntry | None]] = {}
    qualified: dict[tuple[object, ...], Qualification | None] = {}
    for recipient in recipients_of(report):
        known = texts.get(recipient.diagnostic)
        if known is None:
            text = normalize(recipient.diagnostic)
            known = texts[recipient.diagnostic] = (text, lookup(text) if text else None)
        text, entry = known
        key = (text, entry, recipient.kind, recipient.action, recipient.status,
               recipient.reply_code, recipient.smtp_command)
        if key not in qualified:
            qualified[key] = qualify(recipient, text, entry=entry, rules=rules)
        verdicts.append(Verdict(recipient, text, qualified[key]))
    return tuple(verdicts)
