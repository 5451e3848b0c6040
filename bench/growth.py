"""Growth: a logged-in read and memory against sessions stored, in a fresh child process per size.

    python bench/growth.py 100000 --reads 3000     # prints one JSON line

The child builds the service's app on sessions.MemoryStore, logs one user in
through the app, fills the store directly through the store API with N - 1
more sessions of the same shape (a realistic stored JSON: the cookie object,
the user, the absolute deadline; each with its own id, name and expiry), and
reports the RSS before and after the fill (VmRSS from /proc/self/status), the
mean stored JSON size, and the microseconds of each of `reads` logged-in
reads, in-process (WSGI calls, no sockets): median and p99.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(BENCH), BENCH]

TEMPLATE_NAME = "User 0000000"  # the name the template session logs in with; each filler gets its own


def rss_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def child(n, reads):
    import inproc
    import limit
    import sessions
    store = inproc.memory_store()
    app = inproc.service_app(store)
    status, cookie = inproc.call(app, "POST", "/", body=json.dumps({"name": TEMPLATE_NAME}).encode())
    assert status == 200 and cookie, f"login answered {status}"
    sid = limit.session_id(cookie)
    template, expires = store.load(sid, time.time())
    sizes = len(template.encode())
    before = rss_bytes()
    for i in range(1, n):
        stored = template.replace(TEMPLATE_NAME, f"User {i:07d}")
        sizes += len(stored.encode())
        store.insert(sessions.new_id(), stored, expires + i % 3600)
    after = rss_bytes()
    times = sorted(inproc.per_call_us(app, "logged-in read", cookie, reads))
    print(json.dumps({"sessions": n, "rss_before": before, "rss_after": after, "json_mean": sizes / n,
                      "us_median": times[len(times) // 2], "us_p99": times[int(len(times) * 0.99)]}))


def measure(sizes, reads, rounds):
    """One result per size: the median of `rounds` children per size, run in interleaved rounds
    (one child's figure alone moved by 1.5x from run to run on this shared machine)."""
    runs = {n: [] for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            done = subprocess.run([sys.executable, __file__, str(n), "--reads", str(reads)], capture_output=True,
                                  text=True, timeout=600)
            if done.returncode != 0:
                raise RuntimeError(f"growth child for {n} sessions failed:\n{done.stderr[-3000:]}")
            runs[n].append(json.loads(done.stdout.splitlines()[-1]))
    return [{key: statistics.median_low(run[key] for run in runs[n]) for key in runs[n][0]} for n in sizes]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sessions", type=int)
    parser.add_argument("--reads", type=int, default=3000)
    args = parser.parse_args()
    child(args.sessions, args.reads)
