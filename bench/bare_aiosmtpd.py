"""The ceiling of this stack: an aiosmtpd server that answers 250 and stores nothing.

Same library, same settings as bounced's listener (explicit hostname, SMTPUTF8, raw
bytes), one process, one event loop. ``bench/smtp_load.py`` runs it next to the daemon.

``--protocol stock`` is aiosmtpd as shipped (the issue's ceiling); ``--protocol bounced``
is bounced's own protocol class (its faster DATA reading and path parsing) with the same
do-nothing handler: the ceiling of bounced's SMTP layer, so that what durability costs
shows apart from what the protocol work saves.

    python bench/bare_aiosmtpd.py --port 2599 [--protocol stock|bounced]
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Callable
from typing import Any

from aiosmtpd.smtp import SMTP


class Answer250:
    """Accepts everything and keeps nothing."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        return "250 2.0.0 Ok"


def protocol_factory(kind: str, handler: Answer250) -> Callable[[], SMTP]:
    """One SMTP protocol instance per connection: stock aiosmtpd, or bounced's class."""
    options: dict[str, Any] = {
        "hostname": "bare.bench", "enable_SMTPUTF8": True, "decode_data": False,
    }
    if kind == "stock":
        return lambda: SMTP(handler, **options)
    from dataclasses import replace

    from bounced.config import SmtpConfig
    from bounced.daemon.receive import BouncedSMTP, new_limits

    limits = new_limits(replace(SmtpConfig(), max_connections=100_000))

    def build() -> SMTP:
        protocol = BouncedSMTP(handler, **options)
        protocol.limits = limits
        return protocol

    return build


async def serve(host: str, port: int, protocol: str) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        protocol_factory(protocol, Answer250()), host, port, backlog=1024
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {host}:{port}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=2599)
    parser.add_argument("--protocol", choices=("stock", "bounced"), default="stock")
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.protocol))


if __name__ == "__main__":
    main()
