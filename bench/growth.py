"""Growth: a logged-in read and memory against sessions stored, in a fresh child process per size.

    python -m bench.growth 100000 --reads 3000     # prints one JSON line

The child builds the service's app on sessions.MemoryStore, logs one user in through the app,
fills the store through the store API with N - 1 more sessions of the same shape (the stored
JSON with its own name, an expiry of its own), and reports the RSS before and after the fill
(VmRSS from /proc/self/status), the mean stored JSON size, and the microseconds of `reads`
logged-in reads in process (WSGI calls, no sockets) spread over the sessions, each with an
unrelated cookie that changes (bench/traffic.py): median and p99.  And the microseconds of
listing one user's sessions (SessionInterface.list_sessions, as GET /sessions does), whatever
else is stored: median.  Every session has an owner of its own (its name).
"""

import argparse
import itertools
import json
import os
import random
import statistics
import subprocess
import sys
import time
import urllib.parse

from bench import traffic

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def rss_bytes():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))


def child(n, reads):
    import service
    import sessions
    store = sessions.MemoryStore()
    interface = sessions.SessionInterface(store, sessions.Options(secrets=(traffic.SECRET,)))
    app = service.outermost(service.make_app(interface), access_log=open(os.devnull, "w"))
    [cookie] = traffic.fill(app, 1)  # "User 000000"
    sid = interface.read_cookie(cookie)[1]
    template = store.load(sid, time.time())
    sampled = set(random.sample(range(1, n), min(n - 1, reads)))
    ids, sizes, before = [sid], len(template.text.encode()), rss_bytes()
    for i in range(1, n):
        key, text = sessions.new_id(), template.text.replace("User 000000", f"User {i:06d}")
        sizes += len(text.encode())
        store.insert(key, template._replace(text=text, owner=f"User {i:06d}",
                                            expires=template.expires + i % 3600))
        if i in sampled:
            ids.append(key)
    after = rss_bytes()
    cookies = [f"{traffic.COOKIE}={urllib.parse.quote('s:' + sessions.sign(i, traffic.SECRET), safe='')}" for i in ids]
    times, clock = [], time.perf_counter_ns
    for _, _, headers, _ in itertools.islice(traffic.requests("logged-in read", cookies), reads):
        started = clock()
        status, _ = traffic.wsgi(app, "GET", "/name", headers["Cookie"])
        times.append((clock() - started) / 1000)
        assert status == 200, status
    times.sort()
    listing = []
    for _ in range(1000):
        started = clock()
        assert len(interface.list_sessions("User 000000")) == 1
        listing.append((clock() - started) / 1000)
    print(json.dumps({"sessions": n, "rss_before": before, "rss_after": after, "json_mean": sizes / n,
                      "us_median": times[len(times) // 2], "us_p99": times[int(len(times) * 0.99)],
                      "list_us": statistics.median(listing)}))


def measure(sizes, reads, rounds):
    """One result per size: the median of `rounds` children per size, run in interleaved rounds
    (one child's figure alone moved by 1.5x from run to run on this shared machine)."""
    runs = {n: [] for n in sizes}
    for _ in range(rounds):
        for n in sizes:
            done = subprocess.run([sys.executable, "-m", "bench.growth", str(n), "--reads", str(reads)], cwd=ROOT,
                                  capture_output=True, text=True, timeout=600)
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
