"""Amazon SES notifications delivered by e-mail (through SNS): JSON, not prose.

SES reports bounces, complaints and deliveries as a JSON document, either bare or
wrapped in an SNS envelope whose ``Message`` field is the same document as a string.
Long lines may come back broken by a relaying MTA with a ``!`` + line break (the RFC
5322 998-octet limit), which is undone before decoding.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from bounced.core.statuscodes import find_status
from bounced.model import Action, Kind

_ACTIONS = {
    "failed": Action.FAILED,
    "delayed": Action.DELAYED,
    "delivered": Action.DELIVERED,
    "relayed": Action.RELAYED,
    "expanded": Action.EXPANDED,
}


@dataclass(frozen=True, slots=True)
class SesRecipient:
    """One recipient of an SES notification."""

    address: str
    kind: Kind
    action: Action | None
    status: str | None
    diagnostic: str
    feedback_type: str | None = None
    remote_mta: str | None = None


@dataclass(frozen=True, slots=True)
class SesNotification:
    recipients: tuple[SesRecipient, ...]
    message_id: str | None


def looks_like_ses(text: str) -> bool:
    """Cheap test before any JSON decoding: SES documents name their type."""
    return "notificationType" in text or '"eventType"' in text


def read_notification(text: str) -> SesNotification | None:
    """The notification in ``text``, or None when it holds no SES JSON document."""
    document = _first_json_object(text)
    if document is None:
        return None
    message = document.get("Message")
    if isinstance(message, str):
        inner = _first_json_object(message)
        if inner is not None:
            document = inner
    kind_name = str(document.get("notificationType") or document.get("eventType") or "")
    mail = document.get("mail")
    message_id = _common_message_id(mail if isinstance(mail, dict) else {})
    readers = {"bounce": _bounces, "complaint": _complaints, "delivery": _deliveries}
    reader = readers.get(kind_name.lower())
    if reader is None:
        return None
    return SesNotification(tuple(reader(document)), message_id)


def _bounces(document: dict[str, Any]) -> list[SesRecipient]:
    """``bouncedRecipients``; a Transient bounce without ``action`` is a delay."""
    bounce = _object(document.get("bounce"))
    transient = str(bounce.get("bounceType", "")).lower() == "transient"
    mta = _strip_type(bounce.get("reportingMTA"))
    found = []
    for item in _array(bounce.get("bouncedRecipients")):
        if not isinstance(item, dict) or not item.get("emailAddress"):
            continue
        action = _ACTIONS.get(str(item.get("action", "")).lower())
        if action is None:
            action = Action.DELAYED if transient else Action.FAILED
        found.append(
            SesRecipient(
                address=str(item["emailAddress"]),
                kind=action.kind,
                action=action,
                status=_status(item.get("status")),
                diagnostic=_strip_type(item.get("diagnosticCode")) or "",
                remote_mta=mta,
            )
        )
    return found


def _complaints(document: dict[str, Any]) -> list[SesRecipient]:
    """``complainedRecipients`` with their ``complaintFeedbackType``."""
    complaint = _object(document.get("complaint"))
    feedback_type = _string(complaint.get("complaintFeedbackType")) or "abuse"
    return [
        SesRecipient(str(item["emailAddress"]), Kind.FEEDBACK, None, None, "", feedback_type)
        for item in _array(complaint.get("complainedRecipients"))
        if isinstance(item, dict) and item.get("emailAddress")
    ]


def _deliveries(document: dict[str, Any]) -> list[SesRecipient]:
    """``delivery.recipients``, the status taken from ``smtpResponse``."""
    delivery = _object(document.get("delivery"))
    response = str(delivery.get("smtpResponse") or "")
    return [
        SesRecipient(
            str(address), Kind.DELIVERED, Action.DELIVERED, find_status(response), response,
            remote_mta=_string(delivery.get("reportingMTA")),
        )
        for address in _array(delivery.get("recipients"))
    ]


# Anyone can send JSON: a value of the wrong type is taken as absent, never trusted into
# a report (a number as a status code made judging it raise).


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _array(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _status(value: Any) -> str | None:
    """An enhanced status code as the other formats report it (``"5.1.1"``), or None."""
    return find_status(value) if isinstance(value, str) else None


def _common_message_id(mail: dict[str, Any]) -> str | None:
    common = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    value = common.get("messageId") if common else None
    return str(value) if value else None


def _strip_type(value: Any) -> str | None:
    if not value:
        return None
    text = str(value)
    head, sep, rest = text.partition(";")
    return rest.strip() if sep and " " not in head.strip() else text


def _first_json_object(text: str) -> dict[str, Any] | None:
    """The first JSON object in ``text`` (a mail footer may follow it), line breaks undone."""
    start = text.find("{")
    if start < 0:
        return None
    candidate = text[start:]
    for attempt in (candidate, candidate.replace("!\n ", "").replace("!\r\n ", "")):
        try:
            value, _ = json.JSONDecoder().raw_decode(attempt)
        except (ValueError, RecursionError):  # RecursionError: "[[[[..." nested deeper
            continue  # than the decoder can go
        if isinstance(value, dict):
            return value
    return None
