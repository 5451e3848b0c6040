"""How long an outage takes to show, and to heal: time to 503, time to recover.

    python bench/outage.py

Runs `python service.py` against the wire server (tests/wireserver.py, with a
data file so the data survives), logs in, stops the database, times the three
requests the issue names (each must be a 503 within the timeout plus one
second), starts the database again on the same port and times how long until
the old cookie is served again.  Once with the default timeout (timeoutMS
5000) and once with timeoutMS=2000 in MONGO_URL.  Everything on 127.0.0.1;
every process is stopped by PID.
"""

import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from realhttp import ServiceProcess  # noqa: E402
from wireserver import start_wire_server  # noqa: E402


def timed(call):
    started = time.monotonic()
    response = call()
    return response.status, time.monotonic() - started


def measure(url_suffix):
    data = os.path.join(tempfile.mkdtemp(), "outage.bson")
    wire = start_wire_server(data=data)
    service = ServiceProcess({"MONGO_URL": wire.url + url_suffix})
    try:
        user = service.client()
        assert user.post("/", {"name": "Before"}).status == 200
        wire.stop()
        results = [(label, *timed(call)) for label, call in (
            ("POST /", lambda: user.post("/", {"name": "During"})),
            ("GET /name", lambda: user.get("/name")),
            ("GET /readyz", lambda: service.client().get("/readyz")),
            ("GET /healthz", lambda: service.client().get("/healthz")))]
        wire = start_wire_server(port=wire.port, data=data)
        back = time.monotonic()
        while user.get("/name").status != 200 and time.monotonic() - back < 30:
            time.sleep(0.05)
        return results, time.monotonic() - back
    finally:
        service.kill()
        wire.kill()


def main():
    for suffix, bound in (("seed", "default timeoutMS=5000"), ("seed?timeoutMS=2000", "timeoutMS=2000")):
        results, recovery = measure(suffix)
        print(f"{bound}:")
        for label, status, seconds in results:
            print(f"  {label:13s} {status}  {seconds:5.2f} s")
        print(f"  recovered: the old cookie served again {recovery:.2f} s after the database came back")


if __name__ == "__main__":
    main()
