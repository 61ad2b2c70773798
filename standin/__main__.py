"""``python -m standin``: run the vendor stand-in (on loopback unless ``--host``) until interrupted.

Prints ``standin listening on http://127.0.0.1:<port>`` once it accepts requests.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from standin.server import StandIn, StandInServer

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m standin", description=__doc__.splitlines()[0])
    parser.add_argument("--recordings", default=str(ROOT / "include" / "recordings"), help="recordings folder ('' for none)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (0.0.0.0 in a container)")
    parser.add_argument("--synthetic", action="store_true", help="answer what no recording covers with synthetic bars")
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic market")
    args = parser.parse_args(argv)
    server = StandInServer(StandIn(args.recordings or None, synthetic=args.synthetic, seed=args.seed), args.port, args.host)
    print(f"standin listening on {server.url}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    server.start()
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
