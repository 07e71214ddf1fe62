"""The daemon records DNS evidence on Invalid-domain bounces by itself, off the
processing path: a real daemon, a real SMTP client, the loopback DNS server."""

from __future__ import annotations

import smtplib
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path

from tests.harness.daemon import BOUNCE_DOMAIN, RunningDaemon, daemon_config, sample


def _wait_for(daemon: RunningDaemon, sql: str, deadline_s: float = 30.0) -> list[tuple]:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        rows = daemon.query(sql)
        if rows and all(value is not None for row in rows for value in row):
            return rows
        time.sleep(0.1)
    raise AssertionError(f"no result for {sql}: {daemon.query(sql)}")


def _send(daemon: RunningDaemon, raw: bytes) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.smtp_port, timeout=10) as client:
        client.sendmail("", [f"bounces+t@{BOUNCE_DOMAIN}"], raw)


def test_an_invalid_domain_bounce_gets_its_dns_evidence_from_the_daemon(
    tmp_path: Path, dns_server
) -> None:
    base = daemon_config(tmp_path)
    config = replace(base, dns=replace(base.dns, enabled=True,
                                       nameservers=(dns_server.address,)))
    daemon = RunningDaemon(config).start()
    try:
        _send(daemon, sample("postfix-09-nodomain-failed"))
        _send(daemon, sample("postfix-01-user-unknown-failed"))
        daemon.wait_processed()
        rows = _wait_for(daemon, "SELECT recipient, dns_status FROM bounces WHERE reason_code = 2")
        assert rows == [("nodomain@nodomain.test", "nxdomain")]
        assert daemon.query("SELECT dns_status FROM bounces WHERE reason_code = 1") == [(None,)]
        assert daemon.query("SELECT domain, status FROM dns_cache") == [
            ("nodomain.test", "nxdomain")]
    finally:
        assert daemon.stop() == 0


def test_a_dead_resolver_delays_evidence_not_verdicts(tmp_path: Path) -> None:
    base = daemon_config(tmp_path)
    config = replace(base, dns=replace(base.dns, enabled=True, nameservers=("127.0.0.1:9",),
                                       timeout=timedelta(seconds=1)))
    daemon = RunningDaemon(config).start()
    try:
        _send(daemon, sample("postfix-09-nodomain-failed"))
        daemon.wait_processed()
        for serial in range(5):  # verdicts keep coming while the resolver does not answer
            _send(daemon, f"X-Serial: {serial}\r\n".encode() + sample())
        daemon.wait_processed(deadline_s=10)
        assert daemon.query("SELECT count(*) FROM bounces WHERE reason_code = 1") == [(5,)]
        rows = _wait_for(daemon, "SELECT dns_status FROM bounces WHERE reason_code = 2")
        assert rows == [("unknown",)]
    finally:
        assert daemon.stop() == 0
