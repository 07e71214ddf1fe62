"""Fuzzing ``parse_message``: whatever arrives, it returns a report of the documented
types, says what was wrong in ``problems``, never raises and never falls back on its
catch-all (a ``parser error`` problem is a bug), and what it returns can be judged.

Two kinds of input: random bytes, and messages built from strategies in the shapes a
bounce has (``multipart/report`` with ``message/delivery-status`` blocks of random
fields, a ``Diagnostic-Code`` of random or hostile text, random boundaries, nested parts,
charsets and transfer encodings), since random bytes alone rarely get past the headers.
Settings: ``tests/fuzzing.py``.
"""

from __future__ import annotations

import base64
import binascii
import json
import string

from hypothesis import given
from hypothesis import strategies as st

from bounced.core.parse import parse_message
from tests.fuzzing import FUZZ, check_report

# ---------------------------------------------------------------------------- texts

HOSTILE_UNITS = ("a.", "a", "1a.", "-", " ", "\t", "<", "@", '"', "=?a?q? ", "x\n ", "550-",
                 "user ", "#xxx#", "*", ":", "]:1", "12:30", "mx.example.org")
hostile = st.builds(
    lambda unit, count, tail: unit * count + tail,
    st.sampled_from(HOSTILE_UNITS),
    st.integers(min_value=0, max_value=400),
    st.sampled_from(("", " @", "1", "x", "@example.org", "\n")),
)
REAL_DIAGNOSTICS = (
    "550 5.1.1 <jane.doe@example.org>: Recipient address rejected: User unknown",
    "452 4.2.2 The email account that you tried to reach is over quota.",
    "host mx.example.org[192.0.2.10] said: 554 5.7.1 Service unavailable; Client host "
    "[198.51.100.7] blocked using zen.spamhaus.org",
    "connect to mx.example.org[192.0.2.10]:25: Connection refused",
    "X-Postfix; delivery temporarily suspended: lost connection with mx.example.org",
    "smtp; 421 4.7.0 Try again later, closing connection. (EHLO) 3F2A91C0B4 - gsmtp",
)
text = st.one_of(
    st.text(max_size=120),
    hostile,
    st.sampled_from(REAL_DIAGNOSTICS),
    st.lists(st.sampled_from(REAL_DIAGNOSTICS) | hostile, max_size=3).map(" ".join),
)
address = st.one_of(
    st.emails().map(str),
    st.sampled_from(("victim@example.org", "müller@exämple.de", '"odd..name"@example.org',
                     "<a@example.org>", "postmaster@example.net", "not an address", "")),
    text,
)

# --------------------------------------------------------------- delivery status

FIELD_NAMES = ("Final-Recipient", "Original-Recipient", "Action", "Status", "Diagnostic-Code",
               "Remote-MTA", "Reporting-MTA", "Arrival-Date", "Last-Attempt-Date",
               "Will-Retry-Until", "X-Postfix-Sender", "final-recipient", "ACTION", "X-Unknown")
field_name = st.sampled_from(FIELD_NAMES) | st.text(
    alphabet=string.ascii_letters + string.digits + "-", min_size=1, max_size=24
)
field_value = st.one_of(
    text,
    address.map(lambda a: f"rfc822; {a}"),
    st.sampled_from(("failed", "delayed", "delivered", "relayed", "expanded", "Failed (x)",
                     "5.1.1", "4.4.7", "2.0.0", "5.0.0 (unknown)", "9.9.9", "smtp; 550 5.1.1 x",
                     "utf-8; m\\x{FC}ller@example.de", "rfc822; a+2Bb@example.org")),
)
recipient_block = st.lists(st.tuples(field_name, field_value), min_size=1, max_size=7).map(
    lambda fields: "\n".join(f"{name}: {value}" for name, value in fields)
)
delivery_status = st.builds(
    lambda head, blocks, separator: separator.join([head, *blocks]),
    recipient_block,
    st.lists(recipient_block, max_size=5),
    st.sampled_from(("\n\n", "\n", "\n \n", "\n\n\n")),
)

# -------------------------------------------------------------------------- parts

CHARSETS = ("utf-8", "UTF-8", "iso-8859-1", "us-ascii", "windows-1252", "iso-2022-jp", "utf-16",
            "x-no-such-charset", '"utf-8"', "")
ENCODINGS = ("", "7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode",
             "damaged-base64")


def encode(body: str, charset: str, encoding: str) -> tuple[bytes, str]:
    """The body's bytes in ``charset`` (replacing what it cannot hold) and transfer
    ``encoding``, and the header that says so."""
    name = charset.strip('"') or "utf-8"
    try:
        data = body.encode(name, "replace")
    except LookupError:
        data = body.encode("utf-8")
    if encoding == "base64":
        data = base64.encodebytes(data)
    elif encoding == "damaged-base64":
        data = base64.encodebytes(data)[:-3] + b"!*\n"
        encoding = "base64"
    elif encoding == "quoted-printable":
        data = binascii.b2a_qp(data)
    header = f"Content-Transfer-Encoding: {encoding}\n" if encoding else ""
    return data, header


def leaf(content_type: str, body: str, charset: str, encoding: str) -> bytes:
    data, transfer = encode(body, charset, encoding)
    params = f"; charset={charset}" if charset else ""
    return f"Content-Type: {content_type}{params}\n{transfer}\n".encode() + data


def ses_document(recipient: object, status: object, action: object, code: object) -> str:
    return json.dumps({
        "notificationType": "Bounce",
        "bounce": {"bounceType": "Permanent", "reportingMTA": "dns; a.example",
                   "bouncedRecipients": [{"emailAddress": recipient, "status": status,
                                          "action": action, "diagnosticCode": code}]},
        "mail": {"commonHeaders": {"messageId": "<m@example.org>"}},
    })


json_value = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=30),
                       st.lists(st.integers(), max_size=2), st.sampled_from(("5.1.1", "failed")))
leaves = st.one_of(
    st.builds(leaf, st.sampled_from(("text/plain", "text/html", "text/x-custom")), text,
              st.sampled_from(CHARSETS), st.sampled_from(ENCODINGS)),
    st.builds(leaf, st.sampled_from(("message/delivery-status",
                                     "message/global-delivery-status")),
              delivery_status, st.sampled_from(CHARSETS), st.sampled_from(ENCODINGS)),
    st.builds(lambda h: b"Content-Type: text/rfc822-headers\n\n" + h.encode("utf-8", "replace"),
              recipient_block),
    st.builds(lambda d: b"Content-Type: text/plain\n\n" + d.encode(),
              st.builds(ses_document, json_value | address, json_value, json_value, json_value)),
    st.builds(lambda b: b"Content-Type: application/octet-stream\n\n" + b, st.binary(max_size=64)),
)
boundary = st.text(alphabet=string.ascii_letters + string.digits + "'()+_,-./:=? ",
                   min_size=1, max_size=70).map(str.strip).filter(bool)


def multipart(subtype: str, declared: str, used: str, parts: list[bytes], closed: bool) -> bytes:
    """A multipart entity; ``used`` may differ from the ``declared`` boundary (mangled)."""
    delimiter = f"--{used}".encode()
    body = b"".join(b"\n" + delimiter + b"\n" + part for part in parts)
    if closed:
        body += b"\n" + delimiter + b"--\n"
    header = f'Content-Type: multipart/{subtype}; boundary="{declared}"\n\n'.encode()
    return header + b"preamble" + body


def embed(message: bytes) -> bytes:
    """A part holding a whole message (a returned message, or a bounce forwarded)."""
    return b"Content-Type: message/rfc822\n\n" + message


mime_trees = st.recursive(
    leaves,
    lambda children: st.one_of(
        st.builds(
            multipart, st.sampled_from(("report", "mixed", "alternative", "digest")),
            boundary, boundary, st.lists(children, min_size=1, max_size=4), st.booleans(),
        ).filter(lambda entity: len(entity) < 200_000),
        children.map(lambda part: embed(b"From: a@example.org\nSubject: x\n" + part)),
    ),
    max_leaves=8,
)
SENDERS = ("MAILER-DAEMON@mx.example.net", "Mail Delivery System <MAILER-DAEMON@mx.example.net>",
           "postmaster@example.net", "jane@example.org", '"((((" <x@y>', "")
SUBJECTS = ("Undelivered Mail Returned to Sender", "Delivery Status Notification (Failure)",
            "Re: hello", "Out of office", "=?utf-8?q?Non_remis_=3A_R=C3=A9union?=",
            "complaint about message")
top_headers = st.builds(
    lambda sender, subject, extra: (
        f"From: {sender}\nTo: bounces+tok@example.com\nSubject: {subject}\n"
        f"Date: Sun, 22 Nov 2026 13:30:00 +0000\nMIME-Version: 1.0\n{extra}"
    ),
    st.sampled_from(SENDERS) | text,
    st.sampled_from(SUBJECTS) | text,
    st.sampled_from(("", "Auto-Submitted: auto-replied\n", "X-Failed-Recipients: a@example.org\n",
                     "Return-Path: <>\n", "In-Reply-To: <x@y>\n")),
)
messages = st.builds(
    lambda headers, tree, crlf: (headers.encode("utf-8", "replace") + tree).replace(
        b"\n", b"\r\n" if crlf else b"\n"
    ),
    top_headers.map(lambda h: h.replace("\r", " ").replace("\n\n", "\n")),
    mime_trees,
    st.booleans(),
)


@FUZZ
@given(st.binary(max_size=4096))
def test_random_bytes_give_a_report(raw: bytes) -> None:
    check_report(parse_message(raw))


@FUZZ
@given(messages)
def test_bounce_shaped_messages_give_a_report(raw: bytes) -> None:
    check_report(parse_message(raw))
