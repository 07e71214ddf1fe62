"""Store-level guarantees of the operator jobs that the CLI output cannot show: short
transactions, and no overwrite of what changed between planning and applying."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from bounced.config import Config
from bounced.ops.reprocess import apply_plan, plan
from bounced.store import Store
from tests.ops.quarantine.conftest import Ops, day


def test_purge_works_in_one_transaction_per_batch(ops: Ops) -> None:
    ops.ingest(day(0), *(("mailbox-full", f"p{n}@example.org") for n in range(5)))
    ops.ingest(day(0.5), *(("mailbox-full", f"p{n}@example.org") for n in range(5)))
    with Store.open(ops.db) as store:
        result = store.retention.purge(datetime.now(UTC) + timedelta(days=1), batch=2)
    assert result.batches == 5                       # 10 messages, 2 per transaction
    assert (result.messages_deleted, result.bounces_deleted, result.raw_dropped) == (5, 5, 5)


def test_reprocess_does_not_overwrite_a_verdict_changed_after_planning(ops: Ops) -> None:
    ops.add_rule(10_001, "blocked using", "hard", 20)
    ops.ingest(day(0), ("rbl-blocked", "a@example.org"), ("rbl-blocked", "b@example.org"))
    ops.sql("UPDATE rules SET enabled = 0 WHERE id = 10001")
    with Store.open(ops.db) as store:
        planned = plan(store, since=None, config=Config())
        assert {b.address for b in planned.bounces} == {"a@example.org", "b@example.org"}
        # meanwhile another operator decided b's bounce by hand
        ops.sql("UPDATE bounces SET failure_type = 'ignored' WHERE recipient = 'b@example.org'")
        changes = apply_plan(store, planned, config=Config(), at=day(1))
    assert [c.address for c in changes] == ["a@example.org"]
    assert ops.sql("SELECT recipient, failure_type FROM bounces ORDER BY recipient") == [
        ("a@example.org", "soft"), ("b@example.org", "ignored")]
    assert ops.sql("SELECT count(*) FROM verdict_changes") == [(1,)]
