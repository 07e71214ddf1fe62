"""RFC 3464 / RFC 6533 delivery-status bodies, field by field."""

from __future__ import annotations

from bounced.core.parse import commands, dsn
from bounced.model import Action


def test_blocks_split_on_blank_lines_and_fields_unfold() -> None:
    status = dsn.parse_delivery_status(
        "Reporting-MTA: dns; mx.example.net\n"
        "Arrival-Date: Sun, 22 Nov 2026 13:29:58 +0000\n"
        "\n"
        "Final-Recipient: rfc822; a@example.org\n"
        "Action: failed\n"
        "Status: 5.1.1\n"
        "Diagnostic-Code: smtp; 550 5.1.1 <a@example.org>: Recipient address\n"
        "    rejected: User unknown\n"
        "\n"
        "Final-Recipient: rfc822; b@example.org\n"
        "Action: delayed\n"
        "Status: 4.4.1\n"
    )
    assert status.message_fields["reporting-mta"] == "dns; mx.example.net"
    first, second = status.recipients
    assert dsn.address_of(first.get("final-recipient")) == "a@example.org"
    assert dsn.diagnostic_of(first.get("diagnostic-code")) == (
        "550 5.1.1 <a@example.org>: Recipient address rejected: User unknown"
    )
    assert dsn.action_of(second.get("action")) is Action.DELAYED


def test_recipients_without_blank_line_between_them() -> None:
    status = dsn.parse_delivery_status(
        "Reporting-MTA: dns; mx.example.net\n"
        "Final-Recipient: rfc822; a@example.org\nAction: failed\nStatus: 5.1.1\n"
        "Final-Recipient: rfc822; b@example.org\nAction: failed\nStatus: 5.2.2\n"
    )
    assert [dsn.address_of(r.get("final-recipient")) for r in status.recipients] == [
        "a@example.org", "b@example.org"]
    assert [r.get("status") for r in status.recipients] == ["5.1.1", "5.2.2"]


def test_final_recipient_after_status_in_the_same_block() -> None:
    status = dsn.parse_delivery_status(
        "Reporting-MTA: dns; 10.0.0.1\n\n"
        "Diagnostic-Code: smtp; 550 5.1.1 refused\nStatus: 5.1.1\n"
        "Final-Recipient: rfc822; late@example.org\nAction: failed\n"
    )
    (recipient,) = status.recipients
    assert recipient.get("status") == "5.1.1"
    assert dsn.address_of(recipient.get("final-recipient")) == "late@example.org"


def test_utf8_address_type_undoes_unitext_escapes() -> None:
    assert dsn.address_of("utf-8; m\\x{FC}ller@example.org") == "müller@example.org"


def test_rfc822_address_type_undoes_xtext() -> None:
    assert dsn.address_of("rfc822; a+2Bb@example.org") == "a+b@example.org"


def test_quoted_local_part_is_kept_and_brackets_go() -> None:
    assert dsn.address_of('rfc822; <"a..b"@example.org>') == '"a..b"@example.org'


def test_source_route_final_recipient_gives_way_to_original() -> None:
    block = dsn.DsnRecipient({
        "final-recipient": "rfc822; @relay.example.net:user@server",
        "original-recipient": "rfc822; user@example.net",
    })
    assert dsn.recipient_address(block) == "user@example.net"


def test_pipe_final_recipient_takes_the_address_it_names() -> None:
    assert dsn.address_of("rfc822;|/usr/bin/filter user@example.com /home/u") == (
        "user@example.com")


def test_action_is_case_and_comment_tolerant() -> None:
    assert dsn.action_of("Failed (permanent)") is Action.FAILED
    assert dsn.action_of("nonsense") is None


def test_diagnostic_type_prefixes_are_removed() -> None:
    assert dsn.diagnostic_of("X-Postfix; Host not found") == "Host not found"
    assert dsn.diagnostic_of("smtp;550 No such user") == "550 No such user"


def test_plus_tags_are_not_mistaken_for_xtext() -> None:
    assert dsn.address_of("rfc822; user+ab@example.org") == "user+ab@example.org"
    assert dsn.address_of("rfc822; bounces+01-x@example.org") == "bounces+01-x@example.org"
    assert dsn.address_of("rfc822; m+C3+BCller@example.org") == "müller@example.org"


def test_smtp_command_from_words_and_transcripts() -> None:
    assert commands.find_command("(in reply to RCPT TO command)") == "RCPT"
    assert commands.find_command("SMTP error from remote mail server after end of data") == "DATA"
    assert commands.find_command("error after initial connection: 554 go away") == "CONN"
    assert commands.find_command("192.0.2.1 does not like recipient.") == "RCPT"
    assert commands.find_command(">>> MAIL From:<a@b> <<< 250 ok >>> RCPT To:<c@d> <<< 550 no") == (
        "RCPT")
    assert commands.find_command("550 5.1.1 User unknown") is None
