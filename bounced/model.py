"""The domain vocabulary shared by every pipeline stage.

Everything here is plain, immutable data: enums with the names the reference documents
use (docs/kinds.md, docs/reasons.md, docs/policy.md) and frozen dataclasses that travel
from one stage to the next::

    parse      bytes              -> BounceReport (kind + RecipientReport per recipient)
    normalize  diagnostic text    -> normalized text
    qualify    recipient + text   -> Qualification (FailureType, Reason, QualifiedBy)
    policy     AddressState + Verdict + time -> AddressState (+ AddressEvent)

The string values of the enums are what the database and the JSON output carry, so an
operator's ``WHERE failure_type = 'hard'`` and the code speak the same language.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum, IntEnum, StrEnum


class Channel(StrEnum):
    """How a message reached its recipient, and so what kind of address it names
    (docs/channels.md): an e-mail address, a phone number (SMS status reports) or a
    push token (push-notification feedback). Rows written before channels existed
    are e-mail."""

    EMAIL = "email"
    SMS = "sms"
    PUSH = "push"


class Kind(StrEnum):
    """What a received message is (docs/kinds.md)."""

    FAILURE = "failure"
    DELAY = "delay"
    DELIVERED = "delivered"
    AUTOREPLY = "autoreply"
    FEEDBACK = "feedback"
    NOT_BOUNCE = "not_bounce"


class Action(StrEnum):
    """The RFC 3464 ``Action`` of one recipient."""

    FAILED = "failed"
    DELAYED = "delayed"
    DELIVERED = "delivered"
    RELAYED = "relayed"
    EXPANDED = "expanded"

    @property
    def kind(self) -> Kind:
        """The kind a recipient with this action belongs to."""
        if self is Action.FAILED:
            return Kind.FAILURE
        if self is Action.DELAYED:
            return Kind.DELAY
        return Kind.DELIVERED


class FailureType(StrEnum):
    """Severity of a failure: what it does to the address (docs/reasons.md)."""

    HARD = "hard"
    SOFT = "soft"
    IGNORED = "ignored"
    UNDEFINED = "undefined"


class Reason(IntEnum):
    """Failure reasons, keeping the reference table's technical values (docs/reasons.md).

    11, 12, 15, 16 and 17 belong to a sending platform's targeting and never come out of
    a bounce; they are kept so the ``reasons`` table matches the reference one to one.
    """

    NOT_DEFINED = 0
    USER_UNKNOWN = 1
    INVALID_DOMAIN = 2
    UNREACHABLE = 3
    ACCOUNT_DISABLED = 4
    MAILBOX_FULL = 5
    NOT_CONNECTED = 6
    ADDRESS_NOT_SPECIFIED = 7
    DENYLISTED = 8
    QUARANTINED = 9
    DOUBLE = 10
    EXCLUDED_BY_SQL_RULE = 11
    EXCLUDED_AFTER_ARBITRATION = 12
    BAD_QUALITY_ADDRESS = 14
    UNQUALIFIED_ADDRESS = 15
    NOT_ELIGIBLE_FOR_OFFERS = 16
    TARGET_LIMITED_IN_SIZE = 17
    REFUSED = 20
    ERROR_IGNORED = 25
    CONTROL_ADDRESS = 127

    @property
    def label(self) -> str:
        """The reference table's label, e.g. ``"User unknown"``."""
        return _REASON_LABELS[self][0]

    @property
    def default_type(self) -> FailureType:
        """The type the reference table gives this reason when nothing says otherwise."""
        return _REASON_LABELS[self][1]

    @classmethod
    def from_name(cls, name: str) -> Reason:
        """Look a reason up by code (``"1"``), enum name or label, case-insensitively."""
        key = name.strip()
        if key.isdigit():
            return cls(int(key))
        folded = key.casefold().replace("-", " ").replace("_", " ")
        for reason in cls:
            if folded in (reason.name.casefold().replace("_", " "), reason.label.casefold()):
                return reason
        raise ValueError(f"unknown reason {name!r}")


_REASON_LABELS: dict[Reason, tuple[str, FailureType]] = {
    Reason.NOT_DEFINED: ("Not defined", FailureType.UNDEFINED),
    Reason.USER_UNKNOWN: ("User unknown", FailureType.HARD),
    Reason.INVALID_DOMAIN: ("Invalid domain", FailureType.SOFT),
    Reason.UNREACHABLE: ("Unreachable", FailureType.SOFT),
    Reason.ACCOUNT_DISABLED: ("Account disabled", FailureType.SOFT),
    Reason.MAILBOX_FULL: ("Mailbox full", FailureType.SOFT),
    Reason.NOT_CONNECTED: ("Not connected", FailureType.IGNORED),
    Reason.ADDRESS_NOT_SPECIFIED: ("Address not specified", FailureType.HARD),
    Reason.DENYLISTED: ("Denylisted address", FailureType.HARD),
    Reason.QUARANTINED: ("Address in quarantine", FailureType.HARD),
    Reason.DOUBLE: ("Double", FailureType.IGNORED),
    Reason.EXCLUDED_BY_SQL_RULE: ("Excluded by a SQL rule", FailureType.IGNORED),
    Reason.EXCLUDED_AFTER_ARBITRATION: ("Excluded after arbitration", FailureType.IGNORED),
    Reason.BAD_QUALITY_ADDRESS: ("Bad-quality address", FailureType.IGNORED),
    Reason.UNQUALIFIED_ADDRESS: ("Unqualified address", FailureType.IGNORED),
    Reason.NOT_ELIGIBLE_FOR_OFFERS: ("Not eligible for the offers", FailureType.IGNORED),
    Reason.TARGET_LIMITED_IN_SIZE: ("Target limited in size", FailureType.IGNORED),
    Reason.REFUSED: ("Refused", FailureType.SOFT),
    Reason.ERROR_IGNORED: ("Error ignored", FailureType.IGNORED),
    Reason.CONTROL_ADDRESS: ("Control address", FailureType.IGNORED),
}


class QualificationStatus(StrEnum):
    """Where a normalized text stands in the delivery-log qualification table
    (docs/qualification.md)."""

    TO_QUALIFY = "to_qualify"
    KEEP = "keep"
    IGNORE = "ignore"


class QuarantineState(StrEnum):
    """The state of an address (docs/policy.md)."""

    VALID = "valid"
    ERRONEOUS = "erroneous"
    QUARANTINE = "quarantine"
    DENYLISTED = "denylisted"
    ALLOWLISTED = "allowlisted"

    @property
    def deliverable(self) -> bool:
        """Whether a sender may still send to an address in this state."""
        return self not in (QuarantineState.QUARANTINE, QuarantineState.DENYLISTED)


class EventType(StrEnum):
    """What a webhook endpoint can be told (``docs/webhooks.md``)."""

    BOUNCE_VERDICT = "bounce.verdict"
    ADDRESS_QUARANTINED = "address.quarantined"
    ADDRESS_RELEASED = "address.released"
    ADDRESS_DENYLISTED = "address.denylisted"
    COMPLAINT_RECEIVED = "complaint.received"


class MessageState(StrEnum):
    """Processing state of a stored raw message (docs/schema.md)."""

    PENDING = "pending"
    PROCESSED = "processed"
    FAILED = "failed"


class QualifiedBySource(Enum):
    """A kind of evidence in ``qualified_by``: which step of the qualification order
    (docs/qualification.md) decided a verdict, and what else it weighed.

    ``table`` and ``rule`` are an operator's or a shipped processing rule's decision;
    ``reference`` is a row of the product reference's push tables
    (``reference:apns:Unregistered``, :mod:`bounced.core.push`);
    ``provider``, ``status``, ``stage``, ``phrase`` and ``class`` are the evidence the
    shipped knowledge weighed (bounced/core/evidence.py); ``kind`` is the message kind
    alone; ``none`` is no evidence at all.
    """

    TABLE = "table"
    RULE = "rule"
    REFERENCE = "reference"
    PROVIDER = "provider"
    STATUS = "status"
    STAGE = "stage"
    PHRASE = "phrase"
    CLASS = "class"
    KIND = "kind"
    NONE = "none"


@dataclass(frozen=True, slots=True)
class QualifiedBy:
    """What qualified a verdict, as the ``qualified_by`` column carries it.

    One piece of evidence is ``source:ref`` (``rule:250``, ``table:7``, ``status:5.1.1``,
    ``provider:google:userunknown``, ``phrase:mailboxfull``, ``class:5.7``) or the bare
    source (``kind``, ``none``). When the decision weighed more than one, the others
    follow with ``+``, the deciding one first: ``status:5.1.1+stage:RCPT`` is an X.1.1
    code backed by a refusal at ``RCPT TO``; ``phrase:userunknown+stage:DATA`` is a
    user-unknown wording that the stage turned into a filter's refusal. Operators select
    on these strings (``qualified_by = 'rule:12'``), so ``parse(str(x)) == x`` always.
    """

    source: QualifiedBySource
    ref: str | None = None
    also: tuple[QualifiedBy, ...] = ()

    def __str__(self) -> str:
        head = self.source.value if self.ref is None else f"{self.source.value}:{self.ref}"
        return "+".join((head, *(str(each) for each in self.also)))

    @property
    def chain(self) -> tuple[QualifiedBy, ...]:
        """Every piece of evidence, the deciding one first, each without ``also``."""
        return (QualifiedBy(self.source, self.ref), *self.also)

    @classmethod
    def parse(cls, text: str) -> QualifiedBy:
        """The inverse of ``str``; raises ``ValueError`` on an unknown source."""
        head, *rest = text.split("+")
        source, _, ref = head.partition(":")
        also = tuple(cls.parse(each) for each in rest)
        return cls(QualifiedBySource(source), ref or None, also)


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """What one bounce says about one recipient, as parsed, before any judgement.

    ``status`` is the RFC 3463 enhanced status code (``"5.1.1"``), ``reply_code`` the
    SMTP reply code (``"550"``), ``diagnostic`` the remote or local error text as the MTA
    wrote it (continuation lines joined), ``remote_mta`` the host that refused the mail,
    ``reporting_mta`` the one that wrote the report (a DSN's ``Reporting-MTA``), which is
    also the one that refused it when no remote host is named.
    """

    address: str | None
    kind: Kind
    action: Action | None = None
    status: str | None = None
    reply_code: str | None = None
    diagnostic: str = ""
    remote_mta: str | None = None
    original_recipient: str | None = None
    smtp_command: str | None = None
    feedback_type: str | None = None
    reporting_mta: str | None = None


@dataclass(frozen=True, slots=True)
class BounceReport:
    """The parsed form of one received message.

    ``kind`` is the message's overall kind (the most severe of its recipients'); each
    recipient carries its own, since one DSN may mix failed, delayed and delivered rows.
    ``problems`` lists what was wrong with the input (broken MIME, bad charset, ...)
    without stopping the parse: the operator sees them, the message is still used.
    """

    kind: Kind
    recipients: tuple[RecipientReport, ...] = ()
    original_message_id: str | None = None
    original_headers: tuple[tuple[str, str], ...] = ()
    verp_token: str | None = None
    subject: str | None = None
    date: datetime | None = None
    sender: str | None = None
    problems: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Qualification:
    """The judgement on one recipient's failure: its type, reason and what decided them."""

    failure_type: FailureType
    reason: Reason
    qualified_by: QualifiedBy = field(default_factory=lambda: QualifiedBy(QualifiedBySource.NONE))


@dataclass(frozen=True, slots=True)
class Verdict:
    """One recipient of one bounce, parsed, normalized and qualified.

    ``qualification`` is ``None`` for kinds that are no failure at all (delivered,
    not_bounce): they are logged but there is nothing to judge.
    """

    recipient: RecipientReport
    text: str
    qualification: Qualification | None

    @property
    def failure_type(self) -> FailureType | None:
        return self.qualification.failure_type if self.qualification else None

    @property
    def reason(self) -> Reason | None:
        return self.qualification.reason if self.qualification else None


# --------------------------------------------------------------------------- messages


@dataclass(frozen=True, slots=True)
class IncomingMessage:
    """A message as received (SMTP envelope + bytes), before it is stored.

    ``verp_token`` is the token of the envelope recipient (``bounces+TOKEN@...``), read
    with the configured ``verp.separator`` by whoever received the message
    (:func:`bounced.core.verp.envelope_token`).
    """

    received_at: datetime
    mail_from: str
    rcpt_to: tuple[str, ...]
    raw: bytes
    peer: str | None = None
    verp_token: str | None = None
    #: E-mail (raw RFC 5322 bytes), or an SMS status report / push feedback (raw is
    #: then the canonical JSON of :mod:`bounced.core.sms` / :mod:`bounced.core.push`).
    channel: Channel = Channel.EMAIL


@dataclass(frozen=True, slots=True)
class AcceptedMessage:
    """Where an incoming message went: its row id, and whether identical bytes
    (same sha256) were already stored, in which case nothing new was stored."""

    id: int
    duplicate: bool


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """A stored message as the pipeline reads it back."""

    id: int
    received_at: datetime
    mail_from: str
    rcpt_to: tuple[str, ...]
    raw: bytes
    state: MessageState
    peer: str | None
    error: str | None
    #: Times processing of this message began (a message the worker never finished,
    #: because it crashed or was killed on it, has begun more often than it ended).
    attempts: int = 0
    channel: Channel = Channel.EMAIL


# --------------------------------------------------------------------------- qualification

#: Priority of a rule that does not say (lower runs first).
DEFAULT_PRIORITY = 100


@dataclass(frozen=True, slots=True)
class TableEntry:
    """The qualification-table row of a normalized text, as far as qualifying needs it."""

    id: int
    status: QualificationStatus
    failure_type: FailureType
    reason: Reason


@dataclass(frozen=True, slots=True)
class Rule:
    """One email processing rule: a regular expression over the normalized diagnostic
    text (searched, case-insensitive) and the type and reason it gives.

    Rules run by ``priority`` (lower first) then ``id``. ``comment`` says what the MTA or
    provider means by the text and why it maps there, for the operator reading the
    ``rules`` table.

    ``status`` and ``command`` are optional extra conditions, regular expressions that
    must match the whole enhanced status code (``"5.2.0"``) or SMTP command (``"DATA"``)
    of the recipient; a missing one counts as the empty string (so a condition that
    accepts the empty string also holds when the report has no code). They exist
    because the same words mean different things depending on where they were said:
    "User unknown" answered to RCPT TO is an unknown address, answered to DATA (after
    RCPT TO accepted the address) it is a content filter.

    ``source`` says where a shipped rule's wording comes from (an MTA's or a provider's
    documentation, the reference data): required for the shipped defaults (ids below
    10000), optional for an operator's. It lives in the shipped data only (the ``rules``
    table does not store it), so it takes no part in comparing two rules.
    """

    id: int
    pattern: str
    failure_type: FailureType
    reason: Reason
    priority: int = DEFAULT_PRIORITY
    comment: str = ""
    enabled: bool = True
    status: str | None = None
    command: str | None = None
    source: str = field(default="", compare=False)

    @property
    def qualified_by(self) -> QualifiedBy:
        return QualifiedBy(QualifiedBySource.RULE, str(self.id))


# --------------------------------------------------------------------------- addresses


@dataclass(frozen=True, slots=True)
class AddressState:
    """One row of ``addresses``: where an address stands and the memory behind it
    (the address is an e-mail address, ``tel:+E164`` or ``push:APP:TOKEN``; its
    channel follows from that form, :func:`bounced.core.addresses.channel_of`)."""

    address: str
    state: QuarantineState = QuarantineState.VALID
    error_count: int = 0
    last_error_at: datetime | None = None
    last_counted_error_at: datetime | None = None
    reason: Reason | None = None
    quarantined_at: datetime | None = None
    release_at: datetime | None = None
    undefined_count: int = 0
    updated_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class AddressEvent:
    """One row of the append-only ``address_events`` history: a change of state."""

    address: str
    at: datetime
    old_state: QuarantineState | None
    new_state: QuarantineState
    cause: str
