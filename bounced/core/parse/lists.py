"""Notices of mailing-list managers that refused a message sent to a list.

A list manager (fml, GNU Mailman, ezmlm, Majordomo, Sympa, LISTSERV) that refuses a post
(the sender is no member, a loop, a duplicate) writes its own notice, from the list's
administrative address (``list-admin@``, ``list-owner@``, ``owner-list@``,
``list-bounces@``, ``list-request@``) rather than from a mailer daemon, with no DSN and
often no bounce-like subject. The recipient that failed is the list itself, which the
notice names in its headers (``List-Post: <mailto:list@...>``, ``X-BeenThere``, fml's
``X-ML-Name`` with the domain of its admin address) or in its text (fml: "Duplicated
Message-ID in <list@...>").

Only a notice that says it refused the post counts: the same managers send welcome
messages, digests and ordinary list traffic, which are no bounces. The wordings are the
managers' own (fml's "NOT MEMBER article from", "Loop Alert"; Mailman's "You are not
allowed to post to this mailing list"; ezmlm's "only subscribers may post"; ...).
"""

from __future__ import annotations

import re
from email.utils import getaddresses

from bounced.core.parse.mime import Headers

_MANAGER_HEADERS = ("x-mlserver", "x-ml-name", "x-mailman-version", "list-id", "list-post",
                    "mailing-list", "x-beenthere", "x-listserver", "x-list-manager")
_ADMIN_LOCAL = re.compile(
    r"^(?:(?P<a>.+?)-(?:admin|owner|bounces?|request)|owner-(?P<b>.+))$", re.IGNORECASE
)
_REFUSAL = re.compile(
    r"not member article from|not a member|non-?member|members[- ]only|only subscribers|"
    r"only members|not allowed to post|not authori[sz]ed to post|not permitted to post|"
    r"not subscribed|post(?:ing)? (?:was |has been )?rejected|message (?:was |has been )?"
    r"rejected|rejected for the following reasons?|loop alert|loop back warning|"
    r"duplicated message-id|detected a loop|security alert",
    re.IGNORECASE,
)
_MAILTO = re.compile(r"mailto:([^\s>?]+@[^\s>?]+)", re.IGNORECASE)
_ANGLE = re.compile(r"<([^<>\s@]+@[^<>\s@]+)>")


def list_address(headers: Headers, text: str) -> str | None:
    """The list a manager's refusal notice is about, or ``None`` when the message is
    no such notice (see the module docstring)."""
    if not any(name in headers for name in _MANAGER_HEADERS):
        return None
    _, sender = (getaddresses([headers.get("from") or ""]) or [("", "")])[0]
    local, _, domain = sender.rpartition("@")
    admin = _ADMIN_LOCAL.match(local)
    if admin is None or not domain:
        return None
    head = text[:2000]
    if not _REFUSAL.search(head) and not _REFUSAL.search(headers.get("subject") or ""):
        return None
    name = (admin.group("a") or admin.group("b") or "").lower()
    posted = _MAILTO.search(headers.get("list-post") or "")
    candidates = [
        posted.group(1) if posted else None,
        headers.get("x-beenthere"),
        *(found for found in _ANGLE.findall(head) if found.lower().startswith(name + "@")),
    ]
    for candidate in candidates:
        if candidate and "@" in candidate:
            return candidate.strip()
    ml_name = (headers.get("x-ml-name") or "").strip()
    if ml_name and "@" not in ml_name and ml_name.lower() == name:
        return f"{ml_name}@{domain}"
    return None
