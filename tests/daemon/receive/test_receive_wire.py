"""The SMTP and LMTP dialogue of the real daemon, over loopback, into a real database."""

from __future__ import annotations

import json
import smtplib
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from tests.harness.daemon import (
    BOUNCE_ADDRESS,
    BOUNCE_DOMAIN,
    RunningDaemon,
    daemon_config,
    sample,
    unique_dsn,
)


def smtp(server: RunningDaemon) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", server.smtp_port, local_hostname="client.test", timeout=30)
    client.ehlo()
    return client


def lmtp(server: RunningDaemon) -> smtplib.LMTP:
    client = smtplib.LMTP("127.0.0.1", server.lmtp_port, local_hostname="client.test", timeout=30)
    client.ehlo()
    return client


def transaction(
    client: smtplib.SMTP, rcpts: list[str], raw: bytes, sender: str = ""
) -> tuple[list, tuple]:
    client.mail(sender)
    replies = [client.rcpt(r) for r in rcpts]
    return replies, client.data(raw)


def message_count(server: RunningDaemon) -> int:
    return server.query("SELECT count(*) FROM messages")[0][0]


def test_a_bounce_to_a_bounce_domain_is_stored_byte_for_byte_before_250(
    server: RunningDaemon,
) -> None:
    raw = sample()
    with smtp(server) as client:
        replies, (code, text) = transaction(client, [f"bounces+tok123@{BOUNCE_DOMAIN}"], raw)
    assert replies == [(250, b"2.1.5 Ok")]
    assert code == 250 and text.startswith(b"2.0.0")
    rows = server.query("SELECT mail_from, rcpt_to, raw, size FROM messages")
    assert rows == [("", json.dumps([f"bounces+tok123@{BOUNCE_DOMAIN}"]), raw, len(raw))]


def test_the_verp_token_is_read_with_the_configured_separator(
    start_daemon: Callable[..., RunningDaemon], tmp_path: Path
) -> None:
    config = daemon_config(tmp_path)
    server = start_daemon(replace(config, verp=replace(config.verp, separator="-")))
    with smtp(server) as client:
        replies, (code, _text) = transaction(
            client, [f"{BOUNCE_ADDRESS.replace('@', '-jane=example.org@')}"], unique_dsn(7))
    assert replies == [(250, b"2.1.5 Ok")] and code == 250
    server.wait_processed()
    assert server.query("SELECT verp_token FROM messages") == [("jane=example.org",)]
    assert server.query("SELECT DISTINCT verp_token FROM bounces") == [("jane=example.org",)]


def test_the_null_sender_is_accepted_and_stored_as_empty(server: RunningDaemon) -> None:
    with smtp(server) as client:
        code, _ = client.docmd("MAIL", "FROM:<>")
        assert code == 250
        client.rcpt(BOUNCE_ADDRESS)
        assert client.data(unique_dsn(1))[0] == 250
    assert server.query("SELECT mail_from FROM messages") == [("",)]


def test_configured_addresses_and_their_verp_forms_are_accepted(server: RunningDaemon) -> None:
    local, domain = BOUNCE_ADDRESS.split("@")
    with smtp(server) as client:
        client.mail("")
        assert client.rcpt(BOUNCE_ADDRESS)[0] == 250
        assert client.rcpt(f"{local}+jane=example.org@{domain}")[0] == 250
        assert client.rcpt(f"{local.upper()}+X@{domain.upper()}")[0] == 250
        assert client.data(unique_dsn(2))[0] == 250


def test_any_other_recipient_is_refused_with_550_5_1_1_and_nothing_is_stored(
    server: RunningDaemon,
) -> None:
    with smtp(server) as client:
        client.mail("")
        for rcpt in ("victim@example.org", "other@mail.example", f"bounces@sub.{BOUNCE_DOMAIN}"):
            code, text = client.rcpt(rcpt)
            assert (code, text[:5]) == (550, b"5.1.1"), rcpt
        assert client.docmd("DATA")[0] == 503  # no valid recipient: no DATA
    assert message_count(server) == 0


def test_with_no_bounce_domains_configured_every_recipient_is_accepted(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    server = start_daemon(bounce_domains=(), bounce_addresses=())
    with smtp(server) as client:
        _, (code, _) = transaction(client, ["anyone@anywhere.example"], unique_dsn(4))
    assert code == 250


def test_a_message_over_the_size_limit_is_refused_with_552_5_3_4(server: RunningDaemon) -> None:
    big = sample() + b"x" * 100 + b"\r\n" + (b"y" * 998 + b"\r\n") * 300  # ~300 KB > 256 KB
    with smtp(server) as client:
        _, (code, text) = transaction(client, [BOUNCE_ADDRESS], big)
        assert (code, text[:5]) == (552, b"5.3.4")
        # the session goes on
        _, (code, _) = transaction(client, [BOUNCE_ADDRESS], unique_dsn(5))
        assert code == 250
    assert message_count(server) == 1


def test_a_declared_size_over_the_limit_is_refused_at_mail_from(server: RunningDaemon) -> None:
    with smtp(server) as client:
        code, text = client.mail("", ["SIZE=999999999"])
    assert (code, text[:5]) == (552, b"5.3.4")


def test_lmtp_answers_once_per_accepted_recipient_after_data(server: RunningDaemon) -> None:
    with lmtp(server) as client:
        client.mail("")
        assert client.rcpt(f"a+1@{BOUNCE_DOMAIN}")[0] == 250
        assert client.rcpt("stranger@example.org")[0] == 550
        assert client.rcpt(f"b+2@{BOUNCE_DOMAIN}")[0] == 250
        first = client.data(unique_dsn(6))
        second = client.getreply()
    assert first[0] == 250 and f"<a+1@{BOUNCE_DOMAIN}>".encode() in first[1]
    assert second[0] == 250 and f"<b+2@{BOUNCE_DOMAIN}>".encode() in second[1]
    assert server.query("SELECT rcpt_to FROM messages") == [
        (json.dumps([f"a+1@{BOUNCE_DOMAIN}", f"b+2@{BOUNCE_DOMAIN}"]),)
    ]


def test_lmtp_refuses_an_oversized_message_once_per_recipient(server: RunningDaemon) -> None:
    big = (b"z" * 998 + b"\r\n") * 300
    with lmtp(server) as client:
        client.mail("")
        client.rcpt(f"a@{BOUNCE_DOMAIN}")
        client.rcpt(f"b@{BOUNCE_DOMAIN}")
        first = client.data(big)
        second = client.getreply()
        assert client.noop()[0] == 250  # and nothing is left unread in the stream
    assert (first[0], first[1][:5]) == (552, b"5.3.4")
    assert (second[0], second[1][:5]) == (552, b"5.3.4")
    assert message_count(server) == 0


def test_an_identical_message_sent_again_is_recognised_not_stored_twice(
    server: RunningDaemon,
) -> None:
    raw = unique_dsn(7)
    with smtp(server) as client:
        _, first = transaction(client, [BOUNCE_ADDRESS], raw)
        _, second = transaction(client, [BOUNCE_ADDRESS], raw)
    assert first[0] == second[0] == 250
    assert b"already stored" in second[1]
    server.wait_processed()
    assert server.query("SELECT count(*) FROM messages") == [(1,)]
    assert server.query("SELECT count(*) FROM bounces") == [(1,)]


def test_many_concurrent_clients_all_get_250_and_every_message_is_processed(
    server: RunningDaemon,
) -> None:
    clients, per_client = 16, 10
    codes: list[int] = []
    lock = threading.Lock()

    def send(worker: int) -> None:
        with smtp(server) as client:
            for n in range(per_client):
                _, (code, _) = transaction(
                    client, [BOUNCE_ADDRESS], unique_dsn(1000 + worker * 100 + n)
                )
                with lock:
                    codes.append(code)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert codes == [250] * clients * per_client
    server.wait_processed()
    assert server.query("SELECT state, count(*) FROM messages GROUP BY state") == [
        ("processed", clients * per_client)
    ]
    assert server.query("SELECT count(DISTINCT message_id) FROM bounces") == [
        (clients * per_client,)
    ]


def test_past_max_pending_new_transactions_get_451_4_3_2_then_recover(
    server: RunningDaemon,
) -> None:
    writer = server.daemon.writer
    assert writer is not None
    limit = writer.max_pending
    writer.max_pending = -1  # any backlog is too much
    try:
        with smtp(server) as client:
            code, text = client.mail("")
        assert (code, text[:5]) == (451, b"4.3.2")
    finally:
        writer.max_pending = limit
    with smtp(server) as client:
        _, (code, _) = transaction(client, [BOUNCE_ADDRESS], unique_dsn(8))
    assert code == 250


def test_when_the_disk_reserve_is_reached_during_data_the_message_gets_452_4_3_1(
    server: RunningDaemon,
) -> None:
    """MAIL FROM passed; the free space fell below storage.min_free_mb before the end of
    DATA (here: the reserve raised above any disk). Nothing is stored; SMTP answers once,
    LMTP once per recipient; once there is room again, mail is accepted."""
    writer = server.daemon.writer
    assert writer is not None

    def wait_low(expected: bool) -> None:
        deadline = time.monotonic() + 10
        while writer.storage_low() is not expected and time.monotonic() < deadline:
            time.sleep(0.02)
        assert writer.storage_low() is expected

    with smtp(server) as client, lmtp(server) as local:
        client.mail("")
        client.rcpt(BOUNCE_ADDRESS)
        local.mail("")
        local.rcpt(f"a@{BOUNCE_DOMAIN}")
        local.rcpt(f"b@{BOUNCE_DOMAIN}")
        writer.min_free_mb = 1 << 40  # MiB: more than any file system has free
        try:
            wait_low(True)
            code, text = client.data(unique_dsn(20))
            first, second = local.data(unique_dsn(21)), local.getreply()
        finally:
            writer.min_free_mb = 0
        wait_low(False)
        _, (after, _) = transaction(client, [BOUNCE_ADDRESS], unique_dsn(22))
    assert (code, text) == (452, b"4.3.1 Insufficient system storage, try again later")
    assert (first[0], first[1][:5], second[0], second[1][:5]) == (452, b"4.3.1", 452, b"4.3.1")
    assert after == 250
    assert message_count(server) == 1


def test_a_client_outside_the_allowed_networks_cannot_send(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    server = start_daemon(allowed_networks=("192.0.2.0/24",))
    with smtp(server) as client:
        code, text = client.mail("")
    assert (code, text[:5]) == (554, b"5.7.1")
    assert message_count(server) == 0


def test_a_client_inside_the_allowed_networks_can_send(
    start_daemon: Callable[..., RunningDaemon],
) -> None:
    server = start_daemon(allowed_networks=("127.0.0.0/8", "::1/128"))
    with smtp(server) as client:
        _, (code, _) = transaction(client, [BOUNCE_ADDRESS], unique_dsn(9))
    assert code == 250


def test_the_greeting_uses_the_configured_name(server: RunningDaemon) -> None:
    client = smtplib.SMTP(timeout=30)
    code, banner = client.connect("127.0.0.1", server.smtp_port)
    client.close()
    assert code == 220 and banner.startswith(b"bounced.test ")


# ----------------------------------------------------------------------- bad input


def raw_session(server: RunningDaemon) -> tuple[socket.socket, Callable[[], bytes]]:
    sock = socket.create_connection(("127.0.0.1", server.smtp_port), timeout=30)
    reader = sock.makefile("rb")

    def reply() -> bytes:
        lines = []
        while True:
            line = reader.readline()
            lines.append(line)
            if len(line) < 4 or line[3:4] != b"-":
                return b"".join(lines)

    assert reply().startswith(b"220")
    return sock, reply


def test_garbage_commands_get_500_and_the_session_still_works(server: RunningDaemon) -> None:
    sock, reply = raw_session(server)
    with sock:
        for garbage in (b"HELLO THERE", b"\x00\xff\xfe", b"MAIL FROM:<<<>>>"):
            sock.sendall(garbage + b"\r\n")
            assert reply()[:1] == b"5"
        sock.sendall(b"EHLO client.test\r\n")
        assert reply().startswith(b"250")
    with smtp(server) as client:
        _, (code, _) = transaction(client, [BOUNCE_ADDRESS], unique_dsn(10))
    assert code == 250


def test_a_client_disconnecting_mid_data_stores_nothing(server: RunningDaemon) -> None:
    sock, reply = raw_session(server)
    with sock:
        for command in (
            b"EHLO c.test",
            b"MAIL FROM:<>",
            f"RCPT TO:<{BOUNCE_ADDRESS}>".encode(),
            b"DATA",
        ):
            sock.sendall(command + b"\r\n")
            reply()
        sock.sendall(sample()[:1500])
    with smtp(server) as client:  # the server keeps serving
        _, (code, _) = transaction(client, [BOUNCE_ADDRESS], unique_dsn(11))
    assert code == 250
    assert message_count(server) == 1


def test_a_slow_loris_client_is_disconnected_by_the_timeout(server: RunningDaemon) -> None:
    """The server timeout (2 s here) bounds a client that never completes a command."""
    sock, _ = raw_session(server)
    with sock:
        sock.sendall(b"EHLO")  # a command that never ends
        sock.settimeout(30)  # the test fails rather than hangs if the server never closes
        leftover = b""
        for _ in range(30):
            try:
                sock.sendall(b"L")  # a byte now and then keeps a naive server waiting
                chunk = sock.recv(1024)
            except (BrokenPipeError, ConnectionResetError):
                break
            if not chunk:
                break
            leftover += chunk
        else:
            pytest.fail("the server kept the slow client")
    assert b"250" not in leftover
    with smtp(server) as client:  # and it still serves others
        assert client.noop()[0] == 250


def test_one_thousand_recipients_in_one_envelope_are_accepted_and_more_refused(
    server: RunningDaemon,
) -> None:
    rcpts = [f"b+{n}@{BOUNCE_DOMAIN}" for n in range(1001)]
    with smtp(server) as client:
        client.mail("")
        codes = [client.rcpt(r)[0] for r in rcpts]
        code, _ = client.data(unique_dsn(12))
    assert codes == [250] * 1000 + [452]
    assert code == 250
    stored = json.loads(server.query("SELECT rcpt_to FROM messages")[0][0])
    assert stored == rcpts[:1000]


def test_non_ascii_addresses_with_smtputf8_are_accepted_and_stored(server: RunningDaemon) -> None:
    rcpt = f"bounces+müller=exämple.org@{BOUNCE_DOMAIN}"
    raw = sample("postfix-11-smtputf8-global-failed")
    with smtp(server) as client:
        assert client.has_extn("smtputf8")
        client.sendmail("", [rcpt], raw, mail_options=["SMTPUTF8"])
    assert server.query("SELECT rcpt_to, raw FROM messages") == [
        (json.dumps([rcpt], ensure_ascii=False), raw)
    ]


def test_non_ascii_recipient_outside_the_bounce_domains_is_refused(server: RunningDaemon) -> None:
    with smtp(server) as client:
        client.mail("", ["SMTPUTF8"])
        code, _ = client.rcpt("jürgen@exämple.org")
    assert code == 550


@pytest.mark.parametrize("protocol", ["smtp", "lmtp"])
def test_each_protocol_greets_only_its_own_hello(server: RunningDaemon, protocol: str) -> None:
    port = server.smtp_port if protocol == "smtp" else server.lmtp_port
    wrong = b"LHLO x\r\n" if protocol == "smtp" else b"EHLO x\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        reader = sock.makefile("rb")
        reader.readline()
        sock.sendall(wrong)
        assert reader.readline().startswith(b"500")


def test_lines_starting_with_a_dot_are_stored_as_sent(server: RunningDaemon) -> None:
    raw = b"Subject: dots\r\n\r\n.hidden\r\n..two\r\n.\r\n...\r\nend\r\n"
    with smtp(server) as client:
        _, (code, _) = transaction(client, [BOUNCE_ADDRESS], raw)
    assert code == 250
    assert server.query("SELECT raw FROM messages") == [(raw,)]


def test_a_command_sent_right_after_the_final_dot_is_answered(server: RunningDaemon) -> None:
    sock, reply = raw_session(server)
    with sock:
        rcpt = f"RCPT TO:<{BOUNCE_ADDRESS}>".encode()
        for command in (b"EHLO c.test", b"MAIL FROM:<>", rcpt, b"DATA"):
            sock.sendall(command + b"\r\n")
            reply()
        sock.sendall(b"Subject: x\r\n\r\nbody\r\n.\r\nNOOP\r\n")
        assert reply().startswith(b"250 2.0.0")
        assert reply().startswith(b"250")
    assert server.query("SELECT raw FROM messages") == [(b"Subject: x\r\n\r\nbody\r\n",)]


def test_an_empty_message_is_stored_empty(server: RunningDaemon) -> None:
    sock, reply = raw_session(server)
    with sock:
        rcpt = f"RCPT TO:<{BOUNCE_ADDRESS}>".encode()
        for command in (b"EHLO c.test", b"MAIL FROM:<>", rcpt, b"DATA"):
            sock.sendall(command + b"\r\n")
            reply()
        sock.sendall(b".\r\n")
        assert reply().startswith(b"250")
    assert server.query("SELECT raw FROM messages") == [(b"",)]
