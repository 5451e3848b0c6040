"""A TCP proxy that delays every reply, to make the wire server a slow MongoDB.

    python -m tests.support.delayproxy --upstream 127.0.0.1:PORT --delay 0.45

It prints ``READY <port>`` and forwards each connection to the upstream;
whatever the upstream sends back is held `--delay` seconds first (a reply is
one read here, so each reply is late by the delay; a request is never
delayed).  SIGTERM stops it.  start_delay_proxy() runs it as a Child.
"""

import argparse
import signal
import socket
import sys
import threading
import time

from .child import Child
from .wireserver import ROOT


def pump(source, target, delay):
    try:
        while data := source.recv(65536):
            if delay:
                time.sleep(delay)
            target.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, target):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def serve(upstream, delay):
    listener = socket.create_server(("127.0.0.1", 0))
    print(f"READY {listener.getsockname()[1]}", flush=True)
    while True:
        client, _ = listener.accept()
        try:
            server = socket.create_connection(upstream, timeout=10)
            server.settimeout(None)
        except OSError:
            client.close()
            continue
        threading.Thread(target=pump, args=(client, server, 0), daemon=True).start()
        threading.Thread(target=pump, args=(server, client, delay), daemon=True).start()


def start_delay_proxy(upstream_port, delay):
    """The proxy as a Child in front of 127.0.0.1:upstream_port; .url is a MONGO_URL prefix."""
    child = Child([sys.executable, "-m", "tests.support.delayproxy", "--upstream", f"127.0.0.1:{upstream_port}",
                   "--delay", str(delay)], ready=r"^READY (\d+)$", cwd=ROOT)
    child.url = f"mongodb://127.0.0.1:{child.port}/"
    return child


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--delay", type=float, default=0.0)
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    host, port = args.upstream.rsplit(":", 1)
    serve((host, int(port)), args.delay)
