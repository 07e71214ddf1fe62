"""The HTTP API over real HTTP against a running ``bounced serve``.

Every response of a validating client is checked against the daemon's own OpenAPI
document (``tests/harness/http.py``); answers are compared with what the CLI says of
the same database (``bounced check``, ``explain``, ``quarantine export``).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from urllib.parse import quote

import httpx
import pytest
from openapi_spec_validator import validate

from tests.daemon.api.conftest import TOKENS, ApiServer

pytestmark = pytest.mark.slow


def cli(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "bounced", *args], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode in (0, 1), done.stderr
    return done.stdout


def problem(response: httpx.Response, status: int, field: str | None = None) -> dict:
    """The RFC 9457 body of a refusal, checked for its status and the field at fault."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["detail"]
    if field is not None:
        assert body["field"] == field, body
    return dict(body)


# --------------------------------------------------------------------------- the document


def test_the_openapi_document_is_valid_openapi_3_1(seeded: ApiServer) -> None:
    document = seeded.client().get("/v1/openapi.json").json()
    validate(document)  # raises on an invalid document
    assert document["openapi"].startswith("3.1")


def test_every_documented_operation_answers_as_documented(seeded: ApiServer) -> None:
    """One request per operation of the document, each response validated against it."""
    reader, writer = seeded.client("reader"), seeded.client("crm")
    message_id = seeded.query("SELECT min(id) FROM messages")[0][0]
    calls = {
        ("get", "/healthz"): lambda: reader.get("/healthz"),
        ("get", "/readyz"): lambda: reader.get("/readyz"),
        ("get", "/metrics"): lambda: reader.get("/metrics"),
        ("get", "/v1/openapi.json"): lambda: reader.get("/v1/openapi.json"),
        ("get", "/v1/addresses/{address}"):
            lambda: reader.get("/v1/addresses/unknown-user@rcpt.test"),
        ("get", "/v1/addresses/{address}/history"):
            lambda: reader.get("/v1/addresses/unknown-user@rcpt.test/history"),
        ("post", "/v1/check"):
            lambda: reader.post("/v1/check", json={"addresses": ["a@x.test"]}),
        ("get", "/v1/suppressions"): lambda: reader.get("/v1/suppressions"),
        ("put", "/v1/suppressions/{address}"):
            lambda: writer.put("/v1/suppressions/doc@x.test", json={"note": "doc"}),
        ("delete", "/v1/suppressions/{address}"):
            lambda: writer.delete("/v1/suppressions/doc@x.test"),
        ("post", "/v1/suppressions/import"):
            lambda: writer.post("/v1/suppressions/import", json={"addresses": ["i@x.test"]}),
        ("get", "/v1/messages/{id}/raw"): lambda: reader.get(f"/v1/messages/{message_id}/raw"),
        ("post", "/v1/messages"): lambda: writer.post("/v1/messages", json={
            "messages": [{"id": "doc-1", "channel": "sms", "recipient": "tel:+33612345678"}]}),
        ("post", "/v1/feedback/push"): lambda: writer.post("/v1/feedback/push", json={
            "provider": "fcm", "app": "doc", "token": "doc-token", "status": 404,
            "error": "UNREGISTERED"}),
        ("post", "/v1/feedback/sms"): lambda: writer.post("/v1/feedback/sms", json={
            "to": "+33612345678", "report": "id:doc stat:DELIVRD err:000 text:doc"}),
        ("get", "/v1/feedback/sms"): lambda: writer.get("/v1/feedback/sms", params={
            "to": "+33612345678", "type": "1", "id": "doc-1"}),
    }
    document = reader.get("/v1/openapi.json").json()
    documented = {(method, path) for path, item in document["paths"].items()
                  for method in item}
    assert documented == set(calls)
    for operation, call in calls.items():
        assert call().status_code == 200, operation
    assert reader.validated + writer.validated >= len(calls)


# --------------------------------------------------------------------------- auth


def test_health_checks_answer_without_a_token(seeded: ApiServer) -> None:
    anonymous = seeded.client(None)
    assert anonymous.get("/healthz").json() == {"status": "ok"}
    assert anonymous.get("/readyz").json() == {"status": "ready", "database": True}


@pytest.mark.parametrize("path", ["/v1/addresses/a@x.test", "/v1/suppressions", "/metrics",
                                  "/v1/openapi.json"])
def test_without_a_token_nothing_else_answers(seeded: ApiServer, path: str) -> None:
    response = seeded.client(None).get(path)
    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("header", ["Bearer not-a-token-we-know-0000", "Basic cmVhZGVyOng=",
                                    "Bearer", "reader-token-0123456789abcdef"])
def test_a_bad_token_is_refused(seeded: ApiServer, header: str) -> None:
    response = httpx.get(f"{seeded.base_url}/v1/suppressions", headers={"Authorization": header})
    problem(response, 401)


def test_a_read_token_cannot_change_an_address(seeded: ApiServer) -> None:
    reader = seeded.client("reader")
    problem(reader.put("/v1/suppressions/scope@x.test"), 403)
    problem(reader.delete("/v1/suppressions/unknown-user@rcpt.test"), 403)
    problem(reader.post("/v1/suppressions/import", json={"addresses": ["s@x.test"]}), 403)
    assert seeded.query("SELECT count(*) FROM addresses WHERE address = 'scope@x.test'") == [(0,)]
    assert reader.get("/v1/addresses/unknown-user@rcpt.test").json()["state"] == "quarantine"


def test_a_write_only_token_cannot_read(seeded: ApiServer) -> None:
    importer = seeded.client("importer")
    problem(importer.get("/v1/suppressions"), 403)
    problem(importer.get("/v1/addresses/unknown-user@rcpt.test"), 403)
    problem(importer.post("/v1/check", json={"addresses": ["a@x.test"]}), 403)
    assert importer.put("/v1/suppressions/write-only@x.test").status_code == 200


# --------------------------------------------------------------------------- reading


def test_an_address_answers_as_bounced_check_does(seeded: ApiServer) -> None:
    reader = seeded.client()
    for address in ("unknown-user@rcpt.test", "full@rcpt.test", "never-seen@x.test"):
        answer = reader.get(f"/v1/addresses/{quote(address)}").json()
        assert answer == json.loads(cli("check", "--db", str(seeded.db), "--json", address))
    assert reader.get("/v1/addresses/unknown-user@rcpt.test").json()["deliverable"] is False


def test_check_answers_for_up_to_a_thousand_addresses(seeded: ApiServer) -> None:
    reader = seeded.client()
    addresses = [f"user{n}@x.test" for n in range(998)] + ["unknown-user@rcpt.test",
                                                          "full@rcpt.test"]
    body = reader.post("/v1/check", json={"addresses": addresses}).json()
    assert [result["address"] for result in body["results"]] == addresses
    assert body["deliverable"] is False
    states = {result["address"]: result["state"] for result in body["results"]}
    assert states["unknown-user@rcpt.test"] == "quarantine"
    assert states["full@rcpt.test"] == "erroneous" and states["user5@x.test"] == "valid"
    problem(reader.post("/v1/check", json={"addresses": [*addresses, "one@more.test"]}), 422,
            "addresses")
    problem(reader.post("/v1/check", json={"addresses": []}), 422, "addresses")
    problem(reader.post("/v1/check", json={"addresses": ["a@x.test", 7]}), 422, "addresses[1]")
    problem(reader.post("/v1/check", json={"addresses": ["a@x.test", "no-at-sign"]}), 422,
            "addresses[1]")


def test_the_history_answers_as_bounced_explain_does(seeded: ApiServer) -> None:
    history = seeded.client().get("/v1/addresses/unknown-user@rcpt.test/history").json()
    assert history == json.loads(
        cli("explain", "--db", str(seeded.db), "--json", "unknown-user@rcpt.test"))
    bounces = [step for step in history["timeline"] if step["type"] == "bounce"]
    assert bounces and all(step["failure_type"] == "hard" for step in bounces)


def test_the_raw_message_is_the_stored_bounce(seeded: ApiServer) -> None:
    reader = seeded.client()
    [(message_id, raw)] = seeded.query(
        "SELECT m.id, m.raw FROM messages m JOIN bounces b ON b.message_id = m.id "
        "WHERE b.recipient = 'redacted@example.net'")
    response = reader.get(f"/v1/messages/{message_id}/raw")
    assert response.headers["content-type"].startswith("message/rfc822")
    assert response.content == raw and b"feedback-report" in response.content
    problem(reader.get("/v1/messages/999999/raw"), 404, "id")
    problem(reader.get("/v1/messages/abc/raw"), 422, "id")


# --------------------------------------------------------------------------- the list


def test_the_suppression_list_pages_to_its_end_with_the_cursor(seeded: ApiServer) -> None:
    reader = seeded.client()
    expected = [row[0] for row in seeded.query(
        "SELECT address FROM suppression_list ORDER BY address")]
    seen: list[str] = []
    cursor = None
    for _ in range(len(expected) + 1):
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        page = reader.get("/v1/suppressions", params=params).json()
        seen += [item["address"] for item in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == expected and len(expected) >= 5


def test_the_suppression_list_filters_by_state_reason_and_time(seeded: ApiServer) -> None:
    reader = seeded.client()
    denylisted = reader.get("/v1/suppressions", params={"state": "denylisted"}).json()["items"]
    assert "redacted@example.net" in {item["address"] for item in denylisted}
    assert {item["state"] for item in denylisted} == {"denylisted"}
    unknown = reader.get("/v1/suppressions", params={"reason": "User unknown"}).json()["items"]
    assert {item["address"] for item in unknown} >= {
        "unknown-user@rcpt.test", "gmail-unknown@rcpt.test", "nostatus@rcpt.test"}
    assert {item["reason"] for item in unknown} == {"User unknown"}
    assert reader.get("/v1/suppressions", params={"reason": "1"}).json()["items"] == unknown
    later = reader.get("/v1/suppressions", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert later == {"items": [], "next_cursor": None}
    problem(reader.get("/v1/suppressions", params={"state": "valid"}), 422, "state")
    problem(reader.get("/v1/suppressions", params={"reason": "Cosmic rays"}), 422, "reason")
    problem(reader.get("/v1/suppressions", params={"since": "last tuesday"}), 422, "since")
    problem(reader.get("/v1/suppressions", params={"limit": "0"}), 422, "limit")
    problem(reader.get("/v1/suppressions", params={"limit": "1001"}), 422, "limit")
    problem(reader.get("/v1/suppressions", params={"cursor": "%%%"}), 422, "cursor")


def test_the_csv_export_is_what_bounced_quarantine_export_writes(seeded: ApiServer) -> None:
    response = seeded.client().get("/v1/suppressions", headers={"Accept": "text/csv"})
    assert response.headers["content-type"].startswith("text/csv")
    exported = cli("quarantine", "export", "--db", str(seeded.db))
    assert response.text == exported
    assert exported.count("\n") >= 6  # a header and the seeded suppressions


# --------------------------------------------------------------------------- writing


def test_denylist_and_release_are_operator_actions_by_the_token(seeded: ApiServer) -> None:
    crm = seeded.client("crm")
    put = crm.put("/v1/suppressions/Jane.Doe@x.test", json={"note": "asked to stop"}).json()
    assert put == {"address": "jane.doe@x.test", "old_state": None,
                   "new_state": "denylisted", "changed": True}
    again = crm.put("/v1/suppressions/Jane.Doe@x.test").json()
    assert again["changed"] is False
    released = crm.delete("/v1/suppressions/Jane.Doe@x.test",
                          params={"note": "asked again"}).json()
    assert (released["old_state"], released["new_state"]) == ("denylisted", "valid")
    rows = seeded.query("SELECT old_state, new_state, cause, actor FROM address_events "
                        "WHERE address = 'jane.doe@x.test' ORDER BY id")
    assert [(old, new, actor) for old, new, _, actor in rows] == [
        (None, "denylisted", "api:crm"), ("denylisted", "valid", "api:crm")]
    assert "asked to stop" in str(rows[0][2]) and "asked again" in str(rows[1][2])
    history = crm.get("/v1/addresses/Jane.Doe@x.test/history").json()
    assert [step["actor"] for step in history["timeline"]] == ["api:crm", "api:crm"]


def test_an_import_of_ten_thousand_addresses_denylists_them_all(seeded: ApiServer) -> None:
    crm = seeded.client("crm")
    addresses = [f"import{n:05d}@bulk.test" for n in range(10_000)]
    body = {"addresses": [*addresses, "import00001@bulk.test", "not an address"],
            "source": "crm export 2026-11"}
    result = crm.post("/v1/suppressions/import", json=body).json()
    assert (result["denylisted"], result["already"], result["duplicates"]) == (10_000, 0, 1)
    assert [bad["text"] for bad in result["bad"]] == ["not an address"]
    assert seeded.query("SELECT count(*), min(actor), max(actor) FROM address_events "
                        "WHERE address LIKE '%@bulk.test'") == [(10_000, "api:crm", "api:crm")]
    assert seeded.query("SELECT count(*) FROM addresses WHERE address LIKE '%@bulk.test' "
                        "AND state = 'denylisted'") == [(10_000,)]
    again = crm.post("/v1/suppressions/import", json={"addresses": addresses[:10]}).json()
    assert (again["denylisted"], again["already"]) == (0, 10)


def test_an_import_reads_csv_as_bounced_quarantine_import_does(seeded: ApiServer) -> None:
    crm = seeded.client("crm")
    text = "address\ncsv-one@x.test\ncsv-two@x.test\ncsv-one@x.test\n"
    result = crm.post("/v1/suppressions/import", content=text,
                      headers={"Content-Type": "text/csv"}).json()
    assert (result["denylisted"], result["duplicates"]) == (2, 1)
    assert crm.get("/v1/addresses/csv-two@x.test").json()["state"] == "denylisted"


# --------------------------------------------------------------------------- bad input


def test_bad_bodies_get_problem_details_naming_the_field(seeded: ApiServer) -> None:
    crm = seeded.client("crm")
    problem(crm.post("/v1/check", content=b"{not json",
                     headers={"Content-Type": "application/json"}), 400, "body")
    problem(crm.post("/v1/check", content=b"addresses=a@x.test",
                     headers={"Content-Type": "application/x-www-form-urlencoded"}),
            415, "Content-Type")
    problem(crm.post("/v1/check", json=["a@x.test"]), 422, "body")
    problem(crm.post("/v1/check"), 400, "body")
    problem(crm.post("/v1/check", content=b"\xff\xfe{}",
                     headers={"Content-Type": "application/json"}), 400, "body")
    problem(crm.put("/v1/suppressions/a@x.test", json={"note": "x" * 501}), 422, "note")
    problem(crm.put("/v1/suppressions/a@x.test", json={"note": 5}), 422, "note")
    problem(crm.put("/v1/suppressions/not-an-address"), 422, "address")
    problem(crm.get(f"/v1/addresses/{'a' * 400}@x.test"), 422, "address")
    problem(crm.post("/v1/suppressions/import", json={"addresses": "a@x.test"}), 422,
            "addresses")
    problem(crm.post("/v1/suppressions/import", json={"addresses": [], "source": 3}), 422,
            "source")


def test_a_body_beyond_the_limit_is_refused_with_413(seeded: ApiServer) -> None:
    crm = seeded.client("crm")
    huge = json.dumps({"addresses": ["a@x.test"] * 500_000})  # ~6 MB > 4 MB
    problem(crm.post("/v1/suppressions/import", content=huge,
                     headers={"Content-Type": "application/json"}), 413)
    assert crm.get("/healthz").status_code == 200


def test_unknown_paths_and_methods_are_problems_too(seeded: ApiServer) -> None:
    crm = seeded.client("crm", validate=False)  # not in the document, by definition
    problem(crm.get("/v1/nothing-here"), 404)
    response = crm.request("PATCH", "/v1/suppressions/a@x.test")
    problem(response, 405)
    assert "PUT" in response.headers["allow"]



def test_tokens_rotate_on_sighup_without_a_restart(fresh: ApiServer) -> None:
    reader = fresh.client("reader")
    assert reader.get("/v1/suppressions").status_code == 200
    config = fresh.directory / "bounced.toml"
    text = config.read_text()
    rotated = text.replace(TOKENS["reader"][0], "rotated-reader-token-9876543210")
    config.write_text(rotated)
    fresh.process.signal(signal.SIGHUP)
    fresh.process.wait_event("serve.reloaded")
    problem(reader.get("/v1/suppressions"), 401)
    renewed = fresh.client("rotated-reader-token-9876543210")
    assert renewed.get("/v1/suppressions").json() == {"items": [], "next_cursor": None}
