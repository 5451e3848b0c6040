"""Instructions per request over HTTP: each server counted under valgrind, not timed.

    python bench/instructions.py      # about 8 minutes (valgrind from the OS); --smoke: under a minute

req/s on this shared 2-core VM moves by 30 % within an hour; instruction counts
do not (two runs of one target agree within 1 %).  Each target runs twice under
valgrind's cachegrind, once sent N requests and once N + M, one at a time over
one keep-alive connection; (I refs of the second - I refs of the first) / M is
what one request costs the whole server process: waitress, Bottle, the app.
bare / target is then the req/s ratio a CPU-bound server would reach.  The rows
between bare Bottle and the service add one layer each, so the differences say
what each layer costs: the service's serving (serve(): poll, strict framing),
outermost() (its three headers), the access line, the session layer.
"""

import argparse
import http.client
import os
import re
import signal
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), BENCH]

from child import Child  # noqa: E402
import over_http  # noqa: E402
import peer  # noqa: E402

PY = sys.executable
VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
REQUESTS = {"logged-in read": ("GET", "/name", None), "anonymous read": ("GET", "/name", None),
            "login": ("POST", "/", over_http.NAME_BODY)}
# One header more, added where the service's outermost() adds its three: after Bottle, before waitress.
ONE_HEADER = ("app = bare.make_app(); peer.serve(lambda env, start: app(env, lambda status, headers, exc=None: "
              "start(status, headers + [('X-Content-Type-Options', 'nosniff')], exc)))")
BARE_APP = "service.make_app = lambda interface: bare.make_app()"
TARGETS = {  # label -> (what runs after the imports, the service's or a peer's readiness line, kinds)
    "bare Bottle": ("peer.serve(bare.make_app())", peer.READY, tuple(REQUESTS)),
    "bare Bottle + one header": (ONE_HEADER, peer.READY, tuple(REQUESTS)),
    "service's serve(), bare app": (f"{BARE_APP}; service.outermost = lambda app, access_log=None: app",
                                    over_http.LISTENING, tuple(REQUESTS)),
    "+ outermost(), no access line": (f"{BARE_APP}; outer = service.outermost\n"
                                      "service.outermost = lambda app, access_log=None: outer(app)",
                                      over_http.LISTENING, tuple(REQUESTS)),
    "+ the access line": (BARE_APP, over_http.LISTENING, tuple(REQUESTS)),
    "the service, embedded": ("", over_http.LISTENING, tuple(REQUESTS)),
    "limit app (wire)": ("peer.serve(limit.make_app(pymongo.MongoClient(os.environ['MONGO_URL'])"
                         ".get_default_database()['sessions']))", peer.READY, tuple(REQUESTS)[:2]),
    "the service, wire": ("", over_http.LISTENING, tuple(REQUESTS)[:2]),
}
LIMIT_COOKIE = "example.sid=s%3Abench-limit.x"  # the limit app checks no signature; its document is put in below


def code_of(action, ready):
    imports = f"import os, sys; sys.path[:0] = [{ROOT!r}, {BENCH!r}]; import bare, limit, peer, pymongo, service\n"
    # As bench/peer.py and service.main() do: no "Task queue depth" line per queued request.
    quiet = "import logging; logging.getLogger('waitress.queue').setLevel(logging.ERROR)\n"
    # What the imports made, the cyclic GC never visits again: a full collection of that heap would
    # fall in one of a target's two runs and not the other (tens of thousands of instructions a request).
    frozen = "import gc; gc.freeze()\n"
    return imports + quiet + frozen + (action if ready == peer.READY else action + "\nsys.exit(service.main())")


def instructions(label, kind, count, env):
    """I refs of one run of the target: started under valgrind, sent `count` requests of `kind`, stopped."""
    action, ready, _ = TARGETS[label]
    with Child([*VALGRIND, PY, "-c", code_of(action, ready)], env=env, ready=ready, timeout=180, cwd=ROOT) as child:
        conn = http.client.HTTPConnection("127.0.0.1", child.port, timeout=120)
        headers = {"Content-Type": "application/json"}
        if kind == "logged-in read":
            headers["Cookie"] = LIMIT_COOKIE if label.startswith("limit") else over_http.login(child.port) or "a=1"
        method, path, body = REQUESTS[kind]
        for _ in range(count):
            conn.request(method, path, body, headers)
            response = conn.getresponse()
            response.read()
            expected = 404 if kind == "anonymous read" else 200
            if response.status != expected:
                raise RuntimeError(f"{label}, {kind}: {response.status}, expected {expected}")
        conn.close()
        time.sleep(0.5)  # the last access lines are written
        child.stop(signal.SIGINT, timeout=60)  # the service stops cleanly; a peer's KeyboardInterrupt ends it
    found = re.search(r"I\s+refs:\s+([\d,]+)", child.log())
    if not found:
        raise RuntimeError(f"{label}: no valgrind summary:\n{child.log()[-2000:]}")
    return int(found.group(1).replace(",", ""))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two targets, one kind, few requests (for the tests)")
    args = parser.parse_args(argv)
    first, more = (20, 200) if args.smoke else (100, 500)
    labels = ["bare Bottle", "the service, embedded"] if args.smoke else list(TARGETS)
    kinds = ["logged-in read"] if args.smoke else list(REQUESTS)
    import pymongo
    import wireserver
    wire = None if args.smoke else wireserver.start_wire_server()
    try:
        if wire:
            with pymongo.MongoClient(wire.url) as client:
                client.svc.sessions.insert_one({"_id": "bench-limit", "session": "{}"})
        env = {"HOST": "127.0.0.1", "PORT": "0", "SESSION_SECRET": over_http.SECRET, "THREADS": str(peer.THREADS)}
        per_request = {}
        for label in labels:
            target_env = {**env, "MONGO_URL": wire.url + "svc"} if "wire" in label else env
            for kind in (k for k in kinds if k in TARGETS[label][2]):
                runs = [instructions(label, kind, count, target_env) for count in (first, first + more)]
                per_request[label, kind] = (runs[1] - runs[0]) / more
                print(f"  {label}, {kind}: {per_request[label, kind]:,.0f}", file=sys.stderr, flush=True)
    finally:
        if wire:
            wire.stop()
    print(f"\nServer instructions per request over HTTP (valgrind, {more} requests beyond {first}), "
          "thousands; in brackets bare Bottle's count over this one\n")
    print("| target | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))
    for label in labels:
        cells = []
        for kind in kinds:
            count, base = per_request.get((label, kind)), per_request[labels[0], kind]
            cells.append("—" if count is None else f"{count / 1000:,.1f}k ({base / count:.2f})")
        print(f"| {label} | " + " | ".join(cells) + " |")
    if wire:  # the yardstick for the wire read and for every anonymous read: the limit app
        print()
        for label, kind in [("the service, wire", "logged-in read"), ("the service, wire", "anonymous read"),
                            ("the service, embedded", "anonymous read")]:
            ratio = per_request["limit app (wire)", kind] / per_request[label, kind]
            print(f"limit app / {label}, {kind}: {ratio:.2f}")
    return per_request


if __name__ == "__main__":
    main()
