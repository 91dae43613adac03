"""An S3 endpoint for the benchmarks: moto's ThreadedMotoServer in a process of its own,
so that its CPU is not counted against (nor competes in the GIL with) the load generator.

    python -m bench.moto_server --port 8900
"""

from __future__ import annotations

import argparse
import signal
import threading

from moto.server import ThreadedMotoServer


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.moto_server")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=args.port, verbose=False)
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print("moto: ready", flush=True)
    try:
        stop.wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
