"""Many readers of one session at once, and a probe beside them: for the slow-store test and
bench/outage.py.  Everything on 127.0.0.1, bounded in time; every connection is closed."""

import http.client
import re
import threading
import time

from .realhttp import Client


def management_port(service):
    """The management port a service (a Child) printed (ADMIN_PORT=0: any free one)."""
    line = service.wait_for(r"management port http://\S+:(\d+)", timeout=10)
    assert line is not None, service.log()
    return int(re.search(r"management port http://\S+:(\d+)", line).group(1))


def read_for(port, cookie, seconds, readers):
    """`readers` threads reading GET /name with `cookie` for `seconds`, each on a connection of
    its own: (the threads, a list they fill with (status, seconds) per request)."""
    answers, lock, stop = [], threading.Lock(), time.monotonic() + seconds

    def reader(_):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while time.monotonic() < stop:
                started = time.monotonic()
                try:
                    connection.request("GET", "/name", headers={"Cookie": cookie})
                    response = connection.getresponse()
                    response.read()
                    status = response.status
                except (OSError, http.client.HTTPException) as exc:
                    status = type(exc).__name__
                    connection.close()  # the next request opens a new connection
                with lock:
                    answers.append((status, time.monotonic() - started))
        finally:
            connection.close()
    threads = [threading.Thread(target=reader, args=(n,)) for n in range(readers)]
    for thread in threads:
        thread.start()
    return threads, answers


def probe_while(threads, port, every=0.25):
    """GET /healthz on `port` every `every` seconds while the threads run: the seconds each took."""
    times = []
    while any(thread.is_alive() for thread in threads):
        started = time.monotonic()
        assert Client("127.0.0.1", port, timeout=10).get("/healthz").status == 200
        times.append(time.monotonic() - started)
        time.sleep(every)
    for thread in threads:
        thread.join(60)
    return times


def metric(port, name, **labels):
    """One sample of the management port's /metrics, 0.0 if absent."""
    text = Client("127.0.0.1", port).get("/metrics").body.decode()
    wanted = name + ("{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}" if labels else "")
    found = [line.split()[-1] for line in text.splitlines() if line.startswith(wanted + " ")]
    return float(found[0]) if found else 0.0
