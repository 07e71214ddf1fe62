"""The other channels' intakes over HTTP: push answers, SMS receipts, sent messages.

- **Push feedback** is processed *inline*, in the HTTP API's writer thread: the sending
  platform asks "retry?" synchronously and the answer also says what bounced made of
  it (the verdict, the token's state). The answer is stored as a message
  (``channel = 'push'``, committed first, like every message), then processed by the
  same pipeline the worker runs (:func:`bounced.ops.processing.process_messages`:
  qualification table, policy, history, webhooks). Should the worker take the message
  between the two steps (it polls ``pending`` messages), the verdict it wrote is read
  back: one of them processed it, exactly once (on PostgreSQL, where the worker's
  claim makes the API skip the message instead of waiting for a write lock, the API
  waits for the worker's commit first: ``MessageTable.settled_state``).
- **SMS receipts** over HTTP (gateways that call a URL back) are stored like the SMPP
  ones and processed by the worker: the gateway only needs to know the receipt is
  durable.
- **Sent messages** (``POST /v1/messages``): which number an SMSC message id went to,
  for receipts that do not say.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from bounced.config import Config
from bounced.core.push import Feedback, PushRow, feedback_raw, judge_feedback
from bounced.core.sms import MESSAGE_STATES, Receipt, receipt_raw
from bounced.model import (
    AcceptedMessage,
    Channel,
    FailureType,
    IncomingMessage,
    QuarantineState,
    Reason,
)
from bounced.ops.processing import ProcessResult, process_messages
from bounced.store import Store
from bounced.store.sent import SentMessage


@dataclass(frozen=True, slots=True)
class PushOutcome:
    """What bounced made of one provider answer, and whether to retry."""

    address: str
    row: PushRow
    retry: bool
    message_id: int | None
    duplicate: bool
    text: str
    failure_type: FailureType | None
    reason: Reason | None
    qualified_by: str | None
    state: QuarantineState
    result: ProcessResult | None = None

    @property
    def deliverable(self) -> bool:
        return self.state.deliverable

    def to_json(self) -> dict[str, object]:
        return {
            "address": self.address,
            "retry": self.retry,
            "scenario": self.row.scenario,
            "text": self.text,
            "failure_type": self.failure_type.value if self.failure_type else None,
            "reason_code": int(self.reason) if self.reason is not None else None,
            "reason": self.reason.label if self.reason is not None else None,
            "qualified_by": self.qualified_by,
            "state": self.state.value,
            "deliverable": self.deliverable,
            "message_id": self.message_id,
            "duplicate": self.duplicate,
        }


def record_push(store: Store, feedback: Feedback, *, config: Config, received_at: datetime,
                peer: str | None = None) -> PushOutcome:
    """Store and process one provider answer (a success is answered, not stored: it
    says nothing about the token that the absence of an error does not)."""
    _report, verdicts, row = judge_feedback(feedback, store.qualification.lookup)
    address = feedback.address
    if row.failure_type is None:
        current = store.addresses.get(address)
        state = current.state if current is not None else QuarantineState.VALID
        return PushOutcome(address, row, False, None, False, "", None, None, None, state)
    [accepted] = store.messages.insert([IncomingMessage(
        received_at=received_at, mail_from="", rcpt_to=(), raw=feedback_raw(feedback),
        peer=peer, channel=Channel.PUSH)])
    result = None
    if not accepted.duplicate:
        [result] = process_messages(store, [accepted.id], config=config,
                                    rules=store.rules.enabled())
        if result.skipped:  # the worker took it first (PostgreSQL): read what it wrote
            store.messages.settled_state(accepted.id)
    verdict = verdicts[0]
    failure_type, reason, qualified_by = (
        (verdict.qualification.failure_type, verdict.qualification.reason,
         str(verdict.qualification.qualified_by)) if verdict.qualification else
        (None, None, None))
    written = store.bounces.of_message(accepted.id)
    if written:  # what was recorded (the policy may have rewritten it: allowlist)
        last = written[-1]
        failure_type = FailureType(last.failure_type) if last.failure_type else None
        reason = Reason(last.reason_code) if last.reason_code is not None else None
        qualified_by = last.qualified_by
    current = store.addresses.get(address)
    state = current.state if current is not None else QuarantineState.VALID
    return PushOutcome(address, row, row.retry, accepted.id, accepted.duplicate, verdict.text,
                       failure_type, reason, qualified_by, state,
                       result if result is not None and not result.skipped else None)


# --------------------------------------------------------------------------- SMS over HTTP

#: Kannel's ``%d`` delivery report types -> the SMPP ``message_state`` they stand for.
KANNEL_TYPES: Mapping[str, int] = {"1": 2, "2": 5, "4": 1, "8": 6, "16": 8}
#: Kannel types that are no final state (buffered at the SMSC, submitted to it).
KANNEL_INTERMEDIATE = frozenset({"4", "8"})
#: Jasmin's DLR fields, in the order an Appendix B receipt writes them.
_JASMIN_FIELDS = (("id", "id"), ("sub", "sub"), ("dlvrd", "dlvrd"),
                  ("subdate", "submit date"), ("donedate", "done date"),
                  ("message_status", "stat"), ("err", "err"), ("text", "text"))
#: Fields read into the receipt itself; the others are kept as ``extra``.
_KNOWN = frozenset({"smsc", "report", "to", "type", "id", "message_status", "level",
                    "access_token", *(name for name, _ in _JASMIN_FIELDS)})


def receipt_from_fields(fields: Mapping[str, str]) -> Receipt:
    """A receipt from a gateway's callback fields (see README: "SMS receipts over HTTP").

    ``report``: the receipt text as the SMSC wrote it (Kannel's ``%A``); else the text
    is written from Jasmin's fields (``id``, ``message_status``, ``err``, ...); ``type``:
    Kannel's ``%d`` (1 delivered, 2 failed, 16 rejected; 4 and 8 are no final state);
    ``to``: the number (Kannel's ``%p``); ``id``: the message id the platform
    registered; ``smsc``: the SMSC implementation name (``Generic`` by default).
    """
    smsc = (fields.get("smsc") or "Generic").strip() or "Generic"
    text = fields.get("report", "").strip()
    if not text and fields.get("message_status"):
        text = " ".join(f"{label}:{fields[name]}" for name, label in _JASMIN_FIELDS
                        if fields.get(name) is not None)
    kind = fields.get("type", "").strip()
    state = KANNEL_TYPES.get(kind)
    intermediate = kind in KANNEL_INTERMEDIATE or fields.get("level", "").strip() == "1"
    problems = () if text or state is not None else (
        "no receipt text (report, message_status) nor delivery report type",)
    extra = {key: value for key, value in sorted(fields.items()) if key not in _KNOWN}
    message_id = fields.get("id", "").strip() or None
    return Receipt(
        via="http", account=f"http:{'_'.join(smsc.split())}", smsc="_".join(smsc.split()),
        text=text, source=fields.get("to", "").strip() or None,
        message_id=message_id, message_state=state, intermediate=intermediate,
        problems=problems, extra=extra,
    )


def message_state_name(state: int | None) -> str | None:
    return MESSAGE_STATES.get(state) if state is not None else None


def store_receipt(store: Store, receipt: Receipt, *, received_at: datetime,
                  peer: str | None = None) -> AcceptedMessage:
    """Store one receipt (committed when this returns); the worker processes it."""
    [accepted] = store.messages.insert([IncomingMessage(
        received_at=received_at, mail_from="", rcpt_to=(), raw=receipt_raw(receipt),
        peer=peer, channel=Channel.SMS)])
    return accepted


def register_messages(store: Store, messages: Sequence[SentMessage], at: datetime) -> int:
    """Record which recipient each sent message went to (``sent_messages``)."""
    return store.sent.register(messages, at)
