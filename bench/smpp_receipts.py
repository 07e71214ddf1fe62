"""SMS receipts over SMPP: how fast a real ``bounced serve`` answers an SMSC's receipts.

Starts the loopback SMSC of the tests (``tests/harness/smsc.py``) and a real daemon bound
to it, sends ``--receipts`` delivery receipts as fast as the SMSC can write them (they are
all in flight at once, as an SMSC with a large window would have them) and measures:

- receipts answered per second (each ``deliver_sm_resp`` only after its commit, the
  concurrent ones sharing group commits);
- how long the worker then takes until every receipt is processed (qualified, applied).

The SMSC, the daemon and its worker share this 2-core machine: a floor for a daemon with
the host to itself. ``python bench/smpp_receipts.py --receipts 2000``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.harness.process import ServerProcess, query, wait_until_processed  # noqa: E402
from tests.harness.smsc import LoopbackSmsc  # noqa: E402

RECEIPT = ("id:{id} sub:001 dlvrd:000 submit date:2612011305 done date:2612011310 "
           "stat:{stat} err:{err} text:Your code is {code}")


def config(port: int) -> str:
    return (
        '[database]\npath = "bounced.db"\n[smtp]\nlisten = "127.0.0.1:0"\n'
        '[dns]\nenabled = false\n'
        f'[[smpp]]\nname = "bench"\nhost = "127.0.0.1"\nport = {port}\n'
        'system_id = "bounced"\npassword = "secret"\nsmsc = "Bench"\n'
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--receipts", type=int, default=2000)
    args = parser.parse_args(argv)
    smsc = LoopbackSmsc(password="secret").start()
    with tempfile.TemporaryDirectory(prefix="bounced-smpp-bench-") as tmp:
        directory = Path(tmp)
        (directory / "bounced.toml").write_text(config(smsc.port))
        daemon = ServerProcess(["--config", "bounced.toml"], cwd=directory,
                               log=directory / "serve.log").ready()
        try:
            smsc.wait_bound(1)
            started = time.monotonic()
            for n in range(args.receipts):
                stat, err = ("UNDELIV", f"{n % 50:03d}") if n % 4 else ("DELIVRD", "000")
                smsc.send(f"r{n}", source_addr=f"336{n:08d}", source_addr_ton=1,
                          destination_addr="BOUNCED", esm_class=4,
                          short_message=RECEIPT.format(id=f"b{n}", stat=stat, err=err,
                                                       code=n).encode())
            smsc.wait(lambda: all(smsc.acked(name) for name in smsc.receipts), timeout=600,
                      what="every receipt answered")
            answered = time.monotonic() - started
            wait_until_processed(directory / "bounced.db", deadline_s=600)
            processed = time.monotonic() - started
            stored = query(directory / "bounced.db",
                           "SELECT count(*) FROM messages WHERE channel = 'sms'")[0][0]
        finally:
            daemon.kill()
            smsc.close()
    print(f"{args.receipts} receipts: answered in {answered:.2f} s "
          f"({args.receipts / answered:,.0f} receipts/s, each after its commit); "
          f"all processed after {processed:.2f} s; {stored} stored")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
