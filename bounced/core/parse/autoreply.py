"""RFC 3834 automatic responses: vacation notices and out-of-office replies.

They are not failures; the recipient reported is the person whose mailbox replied,
i.e. the auto-reply's own ``From``. Recognised by the standard ``Auto-Submitted:
auto-replied`` and by the de-facto markers mail systems add (``X-Autoreply``,
``X-Autorespond``, ``Precedence: auto_reply``) or, failing those, by a vacation or
out-of-office subject in the usual languages.
"""

from __future__ import annotations

import re

from bounced.core.parse.mime import Headers

_SUBJECT = re.compile(
    r"^\s*(?:auto(?:matic)?[\s-]*(?:reply|response|antwort|réponse)|out of (?:the )?office|"
    r"away from (?:the|my) office|on vacation|vacation|abwesenheit|absence|r[ée]ponse automatique|"
    r"autoreply|auto:|away until|i am away|i'm away|respuesta autom[aá]tica|"
    r"risposta automatica|automatisch antwoord|autosvar|automatisk svar|"
    r"fuera de (?:la )?oficina|ausente|absent(?:e)?\b|congés|out of the office)",
    re.IGNORECASE,
)
_PRECEDENCE = frozenset({"auto_reply", "auto-reply"})
_AUTOREPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-mail-autoreply",
                      "x-vacation")


def is_autoreply(headers: Headers) -> bool:
    """Whether the headers mark the message as an automatic reply."""
    submitted = (headers.get("auto-submitted") or "").strip().lower()
    if submitted.startswith("auto-replied"):
        return True
    if any(name in headers for name in _AUTOREPLY_HEADERS):
        return True
    if (headers.get("precedence") or "").strip().lower() in _PRECEDENCE:
        return True
    return bool(_SUBJECT.search(headers.get("subject") or ""))
