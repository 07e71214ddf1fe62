"""Signed VERP: the return path names the recipient it was sent to (docs/correlation.md).

A sender mails ``jane@example.org`` with the envelope sender
``bounces+jane=example.org=k3v9qz2m4xhd@bounce.example``. The token between the
separator and ``@`` is ``LOCAL=DOMAIN=SIGNATURE``: the original recipient written so it
survives as a local part, and a truncated HMAC-SHA256 of it with the configured secret.

Why sign: a bounce is unauthenticated mail. Without the signature anyone could send us
a fake DSN "jane@example.org: 550 user unknown" and quarantine a customer. With it, only
bounces of mail we really sent (whose return path carries a valid token) change state;
a token that does not verify is still stored, with the reason, for the operator.

Design choices:

- The token is split from the *right*: the signature has no ``=`` and a domain has none
  either, so a local part may contain ``=``, ``+`` or ``-`` without ambiguity.
- The signature is lowercase base32 (no padding): MTAs and humans may change the case
  of a local part, and base32 survives that; 16 characters carry 80 bits, plenty against
  forgery by guessing, short enough for the 64-octet local part guideline in most cases.
- The recipient is lowercased before signing, the same as addresses are stored.
- No secret configured: tokens are ``LOCAL=DOMAIN`` without signature and decode to the
  recipient, but :func:`verify_token` reports them as unverified (``NO_SECRET``) so
  the caller can decide (the pipeline trusts them only when no secret is configured).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum

#: Characters of the base32 signature kept (5 bits each).
SIGNATURE_LENGTH = 16
_FIELD_SEPARATOR = "="


class VerpProblem(StrEnum):
    """Why a token did not verify; the value is what the log and the database show."""

    MALFORMED = "malformed"  # not LOCAL=DOMAIN[=SIG]
    UNSIGNED = "unsigned"  # a secret is configured but the token carries no signature
    BAD_SIGNATURE = "bad_signature"  # signature does not match: forged or another secret
    NO_SECRET = "no_secret"  # nothing to verify against (verp.secret is empty)
    MISSING = "missing"  # a secret is configured but the bounce carries no token at all
    RECIPIENT_MISMATCH = "recipient_mismatch"  # valid token, but the bounce names others


@dataclass(frozen=True, slots=True)
class VerpCheck:
    """The result of reading a token.

    ``recipient`` is what the token claims (None if it could not be read at all);
    ``verified`` is True only when a secret is configured and the signature matches.
    ``problem`` says why it is not verified.
    """

    recipient: str | None
    verified: bool
    problem: VerpProblem | None = None

    @property
    def reason(self) -> str | None:
        return None if self.problem is None else self.problem.value


def sign(recipient: str, secret: str) -> str:
    """The signature of ``recipient`` (lowercased) with ``secret``."""
    digest = hmac.new(secret.encode("utf-8"), recipient.lower().encode("utf-8"), hashlib.sha256)
    return base64.b32encode(digest.digest()).decode("ascii").lower()[:SIGNATURE_LENGTH]


def encode_token(recipient: str, secret: str = "") -> str:
    """``jane@example.org`` -> ``jane=example.org=<signature>`` (no signature without secret)."""
    address = recipient.strip().lower()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or _FIELD_SEPARATOR in domain:
        raise ValueError(f"not an email address: {recipient!r}")
    token = f"{local}{_FIELD_SEPARATOR}{domain}"
    if secret:
        token += _FIELD_SEPARATOR + sign(address, secret)
    return token


def encode_address(
    recipient: str, return_path: str, *, secret: str = "", separator: str = "+"
) -> str:
    """The VERP envelope sender for mail to ``recipient``.

    ``return_path`` is the plain bounce address (``bounces@bounce.example``), whose local
    part gets ``separator`` and the token appended.
    """
    local, at, domain = return_path.rpartition("@")
    if not at or not local or not domain:
        raise ValueError(f"not an email address: {return_path!r}")
    return f"{local}{separator}{encode_token(recipient, secret)}@{domain}"


def verify_token(token: str, secret: str) -> VerpCheck:
    """Read ``token`` and check its signature with ``secret`` (empty: no check possible)."""
    parts = token.strip().lower().split(_FIELD_SEPARATOR)
    if len(parts) < 2:
        return VerpCheck(None, False, VerpProblem.MALFORMED)
    signature: str | None = None
    if secret and len(parts) >= 3 and _looks_like_signature(parts[-1]):
        signature = parts[-1]
        parts = parts[:-1]
    elif not secret and len(parts) >= 3 and _looks_like_signature(parts[-1]):
        parts = parts[:-1]  # signed token read without a secret: still show the recipient
    domain = parts[-1]
    local = _FIELD_SEPARATOR.join(parts[:-1])
    if not local or not domain or ("." not in domain and domain != "localhost"):
        return VerpCheck(None, False, VerpProblem.MALFORMED)
    recipient = f"{local}@{domain}"
    if not secret:
        return VerpCheck(recipient, False, VerpProblem.NO_SECRET)
    if signature is None:
        return VerpCheck(recipient, False, VerpProblem.UNSIGNED)
    if not hmac.compare_digest(signature, sign(recipient, secret)):
        return VerpCheck(recipient, False, VerpProblem.BAD_SIGNATURE)
    return VerpCheck(recipient, True)


def split_local(local: str, separator: str = "+") -> tuple[str, str | None]:
    """``bounces+TOKEN`` -> ``("bounces", "TOKEN")``; no separator (or nothing after
    it) -> ``(local, None)``. The token starts at the FIRST separator: a signed token
    never contains the separator's character in its base part."""
    base, sep, token = local.partition(separator)
    return (base, token) if sep and token else (local, None)


def token_of(address: str, separator: str = "+") -> str | None:
    """The VERP token of a bounce address (``bounces+TOKEN@domain`` -> ``TOKEN``), if any."""
    local, at, _domain = address.strip().strip("<>").rpartition("@")
    if not at:
        return None
    return split_local(local, separator)[1]


def envelope_token(recipients: Iterable[str], separator: str = "+") -> str | None:
    """The token of the first envelope recipient shaped ``local+TOKEN@domain``: where
    the MTA delivered the bounce, so the return path the original mail carried."""
    for recipient in recipients:
        token = token_of(recipient, separator)
        if token is not None:
            return token
    return None


def _looks_like_signature(text: str) -> bool:
    return len(text) == SIGNATURE_LENGTH and all(
        c in "abcdefghijklmnopqrstuvwxyz234567" for c in text
    )


@dataclass(frozen=True, slots=True)
class Trust:
    """Whose state a bounce may change (``docs/correlation.md``).

    A bounce is unauthenticated mail: whoever once received one of our bounces knows a
    valid token, and can write a DSN about anybody. So a valid signed token vouches for
    exactly one address, the one it names: a verdict about another recipient of the same
    report (a victim's ``Final-Recipient`` beside the token's ``Original-Recipient``) is
    recorded, never applied. ``everyone``: no signing is required, the bounce is taken
    at its word (no secret configured, or ``verp.required = false`` and the bounce
    carries no signed token). ``problem`` says why the trust is less than that.
    """

    everyone: bool = False
    address: str | None = None
    problem: VerpProblem | None = None

    def allows(self, address: str) -> bool:
        """May the verdict about ``address`` (a canonical key) change its state?"""
        return self.everyone or (self.address is not None and address == self.address)

    def refusal(self, address: str) -> VerpProblem | None:
        """Why the verdict about ``address`` may not change its state (None: it may)."""
        if self.allows(address):
            return None
        return self.problem or VerpProblem.RECIPIENT_MISMATCH

    @property
    def anyone(self) -> bool:
        """Whether the bounce may change any address at all."""
        return self.everyone or self.address is not None


#: Trust without any VERP policy: every verdict applies.
TAKEN_AT_ITS_WORD = Trust(everyone=True)


def bounce_trust(token: str | None, *, secret: str, required: bool = True,
                 canonical: Callable[[str], str] = str.lower) -> Trust:
    """The trust a bounce with this return-path ``token`` earns.

    - no secret configured: every bounce is taken at its word (the operator chose not to
      sign; the daemon warns when it listens beyond loopback);
    - a valid signed token: the address it names, in the ``canonical`` form the
      pipeline keys addresses by, and no other;
    - a forged signature: nobody, whatever ``required`` says;
    - no token, an unsigned or an unreadable one: nobody when ``required`` (the
      default once a secret is set), everyone otherwise (while the senders move to
      signed return paths).
    """
    if not secret:
        return TAKEN_AT_ITS_WORD
    if not token:
        return Trust(everyone=not required, problem=VerpProblem.MISSING)
    result = verify_token(token, secret)
    if result.verified and result.recipient is not None:
        return Trust(address=canonical(result.recipient))
    problem = result.problem or VerpProblem.MALFORMED
    if problem is VerpProblem.BAD_SIGNATURE:
        return Trust(problem=problem)
    return Trust(everyone=not required, problem=problem)
