"""HTTP throughput under wrk, for context: each target a child process on 127.0.0.1, one run at a time.

Each target is started with tests/support/child.py's Child, binds port 0 and prints the port it
got; the ones with sessions are then given `sessions` of them through their own login route.
wrk -t2 sends bench/traffic.py's traffic from a Lua script (a request() that picks a session
cookie per request and counts the unrelated cookie), repetitions interleaved across targets;
medians.  CPU seconds of the target, the wire server and wrk come from /proc/PID/stat and
wait4, so each row says which process was busy: with two cores any of them can be the limit.
This process counts too: it reads the targets' output (the access lines).
"""

import os
import re
import statistics
import subprocess
import sys
import time

from bench import traffic
from tests.support.child import Child

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LISTENING = r"listening on http://\S+:(\d+) "  # the service's startup line, and so its yardsticks'
LUA = """
local kind, threads = "%(kind)s", 0
function setup(thread)
  threads = threads + 1
  thread:set("id", threads)
end
function init(args)
  cookies, n = {}, 0
  for line in io.lines("%(cookies)s") do cookies[#cookies + 1] = line end
  math.randomseed(id)
end
function request()
  n = n + 1
  local cookie = "_ga=GA1.2." .. id .. "." .. n
  if kind == "logged-in read" then cookie = cookie .. "; " .. cookies[math.random(#cookies)] end
  if kind == "login" then
    local body = '{"name": "User ' .. id .. "-" .. n .. '"}'
    return wrk.format("POST", "/", {Cookie = cookie, ["Content-Type"] = "application/json"}, body)
  end
  return wrk.format("GET", "/name", {Cookie = cookie})
end
"""


def cpu_seconds(pid):
    """utime + stime of a process, from /proc/PID/stat (fields 14 and 15, in clock ticks)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Target:
    """One server under load: its child process, its session cookies, the kinds it answers."""

    def __init__(self, label, argv, env=None, *, ready=LISTENING, cwd=ROOT, wire=None, kinds=traffic.KINDS,
                 cookies=None, sessions=0):
        self.label, self.wire, self.kinds = label, wire, kinds
        self.child = Child(argv, env=env, ready=ready, cwd=cwd, timeout=30)
        try:
            self.cookies = cookies or traffic.login_over_http(self.child.port, sessions)
        except BaseException:
            self.child.kill()
            raise

    def pids(self):
        """The processes whose CPU a run reports; "bench" is this process, which reads the targets' output."""
        return {"server": self.child.pid, **({"wire server": self.wire.pid} if self.wire else {}), "bench": os.getpid()}

    def stop(self):
        self.child.stop()


def start_targets(wanted, wire, node_dir, threads, sessions, variants=()):
    """The targets named in `wanted` (labels below, or a variant's), in that order; all stopped if one fails."""
    py = sys.executable
    # The service's defaults but the login limit: every login here comes from 127.0.0.1.
    env = {"HOST": "127.0.0.1", "PORT": "0", "SESSION_SECRET": traffic.SECRET, "THREADS": str(threads),
           "LOGIN_RATE_LIMIT": "1000000"}
    node, node_ready = ["node", "app.js"], r"^LISTENING (\d+)"
    plans = {
        "hardened bare": lambda: Target("hardened bare", [py, "-m", "bench.bare"], env,
                                        cookies=traffic.fake_cookies(sessions)),
        "service, embedded": lambda: Target("service, embedded", [py, "service.py"], env, sessions=sessions),
        "service, wire": lambda: Target("service, wire", [py, "service.py"], {**env, "MONGO_URL": wire.url + "svc"},
                                        wire=wire, sessions=sessions),
        "limit app (wire)": lambda: Target(  # reads the wire service's own sessions
            "limit app (wire)", [py, "-m", "bench.limit"], {**env, "MONGO_URL": wire.url + "svc"}, wire=wire,
            cookies=by_label["service, wire"].cookies),
        "Node seed, MemoryStore": lambda: Target("Node seed, MemoryStore", node, env, ready=node_ready,
                                                 cwd=node_dir, sessions=sessions),
        "Node seed, connect-mongo (wire)": lambda: Target(
            "Node seed, connect-mongo (wire)", node, {**env, "MONGO_URL": wire.url + "node"}, ready=node_ready,
            cwd=node_dir, wire=wire, sessions=sessions),
        "Flask-Session (wire)": lambda: Target(
            "Flask-Session (wire)", [py, "-m", "bench.flask_peer"], {**env, "MONGO_URL": wire.url + "flask"},
            ready=r"^READY (\d+)$", wire=wire, sessions=sessions),
    }
    for label, code in variants:  # the embedded service with code run after importing it: an A/B
        plans[label] = lambda label=label, code=code: Target(
            label, [py, "-c", f"import sys, service, sessions\n{code}\nsys.exit(service.main())"], env,
            sessions=sessions)
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


def run_wrk(target, kind, seconds, connections, lua_dir):
    """One wrk run; req/s, p50/p99 ms, non-2xx/3xx responses, % of a core per process."""
    slug = re.sub(r"\W+", "-", f"{target.label}-{kind}")
    cookies, script = os.path.join(lua_dir, slug + ".txt"), os.path.join(lua_dir, slug + ".lua")
    with open(cookies, "w") as f:
        f.write("\n".join(target.cookies) + "\n")
    with open(script, "w") as f:
        f.write(LUA % {"kind": kind, "cookies": cookies})
    argv = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", script,
            f"http://127.0.0.1:{target.child.port}/"]
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
    runs = {}
    for rep in range(reps):
        for kind in kinds:
            for target in (t for t in targets if kind in t.kinds):
                if rep == 0 and warmup:
                    run_wrk(target, kind, warmup, connections, lua_dir)
                runs.setdefault((target.label, kind), []).append(run_wrk(target, kind, seconds, connections, lua_dir))
                target.child.lines.clear()  # the access lines read meanwhile
    median = statistics.median
    return {key: {"rps": median(r["rps"] for r in rs), "p50_ms": median(r["p50_ms"] for r in rs),
                  "p99_ms": median(r["p99_ms"] for r in rs), "non2xx": sum(r["non2xx"] for r in rs),
                  "requests": sum(r["requests"] for r in rs), "runs_rps": [r["rps"] for r in rs],
                  "cpu_pct": {p: median(r["cpu_pct"][p] for r in rs) for p in rs[0]["cpu_pct"]}}
            for key, rs in runs.items()}
