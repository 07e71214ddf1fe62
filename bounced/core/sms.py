"""SMS status reports ("SR"): the stored receipt -> its text -> one verdict (docs/channels.md).

An SMSC reports the fate of each SMS in a delivery receipt. Over SMPP 3.4 it is a
``deliver_sm`` whose ``esm_class`` says "SMSC delivery receipt", whose text follows
Appendix B (``id:... sub:... dlvrd:... submit date:... done date:... stat:... err:...
text:...``) and which may carry the TLVs ``receipted_message_id``, ``message_state``
and ``network_error_code`` (some SMSCs send the TLVs only). Gateways that call a URL
back (Jasmin's ``dlr-url``, Kannel's ``dlr-url`` escapes) say the same in HTTP fields.

Both intakes store the receipt as a :class:`Receipt` written with :func:`receipt_raw`: a
canonical JSON document (sorted keys, no sequence number), so that an SMSC re-sending a
receipt it never saw acknowledged is recognised by the ``messages`` digest as a
duplicate, exactly as a re-sent e-mail bounce is. The original PDU (hex) rides along
for audit. This module reads it back and judges it, purely:

1. ``stat`` and ``err`` are extracted with the SMSC account's regular expressions
   (``[[smpp]] status_regex`` / ``error_regex``; by default the ``stat:`` and ``err:``
   fields), falling back to the ``message_state`` and ``network_error_code`` TLVs;
2. the text is ``SR <smsc> <stat> <err>|#MESSAGE#`` (the first text keeps the receipt
   after the pipe), looked up in the qualification table like any other text, then in
   the processing rules: shipped rule 1 makes any status but ``DELIV...`` hard / Refused
   and rule 8 makes ``DELIV...`` a success (ignored), as the reference says for an SR
   nobody qualified yet;
3. the kind is ``delivered`` for a ``DELIV...`` status (unless an operator qualified its
   text as a failure), ``delay`` for an intermediate notification (not a final state),
   ``failure`` otherwise. A receipt whose status cannot be read at all (a malformed one)
   gets no rule: it is ``undefined`` and waits in the qualification queue, never
   quarantining a number on a guess.

Which number a receipt is about comes from the sending platform's registration of the
message id (``POST /v1/messages``, looked up by the caller) or, failing that, from the
receipt's source address (the handset: a receipt travels back from it).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from bounced.core.addresses import TEL, canonical_phone
from bounced.core.normalize import normalize_sms
from bounced.core.qualify import match_rule
from bounced.model import (
    BounceReport,
    FailureType,
    Kind,
    Qualification,
    QualificationStatus,
    QualifiedBy,
    QualifiedBySource,
    Reason,
    RecipientReport,
    Rule,
    TableEntry,
    Verdict,
)

#: The SMSC implementation name when an account names none (the reference's example).
GENERIC = "Generic"
#: Default extraction of ``stat`` and ``err`` (SMPP 3.4 Appendix B fields).
DEFAULT_STATUS_REGEX = r"\bstat:(\S*)"
DEFAULT_ERROR_REGEX = r"\berr:(\S*)"

#: ``message_state`` TLV values (SMPP 3.4 5.2.28) -> the Appendix B ``stat`` words.
MESSAGE_STATES: Mapping[int, str] = {
    1: "ENROUTE", 2: "DELIVRD", 3: "EXPIRED", 4: "DELETED", 5: "UNDELIV", 6: "ACCEPTD",
    7: "UNKNOWN", 8: "REJECTD",
}
#: ``esm_class`` message-type bits (SMPP 3.4 5.2.12, bits 5..2).
ESM_TYPE_MASK = 0b0011_1100
ESM_DELIVERY_RECEIPT = 0b0000_0100
ESM_INTERMEDIATE = 0b0010_0000
#: ``source_addr_ton`` of an international number (written without its ``+``).
TON_INTERNATIONAL = 1

TableLookup = Callable[[str], TableEntry | None]


@dataclass(frozen=True, slots=True)
class Receipt:
    """One SMS status report as stored (the fields of :func:`receipt_raw`).

    ``via`` is ``smpp`` or ``http``; ``account`` the ``[[smpp]]`` account (or the HTTP
    caller's ``smsc``) it came through; ``smsc`` the SMSC implementation name written in
    the SR text; ``text`` the receipt text (Appendix B); ``source`` the handset's
    number as the SMSC wrote it; ``message_id`` the SMSC's id of the SMS it reports on;
    ``intermediate``: a notification of a state that is not final (``esm_class``
    intermediate bit, Kannel's "buffered" and "submitted" types). ``problems``: what
    could not be read (a malformed PDU or body); the receipt is stored all the same.
    """

    via: str
    account: str
    smsc: str = GENERIC
    text: str = ""
    source: str | None = None
    source_ton: int | None = None
    message_id: str | None = None
    message_state: int | None = None
    network_error_code: str | None = None
    esm_class: int | None = None
    intermediate: bool = False
    pdu: str | None = None
    problems: tuple[str, ...] = ()
    #: Anything else the intake kept (HTTP fields), for the audit.
    extra: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "channel": "sms", "via": self.via, "account": self.account, "smsc": self.smsc,
            "text": self.text, "source": self.source, "source_ton": self.source_ton,
            "message_id": self.message_id, "message_state": self.message_state,
            "network_error_code": self.network_error_code, "esm_class": self.esm_class,
            "intermediate": self.intermediate, "pdu": self.pdu,
            "problems": list(self.problems), "extra": dict(self.extra),
        }
        return {key: value for key, value in data.items() if value not in (None, [], {})}


def receipt_raw(receipt: Receipt) -> bytes:
    """The canonical bytes stored in ``messages.raw``: identical receipts give
    identical bytes (sorted keys, no PDU sequence number), hence one digest."""
    return json.dumps(receipt.to_json(), sort_keys=True, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def read_receipt(raw: bytes) -> Receipt:
    """The stored receipt; a document that cannot be read becomes an empty receipt
    with the problem noted (it still gets a verdict row, address-less)."""
    try:
        data = json.loads(raw.decode("utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError) as error:
        return Receipt("unknown", "unknown", problems=(f"unreadable receipt: {error}",))

    def text(key: str) -> str | None:
        value = data.get(key)
        return str(value) if value is not None else None

    def number(key: str) -> int | None:
        value = data.get(key)
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    extra = data.get("extra")
    problems = data.get("problems")
    return Receipt(
        via=text("via") or "unknown", account=text("account") or "unknown",
        smsc=text("smsc") or GENERIC, text=text("text") or "", source=text("source"),
        source_ton=number("source_ton"), message_id=text("message_id"),
        message_state=number("message_state"),
        network_error_code=text("network_error_code"), esm_class=number("esm_class"),
        intermediate=bool(data.get("intermediate")), pdu=text("pdu"),
        problems=tuple(str(p) for p in problems) if isinstance(problems, list) else (),
        extra={str(k): str(v) for k, v in extra.items()} if isinstance(extra, dict) else {},
    )


# --------------------------------------------------------------------------- reading


def is_delivery_receipt(esm_class: int) -> bool:
    """``esm_class`` says SMSC delivery receipt or intermediate notification."""
    kind = esm_class & ESM_TYPE_MASK
    return kind in (ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE)


def decode_text(payload: bytes, data_coding: int) -> str:
    """The receipt text: UCS-2 when ``data_coding`` says so (8), else byte for byte
    (receipt texts are ASCII; Latin-1 keeps any other byte readable and lossless)."""
    if data_coding == 8:
        return payload.decode("utf-16-be", errors="replace")
    return payload.decode("latin-1")


def network_error(code_hex: str | None) -> str | None:
    """The error code of a ``network_error_code`` TLV (network type, then a 2-octet
    code) written as the ``err:`` field would be (three digits at least)."""
    if not code_hex:
        return None
    try:
        data = bytes.fromhex(code_hex)
    except ValueError:
        return None
    if len(data) != 3:
        return None
    return f"{int.from_bytes(data[1:], 'big'):03d}"


def _extract(pattern: str, text: str) -> str | None:
    try:
        match = re.search(pattern, text, re.IGNORECASE)
    except re.error:
        return None
    if match is None:
        return None
    value = match.group(1) if match.re.groups else match.group(0)
    return value.strip() or None


def status_and_error(receipt: Receipt, status_regex: str = DEFAULT_STATUS_REGEX,
                     error_regex: str = DEFAULT_ERROR_REGEX) -> tuple[str | None, str | None]:
    """``(stat, err)`` of a receipt: the account's regexes over its text first, then
    the ``message_state`` / ``network_error_code`` TLVs."""
    stat = _extract(status_regex, receipt.text) if receipt.text else None
    err = _extract(error_regex, receipt.text) if receipt.text else None
    if stat is None and receipt.message_state is not None:
        stat = MESSAGE_STATES.get(receipt.message_state)
    if err is None:
        err = network_error(receipt.network_error_code)
    return stat, err


def message_id_of(receipt: Receipt) -> str | None:
    """The SMSC's id of the SMS reported on: the TLV, else the text's ``id:`` field."""
    if receipt.message_id:
        return receipt.message_id
    return _extract(r"\bid:(\S+)", receipt.text)


def source_number(receipt: Receipt, region: str = "") -> str | None:
    """The handset's number as ``tel:+E164`` (an international TON gets its ``+``)."""
    source = (receipt.source or "").strip()
    if not source:
        return None
    if receipt.source_ton == TON_INTERNATIONAL and not source.startswith("+"):
        source = "+" + source
    return canonical_phone(TEL + source, region)


def sr_texts(smsc: str, stat: str | None, err: str | None, text: str) -> tuple[str, str]:
    """``(normalized, first_text)``: ``SR <smsc> <stat> <err>|#MESSAGE#`` and the same
    head with the receipt after the pipe (the reference's "First text")."""
    name = "_".join(smsc.split()) or GENERIC
    return normalize_sms(text, name, stat=stat or "", err=err or "")


# --------------------------------------------------------------------------- judging


def _qualify(text: str, entry: TableEntry | None, rules: Sequence[Rule]) -> Qualification:
    """Qualification table, then processing rules, then undefined: an SR text is no
    mail wording, so the e-mail evidence procedure has nothing to say about it."""
    if entry is not None:
        by_table = QualifiedBy(QualifiedBySource.TABLE, str(entry.id))
        if entry.status is QualificationStatus.KEEP:
            return Qualification(entry.failure_type, entry.reason, by_table)
        if entry.status is QualificationStatus.IGNORE:
            return Qualification(FailureType.IGNORED, entry.reason, by_table)
    rule = match_rule(text, rules)
    if rule is not None:
        return Qualification(rule.failure_type, rule.reason, rule.qualified_by)
    return Qualification(FailureType.UNDEFINED, Reason.NOT_DEFINED)


def judge_receipt(
    receipt: Receipt,
    *,
    registered: str | None = None,
    region: str = "",
    rules: Sequence[Rule],
    lookup: TableLookup,
    status_regex: str = DEFAULT_STATUS_REGEX,
    error_regex: str = DEFAULT_ERROR_REGEX,
) -> tuple[BounceReport, tuple[Verdict, ...]]:
    """The report and the one verdict of a receipt. ``registered``: the number the
    sending platform registered for the receipt's message id, if any (else the
    receipt's source address, read in ``region`` when national, is used)."""
    stat, err = status_and_error(receipt, status_regex, error_regex)
    text, first_text = sr_texts(receipt.smsc, stat, err, receipt.text)
    qualification = _qualify(text, lookup(text), rules)
    success = (stat or "").upper().startswith("DELIV")
    operator_failure = qualification.qualified_by.source is QualifiedBySource.TABLE and \
        qualification.failure_type in (FailureType.HARD, FailureType.SOFT)
    if receipt.intermediate:
        kind = Kind.DELAY
        qualification = replace(qualification, failure_type=FailureType.IGNORED)
    elif success and not operator_failure:
        kind = Kind.DELIVERED
    else:
        kind = Kind.FAILURE
    message_id = message_id_of(receipt)
    source = source_number(receipt, region)
    row = RecipientReport(
        address=registered or source,
        kind=kind,
        status=stat,
        diagnostic=first_text,
        remote_mta=f"smsc:{receipt.account}",
        original_recipient=source,
    )
    report = BounceReport(kind=kind, recipients=(row,), original_message_id=message_id,
                          problems=receipt.problems)
    return report, (Verdict(row, text, qualification),)

