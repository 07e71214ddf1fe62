"""Processing of stored messages: parse -> judge -> policy -> write.

The raw message is already committed (``store.messages.insert``) when this runs. Each
chunk of ``processing.batch_size`` messages goes through two phases:

1. **prepare**, outside any write transaction: the attempt is counted (committed first,
   so a worker that dies on a message leaves a trace), then each message is parsed,
   normalized and qualified under a time limit (``processing.message_budget``,
   :mod:`bounced.ops.budget`). This is all the CPU work; the daemon's SMTP writer never
   waits behind it;
2. **write**, one transaction for the chunk and a savepoint per message: the verdicts,
   the qualification counts, the policy's changes of address state. A crash loses at
   most this uncommitted chunk, whose messages stay ``pending`` and are processed again
   from scratch: never half a message, never a soft error counted twice; an exception
   while writing one message undoes only that message's work.

A message that cannot be processed is set aside as ``failed`` with its reason (its raw
bytes stay; ``bounced db retry`` processes it again after a fix), and the others go on:
a parser crash, a message past its time budget, or one whose processing began
``processing.max_attempts`` times without finishing (the worker died on it). A message
whose processing began before and never finished is processed alone, in a chunk of its
own, so that it cannot take the rest of a chunk down with it again.

The time a bounce counts at is an input, not a clock read deep inside: ``at`` when
given (replaying history), else the message's own ``Date`` header when
``at_from_header`` is set, else the time it was received (which is "now" for the daemon
and for ``bounced ingest``, and the right time after a backlog or a crash recovery).

Which addresses a bounce may change is a seam (``trust``, see
:class:`bounced.core.verp.Trust`): a verdict the trust does not cover is kept in
``bounces`` (``trusted = 0``) but changes no address state (``docs/correlation.md``: a
forged bounce must not quarantine an innocent address).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from bounced.config import Config, SmppAccount
from bounced.core.addresses import AddressRules, canonical_address, rules_from_config
from bounced.core.events import envelope, verdict_data
from bounced.core.judge import TableLookup, judge
from bounced.core.parse import parse_message
from bounced.core.policy import PolicyFacts, apply, cleanup
from bounced.core.push import judge_feedback, read_feedback
from bounced.core.sms import judge_receipt, message_id_of, read_receipt
from bounced.core.verp import TAKEN_AT_ITS_WORD, Trust, bounce_trust, envelope_token
from bounced.model import (
    AddressEvent,
    BounceReport,
    Channel,
    EventType,
    Kind,
    MessageState,
    Qualification,
    QuarantineState,
    Reason,
    Rule,
    StoredMessage,
    TableEntry,
    Verdict,
)
from bounced.ops.budget import BudgetExceededError, time_limit
from bounced.store import Store
from bounced.store.bounces import NewBounce
from bounced.store.messages import ProcessedMark

#: Decides whose state a message may change: ``(message, report, token) -> Trust``.
TrustPolicy = Callable[[StoredMessage, BounceReport, str | None], Trust]
Clock = Callable[[], datetime]


def always_trusted(_message: StoredMessage, _report: BounceReport, _token: str | None) -> Trust:
    """No VERP policy: every verdict may change its address's state."""
    return TAKEN_AT_ITS_WORD


def trust_policy(config: Config) -> TrustPolicy:
    """The ``[verp]`` configuration's policy, comparing addresses as the pipeline keys
    them (``[addresses]`` folding)."""
    rules = rules_from_config(config.addresses)

    def policy(_message: StoredMessage, _report: BounceReport, token: str | None) -> Trust:
        return bounce_trust(token, secret=config.verp.secret, required=config.verp.required,
                            canonical=lambda address: canonical_address(address, rules))

    return policy


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
    #: Why the verdict changed no address state although it could have (a VERP
    #: problem: ``bad_signature``, ``recipient_mismatch``, ...); None when it applied.
    untrusted: str | None = None
    channel: Channel = Channel.EMAIL
    #: Who reported it beyond e-mail: the SMSC account (``smsc:NAME``) or the push
    #: provider (``apns``, ``fcm``).
    remote: str | None = None


@dataclass(frozen=True, slots=True)
class ProcessResult:
    """What happened to one stored message."""

    message_id: int
    state: MessageState
    kind: Kind | None = None
    recipients: tuple[RecipientResult, ...] = ()
    error: str | None = None
    #: False when the message may change no address at all (``messages.trusted``).
    trusted: bool = True
    problems: tuple[str, ...] = ()
    #: True when the message was already processed (by another process) and was skipped.
    skipped: bool = False
    #: The return-path token the trust was judged on.
    verp_token: str | None = None
    #: When the message was received (for the receipt-to-processed delay).
    received_at: datetime | None = None
    channel: Channel = Channel.EMAIL


@dataclass(frozen=True, slots=True)
class _Prepared:
    """A message after the CPU work: its report and verdicts, or why it cannot go on."""

    message_id: int
    message: StoredMessage | None
    report: BounceReport | None = None
    verdicts: tuple[Verdict, ...] = ()
    error: str | None = None


@dataclass(frozen=True, slots=True)
class _Context:
    """What every recipient of one message shares while it is written."""

    message: StoredMessage
    report: BounceReport
    moment: datetime
    token: str | None
    trust: Trust
    address_rules: AddressRules
    config: Config
    now: datetime


def process_messages(
    store: Store,
    ids: Sequence[int],
    *,
    config: Config,
    rules: Sequence[Rule],
    now: Clock | None = None,
    at: datetime | None = None,
    at_from_header: bool = False,
    trust: TrustPolicy = always_trusted,
    attempt_limit: bool = True,
) -> list[ProcessResult]:
    """Process the stored messages ``ids`` (pending or failed ones; already processed
    ones are skipped, so two processes never count a message twice).

    Returns one result per id, in order. Never raises for a message's own problem: that
    message is marked ``failed`` and reported; database errors that prevent a chunk from
    committing (disk full, ...) do raise, leaving the chunk pending. ``attempt_limit``
    False: an operator retries by hand, past ``processing.max_attempts``.
    """
    clock = now or utc_now
    results: dict[int, ProcessResult] = {}
    for chunk in _chunks(store, list(dict.fromkeys(ids)), config.processing.batch_size):
        if store.dialect.concurrent_writers:
            results.update(_process_claimed(
                store, chunk, config=config, rules=rules, attempt_limit=attempt_limit,
                at=at, at_from_header=at_from_header, trust=trust, clock=clock))
            continue
        store.messages.begin_attempts(chunk)
        prepared = _prepare(store, chunk, config=config, rules=rules,
                            attempt_limit=attempt_limit)
        results.update(_write(store, prepared, config=config, at=at,
                              at_from_header=at_from_header, trust=trust, clock=clock))
    return [results[message_id] for message_id in ids]


def _process_claimed(store: Store, chunk: Sequence[int], *, config: Config,
                     rules: Sequence[Rule], attempt_limit: bool, at: datetime | None,
                     at_from_header: bool, trust: TrustPolicy, clock: Clock
                     ) -> dict[int, ProcessResult]:
    """A chunk on PostgreSQL, where other hosts process the same backlog at once.

    The attempt is counted (committed first, as on SQLite) for the messages no other
    host holds; then, in one transaction, the chunk's rows are locked (``FOR UPDATE
    SKIP LOCKED``: a message another host took meanwhile is left to it), parsed and
    judged under that lock, the texts and addresses they touch are locked in a fixed
    order, and the verdicts written. So each message is processed once, whichever
    hosts run, and two hosts never apply bounces of one address at the same time.
    There is no write lock for the CPU work to hold up here: the SMTP writers of every
    host go on meanwhile.
    """
    claimed = store.messages.begin_attempts(chunk)
    results: dict[int, ProcessResult] = {}
    with store.relaxed_sync(), store.atomic():
        mine = store.messages.lock_unprocessed(claimed)
        prepared = _prepare(store, mine, config=config, rules=rules,
                            attempt_limit=attempt_limit)
        _lock_in_order(store, prepared, rules_from_config(config.addresses))
        results.update(_write(store, prepared, config=config, at=at,
                              at_from_header=at_from_header, trust=trust, clock=clock,
                              locked=True))
    for message_id in chunk:
        if message_id not in results:  # another host holds it, or has processed it
            state = store.messages.state(message_id)
            results[message_id] = ProcessResult(
                message_id, state or MessageState.FAILED, skipped=True,
                error=None if state is not None else "no such message")
    return results


def _lock_in_order(store: Store, prepared: Sequence[_Prepared], rules: AddressRules) -> None:
    """Every text and address the chunk will write, locked before the first write:
    texts, then addresses, each in one fixed order (the other transactions that lock
    addresses lock no text), so no two hosts ever wait for each other in a circle."""
    texts: set[str] = set()
    addresses: set[str] = set()
    for item in prepared:
        for verdict in item.verdicts:
            if verdict.text and verdict.qualification is not None:
                texts.add(verdict.text)
            if verdict.recipient.address:
                addresses.add(canonical_address(verdict.recipient.address, rules))
    store.qualification.lock(texts)
    store.addresses.lock(addresses)


def _chunks(store: Store, ids: list[int], size: int) -> Iterator[list[int]]:
    """Chunks of ``size``; a message whose processing began before and never finished
    goes alone, so a message that kills the worker cannot take others down again."""
    suspects = store.messages.began_before(ids)
    clean = [message_id for message_id in ids if message_id not in suspects]
    for start in range(0, len(clean), max(1, size)):
        yield clean[start:start + max(1, size)]
    for message_id in ids:
        if message_id in suspects:
            yield [message_id]


# --------------------------------------------------------------------------- prepare


def _prepare(store: Store, chunk: Sequence[int], *, config: Config, rules: Sequence[Rule],
             attempt_limit: bool) -> list[_Prepared]:
    """The CPU work of a chunk, before taking the write lock. Raw bytes are dropped once
    parsed, so a chunk of large messages never sits in memory whole. The attempt was
    counted by the caller."""
    entries: dict[str, TableEntry | None] = {}

    def lookup(text: str) -> TableEntry | None:
        if text not in entries:
            entries[text] = store.qualification.lookup(text)
        return entries[text]

    limits = config.processing
    prepared: list[_Prepared] = []
    for message_id, row in store.messages.iterate(chunk):
        if row is None or row.state is MessageState.PROCESSED:
            prepared.append(_Prepared(message_id, row))
            continue
        slim = StoredMessage(row.id, row.received_at, row.mail_from, row.rcpt_to, b"",
                             row.state, row.peer, row.error, row.attempts, row.channel)
        # row.attempts counts this attempt too (begun above).
        if attempt_limit and row.attempts > limits.max_attempts:
            prepared.append(_Prepared(message_id, slim, error=(
                f"set aside after {row.attempts - 1} processing attempts that never "
                "finished (the worker crashed or was killed on this message)")))
            continue
        budget = limits.message_budget.total_seconds()
        try:
            with time_limit(budget):
                report, verdicts = judge_stored(store, row, config=config, rules=rules,
                                                lookup=lookup)
        except BudgetExceededError:
            prepared.append(_Prepared(message_id, slim, error=(
                f"set aside: parsing and qualifying took longer than the {budget:g} s "
                "budget (processing.message_budget)")))
            continue
        except Exception as failure:  # the parser promises not to raise; if it does...
            prepared.append(_Prepared(message_id, slim, error=_describe_error(failure)))
            continue
        prepared.append(_Prepared(message_id, slim, report, verdicts))
    return prepared


def smpp_account(config: Config, name: str, smsc: str) -> SmppAccount | None:
    """The ``[[smpp]]`` account a receipt came through (by name, else by SMSC name)."""
    for account in config.smpp:
        if account.name == name:
            return account
    return next((account for account in config.smpp if account.smsc == smsc), None)


def judge_stored(store: Store, row: StoredMessage, *, config: Config, rules: Sequence[Rule],
                 lookup: TableLookup) -> tuple[BounceReport, tuple[Verdict, ...]]:
    """The report and verdicts of a stored message, by its channel: an e-mail is
    parsed (:mod:`bounced.core.parse`), an SMS status report read and judged with its
    SMSC account's extraction regexes and the number its sender registered
    (:mod:`bounced.core.sms`), a push answer judged by the reference's push tables
    (:mod:`bounced.core.push`)."""
    if row.channel is Channel.SMS:
        receipt = read_receipt(row.raw)
        account = smpp_account(config, receipt.account, receipt.smsc)
        message_id = message_id_of(receipt)
        registered = store.sent.recipient(Channel.SMS, message_id) if message_id else None
        extraction = ({"status_regex": account.status_regex, "error_regex": account.error_regex}
                      if account is not None else {})
        return judge_receipt(receipt, registered=registered,
                             region=config.addresses.phone_region, rules=rules,
                             lookup=lookup, **extraction)
    if row.channel is Channel.PUSH:
        feedback = read_feedback(row.raw)
        if feedback is None:
            report = BounceReport(Kind.NOT_BOUNCE, problems=("unreadable push feedback",))
            return report, judge(report, rules, lookup)
        report, verdicts, _row = judge_feedback(feedback, lookup)
        return report, verdicts
    report = parse_message(row.raw, verp_separator=config.verp.separator)
    return report, judge(report, rules, lookup)


def _describe_error(error: BaseException) -> str:
    text = str(error).strip()
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


# --------------------------------------------------------------------------- write


def _write(store: Store, prepared: Sequence[_Prepared], *, config: Config,
           at: datetime | None, at_from_header: bool, trust: TrustPolicy,
           clock: Clock, locked: bool = False) -> dict[int, ProcessResult]:
    """One transaction for the chunk. ``locked``: the caller holds the messages' rows
    since it found them unprocessed (PostgreSQL's ``FOR UPDATE``), so nobody can have
    processed them meanwhile.

    The chunk is written at once; only if a message's writes fail is it written again
    with a savepoint per message, so that the failing one is set aside and the others
    go on. The savepoints cost two round trips a message on PostgreSQL, and a write
    that fails for one message's own sake is rare."""
    chunk = _ChunkWriter(store, config=config, at=at, at_from_header=at_from_header,
                         trust=trust, clock=clock, locked=locked)
    with store.relaxed_sync(), store.atomic():
        # A failure undoes the savepoint of the whole chunk; then each message alone.
        with contextlib.suppress(Exception), store.atomic():
            return chunk.write(prepared, isolated=False)
        return chunk.write(prepared, isolated=True)


class _ChunkWriter:
    """Writes the prepared messages of a chunk inside the caller's transaction."""

    def __init__(self, store: Store, *, config: Config, at: datetime | None,
                 at_from_header: bool, trust: TrustPolicy, clock: Clock,
                 locked: bool) -> None:
        self.store, self.config, self.at, self.at_from_header = store, config, at, at_from_header
        self.trust, self.clock, self.locked = trust, clock, locked
        self.address_rules = rules_from_config(config.addresses)

    def write(self, prepared: Sequence[_Prepared], *, isolated: bool
              ) -> dict[int, ProcessResult]:
        """Every message of ``prepared``; ``isolated``: each in a savepoint, a failing
        one set aside (otherwise a failure raises, for the caller to undo the chunk)."""
        store = self.store
        results: dict[int, ProcessResult] = {}
        done: list[ProcessedMark] = []
        for item in prepared:
            row = item.message
            if row is None:
                results[item.message_id] = ProcessResult(
                    item.message_id, MessageState.FAILED, error="no such message", skipped=True)
                continue
            # Re-read under the write lock: another process may have processed it
            # since it was prepared; it must not be counted twice.
            if not self.locked and store.messages.state(row.id) in (
                    None, MessageState.PROCESSED):
                results[row.id] = ProcessResult(row.id, MessageState.PROCESSED, skipped=True)
                continue
            moment = self.clock()
            if item.error is not None or item.report is None:
                self._set_aside(results, row.id, item.error or "parse failed", moment)
                continue
            if not isolated:
                context = self._context(row, item.report, moment)
                result = _write_message(store, context, item.verdicts)
            else:
                try:
                    with store.atomic():
                        context = self._context(row, item.report, moment)
                        result = _write_message(store, context, item.verdicts)
                except Exception as error:  # one bad message must not stop the others
                    self._set_aside(results, row.id, _describe_error(error), moment)
                    continue
            results[row.id] = result
            done.append(ProcessedMark(row.id, item.report.kind, context.token,
                                      result.trusted, moment))
        store.messages.mark_processed(done)
        return results

    def _context(self, row: StoredMessage, report: BounceReport, moment: datetime
                 ) -> _Context:
        config = self.config
        token = envelope_token(row.rcpt_to, config.verp.separator) or report.verp_token
        # VERP vouches for e-mail only; a receipt or a provider's answer came through an
        # authenticated SMPP bind or HTTP token.
        trusted = (self.trust(row, report, token) if row.channel is Channel.EMAIL
                   else TAKEN_AT_ITS_WORD)
        return _Context(row, report, _message_time(row, report, self.at, self.at_from_header),
                        token, trusted, self.address_rules, config, moment)

    def _set_aside(self, results: dict[int, ProcessResult], message_id: int, reason: str,
                   moment: datetime) -> None:
        self.store.messages.mark_failed(message_id, reason, moment)
        results[message_id] = ProcessResult(message_id, MessageState.FAILED, error=reason)


def _message_time(
    row: StoredMessage, report: BounceReport, at: datetime | None, at_from_header: bool
) -> datetime:
    if at is not None:
        return at
    if at_from_header and report.date is not None:
        date = report.date
        return date if date.tzinfo is not None else date.replace(tzinfo=UTC)
    return row.received_at


def _write_message(store: Store, context: _Context, verdicts: Sequence[Verdict]
                   ) -> ProcessResult:
    """A message's verdicts written; :func:`_write` marks it processed with the rest of
    its chunk."""
    recipients = tuple(
        _record(store, context, verdict)
        for verdict in verdicts
        if verdict.recipient.kind is not Kind.NOT_BOUNCE
    )
    report = context.report
    return ProcessResult(
        message_id=context.message.id,
        state=MessageState.PROCESSED,
        kind=report.kind,
        recipients=recipients,
        trusted=context.trust.anyone,
        problems=report.problems,
        verp_token=context.token,
        received_at=context.message.received_at,
        channel=context.message.channel,
    )


def _record(store: Store, context: _Context, verdict: Verdict) -> RecipientResult:
    """One recipient: its text counted, the policy applied (when the trust covers the
    address), its verdict written, the address and its history updated."""
    recipient = verdict.recipient
    address = (canonical_address(recipient.address, context.address_rules)
               if recipient.address else None)
    text_id = (store.qualification.count(verdict.text, recipient.diagnostic,
                                         verdict.qualification, context.moment)
               if verdict.text and verdict.qualification is not None else None)
    qualification = verdict.qualification
    refusal = context.trust.refusal(address) if address else None
    old_state = new_state = None
    outcome = None
    if address and refusal is None:
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
        trusted=refusal is None,
        channel=context.message.channel,
    ))
    if new_state is not None and new_state != old_state:
        store.addresses.put(new_state, context.now)
    if outcome is not None and outcome.event is not None:
        store.addresses.record(outcome.event, bounce_id,
                               reason=new_state.reason if new_state else None)
    _publish(store, context, verdict, bounce_id, address, qualification, applied=refusal is None)
    return RecipientResult(
        bounce_id=bounce_id,
        recipient=address,
        kind=recipient.kind,
        failure_type=qualification.failure_type.value if qualification else None,
        reason=qualification.reason if qualification else None,
        qualified_by=str(qualification.qualified_by) if qualification else None,
        address_state=new_state.state if new_state is not None else None,
        event=outcome.event.cause if outcome and outcome.event else None,
        untrusted=refusal.value if refusal is not None else None,
        channel=context.message.channel,
        remote=recipient.remote_mta if context.message.channel is not Channel.EMAIL else None,
    )


def _publish(store: Store, context: _Context, verdict: Verdict, bounce_id: int,
             address: str | None, qualification: Qualification | None, *,
             applied: bool) -> None:
    """The webhook events of one verdict, when an endpoint wants them."""
    recipient = verdict.recipient
    kinds = [EventType.BOUNCE_VERDICT]
    if recipient.kind is Kind.FEEDBACK:
        kinds.append(EventType.COMPLAINT_RECEIVED)
    for kind in kinds:
        if not store.outbox.wants(kind):
            continue
        data = verdict_data(
            bounce_id=bounce_id, message_id=context.message.id, recipient=address,
            kind=recipient.kind.value,
            failure_type=qualification.failure_type.value if qualification else None,
            reason=qualification.reason if qualification else None,
            qualified_by=str(qualification.qualified_by) if qualification else None,
            status=recipient.status, diagnostic=recipient.diagnostic, at=context.moment,
            applied=applied, feedback_type=recipient.feedback_type,
            channel=context.message.channel.value,
        )
        store.outbox.publish(kind, envelope(kind, context.moment, data), context.now)


# --------------------------------------------------------------------------- cleanup


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
