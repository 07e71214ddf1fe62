"""SMS status reports over a real SMPP session: ``bounced serve`` (a real process) binds to
a test SMSC on loopback (``tests/harness/smsc.py``), which sends the receipts of
``tests/data/sms/receipts.toml``, drops the connection and comes back.

What must hold: the daemon rebinds by itself; every receipt the SMSC saw answered is in
the database, once, qualified as the reference says, and a hard-failed number is
quarantined; a receipt whose answer never reached the SMSC (the daemon killed with
``kill -9`` after the commit) is re-sent by the SMSC and counts once.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.harness.process import ServerProcess, query, wait_until_processed
from tests.harness.smsc import LoopbackSmsc
from tests.paths import DATA

pytestmark = pytest.mark.slow

RECEIPTS: list[dict[str, Any]] = tomllib.loads(
    (DATA / "sms" / "receipts.toml").read_text())["receipt"]
TOKEN = "platform-token-0123456789abcdef"


def config_text(port: int) -> str:
    return (
        '[database]\npath = "bounced.db"\n'
        '[smtp]\nlisten = "127.0.0.1:0"\nhostname = "bounced.test"\n'
        '[dns]\nenabled = false\n'
        '[addresses]\nphone_region = "FR"\n'
        '[http]\nlisten = "127.0.0.1:0"\n'
        f'[[http.tokens]]\nname = "platform"\nsecret = "{TOKEN}"\nscopes = ["read", "write"]\n'
        '[[smpp]]\nname = "acme"\nhost = "127.0.0.1"\n'
        f"port = {port}\n"
        'system_id = "bounced"\npassword_file = "acme.password"\nsmsc = "Acme"\n'
        'bind = "transceiver"\nenquire_link = "0.5s"\nresponse_timeout = "2s"\n'
        'reconnect_min = "0.1s"\nreconnect_max = "1s"\n'
    )


def deliver_sm(receipt: dict[str, Any]) -> dict[str, Any]:
    """The deliver_sm fields of a receipt of the data file."""
    fields: dict[str, Any] = {
        "source_addr": receipt["source_addr"], "source_addr_ton": receipt["source_addr_ton"],
        "destination_addr": "BOUNCED", "esm_class": receipt.get("esm_class", 4),
        "short_message": receipt["short_message"].encode(),
    }
    for key in ("receipted_message_id", "message_state"):
        if key in receipt:
            fields[key] = receipt[key]
    if "network_error_code" in receipt:
        fields["network_error_code"] = bytes.fromhex(receipt["network_error_code"])
    return fields


@pytest.fixture
def smsc() -> Iterator[LoopbackSmsc]:
    server = LoopbackSmsc(password="secret").start()
    try:
        yield server
    finally:
        server.close()


def start(directory: Path, smsc: LoopbackSmsc) -> ServerProcess:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "bounced.toml").write_text(config_text(smsc.port))
    (directory / "acme.password").write_text("secret\n")
    log = directory / f"serve-{len(list(directory.glob('serve-*')))}.log"
    return ServerProcess(["--config", "bounced.toml"], cwd=directory, log=log).ready()


def http_port(process: ServerProcess) -> int:
    return process.port("http")


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bounced", *args], capture_output=True,
                          text=True, timeout=120)


def test_receipts_are_stored_before_their_answer_qualified_and_survive_a_dropped_session(
        tmp_path: Path, smsc: LoopbackSmsc) -> None:
    daemon = start(tmp_path, smsc)
    try:
        smsc.wait_bound(1)
        assert smsc.bind_commands == ["bind_transceiver"]
        registered = [r for r in RECEIPTS if r.get("registered")]
        answer = httpx.post(
            f"http://127.0.0.1:{http_port(daemon)}/v1/messages",
            headers={"Authorization": f"Bearer {TOKEN}"},
            json={"messages": [{"id": r["receipted_message_id"], "channel": "sms",
                                "recipient": r["number"]} for r in registered]})
        assert answer.status_code == 200, answer.text
        first, rest = RECEIPTS[:4], RECEIPTS[4:]
        for receipt in first:
            smsc.send(receipt["name"], **deliver_sm(receipt))
        smsc.drop()  # mid-stream: some answers may never have come back
        for receipt in rest:  # queued at the SMSC while it is down
            smsc.send(receipt["name"], **deliver_sm(receipt))
        smsc.send("mobile-originated", source_addr="33612345679", source_addr_ton=1,
                  destination_addr="BOUNCED", esm_class=0, short_message=b"STOP")
        smsc.restart()
        smsc.wait_bound(2)
        smsc.wait(lambda: all(smsc.acked(name) for name in smsc.receipts), what="answers")
        assert {sent.status for sent in smsc.receipts.values()} == {0}
        smsc.wait(lambda: smsc.enquire_links > 0, what="an enquire_link")
        wait_until_processed(tmp_path / "bounced.db")
        assert daemon.events("smpp.disconnected"), "the drop was noticed"
        assert len(daemon.events("smpp.bound")) >= 2
    finally:
        daemon.kill()
    db = tmp_path / "bounced.db"
    # every answered receipt once; the mobile-originated SMS is answered, not stored
    assert query(db, "SELECT count(*) FROM messages WHERE channel = 'sms'") == [
        (len(RECEIPTS),)]
    rows = {row[0]: row[1:] for row in query(
        db, "SELECT b.recipient, b.kind, b.failure_type, b.reason_code, q.text, b.channel "
            "FROM bounces b JOIN qualification q ON q.id = b.qualification_id")}
    for receipt in RECEIPTS:
        assert rows[receipt["number"]] == (
            receipt["kind"], receipt["failure_type"], receipt["reason"], receipt["text"],
            "sms"), receipt["name"]
        states = query(db, "SELECT state, channel FROM addresses WHERE address = ?",
                       (receipt["number"],))
        assert states == ([(receipt["state"], "sms")] if receipt["state"] else []), \
            receipt["name"]
    refused = cli("check", "--db", str(db), "tel:+33612345672", "tel:+33612345671")
    assert refused.returncode == 1, refused.stderr
    assert "quarantine" in refused.stdout and "Refused" in refused.stdout
    raw = json.loads(query(db, "SELECT raw FROM messages WHERE channel = 'sms' "
                               "ORDER BY id LIMIT 1")[0][0])
    assert raw["via"] == "smpp" and raw["account"] == "acme" and raw["pdu"]


def test_a_receipt_whose_answer_was_lost_to_kill_9_is_resent_and_counts_once(
        tmp_path: Path, smsc: LoopbackSmsc) -> None:
    """The daemon commits the receipt, then dies by SIGKILL: whether its
    ``deliver_sm_resp`` was written or not, the SMSC never read it (``lose_answer``), so
    it re-sends the receipt to the next daemon, which finds it already stored."""
    db = tmp_path / "bounced.db"
    receipt = next(r for r in RECEIPTS if r["name"] == "undelivered-012")
    daemon = start(tmp_path, smsc)
    try:
        smsc.wait_bound(1)
        smsc.send("killed", lose_answer=True, **deliver_sm(receipt))
        smsc.wait(lambda: query(db, "SELECT count(*) FROM messages WHERE channel = 'sms'")
                  == [(1,)], what="the receipt committed")
    finally:
        daemon.kill()  # SIGKILL
    assert not smsc.acked("killed")
    again = start(tmp_path, smsc)
    try:
        smsc.wait_bound(2)
        smsc.wait(lambda: smsc.acked("killed"), what="the re-sent receipt answered")
        wait_until_processed(db)
        received = again.wait_event("message.received")
        assert received["duplicate"] is True and received["protocol"] == "smpp"
    finally:
        again.kill()
    assert query(db, "SELECT count(*) FROM messages WHERE channel = 'sms'") == [(1,)]
    assert query(db, "SELECT count(*), max(failure_type) FROM bounces WHERE recipient = ?",
                 (receipt["number"],)) == [(1, "hard")]
    assert query(db, "SELECT state FROM addresses WHERE address = ?",
                 (receipt["number"],)) == [("quarantine",)]


def test_a_session_over_tls_checks_the_smsc_certificate(tmp_path: Path) -> None:
    authority = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert("127.0.0.1").configure_cert(server)
    smsc = LoopbackSmsc(password="secret", tls=server).start()
    authority.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    receipt = next(r for r in RECEIPTS if r["name"] == "rejected")
    try:
        directory = tmp_path / "daemon"
        directory.mkdir()
        (directory / "bounced.toml").write_text(
            config_text(smsc.port) + f'tls = true\ntls_ca_file = "{tmp_path / "ca.pem"}"\n')
        (directory / "acme.password").write_text("secret\n")
        daemon = ServerProcess(["--config", "bounced.toml"], cwd=directory,
                               log=directory / "serve.log").ready()
        try:
            smsc.wait_bound(1)
            assert daemon.wait_event("smpp.bound")["tls"] is True
            smsc.send("over-tls", **deliver_sm(receipt))
            smsc.wait(lambda: smsc.acked("over-tls"), what="the answer over TLS")
            wait_until_processed(directory / "bounced.db")
        finally:
            daemon.kill()
        assert query(directory / "bounced.db", "SELECT state FROM addresses WHERE address = ?",
                     (receipt["number"],)) == [("quarantine",)]
    finally:
        smsc.close()


def test_an_smsc_certificate_no_trusted_authority_signed_is_refused(tmp_path: Path) -> None:
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    trustme.CA().issue_cert("127.0.0.1").configure_cert(server)
    smsc = LoopbackSmsc(password="secret", tls=server).start()
    try:
        (tmp_path / "bounced.toml").write_text(config_text(smsc.port) + "tls = true\n")
        (tmp_path / "acme.password").write_text("secret\n")
        daemon = ServerProcess(["--config", "bounced.toml"], cwd=tmp_path,
                               log=tmp_path / "serve.log").ready()
        try:
            refused = daemon.wait_event("smpp.disconnected")
            assert "CERTIFICATE_VERIFY_FAILED" in refused["error"]
            assert smsc.binds == 0
        finally:
            daemon.kill()
    finally:
        smsc.close()


def test_a_refused_bind_is_retried_with_backoff(tmp_path: Path) -> None:
    smsc = LoopbackSmsc(password="other").start()
    try:
        daemon = start(tmp_path, smsc)
        try:
            first = daemon.wait_event("smpp.disconnected", 1)
            second = daemon.wait_event("smpp.disconnected", 3)
            assert "refused" in first["error"]
            assert second["retry_in"] > first["retry_in"]
            assert smsc.binds == 0
        finally:
            daemon.kill()
    finally:
        smsc.close()
