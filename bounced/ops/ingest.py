"""``bounced ingest``'s work: messages from files (or stdin) into the database, processed.

Each raw message is committed to ``messages`` first (in batches, one transaction per
batch), then processed: a crash in between leaves it ``pending``, never lost; a
message stored before but never processed successfully (a crash, a failure) gets its
chance again when it is ingested again, and one already processed is not counted twice.

A message delivered to a maildir or an mbox by the MTA carries its envelope in
``Return-Path`` and ``Delivered-To`` / ``X-Original-To`` (not ``To:``): that is where
the VERP token of the bounce address survives, so that is what is read when the
command line gives no envelope.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bounced.config import Config
from bounced.core.verp import envelope_token
from bounced.model import AcceptedMessage, IncomingMessage, MessageState, Rule
from bounced.ops.processing import ProcessResult, process_messages, trust_policy
from bounced.ops.sources import read_messages
from bounced.store import Store

_HEADER_END = re.compile(rb"\r?\n\r?\n")
_ENVELOPE_HEADER = re.compile(
    rb"^(delivered-to|x-original-to|return-path):[ \t]*<?([^\s<>]*)>?", re.IGNORECASE | re.M
)


def envelope_from_headers(raw: bytes) -> tuple[str, tuple[str, ...]]:
    """``(mail_from, rcpt_to)`` as local delivery recorded them in the headers."""
    match = _HEADER_END.search(raw)
    head = raw[: match.start()] if match else raw[:65536]
    mail_from = ""
    rcpt: list[str] = []
    for name, value in _ENVELOPE_HEADER.findall(head):
        text = value.decode("utf-8", "replace")
        if name.lower() == b"return-path":
            mail_from = mail_from or text
        elif text and text not in rcpt:
            rcpt.append(text)
    return mail_from, tuple(rcpt)


@dataclass(frozen=True, slots=True)
class Envelope:
    """The envelope the command line gives (``None``: read it from the headers)."""

    mail_from: str | None = None
    rcpt_to: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Named:
    """A message and where it came from (a file name, ``mbox:3``, ``-``)."""

    name: str
    message: IncomingMessage


def incoming(paths: Sequence[str], envelope: Envelope, separator: str,
             errors: list[str]) -> Iterator[Named]:
    """The messages under ``paths`` as received now; unreadable paths go to ``errors``
    and the others go on."""
    for path in paths:
        try:
            for source in read_messages(path):
                header_from, header_rcpt = envelope_from_headers(source.raw)
                rcpt = envelope.rcpt_to or header_rcpt
                mail_from = envelope.mail_from if envelope.mail_from is not None else header_from
                yield Named(source.name, IncomingMessage(
                    received_at=datetime.now(UTC), mail_from=mail_from, rcpt_to=rcpt,
                    raw=source.raw, peer=None, verp_token=envelope_token(rcpt, separator),
                ))
        except OSError as error:
            errors.append(f"{path}: {error.strerror or error}")


@dataclass(frozen=True, slots=True)
class Ingested:
    """What became of one named message: its processing, or the message it duplicates."""

    name: str
    accepted: AcceptedMessage
    result: ProcessResult | None


def ingest_batch(store: Store, batch: Sequence[Named], *, config: Config, rules: Sequence[Rule],
                 at: datetime | None, at_from_header: bool) -> list[Ingested]:
    """Store the batch (committed), then process what needs it."""
    accepted = store.messages.insert([item.message for item in batch])
    to_process: dict[int, None] = {}  # ordered, and the same bytes twice count once
    for stored in accepted:
        if stored.id in to_process:
            continue
        if not stored.duplicate or store.messages.state(stored.id) not in (
                None, MessageState.PROCESSED):
            to_process[stored.id] = None
    results = process_messages(
        store, list(to_process), config=config, rules=rules, at=at,
        at_from_header=at_from_header, trust=trust_policy(config),
    )
    by_id = {result.message_id: result for result in results}
    done: list[Ingested] = []
    reported: set[int] = set()
    for item, stored in zip(batch, accepted, strict=True):
        result = by_id.get(stored.id) if stored.id not in reported else None
        reported.add(stored.id)
        done.append(Ingested(item.name, stored, result))
    return done
