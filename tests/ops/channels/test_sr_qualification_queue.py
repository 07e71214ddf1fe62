"""SR texts wait in the same qualification queue as e-mail texts, and an operator's
qualification (``bounced rules qualify``) changes the verdicts of later receipts."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bounced.config import Config
from bounced.core.sms import Receipt
from bounced.ops.channels import store_receipt
from bounced.ops.processing import process_messages
from bounced.store import Store

RECEIPT = ("id:{id} sub:001 dlvrd:000 submit date:2611221305 done date:2611221310 "
           "stat:UNDELIV err:027 text:hello")


def receive(db, number: str, message_id: str) -> None:
    with Store.open(db) as store:
        stored = store_receipt(store, Receipt(
            "smpp", "acme", "Acme", text=RECEIPT.format(id=message_id), source=number,
            source_ton=1), received_at=datetime(2026, 11, 22, 13, 10, tzinfo=UTC))
        process_messages(store, [stored.id], config=Config(), rules=store.rules.enabled())


def test_an_sr_text_is_queued_then_an_operator_qualification_changes_later_verdicts(
        bounced, db, sql) -> None:
    receive(db, "33611110001", "a1")
    assert sql("SELECT state FROM addresses WHERE address = 'tel:+33611110001'") == [
        ("quarantine",)]
    queue = bounced(["rules", "queue", "--db", str(db), "--json"])
    assert queue.status == 0, queue.err
    waiting = [json.loads(line) for line in queue.out.splitlines()]
    [row] = [w for w in waiting if w["text"] == "SR Acme UNDELIV 027|#MESSAGE#"]
    assert row["first_text"].startswith("SR Acme UNDELIV 027|id:a1 ")
    decided = bounced(["rules", "qualify", "--db", str(db), str(row["id"]), "--type", "soft",
                       "--reason", "Mailbox full"])
    assert decided.status == 0, decided.err
    receive(db, "33611110002", "a2")
    assert sql("SELECT failure_type, reason_code, qualified_by FROM bounces "
               "WHERE recipient = 'tel:+33611110002'") == [
        ("soft", 5, f"table:{row['id']}")]
    assert sql("SELECT state FROM addresses WHERE address = 'tel:+33611110002'") == [
        ("erroneous",)]
    explained = bounced(["explain", "--db", str(db), "tel:+33611110002"])
    assert "SR Acme UNDELIV 027|#MESSAGE#" in explained.out
    report = bounced(["report", "--db", str(db), "--since", "2026-11-01T00:00:00Z",
                      "--at", "2026-12-01T00:00:00Z", "--by", "channel", "--no-dns"])
    assert report.status == 0, report.err
    assert "by channel: sms 2" in report.out
