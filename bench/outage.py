"""How an outage of the session store shows, and heals: before and after, in one table.

    python -m bench.outage                                # this tree's service.py
    git worktree add /tmp/before <commit>
    python -m bench.outage --root /tmp/before --root .    # one column per tree

Each --root names a tree whose `service.py` is run (this script and its test
helpers always come from this tree).  Against the wire server
(tests/support/wireserver.py, with a data file so the data survives a restart):

- database down: log in, stop the database, time POST /, GET /name (with the
  cookie), GET /readyz and GET /healthz; start the database again on the same
  port and time until the old cookie is served again.  With the default
  timeouts, with ?serverSelectionTimeoutMS=1000 and with ?timeoutMS=2000.
- store hung (THREADS=4, waitress's own default, so old and new serve on the
  same number of threads): log in, hang the store, send 16 session requests at
  once (GET /name with the cookie, each on its own connection); while they are
  in flight time GET /healthz, GET /name without a cookie and with a badly
  signed one (these three sent together); then the 16 answers (statuses, fastest and slowest); then switch
  the fault off and time until the cookie is served again.


    python -m bench.outage --slow     # a slow store instead: the table of served and shed

- store slow (--slow, this tree only): a proxy holds every reply of the wire
  server 0.3 s or 0.45 s (tests/support/delayproxy.py); 20, 50 and 150 readers
  read one session for 8 s each, while the management port's /healthz is probed
  every 0.25 s; per case: reads served and shed (503), p50 and p99 of each, the
  503s by cause (/metrics), and the probe's slowest answer.

Everything on 127.0.0.1, ports chosen by the servers; every process is ours,
stopped by PID.  Numbers are one run on a shared machine: read the shape, not
the decimals.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import sessions
from tests.support.child import Child
from tests.support.delayproxy import start_delay_proxy
from tests.support.readers import management_port, metric, probe_while, read_for
from tests.support.realhttp import LISTENING, Client, start_service
from tests.support.wireserver import start_wire_server

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SECRET = "outage-bench-secret-of-32-characters"
HUNG_THREADS, HUNG_REQUESTS = 4, 16


def start(root, env):
    """The service of tree `root`; this tree's through realhttp.start_service."""
    env = {"SESSION_SECRET": SECRET, **env}
    if os.path.samefile(root, ROOT):
        return start_service(env)
    # Another tree (say the commit before a fix): the same child, started from its service.py.
    return Child([sys.executable, os.path.join(root, "service.py")], ready=LISTENING, timeout=20,
                 env={"HOST": "127.0.0.1", "PORT": "0", **env})


def timed(call):
    """(status, seconds) of one request; a request that gets no answer shows as its error."""
    started = time.monotonic()
    try:
        status = call().status
    except OSError as exc:
        status = type(exc).__name__
    return status, time.monotonic() - started


def until_served(user, limit=60):
    """Seconds until the user's cookie reads 200 again (None: not within `limit`)."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        if timed(lambda: user.get("/name"))[0] == 200:
            return time.monotonic() - began
        time.sleep(0.05)
    return None


def database_down(root, url_suffix):
    data = os.path.join(tempfile.mkdtemp(), "outage.bson")
    wire = start_wire_server(data=data)
    service = start(root, {"MONGO_URL": wire.url + url_suffix})
    try:
        user = Client("127.0.0.1", service.port, timeout=60)
        assert user.post("/", {"name": "Before"}).status == 200
        wire.stop()
        rows = [(label, *timed(call)) for label, call in (
            ("POST / (new login)", lambda: Client("127.0.0.1", service.port, timeout=60).post("/", {"name": "During"})),
            ("GET /name (cookie)", lambda: user.get("/name")),
            ("GET /readyz", lambda: Client("127.0.0.1", service.port, timeout=60).get("/readyz")),
            ("GET /healthz", lambda: Client("127.0.0.1", service.port, timeout=60).get("/healthz")))]
        wire = start_wire_server(port=wire.port, data=data)
        rows.append(("recovered: cookie served", 200, until_served(user)))
        return rows
    finally:
        service.kill()
        wire.kill()


def store_hung(root):
    wire = start_wire_server()
    service = start(root, {"MONGO_URL": wire.url + "seed", "THREADS": str(HUNG_THREADS)})
    try:
        user = Client("127.0.0.1", service.port, timeout=60)
        assert user.post("/", {"name": "Before"}).status == 200
        cookie = "; ".join(f"{k}={v}" for k, v in user.jar.items())
        wire.set_fault("hang")
        answers = []

        def session_request():
            answers.append(timed(lambda: Client("127.0.0.1", service.port, timeout=60).get(
                "/name", headers={"Cookie": cookie})))
        workers = [threading.Thread(target=session_request) for _ in range(HUNG_REQUESTS)]
        for worker in workers:
            worker.start()
        time.sleep(0.3)  # all sent
        bad = "example.sid=s%3A" + sessions.sign("someone", "not-our-secret")
        storeless = {}  # three requests that need no store, sent together while the 16 wait

        def storeless_request(label, path, headers):
            storeless[label] = timed(lambda: Client("127.0.0.1", service.port, timeout=60).get(path, headers=headers))
        asked = [("GET /healthz", "/healthz", {}), ("GET /name (no cookie)", "/name", {}),
                 ("GET /name (bad signature)", "/name", {"Cookie": bad})]
        probes = [threading.Thread(target=storeless_request, args=request) for request in asked]
        for worker in probes:
            worker.start()
        for worker in probes + workers:
            worker.join(120)
        rows = [(label, *storeless[label]) for label, _, _ in asked]
        statuses = sorted({str(status) for status, _ in answers})
        seconds = sorted(s for _, s in answers)
        label = f"{len(answers)} session requests"
        rows += [(f"{label}: fastest", "/".join(statuses), seconds[0]),
                 (f"{label}: median", "/".join(statuses), statistics.median(seconds)),
                 (f"{label}: slowest", "/".join(statuses), seconds[-1])]
        wire.set_fault("off")
        rows.append(("recovered: cookie served", 200, until_served(user)))
        return rows
    finally:
        service.kill()
        wire.kill()


SCENARIOS = [
    ("database down, default timeouts", lambda root: database_down(root, "seed")),
    ("database down, ?serverSelectionTimeoutMS=1000", lambda root: database_down(
        root, "seed?serverSelectionTimeoutMS=1000")),
    ("database down, ?timeoutMS=2000", lambda root: database_down(root, "seed?timeoutMS=2000")),
    (f"store hung, THREADS={HUNG_THREADS}, {HUNG_REQUESTS} session requests in flight", store_hung),
]


def commit_of(root):
    found = subprocess.run(["git", "-C", root, "log", "-1", "--format=%h"], capture_output=True, text=True)
    return found.stdout.strip() or os.path.basename(os.path.abspath(root))


def cell(status, seconds):
    return f"{status} {seconds:6.2f} s" if seconds is not None else f"{status}   never"


def slow_store(delays=(0.3, 0.45), readers=(20, 50, 150), seconds=8):
    """The table of a slow store: served and shed reads, and the management probe."""
    print(f"{'delay':>6s} {'readers':>7s} {'served':>7s} {'p50':>6s} {'p99':>6s} {'shed':>6s} {'p50':>6s} "
          f"{'p99':>6s}  503s by cause                          probe max")
    wire = start_wire_server(ttl_monitor=0)
    try:
        for delay in delays:
            for count in readers:
                proxy = start_delay_proxy(wire.port, delay)
                service = start_service({"SESSION_SECRET": SECRET, "MONGO_URL": proxy.url + "slow",
                                         "ADMIN_PORT": "0", "CONNECTIONS_PER_CLIENT": "1000",
                                         "LOGIN_RATE_LIMIT": "0", "ACCESS_LOG": "0"})
                try:
                    port, user = management_port(service), Client("127.0.0.1", service.port)
                    user.post("/", {"name": "Ann"})
                    cookie = "; ".join(f"{k}={v}" for k, v in user.jar.items())
                    threads, answers = read_for(service.port, cookie, seconds, count)
                    probes = probe_while(threads, port)
                    causes = {c: int(metric(port, "store_unavailable_responses_total", cause=c))
                              for c in ("queue_timeout", "slot_timeout", "breaker_open", "store_error")}
                    print(f"{delay:6.2f} {count:7d} {quantiles(answers, 200)} {quantiles(answers, 503)}  "
                          f"{causes}  {max(probes):.3f} s", flush=True)
                finally:
                    service.kill()
                    proxy.kill()
    finally:
        wire.kill()


def quantiles(answers, status):
    """'count p50 p99' (seconds) of the answers with this status."""
    times = sorted(seconds for answered, seconds in answers if answered == status)
    if not times:
        return f"{0:7d} {'-':>6s} {'-':>6s}"
    return f"{len(times):7d} {times[len(times) // 2]:6.2f} {times[min(len(times) - 1, len(times) * 99 // 100)]:6.2f}"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", action="append", help="a tree whose service.py to run (repeat: one column each)")
    parser.add_argument("--only", default="", help="run only the scenarios whose title contains this")
    parser.add_argument("--slow", action="store_true", help="the slow-store table instead (this tree)")
    args = parser.parse_args(argv)
    if args.slow:
        return slow_store()
    roots = args.root or [ROOT]
    names = [commit_of(root) for root in roots]
    width = 44
    print(f"{'request':{width}s}" + "".join(f"  {name:>16s}" for name in names))
    for title, scenario in [(t, s) for t, s in SCENARIOS if args.only in t]:
        columns = [scenario(root) for root in roots]
        print(f"\n{title}")
        for n, (label, *_) in enumerate(columns[0]):
            print(f"  {label:{width - 2}s}" + "".join(f"  {cell(*column[n][1:]):>16s}" for column in columns))
        sys.stdout.flush()


if __name__ == "__main__":
    main()
