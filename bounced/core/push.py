"""Push feedback: a provider's answer to one notification -> a verdict and "retry?".

APNs and FCM answer each notification synchronously; the sending platform passes the
answer on (``POST /v1/feedback/push``) and is told whether to retry. The verdicts are
the product reference's push tables, row for row, kept here as data
(:data:`APNS_ROWS`, :data:`FCM_ROWS`; docs/channels.md quotes them): each row's
failure type, failure reason and *Retry* column, and its error message as the text of
the qualification-table row, so that an operator can re-qualify it like any other text
(``bounced rules qualify``). The qualification order is: the qualification table
(``keep`` / ``ignore``), then the reference row (``qualified_by`` is
``reference:<row id>``). *Retry* always comes from the reference row: it describes the
provider's error, not what an operator decided about the address.

How an answer selects a row:

- APNs: HTTP 200 is the "OK" row; otherwise the ``reason`` of the error body
  (``Unregistered``, ``PayloadTooLarge``, ``BadCertificate``, ...), grouped as the
  reference groups scenarios; a reason the reference does not name is "all other
  errors" (soft / Refused). A lost connection has no APNs reason: the platform says
  ``ConnectionError``.
- FCM (HTTP v1): the ``error`` code (``UNREGISTERED``, ``QUOTA_EXCEEDED``, ...), the
  legacy API's names (``NotRegistered``, ``InvalidRegistration``), the OAuth errors
  of the authentication step (``invalid_grant``, ...), and, for the rows where the
  reference quotes no provider code, the platform's own label (``ILLEGAL_KEYWORDS``,
  ``PAYLOAD_TOO_BIG``, ``NO_RESPONSE``, ``TEMPORARILY_UNAVAILABLE``,
  ``AUTHENTICATION_FAILED``, ``AUTH_CONNECTION_ERROR``). Any other code is "all other
  errors", for which the reference gives no failure type: ``undefined`` (it waits in
  the qualification queue).

Where the reference's error message is a description ("Various error messages
according to the error"), the row's text is the provider's code itself.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bounced.core.addresses import canonical_push
from bounced.model import (
    BounceReport,
    FailureType,
    Kind,
    Qualification,
    QualificationStatus,
    QualifiedBy,
    QualifiedBySource,
    Reason,
    RecipientReport,
    TableEntry,
    Verdict,
)

PROVIDERS = ("apns", "fcm")
TableLookup = Callable[[str], TableEntry | None]


@dataclass(frozen=True, slots=True)
class PushRow:
    """One row of a reference push table.

    ``failure_type`` None: a success ("OK"). ``wording`` is the reference's error
    message (``{1}``, ``{2}``: values the provider's answer fills in); with
    ``describes`` the wording describes the messages instead of quoting one, and the
    provider's code is the text.
    """

    id: str
    provider: str
    scenario: str
    codes: tuple[str, ...]
    wording: str
    failure_type: FailureType | None
    reason: Reason
    retry: bool
    describes: bool = False

    def text(self, code: str | None) -> str:
        """The row's text in the qualification table."""
        if self.describes or not self.wording:
            return code or self.wording or self.id
        return self.wording

    def first_text(self, code: str | None, detail: Sequence[str]) -> str:
        """The text with the answer's values in place of ``{1}``, ``{2}``."""
        text = self.text(code)
        values = list(detail) or ([code] if code else [])
        for index, value in enumerate(values, start=1):
            text = text.replace(f"{{{index}}}", value)
        return text


_H, _S, _I, _U = FailureType.HARD, FailureType.SOFT, FailureType.IGNORED, FailureType.UNDEFINED
_REFUSED, _UNKNOWN, _UNREACHABLE, _UNDEF = (Reason.REFUSED, Reason.USER_UNKNOWN,
                                            Reason.UNREACHABLE, Reason.NOT_DEFINED)

#: The reference's iOS table (APNs over HTTP/2), in its order.
APNS_ROWS: tuple[PushRow, ...] = (
    PushRow("apns-ok-on", "apns", "Targeted device powered on", ("200",), "", None,
            _UNDEF, False),
    PushRow("apns-ok-off", "apns", "Targeted device powered off", ("200",), "", None,
            _UNDEF, False),
    PushRow("apns-ok-disabled", "apns", "User disables notifications for the application",
            ("200",), "", None, _UNDEF, False),
    PushRow("apns-payload", "apns", "Message creation/analysis phase: payload too big",
            ("PayloadTooLarge",), "Payload too long", _S, _REFUSED, False),
    PushRow("apns-format", "apns",
            "Message creation/analysis phase: unexpected content format issue",
            ("BadCollapseId", "BadExpirationDate", "BadMessageId", "BadPriority",
             "DuplicateHeaders", "InvalidPushType", "PayloadEmpty", "BadPath",
             "MethodNotAllowed", "MissingTopic"),
            "Various error messages according to the error", _S, _UNDEF, False,
            describes=True),
    PushRow("apns-certificate", "apns",
            "Certificate issue (password, corruption, etc.) and test connection to APNs issue",
            ("BadCertificate", "BadCertificateEnvironment", "ExpiredProviderToken",
             "InvalidProviderToken", "MissingProviderToken", "UnrelatedKeyIdInToken",
             "Forbidden", "TooManyProviderTokenUpdates"),
            "Various error messages according to the error", _S, _REFUSED, False,
            describes=True),
    PushRow("apns-connection", "apns", "Network connection lost during sending",
            ("ConnectionError",), "Connection error", _U, _UNREACHABLE, True),
    PushRow("apns-unregistered", "apns",
            "APNs message rejection: unregistration (the user removed the application or "
            "the token expired)", ("Unregistered", "ExpiredToken"), "Unregistered", _H,
            _UNKNOWN, False),
    PushRow("apns-other", "apns", "APNs message rejection: all other errors", (),
            "The error rejection cause will be present in the error message", _S, _REFUSED,
            False, describes=True),
)

#: The reference's Android V2 table (FCM), in its order.
FCM_ROWS: tuple[PushRow, ...] = (
    PushRow("fcm-keywords", "fcm",
            "Message creation/analysis phase: illegal keywords used in the custom fields",
            ("ILLEGAL_KEYWORDS",), "The following keywords cannot be used: {1}", _S, _UNDEF,
            False),
    PushRow("fcm-payload", "fcm", "Message creation/analysis phase: payload too big",
            ("PAYLOAD_TOO_BIG",),
            "The notification is too heavy: {1} bits, while only {2} are authorized", _S,
            _REFUSED, False),
    PushRow("fcm-no-response", "fcm", "Network connection lost during sending",
            ("NO_RESPONSE",),
            "No response from the Firebase Cloud Messaging service on the address: {1}", _S,
            _UNREACHABLE, True),
    PushRow("fcm-temporarily-unavailable", "fcm",
            "FCM message rejection: the FCM server is temporarily unavailable (e.g. timeouts)",
            ("TEMPORARILY_UNAVAILABLE",),
            "The Firebase Cloud Messaging service is temporarily unavailable", _S,
            _UNREACHABLE, True),
    PushRow("fcm-sender-auth", "fcm",
            "FCM message rejection: error authenticating the sender account",
            ("AUTHENTICATION_FAILED",),
            "Failed to identify the developer account, please check your ID and password", _S,
            _REFUSED, False),
    PushRow("fcm-quota", "fcm", "FCM message rejection: device quota exceeded",
            ("QUOTA_EXCEEDED", "DeviceMessageRateExceeded"), "", _S, _REFUSED, True),
    PushRow("fcm-not-registered", "fcm",
            "FCM message rejection: invalid registration / not registered",
            ("NotRegistered", "InvalidRegistration"), "", _H, _UNKNOWN, False),
    PushRow("fcm-other", "fcm", "FCM message rejection: all other errors", (),
            "The Firebase Cloud Messaging server has returned an unexpected error code: {1}",
            _U, _REFUSED, False),
    PushRow("fcm-invalid-argument", "fcm", "FCM message rejection: invalid argument",
            ("INVALID_ARGUMENT",), "INVALID_ARGUMENT", _I, _UNDEF, False),
    PushRow("fcm-third-party-auth", "fcm",
            "FCM message rejection: third party authentication error",
            ("THIRD_PARTY_AUTH_ERROR",), "THIRD_PARTY_AUTH_ERROR", _I, _REFUSED, True),
    PushRow("fcm-sender-id-mismatch", "fcm", "FCM message rejection: sender ID mismatch",
            ("SENDER_ID_MISMATCH",), "SENDER_ID_MISMATCH", _S, _UNKNOWN, False),
    PushRow("fcm-unregistered", "fcm", "FCM message rejection: unregistered",
            ("UNREGISTERED",), "UNREGISTERED", _H, _UNKNOWN, False),
    PushRow("fcm-internal", "fcm", "FCM message rejection: internal", ("INTERNAL",),
            "INTERNAL", _I, _REFUSED, True),
    PushRow("fcm-unavailable", "fcm", "FCM message rejection: unavailable", ("UNAVAILABLE",),
            "UNAVAILABLE", _I, _REFUSED, True),
    PushRow("fcm-unexpected", "fcm", "FCM message rejection: unexpected error code",
            ("UNSPECIFIED_ERROR",), "unexpected error code", _I, _REFUSED, False),
    PushRow("fcm-auth-connection", "fcm", "Authentication: connection issue",
            ("AUTH_CONNECTION_ERROR",), "Impossible to connect to authentication server", _I,
            _REFUSED, True),
    PushRow("fcm-auth-unauthorized-scope", "fcm",
            "Authentication: unauthorized client or scope in request",
            ("unauthorized_client",), "unauthorized_client", _I, _REFUSED, False),
    PushRow("fcm-auth-unauthorized-method", "fcm",
            "Authentication: client unauthorized to retrieve access tokens this way, or not "
            "authorized for any requested scope", ("unauthorized_client",),
            "unauthorized_client", _I, _REFUSED, False),
    PushRow("fcm-auth-access-denied", "fcm", "Authentication: access denied",
            ("access_denied",), "access_denied", _I, _REFUSED, False),
    PushRow("fcm-auth-email", "fcm", "Authentication: non-valid email", ("invalid_grant",),
            "invalid_grant", _I, _REFUSED, False),
    PushRow("fcm-auth-jwt", "fcm", "Authentication: invalid JWT", ("invalid_grant",),
            "invalid_grant", _I, _REFUSED, False),
    PushRow("fcm-auth-jwt-signature", "fcm", "Authentication: invalid JWT signature",
            ("invalid_grant",), "invalid_grant", _I, _REFUSED, False),
    PushRow("fcm-auth-scope", "fcm",
            "Authentication: invalid OAuth scope or ID token audience provided",
            ("unauthorized_client",), "unauthorized_client", _I, _REFUSED, False),
    PushRow("fcm-auth-disabled", "fcm", "Authentication: OAuth client disabled",
            ("disabled_client",), "disabled_client", _I, _REFUSED, False),
)

_FCM_OK = PushRow("fcm-ok", "fcm", "Sent (HTTP 200)", ("200",), "", None, _UNDEF, False)
ROWS: Mapping[str, tuple[PushRow, ...]] = {"apns": APNS_ROWS, "fcm": FCM_ROWS}


@dataclass(frozen=True, slots=True)
class Feedback:
    """One provider answer as the sending platform passed it on (and as stored)."""

    provider: str
    app: str
    token: str
    status: int | None = None
    code: str | None = None
    detail: tuple[str, ...] = ()
    #: The platform's id of the notification, if it gave one: a re-post with the same
    #: id is the same answer (a duplicate), without one each post counts.
    id: str | None = None
    #: When the answer was received (ISO-8601), part of the stored document so that two
    #: identical answers at different times are two messages.
    received_at: str | None = None

    @property
    def address(self) -> str:
        return canonical_push(self.app, self.token)

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "channel": "push", "provider": self.provider, "app": self.app,
            "token": self.token, "status": self.status, "code": self.code,
            "detail": list(self.detail), "id": self.id,
            "received_at": None if self.id else self.received_at,
        }
        return {key: value for key, value in data.items() if value not in (None, [])}


def feedback_raw(feedback: Feedback) -> bytes:
    """The canonical bytes stored in ``messages.raw`` (sorted keys)."""
    return json.dumps(feedback.to_json(), sort_keys=True, ensure_ascii=False,
                      separators=(",", ":")).encode("utf-8")


def read_feedback(raw: bytes) -> Feedback | None:
    """The stored answer, or ``None`` when the document cannot be read."""
    try:
        data = json.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(data, dict) or data.get("provider") not in PROVIDERS:
        return None
    status = data.get("status")
    detail = data.get("detail")
    return Feedback(
        provider=str(data["provider"]), app=str(data.get("app", "")),
        token=str(data.get("token", "")),
        status=status if isinstance(status, int) and not isinstance(status, bool) else None,
        code=str(data["code"]) if data.get("code") is not None else None,
        detail=tuple(str(d) for d in detail) if isinstance(detail, list) else (),
        id=str(data["id"]) if data.get("id") is not None else None,
        received_at=str(data["received_at"]) if data.get("received_at") else None,
    )


def row_of(provider: str, status: int | None, code: str | None) -> PushRow:
    """The reference row an answer falls in (see the module docstring)."""
    rows = ROWS[provider]
    if not code and status == 200:
        return rows[0] if provider == "apns" else _FCM_OK
    if code:
        for match in (lambda c: c == code, lambda c: c.lower() == code.lower()):
            for row in rows:
                if any(match(each) for each in row.codes):
                    return row
    return rows[len(rows) - 1] if provider == "apns" else next(
        row for row in rows if row.id == "fcm-other")


def is_success(row: PushRow) -> bool:
    return row.failure_type is None


def judge_feedback(feedback: Feedback, lookup: TableLookup
                   ) -> tuple[BounceReport, tuple[Verdict, ...], PushRow]:
    """The report, the one verdict, and the reference row of an answer."""
    row = row_of(feedback.provider, feedback.status, feedback.code)
    recipient_kind = Kind.DELIVERED if is_success(row) else Kind.FAILURE
    text = "" if is_success(row) else row.text(feedback.code)
    first = "" if is_success(row) else row.first_text(feedback.code, feedback.detail)
    recipient = RecipientReport(
        address=feedback.address, kind=recipient_kind, status=feedback.code,
        reply_code=str(feedback.status) if feedback.status is not None else None,
        diagnostic=first, remote_mta=feedback.provider,
    )
    qualification: Qualification | None = None
    if not is_success(row):
        entry = lookup(text)
        by_table = QualifiedBy(QualifiedBySource.TABLE, str(entry.id)) if entry else None
        if entry is not None and entry.status is QualificationStatus.KEEP and by_table:
            qualification = Qualification(entry.failure_type, entry.reason, by_table)
        elif entry is not None and entry.status is QualificationStatus.IGNORE and by_table:
            qualification = Qualification(FailureType.IGNORED, entry.reason, by_table)
        else:
            assert row.failure_type is not None
            qualification = Qualification(row.failure_type, row.reason,
                                          QualifiedBy(QualifiedBySource.REFERENCE, row.id))
    report = BounceReport(kind=recipient_kind, recipients=(recipient,),
                          original_message_id=feedback.id)
    return report, (Verdict(recipient, text, qualification),), row
