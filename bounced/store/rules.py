"""The ``rules`` table: processing rules, the shipped defaults and the operators' own.

Ids 1-9999 belong to the shipped defaults (``bounced/data/rules.toml``, re-seeded on
every open by :mod:`bounced.store.schema`); operators' rules are numbered from
:data:`FIRST_USER_RULE_ID` on, so the two never collide (``docs/qualification.md``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bounced.core.qualify import FIRST_USER_RULE_ID
from bounced.model import FailureType, Reason, Rule

if TYPE_CHECKING:
    from bounced.store import Store

_COLUMNS = "id, pattern, failure_type, reason_code, priority, comment, enabled, status, command"


@dataclass(frozen=True, slots=True)
class RuleRow:
    """A ``rules`` row as an operator lists it: the rule and where it comes from."""

    rule: Rule
    origin: str

    @property
    def enabled(self) -> bool:
        return self.rule.enabled


def _rule(row: tuple) -> Rule:
    return Rule(int(row[0]), row[1], FailureType(row[2]), Reason(row[3]), int(row[4]),
                row[5] or "", bool(row[6]), row[7] or None, row[8] or None)


class RuleTable:
    """Processing rules, in the order they are tried (priority, then id)."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._enabled: tuple[Rule, ...] = ()

    def enabled(self) -> tuple[Rule, ...]:
        """The enabled rules, in order.

        An unchanged rule set comes back as the very same tuple as last time:
        :mod:`bounced.core.qualify` keeps the compiled form of a tuple, so a daemon
        reloading unchanged rules does not compile the regular expressions again."""
        rows = self._store.conn.execute(
            f"SELECT {_COLUMNS} FROM rules WHERE enabled = 1 ORDER BY priority, id"
        ).fetchall()
        rules = tuple(_rule(row) for row in rows)
        if rules != self._enabled:
            self._enabled = rules
        return self._enabled

    def listing(self, origin: str | None = None) -> list[RuleRow]:
        """All rules (enabled or not) in the order they are tried; ``origin`` filters."""
        sql = f"SELECT {_COLUMNS}, origin FROM rules"
        params: tuple[str, ...] = ()
        if origin is not None:
            sql += " WHERE origin = ?"
            params = (origin,)
        rows = self._store.conn.execute(sql + " ORDER BY priority, id", params).fetchall()
        return [RuleRow(_rule(row[:9]), row[9]) for row in rows]

    def get(self, rule_id: int) -> RuleRow | None:
        row = self._store.conn.execute(
            f"SELECT {_COLUMNS}, origin FROM rules WHERE id = ?", (rule_id,)
        ).fetchone()
        return RuleRow(_rule(row[:9]), row[9]) if row is not None else None

    def next_user_id(self) -> int:
        row = self._store.conn.execute(
            "SELECT max(id) FROM rules WHERE id >= ?", (FIRST_USER_RULE_ID,)
        ).fetchone()
        return max(int(row[0] or 0) + 1, FIRST_USER_RULE_ID)

    def add(self, rule: Rule) -> None:
        """Insert an operator's rule (origin ``user``) under ``rule.id``."""
        self._store.conn.execute(
            "INSERT INTO rules (id, pattern, failure_type, reason_code, priority, origin, "
            "enabled, comment, status, command) VALUES (?, ?, ?, ?, ?, 'user', ?, ?, ?, ?)",
            (rule.id, rule.pattern, rule.failure_type.value, int(rule.reason), rule.priority,
             int(rule.enabled), rule.comment, rule.status, rule.command),
        )

    def replace(self, rule: Rule) -> None:
        """Overwrite the rule with ``rule.id`` (an operator's, on an explicit request)."""
        self._store.conn.execute(
            "UPDATE rules SET pattern = ?, failure_type = ?, reason_code = ?, priority = ?, "
            "enabled = ?, comment = ?, status = ?, command = ? WHERE id = ?",
            (rule.pattern, rule.failure_type.value, int(rule.reason), rule.priority,
             int(rule.enabled), rule.comment, rule.status, rule.command, rule.id),
        )

    def set_enabled(self, rule_id: int, enabled: bool) -> bool:
        """Enable or disable a rule (a default one too: the choice survives upgrades);
        False when there is no such rule."""
        changed = self._store.conn.execute(
            "UPDATE rules SET enabled = ? WHERE id = ?", (int(enabled), rule_id)
        ).rowcount
        return bool(changed)
