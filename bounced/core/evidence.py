"""The evidence procedure: what a failure's codes, SMTP stage, receiving provider and
wording say about its cause, weighed in a fixed order (docs/qualification.md).

It runs after the qualification table and the processing rules, on the facts one
recipient's report gives (:class:`Facts`), with the shipped knowledge
(:mod:`bounced.core.knowledge`, ``bounced/data/knowledge.toml``). The order, first
decision wins:

1. **provider**: when the remote MTA's name (else the reporting MTA's, else the
   recipient's domain) is a known provider's, its own error code in the text, else one
   of its own sentences (with the status and reply codes it gives them), decides
   (``provider:google:userunknown``, ``provider:godaddy:IB607``). It comes before the
   status code because a provider's own code says what the RFC code beside it means
   for that provider: GoDaddy writes its rate limit IB607 under 5.1.1;
2. **classes, most specific first**: each class of :data:`FIRST_PASS` in turn has
   evidence when the enhanced status code names it (``status:5.2.2``) or its wording is
   in the text (``phrase:mailboxfull``). A code therefore yields to a wording of a more
   specific class ("5.1.1 ... mailbox full" is a full mailbox), and never to a less
   specific one. The SMTP stage qualifies some classes:

   - *user unknown* needs strong evidence: a code naming it (X.1.1, X.1.3, ...) that no
     wording of relaying, blocking, a full mailbox, a move, a refusal or a domain
     accepting no mail contradicts (``status:5.1.1``, ``+stage:RCPT`` when known), or
     its wording answered to ``RCPT TO`` (``phrase:userunknown+stage:RCPT``);
   - the same wording anywhere else (after ``DATA``, or with no stage and no code) is a
     filter's refusal, *filtered* (``phrase:userunknown+stage:DATA``,
     ``phrase:userunknown+stage:none``), and so is a code naming *filtered* (X.2.0,
     X.2.1, ...) backed by such a wording (``status:5.2.1+phrase:userunknown``);
   - a *refusal* wording counts at ``MAIL FROM``, after ``DATA`` unless the code says
     user unknown, or when the code names nothing or only a system or security error;
   - *spam* wording counts only once the message was sent (not at CONN/HELO/MAIL/RCPT),
     *no relaying* wording not at the connection;

3. **the remaining classes' wordings** (:data:`SECOND_PASS`), then the class the code
   names, whatever it is (``status:4.4.7``);
4. **class fallbacks**: X.6.Z is content (``class:5.6``), X.7.Z security (``class:5.7``),
   a 500-504 reply a protocol error, a transient failure (4.X.Z / 4XX, or a delay) an
   expiry (``class:4``), a refusal in the greeting or at ``HELO`` a block of our IP
   (``stage:CONN``, ``stage:HELO``), and last the reply code alone (``status:550``),
   never hard.

Nothing in here decides *hard* except the classes that say the address is gone
(user unknown, has moved, suppressed), and *user unknown* only with the strong evidence
above. Everything is pure and cached per facts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from bounced.core import statuscodes
from bounced.core.knowledge import (
    CLASS_VERDICTS,
    UNDECIDED_CLASSES,
    Knowledge,
    Provider,
    load_knowledge,
)
from bounced.core.normalize import MAX_NORMALIZED
from bounced.model import FailureType, QualifiedBy, QualifiedBySource, Reason

FIRST_PASS = (
    "mailboxfull", "mesgtoobig", "exceedlimit", "suspend", "hasmoved", "norelaying",
    "authfailure", "userunknown", "filtered", "requireptr", "notcompliantrfc",
    "badreputation", "rejected", "hostunknown", "spamdetected", "speeding", "toomanyconn",
    "blocked",
)
"""Classes whose evidence is weighed first, most specific first: a code or a wording of
any of them decides before the other classes' wordings."""

SECOND_PASS = (
    "mailboxfull", "authfailure", "badreputation", "speeding", "toomanyconn",
    "spamdetected", "virusdetected", "policyviolation", "norelaying", "systemerror",
    "networkerror", "suspend", "contenterror", "systemfull", "notaccept", "expired",
    "securityerror", "mailererror",
)
"""Wordings weighed when no class of :data:`FIRST_PASS` had evidence (the first ones
again, without their stage conditions, then the broader causes)."""

USER_UNKNOWN_VETO = frozenset(
    {"norelaying", "blocked", "mailboxfull", "hasmoved", "rejected", "notaccept"}
)
"""Wordings that contradict a code saying "user unknown": the code yields to them."""

GENERIC_DETAILS = frozenset({(0, 0), (1, 0), (5, 0)})
"""``X.0.0``, ``X.1.0``, ``X.5.0``: "other" codes that send the decision to the text."""

_STAGES_BEFORE_DATA = frozenset({"CONN", "EHLO", "HELO", "MAIL", "RCPT"})
_GREETING_STAGES = frozenset({"CONN", "EHLO", "HELO"})
# An address: a local part taken whole from the start of its run (the lookbehind) and
# possessively, so that a long run with no "@" after it is scanned once, not once per
# character (quadratic on hostile text, bench/adversarial.py); then "@" and a domain.
_LOCAL = r"[^\s<>()\[\]\"',;:@]"
_ADDRESS = re.compile(rf"(?<!{_LOCAL}){_LOCAL}++@[A-Za-z0-9][A-Za-z0-9.\-]*[A-Za-z0-9]")
_CACHE_SIZE = 8192


@dataclass(frozen=True, slots=True)
class Facts:
    """What one recipient's report says, as the procedure reads it.

    ``text`` is the diagnostic lower-cased, whitespace collapsed and addresses written
    ``*`` (:func:`haystack`): the words of the error, not the address it names.
    ``status`` is the enhanced status code, ``reply`` the SMTP reply code, ``stage`` the
    SMTP command the error answered (``RCPT``, ``DATA``, ...), ``provider`` the name of
    the receiving provider (:func:`provider_of`), ``delayed`` whether the MTA is still
    retrying.
    """

    text: str
    status: str | None = None
    reply: str | None = None
    stage: str | None = None
    provider: str | None = None
    delayed: bool = False


@dataclass(frozen=True, slots=True)
class Finding:
    """The class the evidence points at, its type and reason, and the evidence."""

    klass: str
    failure_type: FailureType
    reason: Reason
    qualified_by: QualifiedBy


def haystack(text: str) -> str:
    """``text`` as the wordings are matched against it (see :class:`Facts`): its first
    16 KB (what normalization keeps, ``docs/normalization.md``), lowercased, blanks
    collapsed, addresses as ``*``."""
    lowered = " ".join(text[:MAX_NORMALIZED].lower().split())
    return _ADDRESS.sub("*", lowered) if "@" in lowered else lowered


def provider_of(
    remote_mta: str | None, address: str | None, knowledge: Knowledge | None = None,
    *, reporting_mta: str | None = None,
) -> str | None:
    """The known provider that refused the mail: the one the remote MTA's host name
    belongs to; with no remote MTA named, the reporting MTA's (it refused the mail
    itself); else the one the recipient's domain belongs to."""
    compiled = _compiled(knowledge or load_knowledge())
    host = remote_mta or reporting_mta
    if host:
        found = _by_suffix(host, compiled.by_host)
        if found is not None:
            return found
    if address and "@" in address:
        return _by_suffix("." + address.rpartition("@")[2], compiled.by_domain)
    return None


def _by_suffix(name: str, table: dict[str, str]) -> str | None:
    """The entry of ``table`` for ``name`` itself or for one of its parent domains (keys
    are ``"exact.name"`` or ``".suffix"``): a few dictionary look-ups, not a scan."""
    name = name.strip().lower().rstrip(".")
    if name in table:
        return table[name]
    position = name.find(".")
    while position >= 0:
        found = table.get(name[position:])
        if found is not None:
            return found
        position = name.find(".", position + 1)
    return None


# ----------------------------------------------------------------------- compiled data


_Trigram = tuple[str, str, str]
_Fragment = tuple[tuple[str, ...], str, tuple[str, ...]]
"""Fragments to find in this order (one, or a sequence), their class, and the fragments
that cancel them (their entry's ``unless``)."""


@dataclass(frozen=True, slots=True)
class _Compiled:
    """The knowledge in the shape matching needs: fragments indexed by the first three
    characters of their longest piece, so a text only tries the fragments that can
    occur in it."""

    knowledge: Knowledge
    by_trigram: dict[_Trigram, tuple[_Fragment, ...]]
    short: tuple[_Fragment, ...]
    providers: dict[str, Provider]
    by_host: dict[str, str]
    by_domain: dict[str, str]
    cache: dict[Facts, Finding | None] = field(default_factory=dict)

    @classmethod
    def of(cls, knowledge: Knowledge) -> _Compiled:
        index: dict[_Trigram, list[_Fragment]] = {}
        short: list[_Fragment] = []
        for wording in knowledge.wordings:
            sequences = [(fragment,) for fragment in wording.any] + list(wording.ordered)
            for sequence in sequences:
                entry = (sequence, wording.klass, wording.unless)
                key = max(sequence, key=len)
                if len(key) < 3:
                    short.append(entry)
                else:
                    index.setdefault((key[0], key[1], key[2]), []).append(entry)
        by_host: dict[str, str] = {}
        by_domain: dict[str, str] = {}
        for provider in knowledge.providers:  # the first provider listed wins a tie
            for host in provider.hosts:
                by_host.setdefault(host.lower(), provider.name)
                if host.startswith("."):  # ".mail.icloud.com" is also "mail.icloud.com"
                    by_host.setdefault(host[1:].lower(), provider.name)
            for domain in provider.domains:
                by_domain.setdefault("." + domain.lower(), provider.name)
        return cls(
            knowledge,
            {key: tuple(value) for key, value in index.items()},
            tuple(short),
            {provider.name: provider for provider in knowledge.providers},
            by_host,
            by_domain,
        )

    def said(self, text: str) -> frozenset[str]:
        """The classes whose wording occurs in ``text``."""
        found: set[str] = set()
        index = self.by_trigram
        # the text's trigrams, as character tuples: zip builds them in C, twice as fast
        # as slicing
        starts = set(zip(text, text[1:], text[2:], strict=False)) & index.keys()
        candidates = [entry for start in starts for entry in index[start]]
        candidates.extend(self.short)
        for sequence, klass, unless in candidates:
            if klass in found:
                continue
            matched = sequence[0] in text if len(sequence) == 1 else _in_order(text, sequence)
            if matched and not _any_in(text, unless):
                found.add(klass)
        return frozenset(found)


def _any_in(text: str, fragments: tuple[str, ...]) -> bool:
    return any(fragment in text for fragment in fragments)


def _in_order(text: str, sequence: tuple[str, ...]) -> bool:
    position = 0
    for fragment in sequence:
        found = text.find(fragment, position)
        if found < 0:
            return False
        position = found + len(fragment)
    return True


_COMPILED: dict[int, _Compiled] = {}


def _compiled(knowledge: Knowledge) -> _Compiled:
    cached = _COMPILED.get(id(knowledge))
    if cached is None or cached.knowledge is not knowledge:
        cached = _COMPILED[id(knowledge)] = _Compiled.of(knowledge)
    return cached


# ------------------------------------------------------------------------- the procedure


def weigh(facts: Facts, knowledge: Knowledge | None = None) -> Finding | None:
    """The class the evidence points at, or ``None`` when nothing says anything."""
    compiled = _compiled(knowledge or load_knowledge())
    try:
        return compiled.cache[facts]
    except KeyError:
        pass
    found = _weigh(facts, compiled)
    if len(compiled.cache) >= _CACHE_SIZE:
        compiled.cache.clear()
    compiled.cache[facts] = found
    return found


def _finding(klass: str, source: QualifiedBySource, ref: str | None,
             *also: tuple[QualifiedBySource, str]) -> Finding:
    failure_type, reason = CLASS_VERDICTS[klass]
    chain = tuple(QualifiedBy(each, value) for each, value in also)
    return Finding(klass, failure_type, reason, QualifiedBy(source, ref, chain))


def _weigh(facts: Facts, compiled: _Compiled) -> Finding | None:
    by_provider = _provider_finding(facts, compiled)
    if by_provider is not None:
        return by_provider
    code = _specific(facts.status)
    named = compiled.knowledge.status_classes.get(code) if code else None
    if named in UNDECIDED_CLASSES:
        named = None
    said = compiled.said(facts.text)
    first = _first_pass(facts, code, named, said)
    if first is not None:
        return first
    for klass in SECOND_PASS:
        if klass in said:
            return _finding(klass, QualifiedBySource.PHRASE, klass)
    if named is not None and code is not None:
        return _finding(named, QualifiedBySource.STATUS, code)
    return _fallback(facts)


def _specific(status: str | None) -> str | None:
    """The enhanced code when it says more than its class (not X.0.0, X.1.0, X.5.0)."""
    parsed = statuscodes.parse_enhanced(status)
    if parsed is None or parsed[1:] in GENERIC_DETAILS or parsed[1] == 0:
        return None
    return "{}.{}.{}".format(*parsed)


def _provider_finding(facts: Facts, compiled: _Compiled) -> Finding | None:
    provider = compiled.providers.get(facts.provider or "")
    if provider is None:
        return None
    if provider.code_pattern is not None:
        for match in provider.code_pattern.finditer(facts.text):
            found = match.group(1)
            for code in provider.codes:
                if code.covers(found) and code.klass in CLASS_VERDICTS:
                    return _finding(code.klass, QualifiedBySource.PROVIDER,
                                    f"{provider.name}:{found.upper()}")
    status = _specific(facts.status)
    for wording in provider.wordings:
        if wording.klass not in CLASS_VERDICTS or wording.text not in facts.text:
            continue
        if status is not None and wording.status is not None:
            if wording.details is not None:
                if not status.startswith(wording.status):
                    continue
                detail = int(status.rsplit(".", 1)[1])
                if not wording.details[0] <= detail <= wording.details[1]:
                    continue
            elif status != wording.status:
                continue
        if facts.reply and wording.reply and facts.reply != wording.reply:
            continue
        return _finding(wording.klass, QualifiedBySource.PROVIDER,
                        f"{provider.name}:{wording.klass}")
    return None


def _stage(facts: Facts) -> tuple[QualifiedBySource, str]:
    return QualifiedBySource.STAGE, facts.stage or "none"


def _first_pass(
    facts: Facts, code: str | None, named: str | None, said: frozenset[str]
) -> Finding | None:
    stage = facts.stage
    for klass in FIRST_PASS:
        if klass == "userunknown":
            if named == klass and code and not said & USER_UNKNOWN_VETO:
                also = (_stage(facts),) if stage == "RCPT" else ()
                return _finding(klass, QualifiedBySource.STATUS, code, *also,
                                *_wording(klass, said))
            if stage == "RCPT" and klass in said:
                return _finding(klass, QualifiedBySource.PHRASE, klass, _stage(facts))
        elif klass == "filtered":
            wording = "filtered" if "filtered" in said else (
                "userunknown" if "userunknown" in said else None)
            if wording is None:
                continue
            if named == klass and code:
                return _finding(klass, QualifiedBySource.STATUS, code,
                                (QualifiedBySource.PHRASE, wording))
            if stage not in ("RCPT", "MAIL"):
                return _finding(klass, QualifiedBySource.PHRASE, wording, _stage(facts))
        elif klass == "hostunknown":
            if named == klass and code and "networkerror" not in said:
                return _finding(klass, QualifiedBySource.STATUS, code, *_wording(klass, said))
            if klass in said:
                return _finding(klass, QualifiedBySource.PHRASE, klass)
        elif klass == "rejected":
            if named == klass and code:
                return _finding(klass, QualifiedBySource.STATUS, code, *_wording(klass, said))
            if klass in said and (
                stage == "MAIL"
                or (stage == "DATA" and named != "userunknown")
                or named in (None, "securityerror", "systemerror")
            ):
                also = (_stage(facts),) if stage in ("MAIL", "DATA") else ()
                return _finding(klass, QualifiedBySource.PHRASE, klass, *also)
        elif klass == "spamdetected":
            if named == klass and code:
                return _finding(klass, QualifiedBySource.STATUS, code, *_wording(klass, said))
            if klass in said and stage not in _STAGES_BEFORE_DATA:
                return _finding(klass, QualifiedBySource.PHRASE, klass)
        elif klass == "norelaying":
            if klass in said and stage not in _GREETING_STAGES:
                return _finding(klass, QualifiedBySource.PHRASE, klass)
        elif named == klass and code:
            return _finding(klass, QualifiedBySource.STATUS, code, *_wording(klass, said))
        elif klass in said:
            return _finding(klass, QualifiedBySource.PHRASE, klass)
    return None


def _wording(klass: str, said: frozenset[str]) -> tuple[tuple[QualifiedBySource, str], ...]:
    """The class's wording as further evidence, when the text has it beside the code."""
    return ((QualifiedBySource.PHRASE, klass),) if klass in said else ()


def _fallback(facts: Facts) -> Finding | None:
    """Step 4: what the code's class, the reply code or the stage still say."""
    parsed = statuscodes.parse_enhanced(facts.status)
    if parsed is not None and parsed[1] == 6:
        return _finding("contenterror", QualifiedBySource.CLASS, f"{parsed[0]}.6")
    if parsed is not None and parsed[1] == 7:
        return _finding("securityerror", QualifiedBySource.CLASS, f"{parsed[0]}.7")
    reply = facts.reply or ""
    if reply in ("500", "501", "502", "503", "504"):
        return _finding("syntaxerror", QualifiedBySource.STATUS, reply)
    if facts.stage in _GREETING_STAGES and not facts.delayed:
        # refused before any recipient was named, even "try later": our IP is refused
        return _finding("blocked", QualifiedBySource.STAGE, facts.stage)
    transient = (parsed is not None and parsed[0] == 4) or reply.startswith("4")
    if facts.delayed or transient:
        return _finding("expired", QualifiedBySource.CLASS, "4")
    by_reply = statuscodes.from_reply(facts.reply)
    if by_reply is not None:
        # A reply code alone is never strong evidence that the address is gone.
        return Finding("reply", FailureType.SOFT, by_reply.reason,
                       QualifiedBy(QualifiedBySource.STATUS, by_reply.code))
    return None
