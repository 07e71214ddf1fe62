"""``bounced report`` over the three channels, on both engines: an SMS is grouped under
the domain ``sms``, a push token under ``push:APP``, an e-mail address under its domain;
``--by channel`` and the ``daily_summary`` view say the same."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bounced.config import Config
from bounced.core.push import Feedback
from bounced.core.sms import Receipt
from bounced.ops.channels import record_push, store_receipt
from bounced.ops.processing import process_messages
from bounced.store import Store

AT = datetime(2026, 11, 22, 13, 10, tzinfo=UTC)
RECEIPT = ("id:r1 sub:001 dlvrd:000 submit date:2611221305 done date:2611221310 "
           "stat:UNDELIV err:012 text:hello")


def test_domains_and_channels_of_the_three_kinds_of_address(bounced, db, sql,
                                                             mail_file) -> None:
    ingested = bounced(["ingest", "--db", str(db), "--at", "2026-11-22T13:10:00Z",
                        str(mail_file("hard-user-unknown", address="jane@Example.org"))])
    assert ingested.status == 0, ingested.out + ingested.err
    config = Config()
    with Store.open(db) as store:
        stored = store_receipt(store, Receipt(
            "smpp", "acme", "Acme", text=RECEIPT, source="33612345672", source_ton=1),
            received_at=AT)
        process_messages(store, [stored.id], config=config, rules=store.rules.enabled(),
                         at=AT)
        outcome = record_push(store, Feedback("apns", "com.example.app", "c" * 64, status=410,
                                              code="Unregistered"),
                              config=config, received_at=AT)
        assert outcome.state.value == "quarantine"
    sql("UPDATE bounces SET at = ?", ("2026-11-22T13:10:00Z",))  # one day for the view

    def groups(by: str) -> dict[str, int]:
        run = bounced(["report", "--db", str(db), "--since", "2026-11-01T00:00:00Z",
                       "--at", "2026-12-01T00:00:00Z", "--by", by, "--json", "--no-dns"])
        assert run.status == 0, run.err
        return {group["key"]: group["bounces"] for group in json.loads(run.out)["groups"]}

    assert groups("domain") == {"example.org": 1, "sms": 1, "push:com.example.app": 1}
    assert groups("channel") == {"email": 1, "sms": 1, "push": 1}
    assert sorted(sql("SELECT day, domain, channel, bounces FROM daily_summary")) == [
        ("2026-11-22", "example.org", "email", 1),
        ("2026-11-22", "push:com.example.app", "push", 1),
        ("2026-11-22", "sms", "sms", 1)]
    assert sorted(sql("SELECT address, channel FROM suppression_list")) == [
        ("jane@example.org", "email"), ("push:com.example.app:" + "c" * 64, "push"),
        ("tel:+33612345672", "sms")]
