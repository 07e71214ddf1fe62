"""Status codes -> failure type and reason: a step of the qualification order
(docs/qualification.md).

When no qualification-table entry and no processing rule recognised a diagnostic, the
codes the MTA attached to it still say a lot:

- RFC 3463 enhanced status codes ``class.subject.detail`` (with the later registrations:
  RFC 3886, 4468, 4954, 5248, 6531, 6710, 7293, 7372, 7505, 8689, the IANA registry). The
  *class* says whether the failure is permanent (5) or transient (4); the *subject* and
  *detail* say what failed: the address (X.1.Z), the mailbox (X.2.Z), the receiving
  system (X.3.Z), the network or routing (X.4.Z), the protocol (X.5.Z), the content
  (X.6.Z) or a security/policy decision (X.7.Z).
- RFC 5321 SMTP reply codes (plus RFC 7504's 521/556), used only when there is no
  specific enhanced code: a reply code is much vaguer ("550 mailbox unavailable" covers
  an unknown user as well as a policy refusal).

Why these targets: the docs/reasons.md reason table and the docs/accuracy.md mapping of Sisimai's
reasons, which follow the same RFC 3463 semantics (5.1.1 is an unknown user, X.2.2 a full
mailbox, X.4.4 an unroutable domain, 5.7.x a policy refusal, ...).

The type follows the class: a transient code (4.X.Z) never quarantines at once, so it is
``soft`` whatever the reason's usual type; a permanent code takes the type the mapping
gives. Everything here is data plus pure look-ups.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from bounced.model import FailureType, Reason

HARD = FailureType.HARD
SOFT = FailureType.SOFT

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})$")
_REPLY = re.compile(r"^([245])(\d)(\d)$")


@dataclass(frozen=True, slots=True)
class CodeVerdict:
    """What a status code says: the type and reason, and the code that said it."""

    failure_type: FailureType
    reason: Reason
    code: str


# subject.detail -> (reason, type for a permanent 5.X.Z code). Transient 4.X.Z codes are
# always soft. Comments give the RFC 3463 (or later) meaning of each code.
_DETAIL: dict[tuple[int, int], tuple[Reason, FailureType]] = {
    # X.1.Z address status
    (1, 0): (Reason.USER_UNKNOWN, HARD),  # other address status (nearly always the rcpt)
    (1, 1): (Reason.USER_UNKNOWN, HARD),  # bad destination mailbox address
    (1, 2): (Reason.INVALID_DOMAIN, SOFT),  # bad destination system address
    (1, 3): (Reason.USER_UNKNOWN, HARD),  # bad destination mailbox address syntax
    (1, 4): (Reason.USER_UNKNOWN, HARD),  # destination mailbox address ambiguous
    (1, 6): (Reason.USER_UNKNOWN, HARD),  # destination mailbox has moved, no forwarding
    (1, 7): (Reason.REFUSED, SOFT),  # bad sender's mailbox address syntax (our side)
    (1, 8): (Reason.REFUSED, SOFT),  # bad sender's system address (our side)
    (1, 9): (Reason.UNREACHABLE, SOFT),  # message relayed to non-compliant mailer
    (1, 10): (Reason.INVALID_DOMAIN, SOFT),  # recipient address has null MX (RFC 7505)
    # X.2.Z mailbox status
    (2, 0): (Reason.REFUSED, SOFT),  # other mailbox status: the mailbox exists, refused
    (2, 1): (Reason.ACCOUNT_DISABLED, SOFT),  # mailbox disabled, not accepting messages
    (2, 2): (Reason.MAILBOX_FULL, SOFT),  # mailbox full
    (2, 3): (Reason.REFUSED, SOFT),  # message length exceeds administrative limit
    (2, 4): (Reason.UNREACHABLE, SOFT),  # mailing list expansion problem
    # X.3.Z mail system status
    (3, 0): (Reason.UNREACHABLE, SOFT),  # other or undefined mail system status
    (3, 1): (Reason.UNREACHABLE, SOFT),  # mail system full
    (3, 2): (Reason.UNREACHABLE, SOFT),  # system not accepting network messages
    (3, 3): (Reason.UNREACHABLE, SOFT),  # system not capable of selected features
    (3, 4): (Reason.REFUSED, SOFT),  # message too big for system
    (3, 5): (Reason.UNREACHABLE, SOFT),  # system incorrectly configured
    (3, 6): (Reason.UNREACHABLE, SOFT),  # requested priority was changed (RFC 6710)
    # X.4.Z network and routing status
    (4, 0): (Reason.UNREACHABLE, SOFT),  # other or undefined network or routing status
    (4, 1): (Reason.UNREACHABLE, SOFT),  # no answer from host
    (4, 2): (Reason.UNREACHABLE, SOFT),  # bad connection
    (4, 3): (Reason.UNREACHABLE, SOFT),  # directory server failure
    (4, 4): (Reason.INVALID_DOMAIN, SOFT),  # unable to route (no MX/A for the domain)
    (4, 5): (Reason.UNREACHABLE, SOFT),  # mail system congestion
    (4, 6): (Reason.UNREACHABLE, SOFT),  # routing loop detected
    (4, 7): (Reason.UNREACHABLE, SOFT),  # delivery time expired (docs/policy.md)
    # X.5.Z mail delivery protocol status: a dialogue problem, not the address
    (5, 0): (Reason.UNREACHABLE, SOFT),  # other or undefined protocol status
    (5, 1): (Reason.UNREACHABLE, SOFT),  # invalid command
    (5, 2): (Reason.UNREACHABLE, SOFT),  # syntax error
    (5, 3): (Reason.REFUSED, SOFT),  # too many recipients
    (5, 4): (Reason.UNREACHABLE, SOFT),  # invalid command arguments
    (5, 5): (Reason.UNREACHABLE, SOFT),  # wrong protocol version
    (5, 6): (Reason.UNREACHABLE, SOFT),  # authentication exchange line too long
    # X.6.Z message content or media status: the receiver refuses this content
    (6, 0): (Reason.REFUSED, SOFT),  # other or undefined media error
    (6, 1): (Reason.REFUSED, SOFT),  # media not supported
    (6, 2): (Reason.REFUSED, SOFT),  # conversion required and prohibited
    (6, 3): (Reason.REFUSED, SOFT),  # conversion required but not supported
    (6, 4): (Reason.REFUSED, SOFT),  # conversion with loss performed
    (6, 5): (Reason.REFUSED, SOFT),  # conversion failed
    (6, 6): (Reason.REFUSED, SOFT),  # message content not available (RFC 4468)
    (6, 7): (Reason.REFUSED, SOFT),  # non-ASCII addresses not permitted (RFC 6531)
    (6, 8): (Reason.REFUSED, SOFT),  # UTF-8 string reply is required (RFC 6531)
    (6, 9): (Reason.REFUSED, SOFT),  # UTF-8 header message cannot be transferred
    (6, 10): (Reason.REFUSED, SOFT),  # (IANA: duplicate of 6.8)
    # X.7.Z security or policy status: a refusal of the sender or message, not the address
    (7, 13): (Reason.ACCOUNT_DISABLED, SOFT),  # user account disabled (RFC 4954)
    (7, 17): (Reason.USER_UNKNOWN, HARD),  # mailbox owner has changed (RFC 7293)
    (7, 18): (Reason.USER_UNKNOWN, HARD),  # domain owner has changed (RFC 7293)
}
"""Enhanced codes by (subject, detail). X.7.Z codes not listed are all policy refusals."""

_SUBJECT_DEFAULT: dict[int, tuple[Reason, FailureType]] = {
    1: (Reason.USER_UNKNOWN, HARD),
    2: (Reason.REFUSED, SOFT),
    3: (Reason.UNREACHABLE, SOFT),
    4: (Reason.UNREACHABLE, SOFT),
    5: (Reason.UNREACHABLE, SOFT),
    6: (Reason.REFUSED, SOFT),
    7: (Reason.REFUSED, SOFT),
}
"""An unregistered detail falls back on what its subject is about."""

_REPLY_CODES: dict[str, tuple[Reason, FailureType]] = {
    "421": (Reason.UNREACHABLE, SOFT),  # service not available, closing channel
    "432": (Reason.UNREACHABLE, SOFT),  # password transition needed (RFC 4954)
    "450": (Reason.UNREACHABLE, SOFT),  # mailbox unavailable (busy, temporarily blocked)
    "451": (Reason.UNREACHABLE, SOFT),  # local error in processing
    "452": (Reason.UNREACHABLE, SOFT),  # insufficient system storage
    "454": (Reason.UNREACHABLE, SOFT),  # temporary authentication failure / TLS unavailable
    "455": (Reason.UNREACHABLE, SOFT),  # server unable to accommodate parameters
    "500": (Reason.UNREACHABLE, SOFT),  # syntax error, command unrecognised
    "501": (Reason.UNREACHABLE, SOFT),  # syntax error in parameters or arguments
    "502": (Reason.UNREACHABLE, SOFT),  # command not implemented
    "503": (Reason.UNREACHABLE, SOFT),  # bad sequence of commands
    "504": (Reason.UNREACHABLE, SOFT),  # command parameter not implemented
    "521": (Reason.INVALID_DOMAIN, SOFT),  # host does not accept mail (RFC 7504)
    "523": (Reason.REFUSED, SOFT),  # encryption needed (RFC 5248)
    "530": (Reason.REFUSED, SOFT),  # authentication required (RFC 4954)
    "534": (Reason.REFUSED, SOFT),  # authentication mechanism too weak (RFC 4954)
    "535": (Reason.REFUSED, SOFT),  # authentication credentials invalid (RFC 4954)
    "538": (Reason.REFUSED, SOFT),  # encryption required for mechanism (RFC 4954)
    # 550 "requested action not taken: mailbox unavailable (e.g., mailbox not found, no
    # access, or command rejected for policy reasons)": without words or enhanced code
    # it cannot tell an unknown user from a block, so it must not quarantine at once.
    "550": (Reason.REFUSED, SOFT),
    "551": (Reason.USER_UNKNOWN, HARD),  # user not local (moved, no forwarding)
    "552": (Reason.MAILBOX_FULL, SOFT),  # exceeded storage allocation
    "553": (Reason.USER_UNKNOWN, HARD),  # mailbox name not allowed (bad syntax)
    "554": (Reason.REFUSED, SOFT),  # transaction failed (most often a policy refusal)
    "555": (Reason.UNREACHABLE, SOFT),  # MAIL/RCPT parameters not recognised
    "556": (Reason.INVALID_DOMAIN, SOFT),  # domain does not accept mail (RFC 7504)
}
"""SMTP reply codes, used only when no specific enhanced code is known."""

_REPLY_CLASS_DEFAULT: dict[str, tuple[Reason, FailureType]] = {
    "4": (Reason.UNREACHABLE, SOFT),
    "5": (Reason.REFUSED, SOFT),
}


def parse_enhanced(code: str | None) -> tuple[int, int, int] | None:
    """``"5.1.1"`` -> ``(5, 1, 1)``; anything that is no failure code -> ``None``."""
    if not code:
        return None
    match = _ENHANCED.match(code.strip())
    if match is None:
        return None
    klass, subject, detail = (int(group) for group in match.groups())
    if klass == 2:
        return None
    return klass, subject, detail


def from_enhanced(code: str | None) -> CodeVerdict | None:
    """The verdict of an RFC 3463 enhanced status code, ``None`` if it says nothing.

    ``X.0.0`` ("other undefined status") and the invented ``X.0.9NN`` codes some tools
    write carry no subject, so they say nothing beyond the class: the reply code decides.
    """
    parsed = parse_enhanced(code)
    if parsed is None:
        return None
    klass, subject, detail = parsed
    if subject == 0:
        return None
    mapped = _DETAIL.get((subject, detail)) or _SUBJECT_DEFAULT.get(subject)
    if mapped is None:
        return None
    reason, failure_type = mapped
    if klass == 4:
        failure_type = SOFT
    return CodeVerdict(failure_type, reason, f"{klass}.{subject}.{detail}")


def from_reply(code: str | None) -> CodeVerdict | None:
    """The verdict of an RFC 5321 reply code (``"550"``), ``None`` for a success code."""
    if not code:
        return None
    code = code.strip()
    if _REPLY.match(code) is None or code[0] == "2":
        return None
    mapped = _REPLY_CODES.get(code) or _REPLY_CLASS_DEFAULT.get(code[0])
    if mapped is None:
        return None
    reason, failure_type = mapped
    return CodeVerdict(failure_type, reason, code)


def codes_in_text(text: str) -> tuple[str | None, str | None]:
    """The failure enhanced status code and SMTP reply code written in ``text``.

    Used when a report itself carries no code: a vendor bounce often has no DSN
    fields, but its text still says ``550 5.1.1``. Success codes (2XX) only echo the
    accepted steps of the dialogue, so they are not returned.
    """
    status, reply = find_status(text), find_reply_code(text)
    return (
        status if status is not None and status[0] != "2" else None,
        reply if reply is not None and reply[0] != "2" else None,
    )


def from_codes(status: str | None, reply_code: str | None) -> CodeVerdict | None:
    """The enhanced code when it is specific, else the reply code, else ``None``.

    A generic enhanced code (``5.0.0``) alone only says "failed": too little to judge,
    the text stays undefined until an operator qualifies it (docs/qualification.md step 4).
    """
    return from_enhanced(status) or from_reply(reply_code)


# --------------------------------------------------------------------------- codes in text

STATUS = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?![\d.]*\d)")
"""An enhanced status code ``class.subject.detail`` not embedded in a longer dotted
number (an IP address or a version)."""

_REPLY_AT_START = re.compile(r"^\s*([245]\d\d)(?=[\s\-.,;:)\]]|$)")
_REPLY_NEAR_STATUS = re.compile(r"(?<![\d.])([245]\d\d)[\s\-]+[245]\.\d{1,3}\.\d{1,3}(?![\d.]*\d)")
_REPLY_SAID = re.compile(
    r"(?:said|says|replied|response(?: was)?|returned|reply(?: was)?|error|code|status|reason)"
    r"\s*(?:[:=]\s*)?\(?([245]\d\d)(?=[\s\-.,;:)\]]|$)",
    re.IGNORECASE,
)
_REPLY_AFTER_PUNCTUATION = re.compile(
    r"(?:^|(?<=[:;'\"(\[<>#]))\s*([45][0-5]\d)(?=[ ,-]+(?:[245]\.\d|[A-Za-z<'\"(\[]))"
)
_REPLY_PATTERNS = (_REPLY_AT_START, _REPLY_NEAR_STATUS, _REPLY_SAID, _REPLY_AFTER_PUNCTUATION)
_QMAIL_STATUS = re.compile(r"\(#([245])\.(\d{1,3})\.(\d{1,3})\)")


def find_status(text: str) -> str | None:
    """The first plausible enhanced status code in ``text`` (``"5.1.1"``).

    A transcript shows the successful replies before the failing one (``250 2.1.5
    Ok`` ... ``451 4.3.0 Error``): a 4.x.x or 5.x.x code wins over earlier 2.x.x ones.
    """
    if not text:
        return None
    match = _QMAIL_STATUS.search(text)
    if match is None:
        matches = list(STATUS.finditer(text)) if "2." in text else [STATUS.search(text)]
        failing = [m for m in matches if m is not None and m.group(1) != "2"]
        match = failing[0] if failing else (matches[0] if matches else None)
    if match is None:
        return None
    return f"{match.group(1)}.{int(match.group(2))}.{int(match.group(3))}"


def find_reply_code(text: str) -> str | None:
    """The SMTP reply code of an error text, by the places MTAs put it, most telling
    first: leading the text, before an enhanced code, after a "said:"-like word, or
    right after punctuation (``Deferred: 421 ...``, ``<<< 550 ...``).

    As for status codes, a failing (4xx/5xx) reply wins over a transcript's earlier
    ``250`` ones; a lone ``2xx`` is returned only when nothing failed.
    """
    if not text:
        return None
    success = None
    for pattern in _REPLY_PATTERNS:
        for match in pattern.finditer(text):
            code = match.group(1)
            if code[0] != "2":
                return code
            success = success or code
    return success


def prefer_status(field: str | None, diagnostic_status: str | None) -> str | None:
    """Choose between a DSN ``Status`` field and the code inside the diagnostic text.

    The diagnostic's code wins: it is what the server that refused the mail said,
    while the field is the reporting MTA's summary of it, often generic (Exim always
    writes ``5.0.0``) or about the retry outcome rather than the cause (Sendmail's
    ``4.4.7`` for an expired message whose last error was ``4.7.1``). Only a generic
    ``X.0.0`` in the text does not override a specific field. Sisimai, whose labels the
    corpus uses, chooses the same way.
    """
    if diagnostic_status is None:
        return field
    if field is not None and is_generic(diagnostic_status) and not is_generic(field):
        return field
    return diagnostic_status


def is_generic(status: str) -> bool:
    """``X.0.0`` says no more than "failed" or "delayed"."""
    return status.endswith(".0.0")


def status_from_reply(reply_code: str | None) -> str | None:
    """The class-only status a bare reply code implies (``550`` -> ``5.0.0``).

    RFC 3463 ``X.0.0`` means "other or undefined" in the class the reply code gives,
    so this claims no more than the reply code itself says; used when a text has a
    reply code but no enhanced status code at all.
    """
    if reply_code and reply_code[0] in "245":
        return f"{reply_code[0]}.0.0"
    return None
