"""Processing of stored messages: parse -> judge -> policy -> write, atomically.

The raw message is already committed (``store.messages.insert``) when this runs.
Messages are processed in batches of ``processing.batch_size`` inside one transaction,
each message inside its own savepoint, so that:

- a crash (kill -9, power loss) loses at most the uncommitted batch, whose messages
  stay ``pending`` and are processed again from scratch: never half a message, never a
  soft error counted twice;
- an exception while processing one message undoes only that message's work; the
  message is marked ``failed`` with its error (the raw stays, ready to be retried) and
  the others of the batch go on.

The time a bounce counts at is an input, not a clock read deep inside: ``at`` when
given (replaying history), else the message's own ``Date`` header when
``at_from_header`` is set, else the time it was received (which is "now" for the daemon
and for ``bounced ingest``, and the right time after a backlog or a crash recovery).

Signed-VERP verification is a seam (``trust``): a message judged untrusted keeps its
verdicts in ``bounces`` but changes no address state (``docs/correlation.md``: a forged
bounce must not quarantine an innocent address).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from bounced.config import Config
from bounced.core.addresses import NO_FOLDING, AddressRules, canonical_address, rules_from_config
from bounced.core.judge import judge
from bounced.core.parse import parse_message
from bounced.core.policy import PolicyFacts, apply, cleanup
from bounced.core.verp import envelope_token
from bounced.model import (
    AddressEvent,
    BounceReport,
    Kind,
    MessageState,
    QualificationStatus,
    QuarantineState,
    Reason,
    Rule,
    StoredMessage,
    TableEntry,
    Verdict,
)
from bounced.store import Store
from bounced.store.bounces import NewBounce

#: Decides whether a message may change address states: ``(message, report, token)``.
TrustCheck = Callable[[StoredMessage, BounceReport, str | None], bool]
Clock = Callable[[], datetime]


def always_trusted(_message: StoredMessage, _report: BounceReport, _token: str | None) -> bool:
    """The default until signed VERP is configured: every bounce may change states."""
    return True


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True, slots=True)
class RecipientResult:
    """What happened to one recipient of one message (one ``bounces`` row)."""

    bounce_id: int | None
    recipient: str | None
    kind: Kind
    failure_type: str | None
    reason: Reason | None
    qualified_by: str | None
    address_state: QuarantineState | None
    event: str | None


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """What happened to one stored message."""

    message_id: int
    state: MessageState
    kind: Kind | None = None
    recipients: tuple[RecipientResult, ...] = ()
    error: str | None = None
    trusted: bool = True
    problems: tuple[str, ...] = ()
    #: True when the message was already processed (by another process) and was skipped.
    skipped: bool = False


class _Batch:
    """Per-batch caches: qualification entries by normalized text.

    Dropped whenever a message's savepoint is rolled back, since the rows it cached
    may have vanished with it.
    """

    def __init__(self, store: Store, address_rules: AddressRules = NO_FOLDING) -> None:
        self.store = store
        self.address_rules = address_rules
        self.entries: dict[str, TableEntry | None] = {}

    def lookup(self, text: str) -> TableEntry | None:
        if text not in self.entries:
            self.entries[text] = self.store.qualification.lookup(text)
        return self.entries[text]


def _chunks(ids: Sequence[int], size: int) -> Iterator[Sequence[int]]:
    for start in range(0, len(ids), size):
        yield ids[start:start + size]


def _message_time(
    row: StoredMessage, report: BounceReport, at: datetime | None, at_from_header: bool
) -> datetime:
    if at is not None:
        return at
    if at_from_header and report.date is not None:
        date = report.date
        return date if date.tzinfo is not None else date.replace(tzinfo=UTC)
    return row.received_at


def _count_text(batch: _Batch, verdict: Verdict, at: datetime) -> int | None:
    """Count one occurrence of the verdict's normalized text; return its row id."""
    if not verdict.text or verdict.qualification is None:
        return None
    qualification = verdict.qualification
    text_id = batch.store.qualification.count(
        verdict.text, verdict.recipient.diagnostic, qualification, at)
    if batch.entries.get(verdict.text) is None:
        batch.entries[verdict.text] = TableEntry(
            id=text_id,
            status=QualificationStatus.TO_QUALIFY,
            failure_type=qualification.failure_type,
            reason=qualification.reason,
        )
    return text_id


@dataclass(frozen=True, slots=True)
class _Context:
    """What every recipient of one message shares."""

    message: StoredMessage
    report: BounceReport
    moment: datetime
    token: str | None
    trusted: bool
    config: Config
    now: datetime


def _process_one(
    store: Store,
    batch: _Batch,
    row: StoredMessage,
    report: BounceReport,
    *,
    config: Config,
    rules: Sequence[Rule],
    at: datetime | None,
    at_from_header: bool,
    trust: TrustCheck,
    now: datetime,
) -> ProcessResult:
    token = envelope_token(row.rcpt_to, config.verp.separator) or report.verp_token
    context = _Context(row, report, _message_time(row, report, at, at_from_header), token,
                       bool(trust(row, report, token)), config, now)
    results = tuple(
        _record(store, batch, context, verdict)
        for verdict in judge(report, rules, batch.lookup)
        if verdict.recipient.kind is not Kind.NOT_BOUNCE
    )
    store.messages.mark_processed(row.id, kind=report.kind, verp_token=token,
                                  trusted=context.trusted, at=now)
    return ProcessResult(
        message_id=row.id,
        state=MessageState.PROCESSED,
        kind=report.kind,
        recipients=results,
        trusted=context.trusted,
        problems=report.problems,
    )


def _record(store: Store, batch: _Batch, context: _Context, verdict: Verdict) -> RecipientResult:
    """One recipient: its text counted, the policy applied (when the bounce may change
    states), its verdict written, the address and its history updated."""
    recipient = verdict.recipient
    address = (canonical_address(recipient.address, batch.address_rules)
               if recipient.address else None)
    text_id = _count_text(batch, verdict, context.moment)
    qualification = verdict.qualification
    old_state = new_state = None
    outcome = None
    if address and context.trusted:
        old_state = store.addresses.get(address)
        outcome = apply(old_state, PolicyFacts.of(verdict), context.moment,
                        context.config.policy, address=address, qualification=qualification)
        qualification = outcome.qualification
        new_state = outcome.state
    bounce_id = store.bounces.add(NewBounce(
        message_id=context.message.id,
        recipient=address,
        kind=recipient.kind,
        action=recipient.action.value if recipient.action else None,
        status=recipient.status,
        reply_code=recipient.reply_code,
        diagnostic=recipient.diagnostic,
        qualification_id=text_id,
        failure_type=qualification.failure_type if qualification else None,
        reason=qualification.reason if qualification else None,
        qualified_by=str(qualification.qualified_by) if qualification else None,
        original_message_id=context.report.original_message_id,
        received_at=context.message.received_at,
        at=context.moment,
        original_recipient=recipient.original_recipient,
        remote_mta=recipient.remote_mta,
        smtp_command=recipient.smtp_command,
        verp_token=context.token,
        feedback_type=recipient.feedback_type,
    ))
    if new_state is not None and new_state != old_state:
        store.addresses.put(new_state, context.now)
    if outcome is not None and outcome.event is not None:
        store.addresses.record(outcome.event, bounce_id)
    return RecipientResult(
        bounce_id=bounce_id,
        recipient=address,
        kind=recipient.kind,
        failure_type=qualification.failure_type.value if qualification else None,
        reason=qualification.reason if qualification else None,
        qualified_by=str(qualification.qualified_by) if qualification else None,
        address_state=new_state.state if new_state is not None else None,
        event=outcome.event.cause if outcome and outcome.event else None,
    )


def _describe_error(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def process_messages(
    store: Store,
    ids: Sequence[int],
    *,
    config: Config,
    rules: Sequence[Rule],
    now: Clock | None = None,
    at: datetime | None = None,
    at_from_header: bool = False,
    trust: TrustCheck = always_trusted,
) -> list[ProcessResult]:
    """Process the stored messages ``ids`` (pending or failed ones; already processed
    ones are skipped, so two processes never count a message twice).

    Returns one result per id, in order. Never raises for a message's own problem:
    that message is marked ``failed`` and reported; database errors that prevent the
    whole batch from committing (disk full, ...) do raise, leaving the batch pending.
    """
    clock = now or utc_now
    results: list[ProcessResult] = []
    for chunk in _chunks(list(ids), max(1, config.processing.batch_size)):
        parsed = _parse_chunk(store, chunk, config.verp.separator)
        batch = _Batch(store, rules_from_config(config.addresses))
        with store.relaxed_sync(), store.atomic():
            done: set[int] = set()
            for message_id, row, report, parse_error in parsed:
                if row is None:
                    results.append(ProcessResult(message_id, MessageState.FAILED,
                                                 error="no such message", skipped=True))
                    continue
                # Re-read under the write lock: another process may have processed it
                # since it was parsed; it must not be counted twice.
                if message_id in done or store.messages.state(message_id) in (
                    None, MessageState.PROCESSED
                ):
                    results.append(ProcessResult(message_id, MessageState.PROCESSED,
                                                 skipped=True))
                    continue
                done.add(message_id)
                moment = clock()
                try:
                    if report is None:
                        raise _ParseError(parse_error or "parse failed")
                    with store.atomic():
                        result = _process_one(
                            store, batch, row, report, config=config, rules=rules, at=at,
                            at_from_header=at_from_header, trust=trust, now=moment,
                        )
                except Exception as error:  # one bad message must not stop the others
                    batch.entries.clear()
                    message = str(error) if isinstance(error, _ParseError) else (
                        _describe_error(error))
                    store.messages.mark_failed(row.id, message, moment)
                    result = ProcessResult(row.id, MessageState.FAILED, error=message)
                results.append(result)
    return results


class _ParseError(Exception):
    """The parser raised (it should not): the message fails, the others go on."""


def _parse_chunk(
    store: Store, chunk: Sequence[int], separator: str
) -> list[tuple[int, StoredMessage | None, BounceReport | None, str | None]]:
    """Parse a batch BEFORE taking the write lock: parsing is pure and is most of the
    work, so a concurrent writer (the SMTP daemon storing new mail) waits only for the
    database part. Raw bytes are dropped once parsed, to bound a batch's memory."""
    parsed: list[tuple[int, StoredMessage | None, BounceReport | None, str | None]] = []
    for message_id, row in store.messages.iterate(chunk):
        if row is None or row.state is MessageState.PROCESSED:
            parsed.append((message_id, row, None, None))
            continue
        try:
            report: BounceReport | None = parse_message(
                row.raw, verp_separator=separator)
            error = None
        except Exception as failure:  # the parser promises not to raise; if it does...
            report, error = None, _describe_error(failure)
        parsed.append((message_id, replace(row, raw=b""), report, error))
    return parsed


def run_cleanup(store: Store, *, config: Config, at: datetime) -> list[AddressEvent]:
    """The periodic job: release due Mailbox-full quarantines, reset stale counters.

    Only candidate rows are read, then :func:`bounced.core.policy.cleanup` decides;
    every change is written with its event.
    """
    events: list[AddressEvent] = []
    with store.atomic():
        for address in store.addresses.due_for_cleanup(at, at - config.policy.counter_reset_after):
            state = store.addresses.get(address)
            if state is None:
                continue
            outcome = cleanup(state, at, config.policy)
            if outcome.event is None or outcome.state is None:
                continue
            store.addresses.change(outcome.state, outcome.event, at)
            events.append(outcome.event)
    return events
