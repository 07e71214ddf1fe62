"""RFC 3464 delivery status notifications, read field by field.

The ``message/delivery-status`` body is a per-message block followed by per-recipient
blocks. Real MTAs bend the format (no blank line between blocks, two recipients in one
block, lowercase field names, ``Final-Recipient`` without an address type), so blocks
are cut on field order as well as on blank lines: a repeated ``Final-Recipient`` (or a
recipient field after a complete block) starts a new recipient.

``message/global-delivery-status`` (RFC 6533) is the same syntax in UTF-8, with
``utf-8;`` address types whose ``\\x{HHHH}`` escapes are undone here.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from bounced.model import Action

_FIELD = re.compile(r"^([A-Za-z][A-Za-z0-9-]*)[ \t]*:[ \t]*(.*)$")
_TYPE_PREFIX = re.compile(r"^\s*[A-Za-z][A-Za-z0-9-]{0,20}\s*;\s*")
_UNITEXT = re.compile(r"\\x\{([0-9A-Fa-f]{1,6})\}")
_XTEXT = re.compile(r"(?:\+[0-9A-Fa-f]{2})+")
_XTEXT_ASCII = frozenset({"+", "=", " "})
_ACTION_WORD = re.compile(r"[a-z]+")

_ACTIONS: dict[str, Action] = {
    "failed": Action.FAILED,
    "failure": Action.FAILED,
    "delayed": Action.DELAYED,
    "delivered": Action.DELIVERED,
    "relayed": Action.RELAYED,
    "expanded": Action.EXPANDED,
    "deliverable": Action.DELIVERED,
}

_CONTROL = dict.fromkeys([*range(0, 32), *range(127, 160)], " ")
RECIPIENT_FIELDS = frozenset({"final-recipient", "original-recipient"})

MAX_RECIPIENTS = 1_000
"""Recipient blocks read from one report (and recipients reported for one message, by
:mod:`bounced.core.parse.message`); further blocks are counted, not kept. A bounce of mail
sent with VERP names one recipient, one of a message to a list a few; more than 1,000 is
a hostile report, whose every block would cost memory and work (a 32 MB report holds
half a million)."""


@dataclass(slots=True)
class DsnRecipient:
    """The fields of one per-recipient block (names lowercased, values unfolded)."""

    fields: dict[str, str] = field(default_factory=dict)

    def get(self, name: str) -> str | None:
        return self.fields.get(name)


@dataclass(slots=True)
class DeliveryStatus:
    """A parsed delivery-status body."""

    message_fields: dict[str, str] = field(default_factory=dict)
    recipients: list[DsnRecipient] = field(default_factory=list)
    #: Recipient blocks past :data:`MAX_RECIPIENTS`, counted but not read.
    skipped: int = 0


def unfold(text: str) -> Iterator[str | None]:
    """Logical lines: continuation lines joined with a space, ``None`` for a blank line.

    Read one line at a time, a folded line joined once it ends: a report of 32 MB of
    short lines must not become a list of millions of strings first, and appending each
    continuation to the line so far copied it every time (quadratic for a long fold)."""
    current: list[str] = []  # the logical line being read: its first line, continuations
    for raw in io.StringIO(text, newline="\n"):  # lines end at "\n" only, as in the DSN
        line = raw.rstrip()
        if line and line[0] in " \t" and current:
            current.append(line.strip())
            continue
        if current:
            yield " ".join(current)
        if line:
            current = [line.strip()]
        else:
            current = []
            yield None
    if current:
        yield " ".join(current)
    if not text or text.endswith("\n"):
        yield None  # the empty last line after a final line break


def parse_delivery_status(text: str) -> DeliveryStatus:
    """Split a delivery-status body into its per-message and per-recipient fields.

    Only the first block is per-message; any later block is a recipient's, even when
    its ``Final-Recipient`` comes after its ``Status`` (as some MTAs write it). Blocks
    past the first :data:`MAX_RECIPIENTS` are only counted, in ``skipped``.
    """
    status = DeliveryStatus()
    current: DsnRecipient | None = None
    first_block = True
    seen_field = False
    for line in unfold(text):
        if line is None:
            if seen_field:
                first_block = False
            current = None
            continue
        match = _FIELD.match(line)
        if match is None:
            continue
        seen_field = True
        name = match.group(1).lower()
        value = match.group(2).strip()
        if (name in RECIPIENT_FIELDS and _starts_recipient(current, name)) or (
            current is None and not first_block
        ):
            current = DsnRecipient()
            if len(status.recipients) < MAX_RECIPIENTS:
                status.recipients.append(current)
            else:
                status.skipped += 1
        if current is None:
            if name in ("action", "status", "diagnostic-code") and status.recipients:
                current = status.recipients[-1]
            else:
                status.message_fields.setdefault(name, value)
                continue
        current.fields.setdefault(name, value)
    status.recipients = [r for r in status.recipients if _has_address(r)]
    return status


def _starts_recipient(current: DsnRecipient | None, name: str) -> bool:
    """Whether a recipient field opens a new block: nothing is open, the open block has
    this field already, or it is complete (has its Action and Status)."""
    if current is None or name in current.fields:
        return True
    return "action" in current.fields and "status" in current.fields


def _has_address(recipient: DsnRecipient) -> bool:
    return bool(
        address_of(recipient.get("final-recipient"))
        or address_of(recipient.get("original-recipient"))
    )


def strip_type(value: str) -> str:
    """``"smtp; 550 ..."`` -> ``"550 ..."``, ``"rfc822; a@b"`` -> ``"a@b"``."""
    return _TYPE_PREFIX.sub("", value, count=1)


def address_of(value: str | None) -> str | None:
    """The address of a ``Final-Recipient`` / ``Original-Recipient`` value.

    ``utf-8`` addresses have their ``\\x{HHHH}`` escapes undone, ``rfc822`` ones their
    xtext ``+HH`` escapes; angle brackets and quotes around the address go.
    """
    if not value:
        return None
    kind = value.split(";", 1)[0].strip().lower() if ";" in value else ""
    address = strip_type(value).strip()
    if kind.startswith("utf-8") or "\\x{" in address:
        address = _UNITEXT.sub(lambda m: _chr(m.group(1)), address)
    elif "+" in address:
        address = _XTEXT.sub(_xtext_run, address)
    address = _unquote(address.strip().strip("<>").strip())
    if " " in address and not address.startswith('"'):
        address = _unquote(address.split()[0].strip("<>"))
    if not _plausible(address):
        found = _EMAIL.search(value)
        return found.group(0) if found else (address or None)
    return address or None


def recipient_address(block: DsnRecipient) -> str | None:
    """The recipient a block is about: its ``Final-Recipient``, unless that is no mail
    address (a source route, a pipe, a bare local part) and ``Original-Recipient`` is."""
    final_value = block.get("final-recipient")
    original = address_of(block.get("original-recipient"))
    written = strip_type(final_value or "").strip().strip("<>")
    if final_value and _plausible(_unquote(written.split()[0] if written else "")):
        return address_of(final_value)
    if original and _plausible(original):
        return original
    return address_of(final_value) or original


def _unquote(address: str) -> str:
    """Quotes around a whole address go; a quoted local part (``"a..b"@c``) stays."""
    if len(address) > 1 and address[0] == address[-1] and address[0] in "\"'":
        return address[1:-1].strip()
    return address


# The local part is tried from the start of a run of its characters only (from a later
# one the run ends at the same place, so ``search`` finds the same address): retried from
# each position, a long value without "@" was quadratic.
_EMAIL = re.compile(
    r"(?<![^\s<>()\[\]\"',;:@|])[^\s<>()\[\]\"',;:@|]++@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]"
)


def _plausible(address: str) -> bool:
    """An address with one ``@`` after a non-empty local part, no route or pipe."""
    local, at, domain = address.rpartition("@")
    return bool(at and local and domain) and not address.startswith(("@", "|", "/"))


def _xtext_run(match: re.Match[str]) -> str:
    """Undo an RFC 3461 xtext run (``+2B`` = ``+``, ``+C3+BC`` = ``ü``) but leave a
    plus-tag alone: ``user+ab@x`` is an address, not ``user«@x``. Only what xtext
    must encode is decoded: ``+``, ``=``, space, and UTF-8 sequences."""
    run = match.group(0)
    octets = bytes(int(run[i + 1 : i + 3], 16) for i in range(0, len(run), 3))
    try:
        text = octets.decode("utf-8")
    except UnicodeDecodeError:
        return run
    if all(ch in _XTEXT_ASCII or ord(ch) > 0x7F for ch in text):
        return text
    return run


def _chr(hex_digits: str) -> str:
    try:
        return chr(int(hex_digits, 16))
    except (ValueError, OverflowError):
        return "\ufffd"


def action_of(value: str | None) -> Action | None:
    """The ``Action`` field, tolerant of case and trailing comments."""
    if not value:
        return None
    match = _ACTION_WORD.search(value.lower())
    return _ACTIONS.get(match.group(0)) if match else None


def diagnostic_of(value: str | None) -> str:
    """``Diagnostic-Code`` text without its ``smtp;`` / ``X-Postfix;`` type."""
    if not value:
        return ""
    return " ".join(strip_type(value).translate(_CONTROL).split())
