"""Processing rules written as a TOML rule file, the format of ``bounced/data/rules.toml``.

:func:`bounced.core.qualify.parse_rules` reads the format; this module writes it, so
rules move between instances (``bounced rules export`` / ``import``) and every rule
read back goes through the same validation as the shipped ones.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from bounced.model import Rule


def _toml_string(value: str) -> str:
    """A TOML string for ``value``: a literal ``'''...'''`` (regexes stay readable, no
    backslash doubling) when it can be one, a basic string otherwise."""
    if ("'''" not in value and not value.endswith("'") and "\n" not in value
            and "\r" not in value and value.isprintable()):
        return f"'''{value}'''"
    return json.dumps(value, ensure_ascii=False)


def rule_to_toml(rule: Rule) -> str:
    """One ``[[rule]]`` table in the format of ``bounced/data/rules.toml``."""
    lines = [
        "[[rule]]",
        f"id = {rule.id}",
        f"priority = {rule.priority}",
        f'type = "{rule.failure_type.value}"',
        f'reason = "{rule.reason.label}"',
        f"pattern = {_toml_string(rule.pattern)}",
    ]
    if rule.status is not None:
        lines.append(f"status = {_toml_string(rule.status)}")
    if rule.command is not None:
        lines.append(f"command = {_toml_string(rule.command)}")
    if not rule.enabled:
        lines.append("enabled = false")
    if rule.source:
        lines.append(f"source = {_toml_string(rule.source)}")
    if rule.comment:
        lines.append(f"comment = {_toml_string(rule.comment)}")
    return "\n".join(lines) + "\n"


def rules_to_toml(rules: Sequence[Rule], header: str = "") -> str:
    head = "".join(f"# {line}\n".replace("# \n", "#\n") for line in header.splitlines())
    body = "\n".join(rule_to_toml(rule) for rule in rules)
    return head + ("\n" if head and body else "") + body
