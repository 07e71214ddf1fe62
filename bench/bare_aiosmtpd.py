"""The ceiling of this stack: an aiosmtpd server that answers 250 and stores nothing.

Same library, same settings as bounced's listener (explicit hostname, SMTPUTF8, raw
bytes), one process, one event loop. ``bench/smtp_load.py`` runs it next to the daemon.

    python bench/bare_aiosmtpd.py --port 2599
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from typing import Any

from aiosmtpd.smtp import SMTP


class Answer250:
    """Accepts everything and keeps nothing."""

    def __init__(self) -> None:
        self.messages = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages += 1
        return "250 2.0.0 Ok"


async def serve(host: str, port: int) -> None:
    handler = Answer250()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bare.bench", enable_SMTPUTF8=True, decode_data=False),
        host,
        port,
        backlog=1024,
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
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
