"""Spam complaints: RFC 5965 feedback reports and the older "abuse report" forms.

An ARF report is ``multipart/report; report-type=feedback-report`` with a
``message/feedback-report`` part. The complained-about address is who received the
original mail: ``Original-Rcpt-To`` (one per recipient), ``Removal-Recipient`` (opt-out
reports), else the returned message's ``To``. Some providers send complaints without the
ARF part, as a plain forward of the message (Hotmail's JMRP carries the recipient in
``X-HmXmrOriginalRecipient``); those are recognised by that header or a complaint subject.
Apple Mail's one-click unsubscribe (``X-Apple-Unsubscribe: true``) is an opt-out
complaint from its sender.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bounced.core.parse.dsn import address_of, unfold
from bounced.core.parse.mime import Headers

_COMPLAINT_SUBJECT = re.compile(
    r"\b(?:complaint about message|abuse report|spam report|feedback report|"
    r"email feedback report|fbl report|spam complaint)\b",
    re.IGNORECASE,
)
ORIGINAL_RECIPIENT_HEADERS = ("x-hmxmroriginalrecipient", "x-original-recipient")


@dataclass(frozen=True, slots=True)
class Complaint:
    """What a feedback report says: who complained, about what kind of mail."""

    recipients: tuple[str, ...]
    feedback_type: str


def read_feedback_report(text: str, returned: Headers | None) -> Complaint:
    """The complaint of an RFC 5965 ``message/feedback-report`` body."""
    fields = _fields(text)
    feedback_type = (fields.get("feedback-type", [""])[0] or "abuse").strip().lower()
    recipients = [a for v in fields.get("original-rcpt-to", []) if (a := address_of(v))]
    if not recipients:
        recipients = [a for v in fields.get("removal-recipient", []) if (a := address_of(v))]
    if not recipients and returned is not None:
        recipients = returned_recipients(returned)
    return Complaint(tuple(_unique(recipients)), feedback_type)


def returned_recipients(headers: Headers) -> list[str]:
    """Who the complained-about message went to, from its own headers."""
    for name in (*ORIGINAL_RECIPIENT_HEADERS, "to", "delivered-to", "x-original-to"):
        value = headers.get(name)
        if value:
            found = _addresses(value)
            if found:
                return found
    return []


def is_complaint_forward(subject: str, returned: Headers | None) -> bool:
    """A non-ARF complaint: a forwarded message marked as reported by its recipient."""
    if returned is None:
        return False
    if any(name in returned for name in ORIGINAL_RECIPIENT_HEADERS[:1]):
        return True
    return bool(_COMPLAINT_SUBJECT.search(subject))


def is_unsubscribe_request(headers: Headers) -> bool:
    """Apple Mail's one-click unsubscribe, sent in the user's name."""
    return (headers.get("x-apple-unsubscribe") or "").strip().lower() == "true"


# An address, or (group "skip") the rest of a run of local-part characters from which no
# address can start: the same run ends at the same place from each of its characters, so
# skipping it finds what ``findall`` of the address alone did, without retrying the run
# from each position (quadratic on a long value without "@").
_ADDRESS = re.compile(
    r"[^\s<>()\[\]\"',;:@]++@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]|(?P<skip>[^\s<>()\[\]\"',;:@]++)"
)


def _addresses(value: str) -> list[str]:
    return [match.group(0) for match in _ADDRESS.finditer(value) if match.lastgroup is None]


def _fields(text: str) -> dict[str, list[str]]:
    """Every field of the report, repeated ones kept (``Original-Rcpt-To`` repeats)."""
    fields: dict[str, list[str]] = {}
    for line in unfold(text):
        if line is None:
            continue
        name, colon, value = line.partition(":")
        if colon and name and " " not in name.strip():
            fields.setdefault(name.strip().lower(), []).append(value.strip())
    return fields


def _unique(items: list[str]) -> list[str]:
    seen: dict[str, str] = {}
    for item in items:
        seen.setdefault(item.lower(), item)
    return list(seen.values())
