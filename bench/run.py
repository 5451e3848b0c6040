"""What a request costs: this service beside the seed's Node app, Flask-Session and bare Bottle.

    pip install -r requirements-bench.txt
    python bench/run.py            # about 5 minutes; --quick: about 1; --smoke: seconds, for the tests

How it works
------------
1. Store operations per request.  Our service runs in this process against
   the MongoDB-over-the-wire server (tests/wireserver.py); pymongo's command
   monitoring counts what the driver sends, and the wire server's own
   ``testCounters`` counts what arrives (they must agree).  The Node seed app
   (express-session + connect-mongo, resave false, saveUninitialized true)
   and Flask + Flask-Session run as processes on the same wire server and are
   counted there.  Handshake and monitoring commands (hello, ping,
   endSessions) are not counted: a driver sends them whatever the app does.
2. In-process cost.  WSGI apps called directly, no sockets: the service
   against bare Bottle (bench/bare.py), on the embedded mongomock store and on
   a dict-backed collection (bench/dict_collection.py), which leaves only the
   session layer's own work.  Repetitions interleave the apps; medians.
3. HTTP throughput.  Every server runs at once on 127.0.0.1; wrk (1 thread,
   16 connections) loads one at a time, repetitions interleaved, medians.
   CPU seconds of the server, the wire server and wrk come from
   /proc/PID/stat (and wait4 for wrk), so each row says which process was
   busy: with two cores the wire server can be the bottleneck.
Between runs the stores are put back to their starting size (the wire
server's mongomock scans every document on every lookup, so a grown store
would slow whatever ran next); section 2b shows the embedded store's scaling.

Writes the tables to stdout and bench/out/ (results.json, chart.png, and
PERFORMANCE.md, a ready-to-paste README section); a default run also copies
the chart to bench/chart.png, the one the README shows.
"""

import argparse
import datetime
import http.client
import io
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), BENCH]

import pymongo  # noqa: E402
from pymongo import monitoring  # noqa: E402

import bare  # noqa: E402
import service  # noqa: E402
import sessions  # noqa: E402
import wireserver  # noqa: E402
from dict_collection import DictCollection  # noqa: E402

SECRET = "bench-secret"
COOKIE = "example.sid"
NAME_BODY = b'{"name": "Alice"}'
MODES = {  # whole seconds per wrk run (wrk takes no fractions), repetitions, in-process requests per batch, embedded store sizes
    "default": dict(duration=4, reps=3, warmup=1, batch=400, inproc_reps=7, sizes=(1, 1000, 10000)),
    "quick": dict(duration=2, reps=1, warmup=1, batch=200, inproc_reps=3, sizes=(1, 1000)),
    "smoke": dict(duration=1, reps=1, warmup=0, batch=20, inproc_reps=1, sizes=(1, 100)),
}
NOT_COUNTED = wireserver.UNCOUNTED  # hello, isMaster, ping, endSessions, test commands
READS = {"find", "count", "aggregate", "distinct", "getMore"}
WRITES = {"insert", "update", "findAndModify", "findandmodify"}
DELETES = {"delete"}


# --- Tables: one list of rows, printed as text or written as Markdown ---


def table(title, headers, rows, notes=()):
    return {"title": title, "headers": list(headers), "rows": [[str(c) for c in r] for r in rows], "notes": list(notes)}


def as_text(t):
    widths = [max(len(h), *(len(r[i]) for r in t["rows"])) if t["rows"] else len(h) for i, h in enumerate(t["headers"])]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [t["title"], "=" * len(t["title"]), line(t["headers"]), line(["-" * w for w in widths])]
    out += [line(r) for r in t["rows"]] + t["notes"]
    return "\n".join(out) + "\n"


def as_markdown(t):
    out = [f"**{t['title']}**", "", "| " + " | ".join(t["headers"]) + " |", "|" + "---|" * len(t["headers"])]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in t["rows"]]
    return "\n".join(out + [""] + [n + "  " for n in t["notes"]]) + "\n"


# --- Processes: started here, stopped by their own PID ---


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_port(port, proc, timeout=20):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode}")
        try:
            http_request(port, "GET", "/healthz", timeout=1)
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"did not answer on port {port} in {timeout} s")


class Process:
    """A Python server as a child process; its output goes to a log file."""

    def __init__(self, label, argv, env):
        self.label, self.port = label, wireserver.free_port()
        self.log = tempfile.NamedTemporaryFile(prefix="bench-", suffix=".log", delete=False)
        self.proc = subprocess.Popen(argv, env={**os.environ, **env, "HOST": "127.0.0.1", "PORT": str(self.port)},
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=self.log, cwd=ROOT)
        self.pid = self.proc.pid
        try:
            wait_for_port(self.port, self.proc)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{label}: {exc}; log:\n{self.output()[-2000:]}") from None

    def output(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self):
        if self.proc.poll() is None:
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.log.close()
        os.unlink(self.log.name)


class NodeProcess:
    """The seed's Node app (tests/interop/app.js) through tests/nodeapp.py."""

    def __init__(self, label, app_dir, env):
        import nodeapp
        self.label = label
        self.app = nodeapp.start_node_app(app_dir, 0, {"SESSION_SECRET": SECRET, **env})
        self.pid, self.port = self.app.pid, self.app.port

    def stop(self):
        self.app.stop()


def install_node_app(out_dir):
    """Copy the Node app to out_dir/node-app; `npm ci` only when its lock file changed.
    Returns (directory, None) or (None, why not)."""
    import nodeapp
    why = nodeapp.node_available()
    if why:
        return None, why
    dest = os.path.join(out_dir, "node-app")
    lock = os.path.join(nodeapp.INTEROP_DIR, "package-lock.json")
    installed = os.path.join(dest, "node_modules", ".bench-lock.json")
    try:
        if not (os.path.exists(installed) and open(installed).read() == open(lock).read()):
            nodeapp.install_node_app(dest)
            shutil.copyfile(lock, installed)
        shutil.copyfile(os.path.join(nodeapp.INTEROP_DIR, "app.js"), os.path.join(dest, "app.js"))
    except nodeapp.NodeAppError as exc:
        return None, str(exc).splitlines()[0]
    return dest, None


# --- HTTP client: one request, cookies by hand ---


def http_request(port, method, path, body=None, cookie=None, timeout=10):
    """Return (status, body bytes, the cookie pair a Set-Cookie asked for or None)."""
    headers = {"Content-Type": "application/json"} if body is not None else {}
    if cookie:
        headers["Cookie"] = cookie
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers)
        response = conn.getresponse()
        data = response.read()
        set_cookie = response.getheader("Set-Cookie")
    finally:
        conn.close()
    return response.status, data, set_cookie.split(";")[0] if set_cookie else None


def bad_cookies(cookie):
    """Three cookies that must not reach the store: a wrong signature, no signature, garbage."""
    name, _, value = cookie.partition("=")
    head, dot, mac = value.rpartition(".")
    flipped = mac[:-1] + ("A" if mac[-1] != "A" else "B")
    return {"bad cookie: wrong signature": f"{name}={head}.{flipped}",
            "bad cookie: no signature": f"{name}={head}",
            "bad cookie: garbage": f"{name}=%%garbage%%"}


# --- 1. Store operations per request ---

LIMITS = [  # request, limit text, check(reads, writes, deletes)
    ("GET /healthz", "0", lambda r, w, d: r == w == d == 0),
    ("GET /name, no cookie", "0", lambda r, w, d: r == w == d == 0),
    ("bad cookie: wrong signature", "0", lambda r, w, d: r == w == d == 0),
    ("bad cookie: no signature", "0", lambda r, w, d: r == w == d == 0),
    ("bad cookie: garbage", "0", lambda r, w, d: r == w == d == 0),
    ("GET /name, valid, inside touch interval", "1r 0w", lambda r, w, d: (r, w, d) == (1, 0, 0)),
    ("GET /name, valid, touch due", "1r 1w", lambda r, w, d: (r, w, d) == (1, 1, 0)),
    ("POST / without a cookie", "0r 1w", lambda r, w, d: (r, w, d) == (0, 1, 0)),
    ("POST / with a session cookie", "<=1r 1d 1w", lambda r, w, d: r <= 1 and (w, d) == (1, 1)),
    ("POST /logout", "<=1r <=1d", lambda r, w, d: r <= 1 and d <= 1 and w == 0),
]


def kinds(counts):
    """{command: n} -> (reads, writes, deletes, others)."""
    total = lambda names: sum(n for c, n in counts.items() if c in names)  # noqa: E731
    other = sum(n for c, n in counts.items() if c not in READS | WRITES | DELETES)
    return total(READS), total(WRITES), total(DELETES), other


def describe(counts):
    if counts is None:
        return "-"
    r, w, d, other = kinds(counts)
    names = "+".join(f"{c}x{n}" if n > 1 else c for c, n in sorted(counts.items()))
    text = f"{r}r {w}w {d}d" + (f" {other}other" if other else "")
    return f"{text} ({names})" if names else text


class CommandCounter(monitoring.CommandListener):
    """pymongo command monitoring: the commands this client sent, by name."""

    def __init__(self):
        self.counts = {}

    def started(self, event):
        if event.command_name not in NOT_COUNTED:
            self.counts[event.command_name] = self.counts.get(event.command_name, 0) + 1

    def succeeded(self, event):
        pass

    def failed(self, event):
        pass

    def take(self):
        counts, self.counts = self.counts, {}
        return counts


class SteppedClock:
    def __init__(self):
        self.now = time.time()

    def __call__(self):
        return self.now


def wsgi_call(app, method, path, cookie=None, body=None):
    """Call a WSGI app as a server would; return (status code, the cookie pair set or None)."""
    environ = {"REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "127.0.0.1",
               "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
               "wsgi.input": io.BytesIO(body or b""), "wsgi.errors": sys.stderr, "wsgi.version": (1, 0),
               "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False}
    if body is not None:
        environ.update(CONTENT_TYPE="application/json", CONTENT_LENGTH=str(len(body)))
    if cookie:
        environ["HTTP_COOKIE"] = cookie
    answer = {}

    def start_response(status, headers, exc_info=None):
        answer["status"] = int(status[:3])
        answer["cookie"] = next((v.split(";")[0] for k, v in headers if k.lower() == "set-cookie"), None)
    b"".join(app(environ, start_response))
    return answer["status"], answer["cookie"]


def store_sequence(do, step_clock=None):
    """Run the request kinds of LIMITS in an order that creates the sessions they
    need; do(method, path, cookie, body) -> (status, cookie set, counts).
    Returns {request: counts}."""
    out = {}
    out["GET /healthz"] = do("GET", "/healthz", None, None)[2]
    out["GET /name, no cookie"] = do("GET", "/name", None, None)[2]
    status, first, out["POST / without a cookie"] = do("POST", "/", None, NAME_BODY)
    assert status == 200 and first, f"login answered {status} without a cookie"
    for label, bad in bad_cookies(first).items():
        out[label] = do("GET", "/name", bad, None)[2]
    status, _, out["GET /name, valid, inside touch interval"] = do("GET", "/name", first, None)
    assert status == 200, f"GET /name with a fresh session answered {status}"
    if step_clock:
        step_clock()
    out["GET /name, valid, touch due"] = do("GET", "/name", first, None)[2]
    status, second, out["POST / with a session cookie"] = do("POST", "/", first, NAME_BODY)
    out["POST /logout"] = do("POST", "/logout", second or first, None)[2]
    return out


def count_service(wire):
    """Our service in this process on the wire server: driver-side and server-side counts."""
    listener, clock = CommandCounter(), SteppedClock()
    client = pymongo.MongoClient(wire.url, event_listeners=[listener])
    try:
        store = sessions.MongoStore(client["counts"]["sessions"])
        store.ensure_indexes()
        options = sessions.Options(secrets=(SECRET,))
        app = service.make_app(sessions.SessionInterface(store, options, clock=clock))

        def do(method, path, cookie, body):
            listener.take()
            wire.counters(reset=True)
            status, set_cookie = wsgi_call(app, method, path, cookie, body)
            return status, set_cookie, (listener.take(), wire.counters(reset=True))

        def touch_due():
            clock.now += options.touch_after + 1  # seconds: the lazy touch is due

        both = store_sequence(do, touch_due)
    finally:
        client.close()
    return {k: v[0] for k, v in both.items()}, {k: v[1] for k, v in both.items()}


def count_peer(wire, port):
    """A peer process on the wire server, counted at the server."""
    def do(method, path, cookie, body):
        wire.counters(reset=True)
        status, _, set_cookie = http_request(port, method, path, body, cookie)
        time.sleep(0.05)  # anything the peer still sends after answering is counted too
        return status, set_cookie, wire.counters(reset=True)
    return store_sequence(do)


def section_store_ops(wire, peers):
    driver, at_wire = count_service(wire)
    columns = {}
    for label in ("Node seed (connect-mongo)", "Flask-Session (MongoDB)"):
        peer = peers.get(label)
        columns[label] = count_peer(wire, peer.port) if isinstance(peer, (Process, NodeProcess)) else None
    rows, met = [], True
    for request, limit, check in LIMITS:
        r, w, d, other = kinds(driver[request])
        ok = check(r, w, d) and other == 0 and driver[request] == at_wire[request]
        met &= ok
        rows.append([request, limit, describe(driver[request]), "same" if driver[request] == at_wire[request]
                     else describe(at_wire[request]), "yes" if ok else "NO"]
                    + [describe(col[request]) if col else "-" for col in columns.values()])
    notes = ["r = reads (find), w = writes (insert, update), d = deletes. Counted: this service by pymongo "
             "command monitoring, cross-checked at the wire server; the peers at the wire server."]
    notes += [f"{label}: not run ({peers[label]})" for label, col in columns.items() if col is None]
    notes.append("The Node seed touches the store on every request (connect-mongo touchAfter 0) and stores "
                 "a session for every cookieless visitor (saveUninitialized true); Flask-Session rewrites the "
                 "session on every request (SESSION_REFRESH_EACH_REQUEST). Neither has a touch interval: "
                 "'touch due' is the same request as 'inside touch interval' for them. The Node app has no "
                 "/healthz: its 404 still passes through express-session.")
    t = table("1. Store commands per request (MongoDB over the wire)",
              ["request", "limit", "this service (driver)", "at wire server", "within limit"] + list(columns),
              rows, notes)
    return t, {"met": met, "service": driver, "service_at_wire": at_wire, "peers": columns}


# --- 2. In-process cost: WSGI calls, no sockets ---

REQUESTS = {  # kind -> (method, path, body, needs the logged-in cookie)
    "logged-in read": ("GET", "/name", None, True),
    "login": ("POST", "/", NAME_BODY, False),
    "anonymous read": ("GET", "/name", None, False),
}


class InProcessApp:
    """One WSGI app and its store, with a logged-in cookie and a way back to that one session."""

    def __init__(self, label, app, raw=None):
        self.label, self.app, self.raw = label, app, raw
        status, cookie = wsgi_call(app, "POST", "/", None, NAME_BODY)
        self.cookie = cookie or f"{COOKIE}=any"  # bare Bottle sets none: any cookie means "logged in"
        self.keep = [doc["_id"] for doc in raw.find({})] if raw is not None else []

    def reset(self):
        """Back to the one logged-in session, outside the timed batch."""
        if self.raw is not None:
            self.raw.delete_many({"_id": {"$nin": self.keep}})

    def time_batch(self, kind, n):
        method, path, body, logged_in = REQUESTS[kind]
        cookie = self.cookie if logged_in else None
        expected = 404 if kind == "anonymous read" else 200
        status, _ = wsgi_call(self.app, method, path, cookie, body)
        assert status == expected, f"{self.label} {kind}: {status}"
        started = time.perf_counter()
        for _ in range(n):
            wsgi_call(self.app, method, path, cookie, body)
        elapsed = time.perf_counter() - started
        self.reset()
        return elapsed / n * 1e6  # microseconds per request


def make_service_app(collection):
    store = sessions.MongoStore(collection)
    store.ensure_indexes()
    return service.make_app(sessions.SessionInterface(store, sessions.Options(secrets=(SECRET,))))


def in_process_apps():
    embedded = service.open_embedded_collection("sessions")  # what service.py uses without MONGO_URL
    dict_collection = DictCollection()
    return [InProcessApp("bare Bottle", bare.make_app()),
            InProcessApp("service, embedded store", make_service_app(embedded), embedded._collection),
            InProcessApp("service, dict collection", make_service_app(dict_collection), dict_collection)]


def section_in_process(mode):
    apps = in_process_apps()
    samples = {(a.label, k): [] for a in apps for k in REQUESTS}
    for _ in range(mode["inproc_reps"]):
        for kind in REQUESTS:
            for app in apps:
                samples[(app.label, kind)].append(app.time_batch(kind, mode["batch"]))
    median = {key: statistics.median(v) for key, v in samples.items()}
    rows = []
    for kind in REQUESTS:
        base = median[("bare Bottle", kind)]
        for app in apps:
            us = median[(app.label, kind)]
            rows.append([kind, app.label, f"{us:.1f}", f"{us / base:.2f}x", "-" if app.label == "bare Bottle"
                         else f"{us - base:.1f}"])
    notes = [f"Median of {mode['inproc_reps']} interleaved batches of {mode['batch']} WSGI calls; "
             "overhead = the session layer's microseconds beyond bare Bottle on the same route "
             "(no access log, no server, no sockets)."]
    result = {f"{label} | {kind}": us for (label, kind), us in median.items()}
    t = table("2. In-process cost per request (microseconds)",
              ["request", "app", "us/request", "vs bare", "session overhead us"], rows, notes)
    overhead = {store: median[(f"service, {store}", "logged-in read")] - median[("bare Bottle", "logged-in read")]
                for store in ("embedded store", "dict collection")}
    return t, {"us": result, "overhead_logged_in_read": overhead}


def section_store_size(mode):
    """Logged-in read on the embedded store holding more sessions: mongomock scans them all."""
    rows, result = [], {}
    base = None
    for size in mode["sizes"]:
        embedded = service.open_embedded_collection("sessions")
        expires = sessions.to_datetime(time.time() + 3600)
        if size > 1:  # other visitors' sessions, stored before ours: a lookup meets them first
            embedded._collection.insert_many([{"_id": f"other-{i}", "expires": expires, "session": "{}"}
                                              for i in range(size - 1)])
        app = InProcessApp("service, embedded store", make_service_app(embedded), embedded._collection)
        n = max(5, mode["batch"] // max(1, size // 200))
        us = statistics.median(app.time_batch("logged-in read", n) for _ in range(3))
        base = base or us
        result[size] = us
        rows.append([str(size), f"{us:.1f}", f"{us / base:.1f}x"])
    notes = ["The embedded store is mongomock, which by itself tests stored documents one by one on every "
             "query; service.EmbeddedCollection looks sessions up by _id instead, so a read should not grow "
             "with the store. Here our session is the last one stored. The other runs start from one stored session."]
    return table("2b. Embedded store: logged-in read vs sessions stored", ["sessions stored", "us/request", "vs 1"],
                 rows, notes), result


# --- 3. HTTP throughput with wrk ---

LOGIN_LUA = 'wrk.method = "POST"\nwrk.body = \'{"name": "Alice"}\'\nwrk.headers["Content-Type"] = "application/json"\n'
SEED_PEER = {  # each server's Node counterpart on the same kind of store
    "bare Bottle (waitress)": "Node seed, MemoryStore",
    "service, embedded store": "Node seed, MemoryStore",
    "service, wire server": "Node seed, connect-mongo (wire)",
    "Node seed, MemoryStore": "Node seed, MemoryStore",
    "Node seed, connect-mongo (wire)": "Node seed, connect-mongo (wire)",
    "Flask-Session (wire)": "Node seed, connect-mongo (wire)",
}


def parse_duration(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[unit]  # milliseconds


def run_wrk(port, kind, cookie, seconds, lua_path, pids):
    """One wrk run; returns req/s, p50/p99 ms, non-2xx count, CPU seconds per process."""
    argv = ["wrk", "-t1", "-c16", f"-d{seconds}s", "--latency", f"http://127.0.0.1:{port}/"
            + ("" if kind == "login" else "name")]
    if kind == "login":
        argv[1:1] = ["-s", lua_path]
    elif kind == "logged-in read":
        argv[1:1] = ["-H", f"Cookie: {cookie}"]
    before = {name: cpu_seconds(pid) for name, pid in pids.items()}
    started = time.monotonic()
    wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = wrk.stdout.read()
    _, status, usage = os.wait4(wrk.pid, 0)
    wall = time.monotonic() - started
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    cpu["wrk"] = usage.ru_utime + usage.ru_stime
    if status != 0 or "Requests/sec" not in output:
        raise RuntimeError(f"wrk failed ({status}):\n{output}")
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", output, re.M))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "p50_ms": parse_duration(latency["50"]), "p99_ms": parse_duration(latency["99"]),
            "non2xx": int(bad.group(1)) if bad else 0, "socket_errors": errors.group(1) if errors else "",
            "cpu_pct": {name: 100 * s / wall for name, s in cpu.items()}, "wall": wall}


class HttpTarget:
    """A server under load: its process, its logged-in cookie, and how to reset its store."""

    def __init__(self, label, start, wire=None, db=None):
        self.label, self.start, self.wire, self.db = label, start, wire, db
        self.server = start()
        self.login()

    def login(self):
        status, _, self.cookie = http_request(self.server.port, "POST", "/", NAME_BODY)
        if status != 200:
            raise RuntimeError(f"{self.label}: login answered {status}")
        self.cookie = self.cookie or f"{COOKIE}=any"
        if self.wire:
            with pymongo.MongoClient(self.wire.url) as client:
                self.keep = [d["_id"] for d in client[self.db]["sessions"].find({}, {"_id": 1})]

    def pids(self):
        pids = {"server": self.server.pid}
        if self.wire:
            pids["wire server"] = self.wire.pid
        return pids

    def reset(self, kind):
        """Back to the one logged-in session: delete what the run stored, or restart an embedded store."""
        if self.wire:
            with pymongo.MongoClient(self.wire.url) as client:
                client[self.db]["sessions"].delete_many({"_id": {"$nin": self.keep}})
        elif self.label == "service, embedded store" and kind == "login":
            self.server.stop()
            self.server = self.start()
            self.login()


def verdict(cpu):
    """Name the process that limited the run: one near a full core, or both cores busy."""
    busiest = max(cpu, key=cpu.get)
    if cpu[busiest] >= 85:
        return f"{busiest} ({cpu[busiest]:.0f}% of a core)"
    if sum(cpu.values()) >= 170:
        return f"both cores (total {sum(cpu.values()):.0f}%)"
    return f"none saturated (busiest: {busiest} {cpu[busiest]:.0f}%)"


def section_http(mode, targets, out_dir, kinds_=tuple(REQUESTS)):
    lua = os.path.join(out_dir, "login.lua")
    with open(lua, "w") as f:
        f.write(LOGIN_LUA)
    runs = {(t.label, k): [] for t in targets for k in kinds_}
    for rep in range(mode["reps"]):
        for kind in kinds_:
            for t in targets:
                if rep == 0 and mode["warmup"]:
                    run_wrk(t.server.port, kind, t.cookie, mode["warmup"], lua, t.pids())
                    t.reset(kind)
                runs[(t.label, kind)].append(run_wrk(t.server.port, kind, t.cookie, mode["duration"], lua, t.pids()))
                t.reset(kind)
    results = {}
    for (label, kind), rs in runs.items():
        results[(label, kind)] = {
            "rps": statistics.median(r["rps"] for r in rs), "p50_ms": statistics.median(r["p50_ms"] for r in rs),
            "p99_ms": statistics.median(r["p99_ms"] for r in rs), "non2xx": sum(r["non2xx"] for r in rs),
            "socket_errors": [r["socket_errors"] for r in rs if r["socket_errors"]],
            "cpu_pct": {p: statistics.median(r["cpu_pct"][p] for r in rs) for p in rs[0]["cpu_pct"]},
            "runs_rps": [r["rps"] for r in rs]}
    labels = [t.label for t in targets]
    rows = []
    for kind in kinds_:
        bare_rps = results.get(("bare Bottle (waitress)", kind), {}).get("rps")
        for label in labels:
            r = results[(label, kind)]
            seed = results.get((SEED_PEER[label], kind), {}).get("rps")
            cpu = ", ".join(f"{p} {v:.0f}%" for p, v in r["cpu_pct"].items())
            rows.append([kind, label, f"{r['rps']:.0f}", f"{r['rps'] / bare_rps:.2f}x" if bare_rps else "-",
                         f"{r['rps'] / seed:.2f}x" if seed else "-", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                         cpu, verdict(r["cpu_pct"])])
    notes = [f"wrk -t1 -c16, {mode['duration']} s per run, {mode['reps']} interleaved repetition(s), medians; "
             "'vs seed' compares with the Node seed app on the same kind of store (MemoryStore for in-memory "
             "rows, connect-mongo on the same wire server for wire rows). CPU: % of one core during the run.",
             "The service runs as `python service.py` (with its access log); anonymous reads answer 404 "
             "everywhere but on the Node seed, which answers 404 and stores a new session."]
    bad = [f"{label} {kind}: {r['non2xx']} non-2xx" for (label, kind), r in results.items()
           if r["non2xx"] and kind != "anonymous read"]
    notes += [f"WARNING {b}" for b in bad]
    t = table("3. HTTP throughput on loopback (wrk)",
              ["request", "server", "req/s", "vs bare", "vs seed", "p50 ms", "p99 ms", "CPU", "limited by"],
              rows, notes)
    return t, {f"{label} | {kind}": r for (label, kind), r in results.items()}


def start_http_targets(mode, wire, node_dir, smoke, skipped):
    py = sys.executable
    service_py = os.path.join(ROOT, "service.py")
    env = {"SESSION_SECRET": SECRET}
    plan = [("bare Bottle (waitress)", lambda: Process("bare", [py, os.path.join(BENCH, "bare.py")], {}), None),
            ("service, embedded store", lambda: Process("service", [py, service_py], env), None)]
    if not smoke:
        plan.append(("service, wire server",
                     lambda: Process("service", [py, service_py], {**env, "MONGO_URL": wire.url + "svc"}), "svc"))
        if node_dir:
            plan += [("Node seed, MemoryStore", lambda: NodeProcess("node", node_dir, {}), None),
                     ("Node seed, connect-mongo (wire)",
                      lambda: NodeProcess("node", node_dir, {"MONGO_URL": wire.url + "node"}), "node")]
        if "Flask-Session (wire)" not in skipped:
            plan.append(("Flask-Session (wire)", lambda: Process(
                "flask", [py, os.path.join(BENCH, "flask_peer.py")], {"MONGO_URL": wire.url}), "flask"))
    targets = []
    try:
        for label, start, db in plan:
            targets.append(HttpTarget(label, start, wire if db else None, db))
    except BaseException:
        for t in targets:
            t.server.stop()
        raise
    return targets


# --- Targets, chart, report ---


def targets_table(store, inproc, http):
    def ratio(a, b, kind):
        if not http or f"{a} | {kind}" not in http or f"{b} | {kind}" not in http:
            return None
        return http[f"{a} | {kind}"]["rps"] / http[f"{b} | {kind}"]["rps"]

    rows = [["store commands within the limits (table 1)", "all rows", "all rows" if store["met"] else "some rows",
             "met" if store["met"] else "MISSED"]]
    for store_name, limit in (("embedded store", 60), ("dict collection", 15)):
        us = inproc["overhead_logged_in_read"][store_name]
        rows.append([f"in-process session overhead, logged-in read, {store_name}", f"< {limit} us", f"{us:.1f} us",
                     "met" if us < limit else "MISSED"])
    checks = [("embedded store, logged-in read vs bare Bottle", "service, embedded store", "bare Bottle (waitress)",
               "logged-in read", 0.85),
              ("embedded store, anonymous read vs bare Bottle", "service, embedded store", "bare Bottle (waitress)",
               "anonymous read", 0.85),
              ("wire server, logged-in read vs Node seed (connect-mongo)", "service, wire server",
               "Node seed, connect-mongo (wire)", "logged-in read", 1.5),
              ("wire server, logged-in read vs Flask-Session", "service, wire server", "Flask-Session (wire)",
               "logged-in read", 2.0)]
    for what, a, b, kind, want in checks:
        got = ratio(a, b, kind)
        rows.append([what, f">= {want}x req/s", "not run" if got is None else f"{got:.2f}x",
                     "-" if got is None else "met" if got >= want else "MISSED"])
    return table("Targets", ["target", "wanted", "got", "verdict"], rows)


def write_chart(path, inproc, http):
    """Two panels: HTTP requests per second by server, and in-process microseconds per request."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("In-process, microseconds per request (lower is better)", inproc["us"], "us/request")]
    if http:
        panels.insert(0, ("HTTP on loopback, requests per second (higher is better)", http, "req/s"))
    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 4.2 * len(panels)), squeeze=False)
    for ax, (title, data, ylabel) in zip(axes[:, 0], panels):
        servers = list(dict.fromkeys(key.split(" | ")[0] for key in data))
        width = 0.8 / len(servers)
        for i, server in enumerate(servers):
            values = [data.get(f"{server} | {k}") for k in REQUESTS]
            values = [(v["rps"] if isinstance(v, dict) else v) if v is not None else 0 for v in values]
            bars = ax.bar([x + i * width for x in range(len(REQUESTS))], values, width, label=server)
            ax.bar_label(bars, fmt="%.0f" if ylabel == "req/s" else "%.1f", fontsize=7)
        ax.set_xticks([x + width * (len(servers) - 1) / 2 for x in range(len(REQUESTS))], list(REQUESTS))
        ax.set_title(title)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine():
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "")
    except OSError:
        pass
    tools = {}
    for name, argv in (("node", ["node", "--version"]), ("wrk", ["wrk", "--version"])):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            tools[name] = (out.stdout + out.stderr).split("\n")[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            tools[name] = "not found"
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "date": datetime.date.today().isoformat(),
            **tools}


def performance_markdown(tables, info, mode_name):
    lines = ["## Performance", "",
             "What a request costs here, beside the seed's Node app (express-session + connect-mongo with the "
             "seed's options), Flask + Flask-Session (MongoDB backend) and bare Bottle without sessions. "
             "All of them ran in one run on one machine; the MongoDB is tests/wireserver.py (mongomock over "
             "the wire protocol), so absolute store latencies are not a real MongoDB's, but the command "
             "counts are what a real one would see.", "",
             "![Requests per second and in-process cost](bench/chart.png)", "",
             f"Machine: {info['cores']} cores ({info['cpu'] or 'unknown CPU'}), {info['system']}, "
             f"Python {info['python']}, Node {info['node']}, {info['wrk']}; {info['date']}, "
             f"`bench/run.py` {mode_name} mode.", "",
             "Reproduce:", "", "```sh",
             "pip install -r requirements-bench.txt   # Flask-Session, matplotlib; wrk and node from your OS",
             "python bench/run.py                     # --quick for a one-minute run", "```", ""]
    return "\n".join(lines) + "\n" + "\n".join(as_markdown(t) for t in tables)


# --- Main ---


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="short runs, one repetition (about a minute)")
    group.add_argument("--smoke", action="store_true",
                       help="seconds; needs only requirements-dev.txt (no Node, no Flask, no chart without matplotlib)")
    parser.add_argument("--out", default=os.path.join(BENCH, "out"), help="where results go (default bench/out)")
    args = parser.parse_args(argv)
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "default"
    mode = MODES[mode_name]
    os.makedirs(args.out, exist_ok=True)
    info = machine()
    print(f"bench/run.py, {mode_name} mode: {info['cores']} cores, Python {info['python']}, "
          f"Node {info['node']}, {info['wrk']}\n", flush=True)

    skipped, started = {}, []
    if args.smoke:
        node_dir = None
        skipped.update({"Node seed (connect-mongo)": "smoke mode", "Flask-Session (MongoDB)": "smoke mode"})
    else:
        node_dir, why = install_node_app(args.out)
        if why:
            skipped["Node seed (connect-mongo)"] = why
        try:
            import flask_session  # noqa: F401
        except ImportError:
            skipped["Flask-Session (MongoDB)"] = skipped["Flask-Session (wire)"] = \
                "Flask-Session not installed (pip install -r requirements-bench.txt)"
    wire = wireserver.start_wire_server(ttl_monitor=0)
    started.append(wire)
    tables, results = [], {"machine": info, "mode": mode_name}
    try:
        peers = dict(skipped)
        if node_dir:
            peers["Node seed (connect-mongo)"] = NodeProcess("node", node_dir, {"MONGO_URL": wire.url + "countnode"})
            started.append(peers["Node seed (connect-mongo)"])
        if "Flask-Session (MongoDB)" not in skipped:
            peers["Flask-Session (MongoDB)"] = Process("flask", [sys.executable, os.path.join(BENCH, "flask_peer.py")],
                                                       {"MONGO_URL": wire.url, "FLASK_SESSION_DB": "countflask"})
            started.append(peers["Flask-Session (MongoDB)"])
        t, results["store_commands"] = section_store_ops(wire, peers)
        tables.append(t)
        print(as_text(t), flush=True)
        for peer in started[1:]:
            peer.stop()
        del started[1:]

        t, results["in_process"] = section_in_process(mode)
        tables.append(t)
        print(as_text(t), flush=True)
        t, results["embedded_store_size"] = section_store_size(mode)
        tables.append(t)
        print(as_text(t), flush=True)

        http = None
        if shutil.which("wrk") is None:
            print("3. HTTP throughput: skipped, wrk not found (apt-get install wrk)\n", flush=True)
        else:
            targets = start_http_targets(mode, wire, node_dir, args.smoke, skipped)
            try:
                t, http = section_http(mode, targets, args.out,
                                       ("logged-in read",) if args.smoke else tuple(REQUESTS))
            finally:
                for target in targets:
                    target.server.stop()
            tables.append(t)
            print(as_text(t), flush=True)
            results["http"] = http
    finally:
        for process in started:
            process.stop()

    t = targets_table(results["store_commands"], results["in_process"], http)
    tables.append(t)
    print(as_text(t), flush=True)
    results["tables"] = tables
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(args.out, "PERFORMANCE.md"), "w") as f:
        f.write(performance_markdown(tables, info, mode_name))
    try:
        chart = os.path.join(args.out, "chart.png")
        write_chart(chart, results["in_process"], http)
        if mode_name == "default":
            shutil.copyfile(chart, os.path.join(BENCH, "chart.png"))  # the one README.md shows
        print(f"wrote {args.out}/results.json, PERFORMANCE.md, chart.png")
    except ImportError:
        print(f"wrote {args.out}/results.json, PERFORMANCE.md; chart skipped: matplotlib not installed "
              "(pip install -r requirements-bench.txt)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
