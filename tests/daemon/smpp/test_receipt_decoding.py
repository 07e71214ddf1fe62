"""What the SMPP intake makes of one ``deliver_sm`` (smpplib decodes, bounced keeps)."""

from __future__ import annotations

import struct
from typing import Any

from smpplib import smpp as codec

from bounced.config import SmppAccount
from bounced.core.sms import read_receipt, receipt_raw
from bounced.daemon.smpp import receipt_of

ACCOUNT = SmppAccount(name="acme", host="127.0.0.1", system_id="bounced", smsc="Acme")


class Numbers:
    sequence = 0

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


def pdu(sequence: int = 7, **fields: Any) -> bytes:
    made = codec.make_pdu("deliver_sm", client=Numbers(), destination_addr="BOUNCED",
                          **fields)
    made.sequence = sequence
    return bytes(made.generate())


def test_a_receipt_keeps_its_text_tlvs_and_pdu() -> None:
    receipt = receipt_of(ACCOUNT, pdu(
        source_addr="33612345678", source_addr_ton=1, esm_class=4,
        short_message=b"id:9 stat:UNDELIV err:012 text:x", receipted_message_id="9",
        message_state=5, network_error_code=b"\x03\x00\x0c"))
    assert receipt is not None
    assert (receipt.text, receipt.source, receipt.source_ton, receipt.message_id) == (
        "id:9 stat:UNDELIV err:012 text:x", "33612345678", 1, "9")
    assert (receipt.message_state, receipt.network_error_code) == (5, "03000c")
    assert receipt.smsc == "Acme" and receipt.pdu and not receipt.problems
    assert read_receipt(receipt_raw(receipt)) == receipt


def test_a_resent_receipt_has_the_same_stored_bytes_whatever_its_sequence() -> None:
    fields = {"source_addr": "33612345678", "esm_class": 4, "short_message": b"stat:DELIVRD"}
    first, again = receipt_of(ACCOUNT, pdu(1, **fields)), receipt_of(ACCOUNT, pdu(900, **fields))
    assert first is not None and again is not None
    assert receipt_raw(first) == receipt_raw(again)


def test_a_mobile_originated_sms_is_no_receipt() -> None:
    assert receipt_of(ACCOUNT, pdu(source_addr="336", esm_class=0, short_message=b"STOP")) \
        is None


def test_an_intermediate_notification_is_marked() -> None:
    receipt = receipt_of(ACCOUNT, pdu(source_addr="336", esm_class=0x20,
                                      short_message=b"stat:ACCEPTD"))
    assert receipt is not None and receipt.intermediate


def test_a_deliver_sm_that_cannot_be_decoded_is_kept_with_its_problem() -> None:
    body = b"svc\x00"  # the body stops before source_addr_ton
    raw = struct.pack(">LLLL", 16 + len(body), 0x00000005, 0, 3) + body
    receipt = receipt_of(ACCOUNT, raw)
    assert receipt is not None and receipt.problems
    assert receipt.pdu == (raw[:12] + b"\0\0\0\0" + raw[16:]).hex()
