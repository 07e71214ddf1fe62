"""``bounced rules``: the qualification queue and the processing rules.

- ``queue``: texts waiting for a decision (view ``to_qualify``), most frequent first,
  with what decides each one today and a suggested type and reason (and how it was
  suggested, see :mod:`bounced.core.suggest`);
- ``qualify ID --type T --reason R`` / ``qualify ID --ignore``: the operator's decision
  on a text (qualification ``status`` keep / ignore);
- ``add PATTERN --type T --reason R``, ``list``, ``disable ID``, ``enable ID``: rules;
- ``test TEXT``: which step and which rule would qualify a text (the real qualify code);
- ``export`` / ``import FILE``: move rules between instances (TOML, the format of
  ``bounced/data/rules.toml``; shipped defaults are never imported over anything).

Exit status: 0 done, 1 the request could not be carried out (no such text or rule, an
invalid rule), 2 bad usage (unusable ``--db``, unknown type or reason).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from bounced.cli import common
from bounced.core.tables import render_table
from bounced.model import FailureType, QualificationStatus, Reason
from bounced.ops.rules import (
    add_rule,
    export_rules,
    import_rules,
    list_rules,
    qualify_text,
    queue,
    set_rule_enabled,
    trace_text,
)
from bounced.store import Store

#: A handler of one action, given the opened ``--db``.
StoreHandler = Callable[[Store, argparse.Namespace, TextIO], int]


def _type(value: str) -> FailureType:
    try:
        return FailureType(value.strip().lower())
    except ValueError:
        allowed = ", ".join(t.value for t in FailureType)
        raise argparse.ArgumentTypeError(f"unknown type {value!r} (one of {allowed})") from None


def _reason(value: str) -> Reason:
    try:
        return Reason.from_name(value)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"unknown reason {value!r} (a code such as 1 or a label such as 'User unknown')"
        ) from None


def _verdict(ftype: str | None, reason: int | None) -> str:
    if ftype is None:
        return "-"
    label = Reason(reason).label if reason is not None else "?"
    return f"{ftype}/{label} ({reason})"


#: The one-line summary in ``bounced --help``.
HELP = "qualification queue and processing rules"
#: What ``bounced rules --help`` says first.
DESCRIPTION = "Qualify waiting texts and manage email processing rules."


def register(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="rules_action", metavar="ACTION", required=True)
    _register_queue(actions)
    _register_rules(actions)
    _register_transfer(actions)
    for sub in actions.choices.values():
        common.add_db(sub)


def _register_queue(actions: Any) -> None:
    """``queue`` and ``qualify``: the qualification table."""
    q = actions.add_parser("queue", help="texts waiting for qualification, with suggestions")
    q.add_argument("--limit", type=int, default=20, help="how many texts (default 20)")
    q.add_argument("--json", action="store_true", help="JSON lines instead of text")
    q.set_defaults(handler=run_queue)

    qual = actions.add_parser("qualify", help="decide a text: keep with type/reason, or ignore")
    qual.add_argument("id", type=int, metavar="ID", help="qualification id (rules queue)")
    qual.add_argument("--type", type=_type, dest="failure_type", metavar="TYPE",
                      help="hard, soft or ignored")
    qual.add_argument("--reason", type=_reason, metavar="REASON",
                      help="reason code or label, e.g. 1 or 'User unknown'")
    qual.add_argument("--ignore", action="store_true",
                      help="this text never causes quarantine (status ignore)")
    qual.set_defaults(handler=run_qualify)


def _register_rules(actions: Any) -> None:
    """``add``, ``list``, ``enable``, ``disable``, ``test``: the processing rules."""
    add = actions.add_parser("add", help="add a processing rule")
    add.add_argument("pattern", metavar="PATTERN",
                     help="regular expression searched in the normalized text")
    add.add_argument("--type", type=_type, dest="failure_type", required=True, metavar="TYPE")
    add.add_argument("--reason", type=_reason, required=True, metavar="REASON")
    add.add_argument("--priority", type=int, default=100, help="lower runs first (default 100)")
    add.add_argument("--comment", default="", help="what the text means and why")
    add.add_argument("--status", metavar="REGEX",
                     help="only when the enhanced status code matches, e.g. '5\\.1\\.1'")
    add.add_argument("--command", metavar="REGEX",
                     help="only when answered to this SMTP command, e.g. 'RCPT'")
    add.set_defaults(handler=run_add)

    lst = actions.add_parser("list", help="processing rules in the order they are tried")
    group = lst.add_mutually_exclusive_group()
    group.add_argument("--user", action="store_const", const="user", dest="origin",
                       help="only operators' rules")
    group.add_argument("--default", action="store_const", const="default", dest="origin",
                       help="only shipped defaults")
    lst.add_argument("--json", action="store_true")
    lst.set_defaults(handler=run_list)

    for name, enabled in (("disable", False), ("enable", True)):
        sub = actions.add_parser(name, help=f"{name} a rule (defaults too)")
        sub.add_argument("id", type=int, metavar="ID")
        sub.set_defaults(handler=run_enable, enabled=enabled)

    test = actions.add_parser("test", help="which step and rule would qualify TEXT")
    test.add_argument("text", metavar="TEXT", help="a diagnostic text, raw or normalized")
    test.add_argument("--status", help="enhanced status code (default: the one in TEXT)")
    test.add_argument("--reply-code", help="SMTP reply code (default: the one in TEXT)")
    test.add_argument("--command", help="SMTP command answered (RCPT, DATA, ...)")
    test.set_defaults(handler=run_test)


def _register_transfer(actions: Any) -> None:
    """``export`` and ``import``: rules between instances."""
    exp = actions.add_parser("export", help="write rules as TOML (rules.toml format)")
    exp.add_argument("--output", "-o", metavar="FILE", help="file to write (default stdout)")
    exp.add_argument("--all", action="store_true", help="include the shipped defaults")
    exp.add_argument("--texts", action="store_true",
                     help="include qualified texts (keep/ignore) as exact, anchored rules")
    exp.set_defaults(handler=run_export)

    imp = actions.add_parser("import", help="import rules from a TOML rule file")
    imp.add_argument("file", metavar="FILE")
    imp.add_argument("--replace", action="store_true",
                     help="overwrite a user rule with the same id but another content")
    imp.add_argument("--dry-run", action="store_true", help="show what would happen")
    imp.set_defaults(handler=run_import)


def _on_store(body: StoreHandler) -> Callable[..., int]:
    """A ``bounced rules ACTION`` handler that works on the ``--db`` database."""
    @common.command(lambda args: f"rules {args.rules_action}")
    @functools.wraps(body)
    def run(args: argparse.Namespace, out: TextIO) -> int:
        with common.open_store(args.db) as store:
            return body(store, args, out)
    return run


# --------------------------------------------------------------------------- queue


@_on_store
def run_queue(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    items = queue(store, limit=args.limit)
    if args.json:
        for item in items:
            print(json.dumps({
                "id": item.id, "text": item.text, "first_text": item.first_text,
                "occurrences": item.occurrences, "last_seen": item.last_seen,
                "current": {"type": item.current_type, "reason": item.current_reason,
                            "qualified_by": item.qualified_by},
                "suggested": {"type": item.suggestion.failure_type.value,
                              "reason": int(item.suggestion.reason),
                              "basis": item.suggestion.basis},
            }, ensure_ascii=False), file=out)
        return 0
    if not items:
        print("nothing to qualify", file=out)
        return 0
    for item in items:
        s = item.suggestion
        print(f"#{item.id}  {item.occurrences}x  last seen {item.last_seen}", file=out)
        print(f"  text:      {item.text}", file=out)
        print(f"  now:       {_verdict(item.current_type, item.current_reason)}"
              f" by {item.qualified_by or 'none'}", file=out)
        print(f"  suggested: {s.failure_type.value}/{s.reason.label} ({int(s.reason)})"
              f" - {s.basis}", file=out)
        if s.failure_type.value == "undefined":
            hint = f"bounced rules qualify --db {args.db} {item.id} --type T --reason R"
        else:
            hint = (f"bounced rules qualify --db {args.db} {item.id} "
                    f"--type {s.failure_type.value} --reason {int(s.reason)}")
        print(f"  accept:    {hint}", file=out)
    return 0



@_on_store
def run_qualify(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    if args.ignore and args.failure_type is not None:
        raise common.UsageError("--ignore and --type exclude each other")
    status = QualificationStatus.IGNORE if args.ignore else QualificationStatus.KEEP
    before, after = qualify_text(
        store, args.id, status=status, failure_type=args.failure_type, reason=args.reason
    )
    print(f"#{after.id} {after.text}", file=out)
    print(f"  {before.status.value} {_verdict(before.failure_type, before.reason_code)}"
          f" -> {after.status.value} {_verdict(after.failure_type, after.reason_code)}",
          file=out)
    return 0



# --------------------------------------------------------------------------- rules


@_on_store
def run_add(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    rule = add_rule(store, args.pattern, args.failure_type, args.reason,
                    priority=args.priority, comment=args.comment, status=args.status,
                    command=args.command)
    print(f"rule {rule.id} added: {rule.failure_type.value}/{rule.reason.label} "
          f"priority {rule.priority} pattern {rule.pattern!r}", file=out)
    return 0



@_on_store
def run_list(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    rows = list_rules(store, args.origin)
    if args.json:
        for row in rows:
            rule = row.rule
            print(json.dumps({
                "id": rule.id, "priority": rule.priority, "origin": row.origin,
                "enabled": rule.enabled, "type": rule.failure_type.value,
                "reason": int(rule.reason), "pattern": rule.pattern,
                "status": rule.status, "command": rule.command, "comment": rule.comment,
            }, ensure_ascii=False), file=out)
        return 0
    table = [
        (str(row.rule.id), str(row.rule.priority), row.origin,
         "yes" if row.enabled else "NO", row.rule.failure_type.value, row.rule.reason.label,
         _shorten(row.rule.pattern, 70))
        for row in rows
    ]
    print(render_table(("id", "prio", "origin", "enabled", "type", "reason", "pattern"),
                       table), file=out)
    return 0



def _shorten(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


@_on_store
def run_enable(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    row = set_rule_enabled(store, args.id, args.enabled)
    state = "enabled" if row.enabled else "disabled"
    print(f"rule {row.rule.id} ({row.origin}) {state}: {_shorten(row.rule.pattern, 70)}",
          file=out)
    return 0



@_on_store
def run_test(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    found = trace_text(store, args.text, status=args.status,
                         reply_code=args.reply_code, command=args.command)
    verdict = found.qualification
    print(f"normalized: {found.normalized}", file=out)
    print(f"codes:      status {found.status or '-'}, reply {found.reply_code or '-'}",
          file=out)
    if found.table_id is None:
        print("table:      no row yet (a new text: it would be added as to_qualify)",
              file=out)
    else:
        print(f"table:      #{found.table_id} status {found.table_status}", file=out)
    print(f"verdict:    {verdict.failure_type.value}/{verdict.reason.label} "
          f"({int(verdict.reason)}) by {verdict.qualified_by}", file=out)
    print(f"step:       {found.step.value}", file=out)
    if found.rule is not None:
        print(f"rule:       {found.rule.id} priority {found.rule.priority}: "
              f"{_shorten(found.rule.pattern, 100)}", file=out)
    if found.matching_rules:
        listed = ", ".join(str(rule.id) for rule in found.matching_rules)
        print(f"matching:   {listed} (the first one decides)", file=out)
    else:
        print("matching:   no rule", file=out)
    return 0



@_on_store
def run_export(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    document = export_rules(store, include_defaults=args.all, include_texts=args.texts)
    if args.output:
        Path(args.output).write_text(document, encoding="utf-8")
        count = document.count("[[rule]]")
        print(f"{count} rule(s) written to {args.output}", file=sys.stderr)
    else:
        out.write(document)
    return 0



@_on_store
def run_import(store: Store, args: argparse.Namespace, out: TextIO) -> int:
    path = Path(args.file)
    try:
        document = path.read_text(encoding="utf-8")
    except OSError as error:
        raise common.UsageError(f"{args.file}: {error.strerror or error}") from None
    lines = import_rules(store, document, source=str(path), replace=args.replace,
                         dry_run=args.dry_run)
    for line in lines:
        target = f" as {line.db_id}" if line.db_id not in (None, line.file_id) else ""
        note = f" ({line.note})" if line.note else ""
        print(f"rule {line.file_id}: {line.action.value}{target}{note}", file=out)
    changed = sum(line.action.value.startswith(("added", "replaced")) for line in lines)
    suffix = " (dry run: nothing written)" if args.dry_run else ""
    print(f"{changed} rule(s) imported, {len(lines) - changed} left as they were{suffix}",
          file=out)
    return 0

