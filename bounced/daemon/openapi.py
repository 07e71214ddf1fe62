"""The OpenAPI 3.1 description of the HTTP API (``GET /v1/openapi.json``).

Written as data next to the handlers it describes (:mod:`bounced.daemon.api`); the
tests validate the document itself and every real response against it
(``tests/daemon/api``), so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from bounced import __version__

_NULLABLE_STRING = {"type": ["string", "null"]}
_NULLABLE_INT = {"type": ["integer", "null"]}
_TIME = {"type": ["string", "null"], "format": "date-time",
         "description": "UTC ISO-8601, e.g. 2026-11-22T13:05:00Z"}
_STATE = {"type": "string",
          "enum": ["valid", "erroneous", "quarantine", "denylisted", "allowlisted"]}

SCHEMAS: dict[str, Any] = {
    "Problem": {
        "type": "object",
        "description": "RFC 9457 problem details; field names the input at fault.",
        "required": ["type", "title", "status", "detail"],
        "properties": {
            "type": {"type": "string"}, "title": {"type": "string"},
            "status": {"type": "integer"}, "detail": {"type": "string"},
            "instance": {"type": "string"}, "field": {"type": "string"},
        },
    },
    "LastBounce": {
        "type": ["object", "null"],
        "required": ["id", "at", "kind", "failure_type", "reason_code", "diagnostic"],
        "properties": {
            "id": {"type": "integer"}, "at": _TIME, "kind": {"type": "string"},
            "failure_type": _NULLABLE_STRING, "reason_code": _NULLABLE_INT,
            "diagnostic": {"type": "string"},
        },
    },
    "Address": {
        "type": "object",
        "description": "May this address be sent to, and why (the answer of bounced check).",
        "required": ["address", "known", "state", "deliverable", "reason_code", "reason",
                     "since", "error_count", "last_error_at", "release_at", "last_bounce"],
        "properties": {
            "address": {"type": "string"},
            "known": {"type": "boolean", "description": "false: never seen (valid)"},
            "state": _STATE,
            "deliverable": {"type": "boolean"},
            "reason_code": _NULLABLE_INT, "reason": _NULLABLE_STRING, "since": _TIME,
            "error_count": {"type": "integer"}, "last_error_at": _TIME,
            "release_at": _TIME, "last_bounce": {"$ref": "#/components/schemas/LastBounce"},
        },
    },
    "CheckRequest": {
        "type": "object", "required": ["addresses"],
        "properties": {"addresses": {"type": "array", "minItems": 1, "maxItems": 1000,
                                     "items": {"type": "string"}}},
    },
    "CheckResult": {
        "type": "object", "required": ["deliverable", "results"],
        "properties": {
            "deliverable": {"type": "boolean", "description": "every address may be sent to"},
            "results": {"type": "array", "items": {"$ref": "#/components/schemas/Address"}},
        },
    },
    "Suppression": {
        "type": "object", "required": ["address", "state", "reason", "since"],
        "properties": {"address": {"type": "string"},
                       "state": {"type": "string", "enum": ["quarantine", "denylisted"]},
                       "reason": {"type": "string"}, "since": _TIME},
    },
    "SuppressionPage": {
        "type": "object", "required": ["items", "next_cursor"],
        "properties": {
            "items": {"type": "array", "items": {"$ref": "#/components/schemas/Suppression"}},
            "next_cursor": {**_NULLABLE_STRING,
                            "description": "pass as cursor for the next page; null: the end"},
        },
    },
    "Note": {
        "type": "object",
        "properties": {"note": {"type": "string", "maxLength": 500,
                                "description": "why, kept in the address's history"}},
    },
    "Decision": {
        "type": "object", "required": ["address", "old_state", "new_state", "changed"],
        "properties": {"address": {"type": "string"},
                       "old_state": {"type": ["string", "null"]}, "new_state": _STATE,
                       "changed": {"type": "boolean"}},
    },
    "ImportRequest": {
        "type": "object", "required": ["addresses"],
        "properties": {"addresses": {"type": "array", "items": {"type": "string"}},
                       "source": {"type": "string", "maxLength": 100}},
    },
    "ImportResult": {
        "type": "object",
        "required": ["denylisted", "already", "kept_allowlisted", "duplicates", "bad", "at"],
        "properties": {
            "denylisted": {"type": "integer"}, "already": {"type": "integer"},
            "kept_allowlisted": {"type": "array", "items": {"type": "string"}},
            "duplicates": {"type": "integer"},
            "bad": {"type": "array", "items": {
                "type": "object", "required": ["line", "text", "problem"],
                "properties": {"line": {"type": "integer"}, "text": {"type": "string"},
                               "problem": {"type": "string"}}}},
            "at": _TIME,
        },
    },
    "TimelineStep": {
        "type": "object", "required": ["type"],
        "properties": {"type": {"type": "string", "enum": ["bounce", "state_change"]}},
        "additionalProperties": True,
        "description": "a bounce (with its text, what qualified it and later changes) or "
                       "a change of state (with its cause and actor)",
    },
    "History": {
        "type": "object", "required": ["address", "current", "timeline"],
        "properties": {
            "address": {"type": "string"},
            "current": {"$ref": "#/components/schemas/Address"},
            "timeline": {"type": "array",
                         "items": {"$ref": "#/components/schemas/TimelineStep"}},
        },
    },
    "PushFeedback": {
        "type": "object", "required": ["provider", "app", "token"],
        "description": "A push provider's synchronous answer to one notification, as the "
                       "sending platform received it. APNs: status and reason (the error "
                       "body's reason, or ConnectionError when no answer came); FCM: status "
                       "and error (the v1 API's error code, the legacy API's name, an OAuth "
                       "error of the authentication step, or the labels of docs/channels.md).",
        "properties": {
            "provider": {"type": "string", "enum": ["apns", "fcm"]},
            "app": {"type": "string", "description": "the application (bundle or project) id"},
            "token": {"type": "string", "description": "the device token"},
            "status": {"type": "integer", "minimum": 0, "maximum": 599,
                       "description": "the provider's HTTP status (0: no answer)"},
            "reason": {"type": "string", "description": "APNs reason"},
            "error": {"type": "string", "description": "FCM error code"},
            "detail": {"type": "array", "items": {"type": ["string", "integer"]}, "maxItems": 5,
                       "description": "values of the reference wording ({1}, {2})"},
            "id": {"type": "string", "description": "the notification's id: a re-post with "
                                                     "the same id is a duplicate"},
        },
    },
    "PushVerdict": {
        "type": "object",
        "required": ["address", "retry", "scenario", "text", "failure_type", "reason_code",
                     "reason", "qualified_by", "state", "deliverable", "message_id",
                     "duplicate"],
        "properties": {
            "address": {"type": "string", "description": "push:APP:TOKEN"},
            "retry": {"type": "boolean",
                      "description": "send the notification again (the reference's Retry)"},
            "scenario": {"type": "string", "description": "the reference row it falls in"},
            "text": {"type": "string", "description": "its qualification-table text"},
            "failure_type": _NULLABLE_STRING, "reason_code": _NULLABLE_INT,
            "reason": _NULLABLE_STRING, "qualified_by": _NULLABLE_STRING, "state": _STATE,
            "deliverable": {"type": "boolean"},
            "message_id": {**_NULLABLE_INT, "description": "null: a success, not stored"},
            "duplicate": {"type": "boolean"},
        },
    },
    "SmsReceipt": {
        "type": "object",
        "description": "An SMS delivery receipt a gateway calls back with (fields also as "
                       "query parameters or a form): report (the receipt text, Kannel's %A) "
                       "or Jasmin's DLR fields (id, message_status, err, ...), type (Kannel's "
                       "%d), to (the number, Kannel's %p), id (the message id), smsc.",
        "properties": {name: {"type": "string"} for name in (
            "report", "smsc", "to", "type", "id", "message_status", "level", "err", "text",
            "sub", "dlvrd", "subdate", "donedate")},
    },
    "Stored": {
        "type": "object", "required": ["message_id", "duplicate"],
        "properties": {"message_id": {"type": "integer"}, "duplicate": {"type": "boolean"}},
    },
    "SentMessage": {
        "type": "object", "required": ["id", "recipient"],
        "properties": {"id": {"type": "string", "description": "the SMSC's message id"},
                       "channel": {"type": "string", "enum": ["email", "sms", "push"]},
                       "recipient": {"type": "string", "description": "tel:+E164, ..."}},
    },
    "SentMessages": {
        "type": "object",
        "properties": {"messages": {"type": "array", "minItems": 1, "maxItems": 1000,
                                    "items": {"$ref": "#/components/schemas/SentMessage"}},
                       "id": {"type": "string"}, "channel": {"type": "string"},
                       "recipient": {"type": "string"}},
    },
    "Registered": {
        "type": "object", "required": ["registered", "at"],
        "properties": {"registered": {"type": "integer"}, "at": _TIME},
    },
    "Health": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"},
                              "database": {"type": "boolean"}}},
}


def _json(schema: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _problem(description: str) -> dict[str, Any]:
    return {"description": description, "content": {
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


_ERRORS = {
    "401": _problem("no token, or an unknown one"),
    "403": _problem("the token lacks the scope"),
    "422": _problem("bad input; field names it"),
    "default": _problem("any other refusal: 400 not JSON, 404, 405, 413 too large, "
                        "415 not JSON, 503 database unavailable"),
}
_ADDRESS = {"name": "address", "in": "path", "required": True, "schema": {"type": "string"},
            "description": "an email address, tel:+E164 or push:APP_ID:TOKEN (percent-encoded)"}
_SMS_RECEIPT: dict[str, Any] = {
    "summary": "an SMS receipt from a gateway's callback (Jasmin, Kannel dlr-url)",
    "description": "The token may also come as ?access_token= (gateways send no header). "
                   "The receipt is committed before the answer; a Jasmin callback is "
                   "answered ACK/Jasmin.",
    "parameters": [{"name": "access_token", "in": "query", "schema": {"type": "string"}},
                   *({"name": name, "in": "query", "schema": {"type": "string"}}
                     for name in ("report", "smsc", "to", "type", "id", "message_status"))],
    "responses": {"200": {"description": "stored (JSON), or ACK/Jasmin (text)", "content": {
        "application/json": {"schema": {"$ref": "#/components/schemas/Stored"}},
        "text/plain": {"schema": {"type": "string"}}}}},
}


def document() -> dict[str, Any]:
    """The OpenAPI 3.1 document."""
    read = [{"bearer": ["read"]}]
    write = [{"bearer": ["write"]}]
    return {
        "openapi": "3.1.0",
        "info": {"title": "bounced", "version": __version__,
                 "description": "The suppression list a sending platform honours, and "
                                "why each address is in it."},
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "paths": {
            "/healthz": {"get": {"summary": "the process answers", "security": [],
                                 "responses": {"200": _json("Health", "alive")}}},
            "/readyz": {"get": {"summary": "the database is readable and the writer alive",
                                "security": [],
                                "responses": {"200": _json("Health", "ready"),
                                              "503": _json("Health", "not ready")}}},
            "/metrics": {"get": {"summary": "Prometheus metrics", "security": read,
                                 "responses": {"200": {"description": "text format 0.0.4",
                                                       "content": {"text/plain": {}}},
                                               **_ERRORS}}},
            "/v1/addresses/{address}": {"get": {
                "summary": "may this address be sent to?", "security": read,
                "parameters": [_ADDRESS],
                "responses": {"200": _json("Address", "its state and why"), **_ERRORS}}},
            "/v1/addresses/{address}/history": {"get": {
                "summary": "every bounce and change of state of an address", "security": read,
                "parameters": [_ADDRESS],
                "responses": {"200": _json("History", "the timeline"), **_ERRORS}}},
            "/v1/check": {"post": {
                "summary": "may these addresses (up to 1,000) be sent to?", "security": read,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/CheckRequest"}}}},
                "responses": {"200": _json("CheckResult", "one answer per address"),
                              "400": _problem("not JSON"), **_ERRORS}}},
            "/v1/suppressions": {"get": {
                "summary": "the suppression list, a page at a time (or all as CSV)",
                "security": read,
                "parameters": [
                    {"name": "state", "in": "query", "schema": {
                        "type": "string", "enum": ["quarantine", "denylisted"]}},
                    {"name": "reason", "in": "query", "schema": {"type": "string"},
                     "description": "a reason label or code"},
                    {"name": "since", "in": "query", "schema": {"type": "string"},
                     "description": "suppressed since (ISO-8601)"},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {
                        "type": "integer", "minimum": 1, "maximum": 1000}},
                ],
                "responses": {
                    "200": {"description": "a page; with Accept: text/csv, every row",
                            "content": {
                                "application/json": {"schema": {
                                    "$ref": "#/components/schemas/SuppressionPage"}},
                                "text/csv": {"schema": {"type": "string"}}}},
                    **_ERRORS}}},
            "/v1/suppressions/{address}": {
                "put": {"summary": "denylist an address", "security": write,
                        "parameters": [_ADDRESS],
                        "requestBody": {"content": {"application/json": {
                            "schema": {"$ref": "#/components/schemas/Note"}}}},
                        "responses": {"200": _json("Decision", "what changed"), **_ERRORS}},
                "delete": {"summary": "release an address (back to valid)", "security": write,
                           "parameters": [_ADDRESS],
                           "requestBody": {"content": {"application/json": {
                               "schema": {"$ref": "#/components/schemas/Note"}}}},
                           "responses": {"200": _json("Decision", "what changed"),
                                         **_ERRORS}},
            },
            "/v1/suppressions/import": {"post": {
                "summary": "denylist many addresses (CSV or JSON)", "security": write,
                "requestBody": {"required": True, "content": {
                    "application/json": {"schema": {
                        "$ref": "#/components/schemas/ImportRequest"}},
                    "text/csv": {"schema": {"type": "string"}}}},
                "responses": {"200": _json("ImportResult", "what was imported"),
                              **_ERRORS}}},
            "/v1/messages/{id}/raw": {"get": {
                "summary": "a stored bounce, as received", "security": read,
                "parameters": [{"name": "id", "in": "path", "required": True,
                                "schema": {"type": "integer"}}],
                "responses": {"200": {"description": "the raw message (an SMS receipt or a "
                                                     "push answer: its stored JSON)",
                                      "content": {"message/rfc822": {},
                                                  "application/json": {}}},
                              "404": _problem("no such message, or purged"), **_ERRORS}}},
            "/v1/messages": {"post": {
                "summary": "register sent messages: which recipient each message id went to",
                "security": write,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/SentMessages"}}}},
                "responses": {"200": _json("Registered", "recorded"), **_ERRORS}}},
            "/v1/feedback/push": {"post": {
                "summary": "a push provider's answer: the verdict, and whether to retry",
                "security": write,
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": {"$ref": "#/components/schemas/PushFeedback"}}}},
                "responses": {"200": _json("PushVerdict", "what bounced made of it"),
                              **_ERRORS}}},
            "/v1/feedback/sms": {
                "post": {**_SMS_RECEIPT, "security": write,
                         "requestBody": {"content": {
                             "application/json": {"schema": {
                                 "$ref": "#/components/schemas/SmsReceipt"}},
                             "application/x-www-form-urlencoded": {"schema": {
                                 "$ref": "#/components/schemas/SmsReceipt"}}}},
                         "responses": {**_SMS_RECEIPT["responses"], **_ERRORS}},
                "get": {**_SMS_RECEIPT, "security": write,
                        "responses": {**_SMS_RECEIPT["responses"], **_ERRORS}},
            },
            "/v1/openapi.json": {"get": {
                "summary": "this document", "security": read,
                "responses": {"200": {"description": "OpenAPI 3.1",
                                      "content": {"application/json": {}}}, **_ERRORS}}},
        },
    }
