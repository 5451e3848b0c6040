"""HTTP throughput: every target a child process on 127.0.0.1, loaded by wrk, one run at a time.

Each target is started with tests/child.py's Child and prints the port it
bound (port 0). wrk -t2 loads one target at a time (-c connections, whole
seconds), repetitions interleaved across targets; medians. CPU seconds of the
target, the wire server and wrk come from /proc/PID/stat and wait4, so each
row says which process was busy: with two cores, any of them can be the limit.
This process is counted too: it reads the targets' output (the service's access log).
"""

import http.client
import os
import re
import statistics
import subprocess
import sys
import time

import pymongo

from child import Child
import peer

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
SECRET = "bench-secret"
NAME_BODY = b'{"name": "Alice"}'
LOGIN_LUA = 'wrk.method = "POST"\nwrk.body = \'{"name": "Alice"}\'\nwrk.headers["Content-Type"] = "application/json"\n'
LISTENING = r"listening on http://\S+:(\d+) "  # the service's startup line
KINDS = ("logged-in read", "anonymous read", "login")  # GET /name with a session, GET /name without, POST / JSON


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def login(port):
    """POST / with the JSON name; the cookie pair it set (or None)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("POST", "/", body=NAME_BODY, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        response.read()
    finally:
        conn.close()
    if response.status != 200:
        raise RuntimeError(f"login on port {port} answered {response.status}")
    cookie = response.getheader("Set-Cookie")
    return cookie.split(";")[0] if cookie else None


class Target:
    """One server under load: its child process, a logged-in cookie, the kinds it answers, its wire database."""

    def __init__(self, label, argv, env=None, *, ready=peer.READY, cwd=None, wire=None, db=None, kinds=KINDS,
                 cookie=None):
        self.label, self.wire, self.db, self.kinds = label, wire, db, kinds
        self.child = Child(argv, env=env, ready=ready, cwd=cwd, timeout=30)
        try:
            self.cookie = cookie or ("login" in kinds and login(self.child.port)) or "example.sid=any"
            self.keep = self._ids() if wire else None
        except BaseException:
            self.child.kill()
            raise

    def _ids(self):
        with pymongo.MongoClient(self.wire.url) as client:
            return [d["_id"] for d in client[self.db]["sessions"].find({}, {"_id": 1})]

    def reset(self):
        """Back to the sessions stored at the start (a run's logins would slow the wire server's later runs),
        and forget the access lines read meanwhile."""
        self.child.lines.clear()
        if self.wire:
            with pymongo.MongoClient(self.wire.url) as client:
                client[self.db]["sessions"].delete_many({"_id": {"$nin": self.keep}})

    def pids(self):
        """The processes whose CPU a run reports; "bench" is this process, which reads the targets' output."""
        return {"server": self.child.pid, **({"wire server": self.wire.pid} if self.wire else {}), "bench": os.getpid()}

    def stop(self):
        self.child.stop()


def start_targets(wire, node_dir, threads, wanted):
    """The targets named in `wanted` (labels below), in that order; stopped again if one fails to start."""
    py, threads_arg = sys.executable, ["--threads", str(threads)]
    service = [py, os.path.join(ROOT, "service.py")]
    env = {"HOST": "127.0.0.1", "PORT": "0", "SESSION_SECRET": SECRET, "THREADS": str(threads)}
    node = ["node", "app.js"]
    node_ready = r"^LISTENING (\d+)"
    plans = {
        "bare Bottle": lambda: Target("bare Bottle", [py, os.path.join(BENCH, "bare.py"), *threads_arg]),
        "service, embedded": lambda: Target("service, embedded", service, env, ready=LISTENING),
        "service, wire": lambda: Target("service, wire", service, {**env, "MONGO_URL": wire.url + "svc"},
                                        ready=LISTENING, wire=wire, db="svc"),
        "limit app (wire)": lambda: Target(  # reads the wire service's own session document
            "limit app (wire)", [py, os.path.join(BENCH, "limit.py"), *threads_arg], {"MONGO_URL": wire.url + "svc"},
            wire=wire, db="svc", kinds=KINDS[:2], cookie=by_label["service, wire"].cookie),
        "Node seed, MemoryStore": lambda: Target("Node seed, MemoryStore", node, env, ready=node_ready, cwd=node_dir),
        "Node seed, connect-mongo (wire)": lambda: Target(
            "Node seed, connect-mongo (wire)", node, {**env, "MONGO_URL": wire.url + "node"}, ready=node_ready,
            cwd=node_dir, wire=wire, db="node"),
        "Flask-Session (wire)": lambda: Target(
            "Flask-Session (wire)", [py, os.path.join(BENCH, "flask_peer.py"), *threads_arg],
            {"MONGO_URL": wire.url, "FLASK_SESSION_DB": "flask"}, wire=wire, db="flask"),
    }
    by_label = {}
    try:
        for label in wanted:
            by_label[label] = plans[label]()
    except BaseException:
        for target in by_label.values():
            target.child.kill()
        raise
    return list(by_label.values())


def parse_ms(text):
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1, "s": 1e3, "m": 6e4}[unit]


def run_wrk(target, kind, seconds, connections, lua):
    """One wrk run; req/s, p50/p99 ms, non-2xx/3xx responses, % of a core per process."""
    url = f"http://127.0.0.1:{target.child.port}/" + ("" if kind == "login" else "name")
    extra = {"login": ["-s", lua], "logged-in read": ["-H", f"Cookie: {target.cookie}"]}.get(kind, [])
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", *extra, url]
    pids = target.pids()
    before, started = {name: cpu_seconds(pid) for name, pid in pids.items()}, time.monotonic()
    wrk = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = wrk.stdout.read()
    _, status, usage = os.wait4(wrk.pid, 0)
    wall = time.monotonic() - started
    cpu = {name: cpu_seconds(pid) - before[name] for name, pid in pids.items()}
    cpu["wrk"] = usage.ru_utime + usage.ru_stime
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)\s*$", output, re.M))
    if status != 0 or "Requests/sec" not in output or len(latency) != 2:
        raise RuntimeError(f"wrk failed ({status}) on {target.label} {kind}:\n{output}")
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1)),
            "requests": int(re.search(r"(\d+) requests in", output).group(1)),
            "p50_ms": parse_ms(latency["50"]), "p99_ms": parse_ms(latency["99"]),
            "non2xx": int(bad.group(1)) if bad else 0, "cpu_pct": {n: 100 * s / wall for n, s in cpu.items()}}


def measure(targets, kinds, *, reps, seconds, connections=16, warmup=1, lua_dir):
    """{(label, kind): medians over `reps` interleaved runs} for every target that answers the kind."""
    lua = os.path.join(lua_dir, "login.lua")
    with open(lua, "w") as f:
        f.write(LOGIN_LUA)
    runs = {}
    for rep in range(reps):
        for kind in kinds:
            for target in (t for t in targets if kind in t.kinds):
                if rep == 0 and warmup:
                    run_wrk(target, kind, warmup, connections, lua)
                runs.setdefault((target.label, kind), []).append(run_wrk(target, kind, seconds, connections, lua))
                target.reset()
    median = statistics.median
    return {key: {"rps": median(r["rps"] for r in rs), "p50_ms": median(r["p50_ms"] for r in rs),
                  "p99_ms": median(r["p99_ms"] for r in rs), "non2xx": sum(r["non2xx"] for r in rs),
                  "requests": sum(r["requests"] for r in rs),
                  "runs_rps": [r["rps"] for r in rs],
                  "cpu_pct": {p: median(r["cpu_pct"][p] for r in rs) for p in rs[0]["cpu_pct"]}}
            for key, rs in runs.items()}
