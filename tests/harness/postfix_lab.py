"""A private Postfix on loopback that sends its real DSNs to a bounced under test.

Postfix relays every ``*@rcpt.test`` message to a scripted "remote MX" (an aiosmtpd
server in this process) which refuses recipients by local-part prefix; Postfix's own
bounce daemon then mails the DSN to the message's return path ``*@bounce.e2e.test``,
which the transport map routes to the daemon's SMTP port. Nothing uses DNS, nothing
leaves 127.0.0.1, and the system Postfix (``/etc/postfix``) is never touched.

Postfix's master must start as root, and its processes (user ``postfix``) must reach
the lab directory, so it lives in a fresh world-searchable directory under /tmp rather
than pytest's 0700 tmp_path.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller

MTA_HOSTNAME = "mta.e2e.test"
RCPT_DOMAIN = "rcpt.test"
BOUNCE_DOMAIN = "bounce.e2e.test"

#: Local-part prefix -> the remote MX's answer to RCPT TO.
REMOTE_REPLIES = {
    "unknown-user": "550 5.1.1 <{addr}>: Recipient address rejected: User unknown",
    "full": "552 5.2.2 <{addr}>: Mailbox full",
    "blocked": "554 5.7.1 Service unavailable; Client host [127.0.0.1] blocked using"
    " zen.spamhaus.org",
    "later": "451 4.3.0 <{addr}>: Temporary failure, try again later",
}


def postfix_binary() -> str | None:
    return shutil.which("postfix") or next(
        (p for p in ("/usr/sbin/postfix", "/sbin/postfix") if os.access(p, os.X_OK)), None
    )


def unavailable_reason() -> str | None:
    """Why the real-Postfix test cannot run here, or None when it can."""
    if postfix_binary() is None:
        return "Postfix is not installed (apt-get install postfix; .ci/run does it as root)"
    if os.geteuid() != 0:
        return "the Postfix master must start as root; run the end-to-end test as root"
    try:
        import pwd

        pwd.getpwnam("postfix")
    except KeyError:
        return "no 'postfix' user on this system (the Debian package creates it)"
    return None


class RemoteHandler:
    """The scripted remote MX: refuse by local-part prefix, accept anything else."""

    async def handle_RCPT(  # noqa: N802 - aiosmtpd hook name
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        local = address.rsplit("@", 1)[0].lower()
        for prefix, reply in REMOTE_REPLIES.items():
            if local.startswith(prefix):
                return reply.format(addr=address)
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 Ok"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        return "250 2.0.0 Ok: discarded"


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostfixLab:
    """One running private Postfix instance and its fake remote MX."""

    directory: Path
    smtp_port: int
    bounce_port: int
    remote: Controller

    @property
    def config_dir(self) -> Path:
        return self.directory / "etc"

    def postfix(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        binary = postfix_binary()
        assert binary is not None
        return subprocess.run(
            [binary, "-c", str(self.config_dir), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=check,
            env=dict(os.environ, PATH="/usr/sbin:/usr/bin:/sbin:/bin"),
        )

    def maillog(self) -> str:
        path = self.directory / "maillog"
        return path.read_text(errors="replace") if path.exists() else "(no maillog)"

    def stop(self) -> None:
        self.postfix("stop", check=False)
        self.remote.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def start_lab(bounce_port: int) -> PostfixLab:
    """Write the configuration, start the remote MX and Postfix; return the lab."""
    directory = Path(tempfile.mkdtemp(prefix="bounced-e2e-", dir="/tmp"))
    directory.chmod(0o755)
    etc, spool, data = directory / "etc", directory / "spool", directory / "data"
    for path in (etc, spool, data):
        path.mkdir(mode=0o755)
    shutil.chown(data, "postfix", "postfix")
    data.chmod(0o700)
    smtp_port, remote_port = free_port(), free_port()
    remote = Controller(
        RemoteHandler(), hostname="127.0.0.1", port=remote_port, server_hostname="mx.rcpt.test"
    )
    remote.start()
    (etc / "main.cf").write_text(
        f"""# bounced end-to-end test: private Postfix on loopback. Generated; do not edit.
compatibility_level = 3.6
queue_directory = {spool}
data_directory = {data}
mail_owner = postfix
setgid_group = postdrop
syslog_name = postfix-bounced-e2e
maillog_file = {directory}/maillog
maillog_file_prefixes = {directory}
myhostname = {MTA_HOSTNAME}
mydomain = e2e.test
myorigin = $myhostname
mydestination =
relay_domains =
relayhost =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject
smtpd_peername_lookup = no
transport_maps = texthash:{etc}/transport
default_transport = error:5.4.4 no route in the e2e test
local_transport = error:5.1.1 local delivery disabled
alias_maps =
alias_database =
smtp_dns_support_level = disabled
smtp_tls_security_level = none
smtpd_tls_security_level = none
smtputf8_enable = yes
notify_classes =
delay_warning_time = 2s
maximal_queue_lifetime = 10m
bounce_queue_lifetime = 10m
queue_run_delay = 1s
minimal_backoff_time = 1s
maximal_backoff_time = 2s
"""
    )
    services = [
        f"127.0.0.1:{smtp_port} inet n - n - - smtpd",
        "pickup unix n - n 60 1 pickup",
        "cleanup unix n - n - 0 cleanup",
        "qmgr unix n - n 300 1 qmgr",
        "tlsmgr unix - - n 1000? 1 tlsmgr",
        "rewrite unix - - n - - trivial-rewrite",
        "bounce unix - - n - 0 bounce",
        "defer unix - - n - 0 bounce",
        "trace unix - - n - 0 bounce",
        "verify unix - - n - 1 verify",
        "flush unix n - n 1000? 0 flush",
        "proxymap unix - - n - - proxymap",
        "proxywrite unix - - n - 1 proxymap",
        "smtp unix - - n - - smtp",
        "relay unix - - n - - smtp",
        "showq unix n - n - - showq",
        "error unix - - n - - error",
        "retry unix - - n - - error",
        "discard unix - - n - - discard",
        "anvil unix - - n - 1 anvil",
        "scache unix - - n - 1 scache",
        "postlog unix-dgram n - n - 1 postlogd",
    ]
    (etc / "master.cf").write_text("# Generated; no chroot.\n" + "\n".join(services) + "\n")
    (etc / "transport").write_text(
        f"{RCPT_DOMAIN} smtp:[127.0.0.1]:{remote_port}\n"
        f"{BOUNCE_DOMAIN} smtp:[127.0.0.1]:{bounce_port}\n"
    )
    lab = PostfixLab(directory, smtp_port, bounce_port, remote)
    try:
        lab.postfix("check", check=False)  # creates the queue directories
        started = lab.postfix("start", check=False)
        if started.returncode != 0:
            raise RuntimeError(f"postfix start failed: {started.stderr}\n{lab.maillog()}")
        wait_for_port(smtp_port)
    except BaseException:
        lab.stop()
        raise
    return lab


def wait_for_port(port: int, deadline_s: float = 30.0) -> None:
    import socket

    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on 127.0.0.1:{port}")
