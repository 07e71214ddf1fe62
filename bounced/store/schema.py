"""The schema: named migration steps, applied in order, and the seeded reference data.

Step N brings ``PRAGMA user_version`` from N-1 to N; steps are append-only (a released
step is never edited, a new one is added). A database newer than the code is refused
rather than guessed at. The public tables and columns are documented in
``docs/schema.md``; they are a contract with operators' queries, so migrations only
add to them.

Beyond the documented key columns, the schema carries:

- ``messages``: ``peer``, ``verp_token`` (of the envelope recipient), ``kind``,
  ``trusted`` (0: signed VERP failed, no address changed), ``attempts``, ``processed_at``;
  ``rcpt_to`` is a JSON array; ``sha256`` is unique (duplicates are recognised by it;
  a trigger enforces it);
- ``bounces``: ``at`` (the time the bounce counted at for the policy), ``original_recipient``,
  ``remote_mta``, ``smtp_command``, ``verp_token``, ``feedback_type``;
- ``qualification``: ``qualified_by`` (what decided its type and reason);
- ``rules``: ``comment``, ``status`` and ``command`` (conditions of a rule);
- ``addresses``: ``undefined_count`` (undefined errors seen, for the grace of
  ``docs/policy.md``);
- ``address_events`` is append-only, enforced by triggers.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

import sqlite_utils

from bounced.core.qualify import load_default_rules
from bounced.model import MessageState, QualificationStatus, QuarantineState, Reason
from bounced.store.engine import StoreError


@dataclass(frozen=True, slots=True)
class Migration:
    """One schema step: its number (the ``user_version`` it leads to) and its name."""

    version: int
    name: str
    apply: Callable[[sqlite_utils.Database], None]


#: Every step, in order (registered by :func:`migration` as the module is read).
MIGRATIONS: list[Migration] = []


def migration(name: str) -> Callable[[Callable[[sqlite_utils.Database], None]],
                                     Callable[[sqlite_utils.Database], None]]:
    """Register the decorated function as the next schema step, under ``name``."""
    def register(step: Callable[[sqlite_utils.Database], None]
                 ) -> Callable[[sqlite_utils.Database], None]:
        MIGRATIONS.append(Migration(len(MIGRATIONS) + 1, name, step))
        return step
    return register


_ADDRESS_STATES = ", ".join(f"'{state.value}'" for state in QuarantineState)


@migration("public schema")
def _migration_1(db: sqlite_utils.Database) -> None:
    """The initial public schema (docs/schema.md) plus the extra columns documented in README."""
    db.table("reasons").create(
        {"code": int, "label": str, "default_type": str}, pk="code", not_null={"label"}
    )
    db.table("rules").create(
        {
            "id": int,
            "pattern": str,
            "failure_type": str,
            "reason_code": int,
            "priority": int,
            "origin": str,
            "enabled": int,
            "comment": str,
        },
        pk="id",
        not_null={"pattern", "failure_type", "reason_code", "priority", "origin", "enabled"},
        defaults={"priority": 100, "origin": "user", "enabled": 1, "comment": ""},
        foreign_keys=[("reason_code", "reasons", "code")],
    )
    db.table("messages").create(
        {
            "id": int,
            "received_at": str,
            "mail_from": str,
            "rcpt_to": str,  # JSON array of the envelope recipients
            "size": int,
            "sha256": str,
            "raw": bytes,
            "state": str,
            "error": str,
            "peer": str,
            "verp_token": str,
            "kind": str,
            "trusted": int,
            "attempts": int,
            "processed_at": str,
        },
        pk="id",
        not_null={"received_at", "mail_from", "rcpt_to", "size", "sha256", "raw", "state"},
        defaults={"state": MessageState.PENDING.value, "attempts": 0},
    )
    db.table("messages").create_index(["sha256"], unique=True)
    db.table("messages").create_index(["state"])
    db.table("qualification").create(
        {
            "id": int,
            "text": str,
            "first_text": str,
            "failure_type": str,
            "reason_code": int,
            "qualified_by": str,
            "status": str,
            "occurrences": int,
            "first_seen": str,
            "last_seen": str,
        },
        pk="id",
        not_null={"text", "first_text", "status", "occurrences"},
        defaults={"status": QualificationStatus.TO_QUALIFY.value, "occurrences": 0},
        foreign_keys=[("reason_code", "reasons", "code")],
    )
    db.table("qualification").create_index(["text"], unique=True)
    db.table("bounces").create(
        {
            "id": int,
            "message_id": int,
            "recipient": str,
            "kind": str,
            "action": str,
            "status": str,
            "reply_code": str,
            "diagnostic": str,
            "qualification_id": int,
            "failure_type": str,
            "reason_code": int,
            "qualified_by": str,
            "original_message_id": str,
            "received_at": str,
            "at": str,
            "original_recipient": str,
            "remote_mta": str,
            "smtp_command": str,
            "verp_token": str,
            "feedback_type": str,
        },
        pk="id",
        not_null={"message_id", "kind", "received_at"},
        foreign_keys=[
            ("message_id", "messages", "id"),
            ("qualification_id", "qualification", "id"),
            ("reason_code", "reasons", "code"),
        ],
    )
    db.table("bounces").create_index(["message_id"])
    db.table("bounces").create_index(["recipient"])
    db.table("bounces").create_index(["at"])
    db.table("bounces").create_index(["original_message_id"])
    db.table("addresses").create(
        {
            "address": str,
            "state": str,
            "error_count": int,
            "last_error_at": str,
            "last_counted_error_at": str,
            "reason_code": int,
            "quarantined_at": str,
            "release_at": str,
            "updated_at": str,
            "undefined_count": int,
        },
        pk="address",
        not_null={"state", "error_count", "undefined_count", "updated_at"},
        defaults={"error_count": 0, "undefined_count": 0},
        foreign_keys=[("reason_code", "reasons", "code")],
    )
    db.table("addresses").create_index(["state"])
    db.table("address_events").create(
        {
            "id": int,
            "address": str,
            "at": str,
            "old_state": str,
            "new_state": str,
            "cause": str,
            "bounce_id": int,
        },
        pk="id",
        not_null={"address", "at", "new_state", "cause"},
        foreign_keys=[("bounce_id", "bounces", "id")],
    )
    db.table("address_events").create_index(["address"])
    # The history is append-only (docs/policy.md): refuse edits at the database level.
    db.execute(
        "CREATE TRIGGER address_events_no_update BEFORE UPDATE ON address_events "
        "BEGIN SELECT RAISE(ABORT, 'address_events is append-only'); END"
    )
    db.execute(
        "CREATE TRIGGER address_events_no_delete BEFORE DELETE ON address_events "
        "BEGIN SELECT RAISE(ABORT, 'address_events is append-only'); END"
    )
    db.create_view(
        "suppression_list",
        "SELECT a.address AS address, a.state AS state, "
        "COALESCE(r.label, a.state) AS reason, "
        "COALESCE(a.quarantined_at, a.updated_at) AS since "
        "FROM addresses a LEFT JOIN reasons r ON r.code = a.reason_code "
        "WHERE a.state IN ('quarantine', 'denylisted')",
    )
    db.create_view(
        "daily_summary",
        "SELECT substr(COALESCE(b.at, b.received_at), 1, 10) AS day, "
        "b.failure_type AS failure_type, r.label AS reason, "
        "lower(substr(b.recipient, instr(b.recipient, '@') + 1)) AS domain, "
        "count(*) AS bounces, count(DISTINCT b.recipient) AS addresses "
        "FROM bounces b LEFT JOIN reasons r ON r.code = b.reason_code "
        "WHERE b.failure_type IS NOT NULL "
        "GROUP BY day, b.failure_type, r.label, domain",
    )
    db.create_view(
        "to_qualify",
        "SELECT id, text, first_text, occurrences, last_seen FROM qualification "
        "WHERE status = 'to_qualify' ORDER BY occurrences DESC, last_seen DESC",
    )


@migration("dns evidence")
def _migration_2(db: sqlite_utils.Database) -> None:
    """DNS evidence and report indexes.

    ``dns_cache``: one row per recipient domain looked up (``bounced.ops.dns``), so that
    reports grouping by provider and the evidence on ``Invalid domain`` bounces do not
    query DNS again for every row; ``expires_at`` bounds how long an answer is trusted.
    ``bounces.dns_status`` / ``dns_detail``: the evidence recorded on the bounce itself
    (``mx``, ``null_mx``, ``no_mx``, ``no_mail``, ``nxdomain``, ``unknown``), so an audit
    does not depend on a cache that expires. ``address_events(at)``: quarantines per day
    over a time window without scanning the whole history.
    """
    db.execute(
        "CREATE TABLE dns_cache (domain TEXT PRIMARY KEY, status TEXT NOT NULL, "
        "mx TEXT NOT NULL DEFAULT '', provider TEXT NOT NULL DEFAULT 'other', "
        "detail TEXT NOT NULL DEFAULT '', checked_at TEXT NOT NULL, "
        "expires_at TEXT NOT NULL)"
    )
    db.execute("ALTER TABLE bounces ADD COLUMN dns_status TEXT")
    db.execute("ALTER TABLE bounces ADD COLUMN dns_detail TEXT")
    db.execute("CREATE INDEX idx_address_events_at ON address_events (at)")


@migration("verdict changes")
def _migration_3(db: sqlite_utils.Database) -> None:
    """Re-qualification history for ``bounced reprocess`` and ``quarantine rollback``
   .

    ``verdict_changes``: one row each time an operator command changed a stored verdict
    (``action`` = ``reprocess``: today's rules qualify the bounce differently;
    ``rollback``: the bounce no longer counts, e.g. an ISP outage). The ``bounces`` row
    carries the verdict in force; this table keeps what it was, when and why, so the
    delivery log stays auditable, and a rolled-back bounce is never counted again by a
    later reprocess. ``bounces(qualification_id)``: rollback and explain by text;
    ``address_events(bounce_id)``: the retention purge keeps the bounces the history cites.
    """
    db.execute(
        "CREATE TABLE verdict_changes (id INTEGER PRIMARY KEY, "
        "bounce_id INTEGER NOT NULL REFERENCES bounces(id) ON DELETE CASCADE, "
        "at TEXT NOT NULL, action TEXT NOT NULL, "
        "old_failure_type TEXT, old_reason_code INTEGER, old_qualified_by TEXT, "
        "new_failure_type TEXT, new_reason_code INTEGER, new_qualified_by TEXT, "
        "cause TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX idx_verdict_changes_bounce_id ON verdict_changes (bounce_id)")
    db.execute("CREATE INDEX idx_bounces_qualification_id ON bounces (qualification_id)")
    # Deleting a bounce (retention purge) checks the foreign key from address_events:
    # without this index, that is a scan of the whole history per deleted row.
    db.execute("CREATE INDEX idx_address_events_bounce_id ON address_events (bounce_id)")


@migration("rule conditions")
def _migration_4(db: sqlite_utils.Database) -> None:
    """Rule conditions: ``rules.status`` and ``rules.command``, regular expressions the
    recipient's enhanced status code / SMTP command must match for the rule to apply
    (the same words mean an unknown user at RCPT TO and a content filter at DATA).
    Without them a rule read back from the table would match more than it ships for."""
    db.execute("ALTER TABLE rules ADD COLUMN status TEXT")
    db.execute("ALTER TABLE rules ADD COLUMN command TEXT")


@migration("bounces waiting for dns evidence")
def _migration_5(db: sqlite_utils.Database) -> None:
    """The ``Invalid domain`` bounces still waiting for DNS evidence, as a partial index:
    the daemon's evidence thread asks for them every few seconds, and without the index
    that is a scan of the whole delivery log once they all have evidence."""
    db.execute(
        "CREATE INDEX idx_bounces_dns_waiting ON bounces (id) "
        "WHERE reason_code = 2 AND dns_status IS NULL"
    )


#: Hex digits of ``sha256`` the duplicate index keys on (64 bits): the full digest is
#: compared on the few rows that share them.
DIGEST_PREFIX = 16
#: The stored message with a digest, if any: ``(digest[:DIGEST_PREFIX], digest)``.
DUPLICATE_LOOKUP = (
    f"SELECT id FROM messages WHERE substr(sha256, 1, {DIGEST_PREFIX}) = ? AND +sha256 = ?"
)


@migration("indexes for a large delivery log")
def _migration_6(db: sqlite_utils.Database) -> None:
    """Indexes sized for a large delivery log (1M addresses, 5M bounces).

    Every random-key index costs about one page per message to write, to keep in the WAL
    and to checkpoint, once it no longer fits in memory. Two of them did not pay for it:

    - ``messages(sha256)``, unique on the 64-character digest (334 MB at 4M messages),
      becomes an index on its first 16 hex digits (64 bits; about a quarter of the size,
      so it stays cached far longer). Uniqueness of the full digest is kept by a trigger,
      and :meth:`Store.insert_messages` looks duplicates up by the prefix and the digest.
      (``+sha256`` in both: a plain ``sha256 = ?`` makes SQLite propagate the constant
      into ``substr(sha256, ...)``, which then no longer matches the indexed expression.)
    - ``addresses(state)`` is dropped: every counted error rewrote an entry in it, while
      its readers (``quarantine list|export``, the daily cleanup) want a fifth of the
      rows or more, which a scan of the table serves as fast.
    """
    db.execute("DROP INDEX IF EXISTS idx_messages_sha256")
    db.execute(
        "CREATE INDEX idx_messages_sha256_prefix ON messages "
        f"(substr(sha256, 1, {DIGEST_PREFIX}))"
    )
    db.execute(
        "CREATE TRIGGER messages_sha256_unique BEFORE INSERT ON messages "
        "WHEN EXISTS (SELECT 1 FROM messages "
        f"WHERE substr(sha256, 1, {DIGEST_PREFIX}) = substr(NEW.sha256, 1, {DIGEST_PREFIX}) "
        "AND +sha256 = NEW.sha256) "
        "BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: messages.sha256'); END"
    )
    db.execute("DROP INDEX IF EXISTS idx_addresses_state")


@migration("addresses clustered by address")
def _migration_7(db: sqlite_utils.Database) -> None:
    """``addresses`` becomes a WITHOUT ROWID table keyed by the address.

    As a rowid table it was two b-trees: the implicit unique index on ``address`` and
    the rows. Every bounce looked the address up in one and read (then wrote) the other,
    two random pages on a large database; clustered by the address it is one. Rows are
    ~150 bytes, well within what SQLite advises for WITHOUT ROWID. Rebuilt the documented
    way (new table, copy, drop, rename); the view that reads it is recreated around it.
    """
    conn = db.conn
    (view_sql,) = conn.execute(
        "SELECT sql FROM sqlite_master WHERE type = 'view' AND name = 'suppression_list'"
    ).fetchone()
    conn.execute("DROP VIEW suppression_list")
    conn.execute(
        "CREATE TABLE addresses_clustered ("
        "address TEXT NOT NULL PRIMARY KEY, state TEXT NOT NULL, "
        "error_count INTEGER NOT NULL DEFAULT 0, last_error_at TEXT, "
        "last_counted_error_at TEXT, reason_code INTEGER REFERENCES reasons(code), "
        "quarantined_at TEXT, release_at TEXT, updated_at TEXT NOT NULL, "
        "undefined_count INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID"
    )
    columns = ("address, state, error_count, last_error_at, last_counted_error_at, "
               "reason_code, quarantined_at, release_at, updated_at, undefined_count")
    conn.execute(
        f"INSERT INTO addresses_clustered ({columns}) SELECT {columns} FROM addresses "
        "ORDER BY address"
    )
    conn.execute("DROP TABLE addresses")
    conn.execute("ALTER TABLE addresses_clustered RENAME TO addresses")
    conn.execute(view_sql)


@migration("drop original message-id index")
def _migration_8(db: sqlite_utils.Database) -> None:
    """``bounces(original_message_id)`` is dropped.

    Every bounce carries its own original Message-ID, so the index took one random page
    per bounce to read, write and checkpoint (a quarter of what a bounce cost on a
    large database), for a query no command makes: correlation goes through the VERP
    token, and an operator's ``WHERE original_message_id = ?`` scans 5M bounces in
    about 0.6 s. An operator who needs it often can create an index of their own under
    another name; migrations leave indexes they do not know alone.
    """
    db.execute("DROP INDEX IF EXISTS idx_bounces_original_message_id")


@migration("per-verdict trust")
def _migration_9(db: sqlite_utils.Database) -> None:
    """``bounces.trusted``: whether the verdict could change its address's state.

    A signed VERP token vouches for the one address it names; another recipient of the
    same report (a victim's address beside the token's) is recorded but never applied
    (``docs/correlation.md``). The message-level ``messages.trusted`` cannot say that,
    and a replay (``bounced reprocess``, ``quarantine rollback``) must count exactly the
    verdicts that could apply. NULL on older rows: their message's flag decides.
    """
    db.execute("ALTER TABLE bounces ADD COLUMN trusted INTEGER")


@migration("actors and the webhook outbox")
def _migration_10(db: sqlite_utils.Database) -> None:
    """Who changed an address, and the events webhook endpoints are owed.

    ``address_events.actor``: ``cli:USER`` or ``api:TOKEN`` for an operator's action,
    NULL for bounces and the cleanup job. ``webhook_events``: one row per event (its id
    is the ``webhook-id`` a receiver de-duplicates on), written in the same transaction
    as the change it describes; ``webhook_deliveries``: one row per event and endpoint,
    ``pending`` until a 2xx answer (``delivered``) or until retries give up (``dead``).
    """
    db.execute("ALTER TABLE address_events ADD COLUMN actor TEXT")
    db.execute(
        "CREATE TABLE webhook_events (id TEXT PRIMARY KEY, type TEXT NOT NULL, "
        "created_at TEXT NOT NULL, body TEXT NOT NULL)"
    )
    db.execute("CREATE INDEX idx_webhook_events_created_at ON webhook_events (created_at)")
    db.execute(
        "CREATE TABLE webhook_deliveries (id INTEGER PRIMARY KEY, "
        "event_id TEXT NOT NULL REFERENCES webhook_events(id), endpoint TEXT NOT NULL, "
        "state TEXT NOT NULL DEFAULT 'pending', attempts INTEGER NOT NULL DEFAULT 0, "
        "next_attempt_at TEXT NOT NULL, last_status INTEGER, last_error TEXT, "
        "delivered_at TEXT, UNIQUE (event_id, endpoint))"
    )
    db.execute(
        "CREATE INDEX idx_webhook_deliveries_due ON webhook_deliveries (next_attempt_at) "
        "WHERE state = 'pending'"
    )


@migration("channels: sms and push")
def _migration_11(db: sqlite_utils.Database) -> None:
    """The other channels (docs/channels.md): SMS status reports and push feedback.

    ``channel`` (``email``, ``sms``, ``push``) on ``messages`` (what the raw document
    is: an e-mail, or the canonical JSON of a receipt / a provider's answer),
    ``bounces`` and ``addresses`` (``tel:+E164`` and ``push:APP:TOKEN`` keys live beside
    e-mail addresses); rows written before are e-mail. ``sent_messages``: what a
    sending platform registered (``POST /v1/messages``), so that a receipt that names
    only the SMSC's message id finds its number. The views ``suppression_list`` and
    ``daily_summary`` gain the channel (the summary's ``domain`` of an SMS is ``sms``,
    of a push token ``push:APP``).
    """
    conn = db.conn
    for table in ("messages", "bounces", "addresses"):
        conn.execute(f"ALTER TABLE {table} ADD COLUMN channel TEXT NOT NULL DEFAULT 'email'")
    conn.execute(
        "CREATE TABLE sent_messages (channel TEXT NOT NULL, id TEXT NOT NULL, "
        "recipient TEXT NOT NULL, registered_at TEXT NOT NULL, PRIMARY KEY (channel, id)) "
        "WITHOUT ROWID"
    )
    conn.execute("DROP VIEW IF EXISTS suppression_list")
    conn.execute(
        "CREATE VIEW suppression_list AS "
        "SELECT a.address AS address, a.state AS state, "
        "COALESCE(r.label, a.state) AS reason, "
        "COALESCE(a.quarantined_at, a.updated_at) AS since, a.channel AS channel "
        "FROM addresses a LEFT JOIN reasons r ON r.code = a.reason_code "
        "WHERE a.state IN ('quarantine', 'denylisted')"
    )
    conn.execute("DROP VIEW IF EXISTS daily_summary")
    conn.execute(
        "CREATE VIEW daily_summary AS "
        "SELECT substr(COALESCE(b.at, b.received_at), 1, 10) AS day, "
        "b.failure_type AS failure_type, r.label AS reason, "
        "CASE b.channel WHEN 'sms' THEN 'sms' WHEN 'push' THEN 'push:' || "
        "substr(b.recipient, 6, instr(substr(b.recipient, 6), ':') - 1) "
        "ELSE lower(substr(b.recipient, instr(b.recipient, '@') + 1)) END AS domain, "
        "b.channel AS channel, "
        "count(*) AS bounces, count(DISTINCT b.recipient) AS addresses "
        "FROM bounces b LEFT JOIN reasons r ON r.code = b.reason_code "
        "WHERE b.failure_type IS NOT NULL "
        "GROUP BY day, b.failure_type, r.label, domain, b.channel"
    )


#: The schema version this code writes and reads.
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to :data:`SCHEMA_VERSION`; return the version found before."""
    db = sqlite_utils.Database(conn, execute_plugins=False)
    conn.execute("BEGIN IMMEDIATE")
    try:
        found = conn.execute("PRAGMA user_version").fetchone()[0]
        if found > SCHEMA_VERSION:
            raise StoreError(
                f"database schema version {found} is newer than this bounced "
                f"(knows up to {SCHEMA_VERSION})"
            )
        for version in range(found + 1, SCHEMA_VERSION + 1):
            MIGRATIONS[version - 1].apply(db)
            conn.execute(f"PRAGMA user_version = {version}")
        _seed(conn)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return int(found)


def _seed(conn: sqlite3.Connection) -> None:
    """Reasons from the enum, default rules from the shipped data; idempotent.

    Default rules are upserted (an operator's ``enabled = 0`` on a default rule is kept)
    and defaults no longer shipped are removed; ``origin = 'user'`` rows are never touched.
    """
    conn.executemany(
        "INSERT INTO reasons (code, label, default_type) VALUES (?, ?, ?) "
        "ON CONFLICT(code) DO UPDATE SET label = excluded.label, "
        "default_type = excluded.default_type",
        [(int(r), r.label, r.default_type.value) for r in Reason],
    )
    shipped = load_default_rules()
    rows = [
        (int(rule.id), rule.pattern, rule.failure_type.value, int(rule.reason),
         rule.priority, int(rule.enabled), rule.comment, rule.status, rule.command)
        for rule in shipped
    ]
    conn.executemany(
        "INSERT INTO rules (id, pattern, failure_type, reason_code, priority, origin, "
        "enabled, comment, status, command) VALUES (?, ?, ?, ?, ?, 'default', ?, ?, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET pattern = excluded.pattern, "
        "failure_type = excluded.failure_type, reason_code = excluded.reason_code, "
        "priority = excluded.priority, comment = excluded.comment, "
        "status = excluded.status, command = excluded.command "
        "WHERE rules.origin = 'default'",
        rows,
    )
    ids = [row[0] for row in rows]
    placeholders = ",".join("?" * len(ids))
    conn.execute(
        f"DELETE FROM rules WHERE origin = 'default' AND id NOT IN ({placeholders})"
        if ids else "DELETE FROM rules WHERE origin = 'default'",
        ids,
    )
