"""The systemd notify protocol (sd_notify(3)) and socket activation (sd_listen_fds(3)), stdlib only.

Why not python-systemd: it needs libsystemd headers to build and is one more package to
install on every host, for what is a single datagram on an ``AF_UNIX`` socket and three
environment variables. Everything here is a no-op when the daemon is not run by systemd,
so the same code path serves ``bounced serve`` in a terminal and under ``Type=notify``.

The environment is passed in (defaulting to ``os.environ``) so tests can point
``NOTIFY_SOCKET`` at a socket they bound themselves.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

#: First inherited file descriptor under socket activation (``SD_LISTEN_FDS_START``).
LISTEN_FDS_START = 3


class Notifier:
    """Sends state changes to the service manager; silent when there is none.

    ``NOTIFY_SOCKET`` is read once at construction: systemd sets it for the main
    process only, and a daemon that forks helpers must not have them talk for it.
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address = _notify_address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; False when nobody listens.

        A failure to notify never takes the daemon down: under systemd it would show as
        a start time-out or a watchdog kill, which is the right signal for the operator.
        """
        if self.address is None:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        try:
            if self._socket is None:
                self._socket = socket.socket(
                    socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
                )
            self._socket.sendto(payload, self.address)
        except OSError:
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        return self.notify("RELOADING=1")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _notify_address(value: str) -> str | bytes | None:
    if not value:
        return None
    if value.startswith("@"):
        # Abstract namespace socket: a leading NUL byte instead of "@".
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # vsock:... and other transports are not used by this daemon


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between two ``WATCHDOG=1`` pings (half of ``WatchdogSec``), or None.

    ``WATCHDOG_PID`` names the process the watchdog is meant for; if it is set and is not
    us, we are a child that inherited the environment and must not ping.
    """
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 1_000_000 / 2


@dataclass(frozen=True)
class InheritedSocket:
    """A listening socket passed by systemd (``bounced.socket``) and its ``FileDescriptorName``."""

    fd: int
    name: str


def listen_fds(environ: Mapping[str, str] | None = None) -> list[InheritedSocket]:
    """The sockets systemd passed us, if ``LISTEN_PID`` says they are ours.

    Names come from ``LISTEN_FDNAMES`` (``FileDescriptorName=`` in the .socket unit);
    systemd calls unnamed ones ``unknown``.
    """
    env = os.environ if environ is None else environ
    pid = env.get("LISTEN_PID", "")
    count = env.get("LISTEN_FDS", "")
    if not pid.isdigit() or int(pid) != os.getpid() or not count.isdigit():
        return []
    names = env.get("LISTEN_FDNAMES", "").split(":") if env.get("LISTEN_FDNAMES") else []
    result = []
    for index in range(int(count)):
        name = names[index] if index < len(names) and names[index] else "unknown"
        result.append(InheritedSocket(LISTEN_FDS_START + index, name))
    return result


def unset_activation_environment() -> None:
    """Forget the activation variables so child processes do not claim our sockets."""
    for key in ("LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"):
        os.environ.pop(key, None)
