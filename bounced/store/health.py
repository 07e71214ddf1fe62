"""What ``bounced db check`` reports: integrity, schema version, backlog, sizing, and the
files on disk (the WAL's size, free space against ``storage.min_free_mb``).

Read-only: it runs on the live database while the daemon writes (WAL readers see the
last commit) and changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from bounced.model import MessageState
from bounced.store.engine import free_mib, wal_mib, wal_path
from bounced.store.schema import SCHEMA_VERSION, postgresql_version
from bounced.store.tuning import (
    PROCESSING_BTREES,
    STORING_BTREES,
    WAL_WARN_MB,
    btree_mib,
)

if TYPE_CHECKING:
    from bounced.store import Store

#: Tables and views operators query (``docs/schema.md``).
PUBLIC_NAMES = (
    "messages", "bounces", "qualification", "rules", "reasons", "addresses",
    "address_events", "suppression_list", "daily_summary", "to_qualify",
)


@dataclass(slots=True)
class DatabaseCheck:
    """Facts worth knowing and problems that need an operator."""

    facts: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


class Health:
    """Checks of the database file and of what it holds."""

    def __init__(self, store: Store) -> None:
        self._store = store

    def schema_version(self) -> int:
        if self._store.is_postgresql:
            return postgresql_version(self._store.conn)
        return int(self._store.conn.execute("PRAGMA user_version").fetchone()[0])

    def integrity_problems(self) -> list[str]:
        """``PRAGMA integrity_check`` and ``foreign_key_check`` findings (empty = fine).
        Raises :data:`~bounced.store.DatabaseError` when the file is no SQLite database.
        PostgreSQL checks its own pages (``data_checksums``) and constraints: nothing
        to add here."""
        if self._store.is_postgresql:
            return []
        conn = self._store.conn
        problems = [f"integrity: {row[0]}" for row in conn.execute("PRAGMA integrity_check")
                    if row[0] != "ok"]
        problems.extend(
            f"foreign key: {row[0]} row {row[1]} references a missing {row[2]}"
            for row in conn.execute("PRAGMA foreign_key_check").fetchall()
        )
        return problems

    def quick_check(self) -> list[str]:
        """``PRAGMA quick_check``: every page of the file read and its b-tree structure
        verified (without cross-checking indexes against tables, which the full
        integrity check does); empty when the file is sound. It reads the whole file,
        so the daemon runs it once after start, in a thread of its own. Nothing on
        PostgreSQL (see :meth:`integrity_problems`)."""
        if self._store.is_postgresql:
            return []
        return [f"integrity: {row[0]}" for row in self._store.conn.execute("PRAGMA quick_check")
                if row[0] != "ok"]

    def check(self, *, min_free_mb: int = 0, wal_warn_mb: int = WAL_WARN_MB) -> DatabaseCheck:
        """Everything ``bounced db check`` prints; ``min_free_mb`` and ``wal_warn_mb`` are
        the configuration's reserve and WAL warning size."""
        conn = self._store.conn
        result = DatabaseCheck()
        integrity = self.integrity_problems()
        result.problems.extend(integrity)
        if not any(line.startswith("integrity:") for line in integrity):
            result.facts.append("integrity: ok")
        version = self.schema_version()
        if version == SCHEMA_VERSION:
            result.facts.append(f"schema version: {version}")
        else:
            command = "migrate" if self._store.is_postgresql else "init"
            result.problems.append(f"schema version: {version}, expected {SCHEMA_VERSION} "
                                   f"(run `bounced db {command}` to migrate)")
        if self._store.is_postgresql:
            (server,) = conn.execute("SHOW server_version").fetchone()
            (sync,) = conn.execute("SHOW synchronous_commit").fetchone()
            result.facts.append(f"postgresql {server}, synchronous_commit {sync}")
            result.facts.append(
                "WAL and free space: the PostgreSQL server's (max_wal_size, its disk); "
                "database.wal_warn_mb and storage.min_free_mb apply to a SQLite file")
            names = {row[0] for row in conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()")}
        else:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
            (result.facts if mode == "wal" else result.problems).append(
                f"journal mode: {mode}")
            self._files(result, min_free_mb=min_free_mb, wal_warn_mb=wal_warn_mb)
            names = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        missing = [name for name in PUBLIC_NAMES if name not in names]
        if missing:
            result.problems.append(f"missing tables/views: {', '.join(missing)}")
            return result
        counts = self._store.messages.counts()
        for state in MessageState:
            result.facts.append(f"messages {state.value}: {counts[state]}")
        postgresql = self._store.is_postgresql
        processing = None if postgresql else btree_mib(conn, tuple(PROCESSING_BTREES))
        storing = None if postgresql else btree_mib(conn, tuple(STORING_BTREES))
        if processing is not None and storing is not None:
            result.facts.append(
                f"b-trees read at random: {processing:.1f} MiB to process bounces "
                f"({', '.join(PROCESSING_BTREES)}), {storing:.1f} MiB to store messages; "
                f"database.cache_mb >= {int(max(processing, storing)) + 1} lets the "
                "daemon prewarm them"
            )
        failed = counts[MessageState.FAILED]
        if failed:
            result.problems.append(
                f"{failed} failed message(s) (see messages.error; `bounced db retry` after a fix)"
            )
        return result

    def _files(self, result: DatabaseCheck, *, min_free_mb: int, wal_warn_mb: int) -> None:
        """The WAL's size, and free space against the reserve the daemon keeps: what an
        operator wants to see when the daemon answers 452 4.3.1 or the disk fills."""
        path = self._store.path
        assert path is not None  # a SQLite file
        wal = wal_mib(path)
        line = f"WAL: {wal:.1f} MiB ({wal_path(path).name})"
        if wal >= wal_warn_mb:
            result.problems.append(
                f"{line}, past database.wal_warn_mb ({wal_warn_mb} MiB): a reader may hold "
                "an old snapshot (the daemon logs database.wal_pinned)")
        else:
            result.facts.append(line)
        try:
            free = free_mib(path)
        except OSError as error:
            result.problems.append(f"free space: cannot be measured ({error})")
            return
        line = (f"free space: {free:.0f} MiB on the database's file system, "
                f"reserve storage.min_free_mb = {min_free_mb} MiB")
        if free < min_free_mb:
            result.problems.append(
                f"{line}: below the reserve, the daemon answers 452 4.3.1 to new mail "
                "until space is freed (the worker goes on processing)")
        else:
            result.facts.append(line)
