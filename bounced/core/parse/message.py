"""The parse pipeline proper: recognise what a message is and build its report."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import getaddresses, parseaddr, parsedate_to_datetime
from enum import Enum
from typing import TypeVar

from bounced.core import statuscodes as codes
from bounced.core.parse import arf, autoreply, commands, dsn, fallback, lists, ses, vendors
from bounced.core.parse.mime import (
    Headers,
    Loaded,
    Part,
    decode_bytes,
    decode_text,
    expand,
    load,
    parse_headers,
    split_header_block,
)
from bounced.core.verp import token_of
from bounced.model import Action, BounceReport, Kind, RecipientReport

DELIVERY_STATUS_TYPES = frozenset({"message/delivery-status", "message/global-delivery-status"})
RETURNED_MESSAGE_TYPES = frozenset({"message/rfc822", "message/global", "message/news"})
RETURNED_HEADERS_TYPES = frozenset({"text/rfc822-headers", "text/rfc822-header"})
_SEVERITY = (Kind.FAILURE, Kind.DELAY, Kind.DELIVERED, Kind.FEEDBACK, Kind.AUTOREPLY)

_DAEMON_LOCAL = re.compile(
    r"^(?:mailer[-_]?daemon|mail[-_]?daemon|postmaster|mail[-_]?delivery|"
    r"mailerdaemon|post[-_]?master|bounces?|mdaemon|mmdf)(?:@|$)",
    re.IGNORECASE,
)
_DAEMON_NAME = re.compile(
    r"mail delivery|mailer[- ]daemon|postmaster|delivery subsystem|mail administrator|"
    r"system administrator|mail system|delivery status|mail gateway",
    re.IGNORECASE,
)
_BOUNCE_SUBJECT = re.compile(
    r"undeliver|undelivered|delivery fail|delivery failure|failure notice|returned mail|"
    r"mail delivery|delivery status|non[- ]?delivery|nondeliver|could not be delivered|"
    r"not delivered|\bbounced?\b|delivery problem|could not send|delivery report|"
    r"message not delivered|unable to deliver|delivery notification|mail system error|"
    r"warning: could not|returned to sender|failed delivery|delivery error|"
    r"permanent error|temporary error|\bNDN\b|\bDSN\b|delayed mail|mail error|"
    r"error sending|sending failed|can't be delivered|wasn't delivered|"
    r"不達|配信不能|未配達|送信エラー|メールエラー|エラー通知|退信|投递失败|无法投递",
    re.IGNORECASE,
)
_LAYOUT_MARKERS = re.compile(
    r"-{3,} ?Transcript of session follows ?-{3,}"  # Sendmail
    r"|The following addresses had permanent fatal errors"  # Sendmail
    r"|Hi\. This is the qmail-send program"  # qmail
    r"|I'm afraid I wasn't able to deliver your message"  # qmail
    r"|This message was created automatically by mail delivery software"  # Exim
    r"|This is the mail system at host"  # Postfix
    r"|Delivery has failed to these recipients or groups"  # Exchange, Office 365
    r"|Diagnostic information for administrators"  # Exchange, Office 365
    r"|was not delivered to:\s++[^\s@]++@\S++\s++because:"  # Domino
    r"|Your message couldn't be delivered to the following recipient"  # Mimecast
    r"|The group you tried to contact \(",  # Google Groups
    re.IGNORECASE,
)
"""The fixed sentences with which mail systems open their non-delivery reports: a text
with one of them is a bounce whoever sent it (a relay may rewrite the sender)."""
# Possessive blanks: "Re" + 100,000 spaces + "x" gave them back one by one to the second
# "\s*" (quadratic); the words and "[", ":" that follow are no blanks anyway.
_HUMAN_SUBJECT = re.compile(
    r"\s*+(?:re|fwd?|aw|wg|tr|sv|vs|rv|ynt)\s*+(?:\[\d+\])?\s*+:", re.I
)
_DELAY_TEXT = re.compile(
    r"\b(?:delayed|delay\)|still (?:being )?(?:retried|trying)|will (?:continue to )?(?:be )?"
    r"retr(?:y|ied)|has not yet been delivered|not been delivered yet|warning: message)",
    re.IGNORECASE,
)
_PERMANENT_TEXT = re.compile(
    r"permanent(?:ly)?|given up|giving up|gave up|failed permanently|could not be delivered|"
    r"couldn't be delivered|undeliverable|not going to try again",
    re.IGNORECASE,
)
_EMBEDDED_DSN = re.compile(r"^(?:Reporting-MTA|Final-Recipient)\s*:", re.IGNORECASE | re.MULTILINE)
_REMOTE_HOST = re.compile(r"\bhost\s+([A-Za-z0-9][A-Za-z0-9.\-]*\.[A-Za-z]{2,})\b")
_KEEP_HEADERS = ("message-id", "subject", "to", "from", "date")
_NOISY_X_HEADERS = (
    "x-ms-", "x-microsoft", "x-google", "x-gm-", "x-received", "x-spam", "x-virus",
    "x-forefront", "x-exchange", "x-originating", "x-mailer", "x-mimeole", "x-msmail",
    "x-ironport", "x-barracuda", "x-proofpoint", "x-mimecast", "x-priority", "x-yahoo",
    "x-ymail", "x-apple", "x-eopattributedmessage", "x-crosspremises", "x-msg",
    "x-sender-ip", "x-source", "x-ses", "x-amazon", "x-mail-from", "x-rcpt-to",
)
NO_RECIPIENT_PROBLEM = "looks like a bounce but no recipient could be read"
MAX_ORIGINAL_HEADERS = 20
MAX_HEADER_VALUE = 300
MAX_TEXT_BYTES = 256 * 1024
MAX_RECIPIENTS = dsn.MAX_RECIPIENTS
"""Recipients reported for one message, whatever the format (see ``dsn.MAX_RECIPIENTS``);
more are noted in ``problems`` and left out."""
LARGE_MESSAGE = 10 * 1024 * 1024
VERP_HEADERS = ("delivered-to", "x-original-to", "to", "envelope-to", "x-envelope-to")
_Found = TypeVar("_Found")
_Read = TypeVar("_Read")


@dataclass(slots=True)
class _View:
    """A loaded message with the parts the recognisers look at, found once."""

    loaded: Loaded
    headers: Headers
    status_parts: list[Part] = field(default_factory=list)
    feedback_parts: list[Part] = field(default_factory=list)
    returned: Headers | None = None
    returned_message: Part | None = None
    text_parts: list[Part] = field(default_factory=list)
    html_parts: list[Part] = field(default_factory=list)
    original_message_id: str | None = None
    _text: str | None = None
    _human: str | None = None
    _sender: tuple[str, str] | None = None

    @property
    def sender(self) -> tuple[str, str]:
        """``(display name, address)`` of the message's own ``From``."""
        if self._sender is None:
            self._sender = split_address(self.headers.get("from") or "")
        return self._sender

    @property
    def problems(self) -> list[str]:
        return self.loaded.problems

    def text(self) -> str:
        """The human-readable notification (first text/plain parts, else HTML as text)."""
        if self._text is None:
            parts = self.text_parts or self.html_parts
            chunks = [_bounded_text(part, self.problems) for part in parts[:3]]
            text = "\n".join(chunks)
            if not self.text_parts and self.html_parts:
                text = html_to_text(text)
            self._text = text
        return self._text

    def human(self) -> str:
        """:meth:`text` without the returned message quoted after it."""
        if self._human is None:
            self._human = vendors.human_text(self.text())
        return self._human


def _bounded_text(part: Part, problems: list[str]) -> str:
    """A text part, cut at :data:`MAX_TEXT_BYTES`: what a mail system writes about a
    failure is at the top, and regexes over megabytes of pasted data only cost time."""
    if len(part.body) <= MAX_TEXT_BYTES:
        return decode_text(part, problems)
    problems.append(f"text part of {len(part.body) // 1024} KB: only its first "
                    f"{MAX_TEXT_BYTES // 1024} KB read")
    return decode_bytes(part.body[:MAX_TEXT_BYTES], part.charset, problems)


def parse_message(raw: bytes, *, verp_separator: str = "+") -> BounceReport:
    """Parse one message. Never raises: unusable input gives kind ``not_bounce`` with
    the reason in ``problems``. ``verp_separator`` is ``verp.separator`` of the
    configuration: it finds the VERP token in the bounce's delivery headers."""
    try:
        return _parse(raw, verp_separator)
    except Exception as error:  # the last line of defence: a bounce must never crash us
        return BounceReport(
            kind=Kind.NOT_BOUNCE,
            problems=(f"parser error, message not understood: {type(error).__name__}: {error}",),
        )


def _parse(raw: bytes, verp_separator: str = "+") -> BounceReport:
    """The parse proper; :func:`parse_message` only guards it."""
    if not raw.strip():
        return BounceReport(kind=Kind.NOT_BOUNCE, problems=("empty message (no content)",))
    loaded = load(raw)
    if len(raw) > LARGE_MESSAGE:
        loaded.problems.append(f"unusually large message ({len(raw) / 1048576:.1f} MB)")
    headers = loaded.root.headers
    if len(headers) == 0:
        note = (
            "not an email: binary data"
            if _looks_binary(raw)
            else "not an email: no header section"
        )
        return BounceReport(kind=Kind.NOT_BOUNCE, problems=(note, *loaded.problems))
    if not loaded.root.children and not loaded.root.body.strip():
        loaded.problems.append("message has headers but no body")
    view = _view(loaded)
    kind, recipients = _recognise(view)
    return _report(view, kind, recipients, verp_separator)


def _looks_binary(raw: bytes) -> bool:
    """NUL bytes or many control characters: an attachment or a file, not mail text."""
    sample = raw[:4096]
    controls = sum(1 for byte in sample if byte < 9 or 13 < byte < 32)
    return b"\0" in sample or controls > len(sample) // 20


def _view(loaded: Loaded) -> _View:
    """Sort the notification's parts by role once, for all recognisers."""
    view = _View(loaded, loaded.root.headers)
    for part in _top_parts(loaded.root):
        ctype = part.content_type
        if ctype in DELIVERY_STATUS_TYPES:
            view.status_parts.append(part)
        elif ctype == "message/feedback-report":
            view.feedback_parts.append(part)
        elif ctype in RETURNED_MESSAGE_TYPES:
            if view.returned is None and part.children:
                view.returned = part.children[0].headers
                view.returned_message = part.children[0]
        elif ctype in RETURNED_HEADERS_TYPES:
            if view.returned is None:
                view.returned = _headers_of_text(part, loaded.problems)
        elif view.returned is not None and (view.text_parts or view.html_parts):
            continue  # text after the returned message belongs to it, not to the notice
        elif ctype == "text/plain" or (ctype.startswith("text/") and ctype != "text/html"):
            if not _is_attachment(part):
                view.text_parts.append(part)
        elif ctype == "text/html" and not _is_attachment(part):
            view.html_parts.append(part)
    return view


def _top_parts(root: Part) -> list[Part]:
    """The leaves and embedded messages of the notification itself, not descending into
    a returned message (whose own parts could be a DSN of an older bounce)."""
    found: list[Part] = []
    stack = [root]
    while stack:
        part = stack.pop()
        if part.content_type.startswith("multipart/") and part.children:
            stack.extend(reversed(part.children))
        else:
            found.append(part)
    return found


def _is_attachment(part: Part) -> bool:
    """A named attachment is not the notification's prose (a forwarded log, a PDF...)."""
    disposition = (part.headers.get("content-disposition") or "").lower()
    return disposition.startswith("attachment") and "name" in disposition


def _headers_of_text(part: Part, problems: list[str]) -> Headers:
    """A ``text/rfc822-headers`` part: the returned header block, no body."""
    head, _, _ = split_header_block(part.body.lstrip(b"\n"))
    return parse_headers(head or part.body, problems)


def _recognise(view: _View) -> tuple[Kind, list[RecipientReport]]:
    """What the message is and who it is about, most explicit format first (see the
    package docstring): the structured parts (ARF, DSN, SES JSON) before prose, and prose
    only from a mail system, so that a person's reply is never read as a bounce."""
    headers = view.headers
    report_type = (headers.get("content-type") or "").lower()
    if view.feedback_parts or "feedback-report" in report_type:
        return _feedback(view)
    if view.status_parts:
        recipients = _dsn_recipients(view)
        if recipients:
            return _overall_kind(recipients), recipients
    if arf.is_unsubscribe_request(headers):
        return _sender_as(view, Kind.FEEDBACK, feedback_type="opt-out")
    signal = _bounce_signal(view)
    if signal is not _Signal.STRONG and arf.is_complaint_forward(
        headers.get("subject") or "", view.returned
    ):
        return _feedback(view)
    if ses.looks_like_ses(view.text()):
        recipients = _ses_recipients(view)
        if recipients:
            return _overall_kind(recipients), recipients
    listed = lists.list_address(headers, view.human())
    if listed is not None:
        notice = vendors.collapse(view.human(), 1000)
        return Kind.FAILURE, [RecipientReport(listed, Kind.FAILURE, Action.FAILED,
                                              diagnostic=notice)]
    autoreplied = autoreply.is_autoreply(headers)
    if signal is _Signal.STRONG or (signal is _Signal.WEAK and not autoreplied):
        recipients = _embedded_dsn_recipients(view) or _text_recipients(view, signal)
        if recipients:
            return _overall_kind(recipients), recipients
    if autoreplied and signal is not _Signal.STRONG:
        return _sender_as(view, Kind.AUTOREPLY)
    if signal is _Signal.STRONG or view.status_parts:
        view.problems.append(NO_RECIPIENT_PROBLEM)
        if view.status_parts or _is_a_report(view):
            # Stored as the failure (or delay) it is, with no recipient, so an operator
            # can find it; never as not_bounce, which would hide it among human replies.
            delayed = _is_delay_notice(view, view.human())
            return (Kind.DELAY if delayed else Kind.FAILURE), []
    return Kind.NOT_BOUNCE, []


def _is_a_report(view: _View) -> bool:
    """Whether a message whose recipients could not be read is still surely a mail
    system's report: by its structure (a delivery-status report type,
    ``X-Failed-Recipients``, a report layout in its text), or sent by a mailer daemon
    under a bounce subject. A daemon address alone (a person writing from
    ``postmaster@``) or a bounce word in a subject alone ("test for bounce") is not."""
    headers = view.headers
    if "x-failed-recipients" in headers:
        return True
    content_type = (headers.get("content-type") or "").lower()
    if "multipart/report" in content_type and "delivery-status" in content_type:
        return True
    subject = headers.get("subject") or ""
    if _HUMAN_SUBJECT.match(subject):
        return False
    if _LAYOUT_MARKERS.search(view.text()[:5000]):
        return True
    name, address = view.sender
    daemon = _DAEMON_LOCAL.match(address) or (name and _DAEMON_NAME.search(name))
    return bool(daemon and _BOUNCE_SUBJECT.search(subject))


def _sender_as(
    view: _View, kind: Kind, feedback_type: str | None = None
) -> tuple[Kind, list[RecipientReport]]:
    """The message's own sender as its one recipient (auto-replies, unsubscribes)."""
    report = RecipientReport(
        view.sender[1] or None, kind, feedback_type=feedback_type,
        diagnostic=vendors.collapse(view.text(), 500),
    )
    return kind, [report]


def _overall_kind(recipients: list[RecipientReport]) -> Kind:
    """The most severe kind of a report's recipients (failure > delay > delivered)."""
    kinds = {recipient.kind for recipient in recipients}
    return next((kind for kind in _SEVERITY if kind in kinds), Kind.NOT_BOUNCE)


class _Signal(Enum):
    """How surely a message is a report from a mail system about a delivery."""

    NONE = 0
    WEAK = 1
    STRONG = 2


def _bounce_signal(view: _View) -> _Signal:
    """Strong: a daemon sender, a bounce subject, ``X-Failed-Recipients``, a report
    content type, a mail system's report layout (:data:`_LAYOUT_MARKERS`). Weak: a null
    return path or a returned message, which auto-replies and
    forwards share, or bounce wording in the prose only; and none at all for a message
    that otherwise looks written by a person (``Re:``/``Fwd:`` subject, ``In-Reply-To``),
    even when it forwards a bounce."""
    headers = view.headers
    if "x-failed-recipients" in headers:
        return _Signal.STRONG
    name, address = view.sender
    if _DAEMON_LOCAL.match(address) or (name and _DAEMON_NAME.search(name)):
        return _Signal.STRONG
    if "multipart/report" in (headers.get("content-type") or "").lower():
        return _Signal.STRONG
    subject = headers.get("subject") or ""
    if _HUMAN_SUBJECT.match(subject) or "in-reply-to" in headers:
        return _Signal.NONE  # a person's reply or forward, whatever it quotes or attaches
    if _BOUNCE_SUBJECT.search(subject) or _LAYOUT_MARKERS.search(view.text()[:5000]):
        return _Signal.STRONG
    if (headers.get("return-path") or "").strip() == "<>" or view.returned is not None:
        return _Signal.WEAK
    if _BOUNCE_SUBJECT.search(view.text()[:3000]):
        return _Signal.WEAK
    return _Signal.NONE


def _feedback(view: _View) -> tuple[Kind, list[RecipientReport]]:
    """The complained-about recipients of an ARF report or a complaint forward."""
    text = "\n".join(decode_text(part, view.problems) for part in view.feedback_parts)
    human = vendors.collapse(view.text(), 500)
    complaint = arf.read_feedback_report(text, view.returned)
    recipients = _capped([
        RecipientReport(address, Kind.FEEDBACK, diagnostic=human,
                        feedback_type=complaint.feedback_type)
        for address in complaint.recipients
    ], view.problems)
    if not recipients:
        view.problems.append("feedback report naming no recipient")
    return Kind.FEEDBACK, recipients


def _dsn_recipients(view: _View) -> list[RecipientReport]:
    """The recipients of the message's delivery-status part(s), the first
    :data:`MAX_RECIPIENTS` of them."""
    recipients: list[RecipientReport] = []
    skipped = 0
    for part in view.status_parts:
        if len(recipients) >= MAX_RECIPIENTS:
            skipped += 1  # a whole part more: counted as one, not read
            continue
        charset = part.charset or (
            "utf-8" if part.content_type == "message/global-delivery-status" else None
        )
        status = dsn.parse_delivery_status(decode_bytes(part.body, charset, view.problems))
        recipients.extend(_reports_of(status, view.human))
        skipped += status.skipped
    return _dedupe(_capped(recipients, view.problems, skipped))


def _capped(
    recipients: list[_Found], problems: list[str], skipped: int = 0
) -> list[_Found]:
    """The first :data:`MAX_RECIPIENTS` recipients, the others noted in ``problems``
    (``skipped``: more that were counted but never read)."""
    extra = len(recipients) - MAX_RECIPIENTS + skipped
    if extra <= 0:
        return recipients
    problems.append(
        f"more than {MAX_RECIPIENTS} recipients: only the first {MAX_RECIPIENTS} read "
        f"({extra} more left out)"
    )
    return recipients[:MAX_RECIPIENTS]


def _reports_of(
    status: dsn.DeliveryStatus, prose: Callable[[], str]
) -> list[RecipientReport]:
    """One report per DSN recipient block. A block without ``Diagnostic-Code`` (Exim's
    local failures) or with a bare exit status (Sendmail's ``X-Unix; 71``) takes its
    error text from the prose, read only when needed; so does the SMTP command, which
    MTAs write in the prose ("in reply to RCPT TO command") rather than in the DSN.

    A text shared by many blocks (the prose, for up to 1,000 blocks without a diagnostic
    of their own) is searched for its codes and command once."""
    blocks: dict[str, vendors.TextRecipient] | None = None
    find_command = _per_text(commands.find_command, len(status.recipients))
    codes_of = _per_text(_codes_of, len(status.recipients))
    reports = []
    reporting = dsn.strip_type(status.message_fields.get("reporting-mta") or "").strip()
    for block in status.recipients:
        address = dsn.recipient_address(block)
        diagnostic = dsn.diagnostic_of(block.get("diagnostic-code"))
        command = find_command(diagnostic)
        if not diagnostic or diagnostic.isdigit() or command is None:
            if blocks is None:
                blocks = {i.address.lower(): i for i in vendors.scan_recipients(prose())}
            found = blocks.get((address or "").lower())
            if found is None and len(blocks) == 1 and len(status.recipients) == 1:
                # one recipient each side, written differently (a rewritten or
                # anonymised address): the same failure
                found = next(iter(blocks.values()))
            if not diagnostic or diagnostic.isdigit():
                diagnostic = found.diagnostic if found else vendors.collapse(prose(), 1000)
            command = (
                command
                or (found.command if found else None)
                or find_command(found.diagnostic if found else "")
                or commands.find_transcript_command(prose(), address)
            )
        reports.append(_recipient_from_dsn(block, address, diagnostic, command,
                                           reporting or None, codes_of))
    return reports


def _codes_of(text: str) -> tuple[str | None, str | None]:
    """The enhanced status code and the reply code written in ``text``."""
    return codes.find_status(text), codes.find_reply_code(text)


def _per_text(function: Callable[[str], _Read], calls: int) -> Callable[[str], _Read]:
    """``function`` as it is for one call, cached for several: the recipients of one
    notice often share its text, and a thousand of them must not each search it."""
    return functools.cache(function) if calls > 1 else function


def _recipient_from_dsn(
    block: dsn.DsnRecipient, address: str | None, diagnostic: str, command: str | None,
    reporting_mta: str | None = None,
    codes_in: Callable[[str], tuple[str | None, str | None]] = _codes_of,
) -> RecipientReport:
    """One DSN recipient block as a report; the status rule is :func:`codes.prefer_status`.
    ``codes_in`` reads the codes of the diagnostic (a cached :func:`_codes_of`)."""
    field_status = codes.find_status(block.get("status") or "")
    text_status, reply_code = codes_in(diagnostic)
    status = codes.prefer_status(field_status, text_status) or codes.status_from_reply(
        reply_code
    )
    action = dsn.action_of(block.get("action")) or _action_from_status(status)
    remote = dsn.strip_type(block.get("remote-mta") or "").strip()
    return RecipientReport(
        address=address,
        kind=action.kind,
        action=action,
        status=status,
        reply_code=reply_code,
        diagnostic=diagnostic,
        remote_mta=remote or None,
        original_recipient=dsn.address_of(block.get("original-recipient")),
        smtp_command=command,
        reporting_mta=reporting_mta,
    )


def _action_from_status(status: str | None) -> Action:
    """A block without ``Action`` (it happens) takes it from its status class."""
    if status and status[0] == "2":
        return Action.DELIVERED
    if status and status[0] == "4":
        return Action.DELAYED
    return Action.FAILED


def _text_recipients(view: _View, signal: _Signal) -> list[RecipientReport]:
    """Recipients of a prose bounce. Where they come from, in order of trust: the prose
    (narrowed by ``X-Failed-Recipients``), a bounce returned inside this one, the
    returned message's ``To``, flufl.bounce, the ``To`` of an original quoted in the
    prose. A recipient's status and reply code come from its own error text, else from
    the whole prose when it is the only recipient."""
    text = view.human()
    found = _capped(_listed_recipients(view, vendors.scan_recipients(text)), view.problems)
    if not found and signal is _Signal.STRONG:
        forwarded = _forwarded_bounce(view)
        if forwarded:
            return forwarded
    if not found and signal is _Signal.STRONG and view.returned is not None:
        found = [vendors.TextRecipient(a, "") for a in arf.returned_recipients(view.returned)]
    if not found:
        found = [vendors.TextRecipient(a, "") for a in fallback.scan(view.loaded, view.headers)]
    if not found and signal is _Signal.STRONG:
        quoted = _inline_returned_headers(view)
        if quoted is not None:
            found = [vendors.TextRecipient(a, "") for a in arf.returned_recipients(quoted)]
    if not found:
        return []
    delayed = _is_delay_notice(view, text)
    whole = vendors.collapse(text)
    section_command = commands.find_section_command(text) if len(found) == 1 else None
    codes_of = _per_text(_codes_of, len(found))
    remote_host = _per_text(_remote_host, len(found))
    find_command = _per_text(commands.find_command, len(found))
    recipients = []
    for item in found:
        diagnostic = item.diagnostic
        if not diagnostic or (len(found) == 1 and not vendors.has_code(diagnostic)
                              and vendors.has_code(whole)):
            diagnostic = whole
        status, reply_code = codes_of(diagnostic)
        if status is None and item.diagnostic and len(found) == 1:
            status = codes.find_status(whole)
        status = status or codes.status_from_reply(reply_code)
        action = Action.DELAYED if delayed else Action.FAILED
        recipients.append(
            RecipientReport(
                address=item.address,
                kind=action.kind,
                action=action,
                status=status,
                reply_code=reply_code,
                diagnostic=diagnostic,
                remote_mta=remote_host(diagnostic),
                smtp_command=find_command(diagnostic) or item.command or section_command,
            )
        )
    return _dedupe(recipients)


def _forwarded_bounce(view: _View) -> list[RecipientReport]:
    """A bounce that returns another bounce (a relay forwarding the DSN it got) names
    its recipients only in the returned one: read that one's delivery status."""
    if view.returned_message is None or b"delivery-status" not in view.returned_message.body:
        return []
    inner = expand(view.returned_message, view.problems)
    if not any(part.content_type in DELIVERY_STATUS_TYPES for part in _top_parts(inner)):
        return []
    nested = _view(Loaded(root=inner, problems=view.problems))
    return _dsn_recipients(nested)


def _listed_recipients(
    view: _View, found: list[vendors.TextRecipient]
) -> list[vendors.TextRecipient]:
    """Reconcile the prose with ``X-Failed-Recipients``: the header narrows a prose list
    that names more addresses, and stands in for prose that names none."""
    header = view.headers.get("x-failed-recipients")
    if not header:
        return found
    listed = [vendors.unescape_octal(a) for _, a in getaddresses([header]) if "@" in a]
    if not found:
        return [vendors.TextRecipient(a, "") for a in listed]
    wanted = {a.lower() for a in listed}
    narrowed = [item for item in found if item.address.lower() in wanted]
    return narrowed or found


def _embedded_dsn_recipients(view: _View) -> list[RecipientReport]:
    """A delivery-status block pasted into a text part (a MIME report whose structure
    was lost on the way): read it as a DSN."""
    text = view.text()
    start = _EMBEDDED_DSN.search(text)
    if start is None:
        return []
    status = dsn.parse_delivery_status(text[start.start() :])
    human = vendors.human_text(text[: start.start()])
    return _dedupe(_capped(_reports_of(status, lambda: human), view.problems, status.skipped))


def _ses_recipients(view: _View) -> list[RecipientReport]:
    """The recipients of an Amazon SES JSON notification."""
    notification = ses.read_notification(view.text())
    if notification is None:
        return []
    view.original_message_id = notification.message_id
    return _capped([
        RecipientReport(
            address=item.address,
            kind=item.kind,
            action=item.action,
            status=item.status,
            reply_code=codes.find_reply_code(item.diagnostic),
            diagnostic=item.diagnostic,
            remote_mta=item.remote_mta,
            feedback_type=item.feedback_type,
        )
        for item in notification.recipients
    ], view.problems)


def _is_delay_notice(view: _View, text: str) -> bool:
    """A prose bounce that only warns (the MTA still retries): said in the subject, or in
    the first paragraphs of a text that nowhere says the failure is permanent."""
    subject = view.headers.get("subject") or ""
    if _DELAY_TEXT.search(subject):
        return True
    return bool(_DELAY_TEXT.search(text[:1500]) and not _PERMANENT_TEXT.search(text))


def _remote_host(text: str) -> str | None:
    """The ``host NAME`` an error text quotes, as the remote MTA."""
    match = _REMOTE_HOST.search(text)
    return match.group(1) if match else None


def _dedupe(recipients: list[RecipientReport]) -> list[RecipientReport]:
    """One row per address: the first, most complete, report wins."""
    seen: dict[str, RecipientReport] = {}
    for recipient in recipients:
        key = (recipient.address or "").strip().lower()
        if key not in seen:
            seen[key] = recipient
    return list(seen.values())


def _report(
    view: _View, kind: Kind, recipients: list[RecipientReport], verp_separator: str
) -> BounceReport:
    """The report, with what correlates it to the original message (docs/correlation.md)."""
    headers = view.headers
    returned = view.returned
    if returned is None and kind in (Kind.FAILURE, Kind.DELAY, Kind.DELIVERED):
        returned = _inline_returned_headers(view)
    return BounceReport(
        kind=kind,
        recipients=tuple(recipients),
        original_message_id=view.original_message_id or _original_message_id(headers, returned),
        original_headers=_original_headers(returned),
        verp_token=verp_token(headers, verp_separator),
        subject=headers.get("subject"),
        date=parse_date(headers.get("date")),
        sender=view.sender[1] or None,
        problems=tuple(dict.fromkeys(view.problems)),
    )


def _inline_returned_headers(view: _View) -> Headers | None:
    """Headers of an original message quoted in the prose (non-MIME bounces)."""
    rest = view.text()[len(view.human()) :]
    start = vendors.header_start(rest)
    if start is None:
        return None
    head, _, _ = split_header_block(rest[start:].encode("utf-8", "surrogateescape"))
    headers = parse_headers(head)
    return headers if len(headers) else None


def _original_message_id(headers: Headers, returned: Headers | None) -> str | None:
    """The returned message's Message-ID, else one the bounce names in its own headers."""
    candidates = [
        returned.get("message-id") if returned else None,
        headers.get("x-original-message-id"),
        headers.get("original-message-id"),
    ]
    for value in candidates:
        if value and value.strip():
            return value.strip()
    return None


def _original_headers(returned: Headers | None) -> tuple[tuple[str, str], ...]:
    """The returned headers worth keeping to correlate (IDs, subject, custom X- ones)."""
    if returned is None:
        return ()
    kept: list[tuple[str, str]] = []
    for name, value in returned.items:
        lower = name.lower()
        wanted = lower in _KEEP_HEADERS or (
            lower.startswith("x-") and not lower.startswith(_NOISY_X_HEADERS)
        )
        if wanted:
            kept.append((name, value[:MAX_HEADER_VALUE]))
            if len(kept) >= MAX_ORIGINAL_HEADERS:
                break
    return tuple(kept)


_ANGLE_ADDRESS = re.compile(r"<([^<>\s]*)>")
_BARE_ADDRESS = re.compile(r"[^\s<>()\[\]\",;:]+@[^\s<>()\[\]\",;:]+|[^\s<>()\[\]\",;:@]+")


def split_address(value: str) -> tuple[str, str]:
    """``'"Name" <a@b>'`` -> ``("Name", "a@b")``: the cheap common cases by pattern
    (this runs on every message), the odd ones through :func:`email.utils.parseaddr`."""
    value = value.strip()
    angle = _ANGLE_ADDRESS.search(value)
    if angle is not None and value.count("<") == 1:
        name = value[: angle.start()].strip().strip('"').strip()
        return name, angle.group(1)
    if "<" not in value and "(" not in value and '"' not in value:
        bare = _BARE_ADDRESS.search(value)
        return "", bare.group(0) if bare else ""
    return parseaddr(value)


def verp_token(headers: Headers, separator: str = "+") -> str | None:
    """The token of the bounce's own ``local+TOKEN@domain`` address, as the delivery
    headers name it (``docs/correlation.md``)."""
    for name in VERP_HEADERS:
        for value in headers.get_all(name):
            if separator not in value:
                continue
            for _, address in getaddresses([value]):
                token = token_of(address, separator)
                if token is not None:
                    return token
    return None


def parse_date(value: str | None) -> datetime | None:
    """A tz-aware date, or None. A date without zone (``-0000``) is taken as UTC."""
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if parsed is None:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


_TAG = re.compile(r"<[^>]*>")
_BREAK = re.compile(r"<\s*(?:br|/p|/div|/tr|/li|p|div|tr|li|h\d)[^>]*>", re.IGNORECASE)
_BLOCK_START = re.compile(r"<(?:(script)|(style))", re.IGNORECASE)
_BLOCK_END = {
    1: re.compile(r"</script>", re.IGNORECASE),
    2: re.compile(r"</style>", re.IGNORECASE),
}


def html_to_text(html: str) -> str:
    """Enough of HTML -> text for bounce prose (Office 365 sends HTML only).

    Every step is linear: a ``<`` with no ``>`` after it, or a ``<script>`` never
    closed, used to be scanned to the end of the text from each such ``<``."""
    import html as html_module

    text = _drop_blocks(html)
    text = _sub_tags(_BREAK, "\n", text)
    text = _sub_tags(_TAG, " ", text)
    return html_module.unescape(text)


def _sub_tags(pattern: re.Pattern[str], replacement: str, text: str) -> str:
    """``pattern.sub`` for a pattern ending in ``[^>]*>``: no match ends after the last
    ``>``, so what follows it is left out of the search rather than scanned to the end
    from each of its ``<``."""
    end = text.rfind(">") + 1
    return pattern.sub(replacement, text[:end]) + text[end:]


def _drop_blocks(html: str) -> str:
    """What ``re.sub(r"<(script|style)[^>]*>.*?</\\1>", " ", html, flags=I|S)`` gives,
    in linear time: the first ``>`` after a start and the first closing tag after that
    are searched once and reused by the starts that follow, instead of each start
    scanning to the end when one of them is missing."""
    pieces: list[str] = []
    position = 0
    gt = -1
    ends: dict[int, re.Match[str] | None] = {}
    for start in _BLOCK_START.finditer(html):
        if start.start() < position:
            continue  # inside a block already dropped
        if gt < start.end():
            gt = html.find(">", start.end())
            if gt < 0:
                break  # no ">" left: no later start can match either
        kind = start.lastindex or 1
        end = ends.get(kind, start)  # "start": not searched yet
        if end is not None and (end is start or end.start() <= gt):
            end = ends[kind] = _BLOCK_END[kind].search(html, gt + 1)
        if end is None:
            continue  # never closed after this point: no later start of this kind closes
        pieces.append(html[position : start.start()])
        pieces.append(" ")
        position = end.end()
    pieces.append(html[position:])
    return "".join(pieces)
