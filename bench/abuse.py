"""Re-run of two abuse findings as a reviewer ran them: one client, loopback, bounded.

F1: one client opens 1,010 sockets, each sends a partial request line and then a
    byte every ~11 s; meanwhile fresh clients (another address) probe /healthz.
F2: one client logs in as fast as it can for 60 s; meanwhile a visitor re-logs in.

    python -m bench.abuse f1 --seconds 52
    python -m bench.abuse f2 --seconds 60

Both print what they saw; bench/README.md has the figures of one run.
"""

import argparse
import resource
import socket
import threading
import time

from tests.support.realhttp import Client, start_service


def f1(seconds):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))
    service = start_service({"THREADS": "8"})
    held, refused, probes = [], 0, []
    try:
        for _ in range(1010):
            sock = socket.create_connection(("127.0.0.1", service.port), timeout=5)
            try:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHo")
                held.append(sock)
            except OSError:
                refused += 1
        print(f"F1: 1,010 sockets opened from 127.0.0.1 ({refused} refused while sending)")
        started, next_byte = time.monotonic(), time.monotonic() + 11
        while time.monotonic() - started < seconds:
            t0 = time.monotonic()
            try:
                status = Client("127.0.0.1", service.port, timeout=10, source="127.0.0.2").get("/healthz").status
            except OSError as exc:
                status = type(exc).__name__
            probes.append((round(time.monotonic() - started, 1), status, time.monotonic() - t0))
            if time.monotonic() >= next_byte:
                next_byte += 11
                for sock in held:
                    try:
                        sock.sendall(b"s")
                    except OSError:
                        pass
            time.sleep(1)
        answered_429 = sum(1 for sock in held if _answer(sock).startswith(b"HTTP/1.1 429"))
        worst = max(p[2] for p in probes)
        print(f"F1: {len(probes)} fresh /healthz probes over {seconds} s: statuses "
              f"{sorted(set(p[1] for p in probes))}, worst {worst:.3f} s; of the held sockets "
              f"{answered_429} got 429 at once")
    finally:
        for sock in held:
            sock.close()
        service.kill()


def _answer(sock):
    sock.settimeout(0.5)
    try:
        return sock.recv(64)
    except OSError:
        return b""


def f2(seconds):
    service = start_service({})
    try:
        visitor = Client("127.0.0.1", service.port, source="127.0.0.3")
        assert visitor.post("/", {"name": "visitor"}).status == 200
        counts, stop = {}, threading.Event()

        def flood():
            client = Client("127.0.0.1", service.port)
            n = 0
            while not stop.is_set():
                status = client.post("/", {"name": "😀" * 100}).status
                counts[status] = counts.get(status, 0) + 1
                client.jar.clear()
                n += 1
        thread = threading.Thread(target=flood)
        started = time.monotonic()
        thread.start()
        relogins = []
        while time.monotonic() - started < seconds:
            relogins.append(visitor.post("/", {"name": "visitor"}).status)
            time.sleep(5)
        stop.set()
        thread.join(30)
        took = time.monotonic() - started
        print(f"F2: one client, {took:.0f} s of logins as fast as it can: {counts} "
              f"({sum(counts.values()) / took:.0f} requests/s; {counts.get(200, 0)} stored)")
        print(f"F2: a visitor's re-logins meanwhile (another address): {relogins}")
    finally:
        service.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("which", choices=["f1", "f2"])
    parser.add_argument("--seconds", type=int, default=60)
    args = parser.parse_args()
    {"f1": f1, "f2": f2}[args.which](args.seconds)
