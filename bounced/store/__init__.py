"""SQLite storage: the public schema of SPEC §8, its migrations, and the queries on it.

One file, WAL mode, so that ``sqlite3 bounced.db`` (an operator) and a separate
processing process can read and write while the SMTP daemon stores new messages.
``busy_timeout`` makes concurrent writers wait for each other instead of failing.

The raw message is stored first, in its own committed transaction, before anything is
parsed: the daemon answers ``250`` only after :meth:`Store.insert_messages` returned,
so nothing accepted is ever lost even if processing later crashes (SPEC §8).

Transactions are explicit (``isolation_level=None`` + ``BEGIN IMMEDIATE``): Python's
implicit transactions would open late (at the first write) and could deadlock two
writers that both read first; ``IMMEDIATE`` takes the write lock up front.

Schema changes are numbered migration steps applied in order and recorded in
``PRAGMA user_version``; a database newer than the code is refused rather than guessed.

Beyond the SPEC §8 key columns (all kept with their exact names), the schema carries:

- ``messages``: ``peer``, ``verp_token`` (of the envelope recipient), ``kind``,
  ``trusted`` (0: signed VERP failed, no address changed), ``attempts``, ``processed_at``;
  ``rcpt_to`` is a JSON array; ``sha256`` is unique (duplicates are recognised by it;
  a trigger enforces it);
- ``bounces``: ``at`` (the time the bounce counted at for the policy), ``original_recipient``,
  ``remote_mta``, ``smtp_command``, ``verp_token``, ``feedback_type``;
- ``qualification``: ``qualified_by`` (what decided its type and reason);
- ``rules``: ``comment``, ``status`` and ``command`` (conditions of a rule);
- ``addresses``: ``undefined_count`` (undefined errors seen, for the grace of SPEC §6);
- ``address_events`` is append-only, enforced by triggers.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import sqlite_utils

from bounced.core.qualify import load_default_rules
from bounced.core.times import format_optional, format_time, parse_time
from bounced.model import (
    AcceptedMessage,
    AddressEvent,
    AddressState,
    FailureType,
    IncomingMessage,
    MessageState,
    QualificationStatus,
    QuarantineState,
    Reason,
    Rule,
    StoredMessage,
    TableEntry,
)

#: Occurrence counter cap of the qualification table (SPEC §4).
MAX_OCCURRENCES = 100_000
#: Rule ids from here on belong to operators; shipped defaults use 1-9999.
FIRST_USER_RULE_ID = 10_000
#: How long a writer waits for another one's lock before giving up (milliseconds).
BUSY_TIMEOUT_MS = 30_000


#: The rule set :meth:`Store.load_rules` returned last (see there why).
_last_rules: tuple[Rule, ...] = ()


class StoreError(Exception):
    """The database cannot be used (unreadable, not a bounced database, too new)."""


# --------------------------------------------------------------------------- address state I/O
# The one place that maps the policy's AddressState/AddressEvent to the ``addresses`` and
# ``address_events`` tables: the pipeline, the cleanup job and operator actions all go
# through it, so a state written by one is read identically by the others.


def read_state(conn: sqlite3.Connection, address: str) -> AddressState | None:
    """The ``addresses`` row of ``address`` as the policy's :class:`AddressState`."""
    row = conn.execute(
        "SELECT state, error_count, last_error_at, last_counted_error_at, reason_code, "
        "quarantined_at, release_at, undefined_count, updated_at "
        "FROM addresses WHERE address = ?",
        (address,),
    ).fetchone()
    if row is None:
        return None
    return AddressState(
        address=address,
        state=QuarantineState(row[0]),
        error_count=int(row[1]),
        last_error_at=parse_time(row[2]),
        last_counted_error_at=parse_time(row[3]),
        reason=Reason(row[4]) if row[4] is not None else None,
        quarantined_at=parse_time(row[5]),
        release_at=parse_time(row[6]),
        undefined_count=int(row[7]),
        updated_at=parse_time(row[8]),
    )




def write_state(conn: sqlite3.Connection, state: AddressState, now: datetime) -> None:
    """Insert or update the ``addresses`` row of ``state.address``."""
    conn.execute(
        "INSERT INTO addresses (address, state, error_count, last_error_at, "
        "last_counted_error_at, reason_code, quarantined_at, release_at, updated_at, "
        "undefined_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(address) DO UPDATE SET state = excluded.state, "
        "error_count = excluded.error_count, last_error_at = excluded.last_error_at, "
        "last_counted_error_at = excluded.last_counted_error_at, "
        "reason_code = excluded.reason_code, quarantined_at = excluded.quarantined_at, "
        "release_at = excluded.release_at, updated_at = excluded.updated_at, "
        "undefined_count = excluded.undefined_count",
        (
            state.address,
            state.state.value,
            state.error_count,
            format_optional(state.last_error_at),
            format_optional(state.last_counted_error_at),
            int(state.reason) if state.reason is not None else None,
            format_optional(state.quarantined_at),
            format_optional(state.release_at),
            format_time(state.updated_at or now),
            state.undefined_count,
        ),
    )


def write_event(conn: sqlite3.Connection, event: AddressEvent, bounce_id: int | None) -> None:
    """Append one row to the ``address_events`` history."""
    conn.execute(
        "INSERT INTO address_events (address, at, old_state, new_state, cause, bounce_id) "
        "VALUES (?, ?, ?, ?, ?, ?)",
        (
            event.address,
            format_time(event.at),
            event.old_state.value if event.old_state is not None else None,
            event.new_state.value,
            event.cause,
            bounce_id,
        ),
    )


# --------------------------------------------------------------------------- API types


# --------------------------------------------------------------------------- schema

_ADDRESS_STATES = ", ".join(f"'{state.value}'" for state in QuarantineState)


def _migration_1(db: sqlite_utils.Database) -> None:
    """The initial public schema (SPEC §8) plus the extra columns documented in README."""
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
    # The history is append-only (SPEC §6): refuse edits at the database level.
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


def _migration_2(db: sqlite_utils.Database) -> None:
    """DNS evidence and report indexes (issue 4, items 8 and 9).

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


def _migration_3(db: sqlite_utils.Database) -> None:
    """Re-qualification history for ``bounced reprocess`` and ``quarantine rollback``
    (issue 4, items 5 and 6).

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


def _migration_4(db: sqlite_utils.Database) -> None:
    """Rule conditions: ``rules.status`` and ``rules.command``, regular expressions the
    recipient's enhanced status code / SMTP command must match for the rule to apply
    (the same words mean an unknown user at RCPT TO and a content filter at DATA).
    Without them a rule read back from the table would match more than it ships for."""
    db.execute("ALTER TABLE rules ADD COLUMN status TEXT")
    db.execute("ALTER TABLE rules ADD COLUMN command TEXT")


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


#: Numbered schema steps: step N brings ``user_version`` from N-1 to N. Append only.
MIGRATIONS: tuple[Callable[[sqlite_utils.Database], None], ...] = (
    _migration_1,
    _migration_2,
    _migration_3,
    _migration_4,
    _migration_5,
    _migration_6,
    _migration_7,
    _migration_8,
)
SCHEMA_VERSION = len(MIGRATIONS)


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise StoreError(f"{path}: cannot switch to WAL mode (got {mode})")
    # FULL: a commit is on disk when insert_messages returns, before the SMTP 250.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # Processing runs each message in a savepoint; SQLite copies every page a savepoint
    # first changes into a sub-journal, a temporary file by default (30 writes a message
    # measured on an empty database, more on a large one). In memory it is a copy.
    conn.execute("PRAGMA temp_store = MEMORY")
    return conn


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
            MIGRATIONS[version - 1](db)
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


# --------------------------------------------------------------------------- checkpoints

#: WAL size (pages) at which a writer checkpoints by itself while a :class:`Checkpointer`
#: runs: only reached if the checkpointer falls far behind or has died (80 MB of WAL).
WAL_SAFETY_NET_PAGES = 20_000


class Checkpointer:
    """Copies the WAL into the database file from a thread of its own.

    SQLite's automatic checkpoint runs inside the ``COMMIT`` that crosses 1,000 WAL
    pages: the committing writer copies every page back into the database file and
    waits for its fsync. On a large database those pages sit all over the file, and the
    writer (the daemon's worker, ``bounced ingest``) spent a tenth of its time there.
    Here a second connection runs ``PRAGMA wal_checkpoint(PASSIVE)`` every ``interval``
    when something was committed since the last round; SQLite releases the GIL while it
    works, so the copy and the fsync overlap the writer's parsing. PASSIVE never waits
    for a lock nor blocks a reader or a writer. The writers keep an automatic checkpoint
    at :data:`WAL_SAFETY_NET_PAGES` (:meth:`Store.checkpoint_in_background`), so a dead
    or stalled checkpointer only brings the old behaviour back.
    """

    def __init__(self, path: Path, *, interval: float = 0.25,
                 on_error: Callable[[BaseException], None] | None = None) -> None:
        self.path = path
        self.interval = interval
        self.on_error = on_error
        #: Checkpoints run and WAL frames they copied (for logs and tests).
        self.checkpoints = 0
        self.frames = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="checkpointer", daemon=True)

    def start(self) -> Checkpointer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()

    def __enter__(self) -> Checkpointer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            conn = _connect(self.path)
        except sqlite3.Error as error:
            self._report(error)
            return
        seen = None
        try:
            while not self._stop.wait(self.interval):
                try:
                    # data_version changes when another connection commits: an idle
                    # daemon does not fsync its database file four times a second.
                    version = conn.execute("PRAGMA data_version").fetchone()[0]
                    if version == seen:
                        continue
                    seen = version
                    _busy, _log, copied = conn.execute(
                        "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                    self.checkpoints += 1
                    self.frames += max(0, int(copied))
                except sqlite3.Error as error:  # a checkpoint is an optimisation: go on
                    self._report(error)
        finally:
            conn.close()

    def _report(self, error: BaseException) -> None:
        if self.on_error is not None:
            self.on_error(error)


# --------------------------------------------------------------------------- prewarm

#: The b-trees that processing a bounce reaches at a random place: the address's row,
#: its bounces and its history. Each is one page per bounce; on a large database (1M
#: addresses, 5M bounces: ~290 MiB together) that page comes from disk whenever the
#: OS has dropped it, unless the connection's own page cache holds the b-tree. Each
#: is read whole by a scan of that b-tree alone (the plans are checked by a test).
PROCESSING_BTREES: dict[str, str] = {
    "addresses": "SELECT count(state) FROM addresses",
    "idx_bounces_recipient":
        "SELECT count(recipient) FROM bounces INDEXED BY idx_bounces_recipient",
    "idx_address_events_address":
        "SELECT count(address) FROM address_events INDEXED BY idx_address_events_address",
}
#: The same for storing a message: the duplicate lookup (~110 MiB at 4M messages).
STORING_BTREES: dict[str, str] = {
    "idx_messages_sha256_prefix":
        "SELECT count(*) FROM messages INDEXED BY idx_messages_sha256_prefix",
}


def btree_mib(conn: sqlite3.Connection, names: Sequence[str]) -> float | None:
    """Size of the named tables and indexes, in MiB (None without SQLite's dbstat).
    It reads every page of them: through a :class:`Store`, that also loads them."""
    marks = ", ".join("?" for _ in names)
    try:
        row = conn.execute(
            f"SELECT sum(pgsize) FROM dbstat WHERE name IN ({marks})", tuple(names)
        ).fetchone()
    except sqlite3.OperationalError:  # SQLite built without SQLITE_ENABLE_DBSTAT_VTAB
        return None
    return int(row[0] or 0) / (1024 * 1024)


@dataclass(frozen=True)
class Prewarm:
    """What :meth:`Store.prewarm` did: the b-trees' size against the page cache, and
    whether they were loaded (they are not when they would not fit: loading them would
    only push each other out)."""

    btrees: tuple[str, ...]
    mib: float | None
    cache_mib: float
    loaded: bool
    seconds: float

    def log_fields(self) -> dict[str, object]:
        """The fields of the ``database.prewarm`` log event."""
        fields: dict[str, object] = {
            "btrees": ",".join(self.btrees),
            "mib": None if self.mib is None else round(self.mib, 1),
            "cache_mib": round(self.cache_mib, 1),
            "loaded": self.loaded,
            "seconds": round(self.seconds, 2),
        }
        if self.mib is not None and not self.loaded:
            fields["advice"] = f"database.cache_mb >= {int(self.mib) + 1} to prewarm them"
        return fields


# --------------------------------------------------------------------------- the store


class Store:
    """A bounced database. Open with :meth:`open`; one instance per thread/process.

    ``conn`` is public for the pipeline and for read-only queries; transactions are
    managed explicitly through :meth:`transaction` / :meth:`savepoint`.
    """

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn = conn
        self.path = path

    def cache_mib(self) -> float:
        """The connection's page cache limit, in MiB."""
        size = int(self.conn.execute("PRAGMA cache_size").fetchone()[0])
        if size < 0:  # negative: KiB
            return -size / 1024
        page = int(self.conn.execute("PRAGMA page_size").fetchone()[0])
        return size * page / (1024 * 1024)

    def prewarm(self, btrees: dict[str, str]) -> Prewarm:
        """Read ``btrees`` (name -> a query that scans exactly that b-tree) into this
        connection's page cache, if they fit in it, as ``pg_prewarm`` does for
        PostgreSQL.

        Sequential reads at start-up instead of a random read per bounce later: a
        long-lived process (the daemon) then finds those pages in its own memory, where
        neither a cold start nor a host that reclaims idle page cache takes them away.
        """
        started = time.monotonic()
        names = tuple(btrees)
        mib = btree_mib(self.conn, names)
        cache = self.cache_mib()
        fits = mib is not None and mib <= cache
        if fits:
            for query in btrees.values():
                self.conn.execute(query).fetchall()
        return Prewarm(names, mib, cache, fits, time.monotonic() - started)

    @classmethod
    def open(cls, path: str | Path, *, cache_mb: int | None = None) -> Store:
        """Open (creating if needed) and migrate the database at ``path``, in WAL mode,
        with reasons and default rules seeded.

        ``cache_mb``: the connection's page cache (SQLite's default is 2 MB). Processes
        that live long and write a lot (the daemon, ``bounced ingest``) pass
        ``database.cache_mb``: the upper levels and hot leaves of a large database's
        indexes then stay in the process, whatever the OS does with its page cache.
        """
        target = Path(path)
        try:
            conn = _connect(target)
            if cache_mb is not None:
                conn.execute(f"PRAGMA cache_size = {-1024 * int(cache_mb)}")
        except sqlite3.Error as error:
            raise StoreError(f"{target}: cannot open database: {error}") from None
        try:
            migrate(conn)
        except sqlite3.DatabaseError as error:
            conn.close()
            raise StoreError(f"{target}: not a usable bounced database: {error}") from None
        except BaseException:
            conn.close()
            raise
        return cls(conn, target)

    def close(self) -> None:
        self.conn.close()

    @contextmanager
    def checkpoint_in_background(
        self, on_error: Callable[[BaseException], None] | None = None
    ) -> Iterator[Checkpointer]:
        """Run a :class:`Checkpointer` while this connection writes; its own automatic
        checkpoint moves to :data:`WAL_SAFETY_NET_PAGES` meanwhile."""
        self.conn.execute(f"PRAGMA wal_autocheckpoint = {WAL_SAFETY_NET_PAGES}")
        try:
            with Checkpointer(self.path, on_error=on_error) as checkpointer:
                yield checkpointer
        finally:
            self.conn.execute("PRAGMA wal_autocheckpoint = 1000")

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ---- transactions

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (``ROLLBACK`` on any exception)."""
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        self.conn.execute("COMMIT")

    @contextmanager
    def savepoint(self, name: str = "work") -> Iterator[sqlite3.Connection]:
        """A nested unit inside :meth:`transaction`, undone alone on exception."""
        self.conn.execute(f"SAVEPOINT {name}")
        try:
            yield self.conn
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute(f"ROLLBACK TO SAVEPOINT {name}")
                self.conn.execute(f"RELEASE SAVEPOINT {name}")
            raise
        self.conn.execute(f"RELEASE SAVEPOINT {name}")

    # ---- messages

    def insert_messages(self, messages: Sequence[IncomingMessage]) -> list[AcceptedMessage]:
        """Store raw messages (state ``pending``) in ONE transaction, committed and on
        disk when this returns. Identical bytes already stored (same sha256, also within
        this batch) are not stored again: their existing id comes back as a duplicate."""
        results: list[AcceptedMessage] = []
        with self.transaction() as conn:
            for message in messages:
                digest = hashlib.sha256(message.raw).hexdigest()
                existing = conn.execute(
                    DUPLICATE_LOOKUP, (digest[:DIGEST_PREFIX], digest)
                ).fetchone()
                if existing is not None:
                    results.append(AcceptedMessage(int(existing[0]), duplicate=True))
                    continue
                cursor = conn.execute(
                    "INSERT INTO messages (received_at, mail_from, rcpt_to, size, sha256, "
                    "raw, state, peer, verp_token) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                    (
                        format_time(message.received_at),
                        message.mail_from,
                        json.dumps(list(message.rcpt_to), ensure_ascii=False),
                        len(message.raw),
                        digest,
                        message.raw,
                        message.peer,
                        message.verp_token,
                    ),
                )
                results.append(AcceptedMessage(int(cursor.lastrowid or 0), duplicate=False))
        return results

    def pending_message_ids(self, limit: int) -> list[int]:
        """Oldest first, so the daemon works through its backlog in arrival order."""
        rows = self.conn.execute(
            "SELECT id FROM messages WHERE state = 'pending' ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [int(row[0]) for row in rows]

    def pending_count(self) -> int:
        return self.count_messages(MessageState.PENDING)

    def failed_message_ids(self, limit: int) -> list[int]:
        rows = self.conn.execute(
            "SELECT id FROM messages WHERE state = 'failed' ORDER BY id LIMIT ?", (limit,)
        ).fetchall()
        return [int(row[0]) for row in rows]

    def count_messages(self, state: MessageState) -> int:
        row = self.conn.execute(
            "SELECT count(*) FROM messages WHERE state = ?", (state.value,)
        ).fetchone()
        return int(row[0])

    def retry_failed(self) -> int:
        """Put every failed message back to pending (after a fix); returns how many."""
        with self.transaction() as conn:
            return conn.execute(
                "UPDATE messages SET state = 'pending' WHERE state = 'failed'"
            ).rowcount

    def get_message(self, message_id: int) -> StoredMessage | None:
        return self.get_messages([message_id]).get(message_id)

    def get_messages(self, message_ids: Sequence[int]) -> dict[int, StoredMessage]:
        """The stored messages among ``message_ids``, by id."""
        found: dict[int, StoredMessage] = {}
        for message_id in dict.fromkeys(int(i) for i in message_ids):
            row = self.conn.execute(
                "SELECT id, received_at, mail_from, rcpt_to, raw, state, peer, error "
                "FROM messages WHERE id = ?",
                (message_id,),
            ).fetchone()
            if row is not None:
                found[message_id] = self._row(row)
        return found

    def iter_messages(
        self, message_ids: Sequence[int]
    ) -> Iterator[tuple[int, StoredMessage | None]]:
        """``(id, row or None)`` for each id in order, read one at a time (a batch of
        large messages never sits in memory whole)."""
        for message_id in message_ids:
            row = self.conn.execute(
                "SELECT id, received_at, mail_from, rcpt_to, raw, state, peer, error "
                "FROM messages WHERE id = ?",
                (message_id,),
            ).fetchone()
            yield message_id, (self._row(row) if row is not None else None)

    @staticmethod
    def _row(row: tuple) -> StoredMessage:
        return StoredMessage(
            id=int(row[0]),
            received_at=parse_time(row[1]) or datetime.now(UTC),
            mail_from=row[2],
            rcpt_to=tuple(json.loads(row[3])),
            raw=bytes(row[4]),
            state=MessageState(row[5]),
            peer=row[6],
            error=row[7],
        )

    def message_state(self, message_id: int) -> MessageState | None:
        row = self.conn.execute(
            "SELECT state FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        return MessageState(row[0]) if row is not None else None

    @contextmanager
    def relaxed_sync(self) -> Iterator[None]:
        """``synchronous = NORMAL`` for work that may be lost on power failure without
        harm: processing. A lost processing commit leaves its messages ``pending``, and
        they are processed again from scratch; the raw messages themselves were committed
        with ``FULL`` by :meth:`insert_messages`. WAL + NORMAL never corrupts."""
        self.conn.execute("PRAGMA synchronous = NORMAL")
        try:
            yield
        finally:
            self.conn.execute("PRAGMA synchronous = FULL")

    def mark_failed(self, message_id: int, error: str, at: datetime) -> None:
        """Record a processing failure; the raw message stays for a later retry."""
        self.conn.execute(
            "UPDATE messages SET state = 'failed', error = ?, processed_at = ?, "
            "attempts = attempts + 1 WHERE id = ?",
            (error, format_time(at), message_id),
        )

    # ---- rules and qualification table

    def load_rules(self) -> tuple[Rule, ...]:
        """The enabled rules (defaults and operators'), in priority order then id.

        An unchanged rule set comes back as the very same tuple as last time: qualify
        keeps its compiled form per tuple, so a daemon reloading its rules, or a process
        opening several databases, does not compile the regular expressions again."""
        global _last_rules
        rows = self.conn.execute(
            "SELECT id, pattern, failure_type, reason_code, priority, comment, status, "
            "command FROM rules WHERE enabled = 1 ORDER BY priority, id"
        ).fetchall()
        rules = tuple(
            Rule(
                id=int(row[0]),
                pattern=row[1],
                failure_type=FailureType(row[2]),
                reason=Reason(row[3]),
                priority=int(row[4]),
                comment=row[5] or "",
                status=row[6] or None,
                command=row[7] or None,
            )
            for row in rows
        )
        if rules != _last_rules:
            _last_rules = rules
        return _last_rules

    def lookup_text(self, text: str) -> TableEntry | None:
        """The qualification-table row of a normalized text, as qualify needs it."""
        row = self.conn.execute(
            "SELECT id, status, failure_type, reason_code FROM qualification WHERE text = ?",
            (text,),
        ).fetchone()
        if row is None:
            return None
        return TableEntry(
            id=int(row[0]),
            status=QualificationStatus(row[1]),
            failure_type=FailureType(row[2]) if row[2] else FailureType.UNDEFINED,
            reason=Reason(row[3]) if row[3] is not None else Reason.NOT_DEFINED,
        )

    # ---- checks

    def integrity_problems(self) -> list[str]:
        """``PRAGMA integrity_check`` and ``foreign_key_check`` findings (empty = fine)."""
        problems = [
            str(row[0])
            for row in self.conn.execute("PRAGMA integrity_check").fetchall()
            if row[0] != "ok"
        ]
        problems.extend(
            f"foreign key: {row[0]} row {row[1]} -> {row[2]}"
            for row in self.conn.execute("PRAGMA foreign_key_check").fetchall()
        )
        return problems

    def schema_version(self) -> int:
        return int(self.conn.execute("PRAGMA user_version").fetchone()[0])
