"""Instructions per request, counted under valgrind: the verdict of the benchmarks.

    python -m bench.instructions            # this tree, every row and guard (about 5 minutes)
    python -m bench.instructions --smoke    # hardened bare and the service, logged-in reads (the tests)
    python -m bench.instructions --column old /tmp/old "" --column new . ""    # trees side by side
    python -m bench.instructions --column new . "" \\
        --column "new, RAND_bytes ids" . "sessions.new_id = ..." --kinds login    # an A/B

req/s on this shared 2-core VM moves by 30 % within an hour; these counts by about 2 %.  Each
target is a child process under valgrind's cachegrind, run twice: sent FIRST requests, then
FIRST + MORE, of bench/traffic.py's traffic, one at a time on one keep-alive connection.
(I refs of the second - I refs of the first) / MORE is what one request costs the whole
process: waitress, Bottle, the app, the access line.  A column is a tree (whose service.py and
sessions.py run) and code run in the target after importing them (for an A/B).  The
yardsticks, hardened bare (bench/bare.py) and the limit app (bench/limit.py), run on the
column's tree and are counted once per tree.  yardstick / service is the req/s ratio a server
limited by its own CPU would reach; each guard says whether it is met.
"""

import argparse
import compileall
import gc
import glob
import http.client
import itertools
import os
import re
import shutil
import signal
import sys
import tempfile
import time

from bench import traffic, wire
from tests.support.child import Child

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VALGRIND = ["valgrind", "--tool=cachegrind", "--cache-sim=no", "--cachegrind-out-file=/dev/null"]
LISTENING = r"listening on http://\S+:(\d+) "  # the service's startup line, and so its yardsticks'
BARE, LIMIT, EMBEDDED, WIRE = "hardened bare", "limit app (wire)", "service, embedded", "service, wire"
ENTRY = {BARE: "from bench import bare; sys.exit(bare.main())", EMBEDDED: "sys.exit(service.main())",
         LIMIT: "from bench import limit; sys.exit(limit.main())", WIRE: "sys.exit(service.main())"}
GUARDS = [(EMBEDDED, BARE, "logged-in read", 0.70), (EMBEDDED, BARE, "anonymous read", 0.90),
          (EMBEDDED, BARE, "login", 0.60), (WIRE, LIMIT, "logged-in read", 0.80)]


def in_child(service, sessions, spread):
    """Run in the target before service.main(): logins spread over time, the store filled, the heap frozen."""
    if spread:  # the sessions' clock moves a second a call: logins seconds apart, at valgrind's pace too
        class Spread(sessions.SessionInterface):
            def __init__(self, *args, **kwargs):
                super().__init__(*args, **{**kwargs, "clock": itertools.count(time.time(), 1.0).__next__})
        sessions.SessionInterface = Spread
    serve = service.serve

    def fill_then_serve(app, *args):
        if os.environ.get("BENCH_FILL"):  # the embedded store's sessions, made by its own login route
            with open(os.environ["BENCH_COOKIES"], "w") as f:
                f.write("\n".join(traffic.fill(app, int(os.environ["BENCH_FILL"]))))
        # What exists now the cyclic GC never visits again: a full collection of it would fall
        # in one of a target's two runs and not the other (tens of thousands of instructions a request).
        gc.freeze()
        return serve(app, *args)
    service.serve = fill_then_serve


def environment(tree, harness, mongo_url=None):
    """A target's environment: the service's defaults but for the login limit, which would refuse the
    bench's logins, all from 127.0.0.1 (at its highest it still checks each one); no .pyc written."""
    return {"PYTHONPATH": os.pathsep.join([tree, harness]), "PYTHONDONTWRITEBYTECODE": "1", "HOST": "127.0.0.1",
            "PORT": "0", "THREADS": "8", "SESSION_SECRET": traffic.SECRET, "LOGIN_RATE_LIMIT": "1000000",
            **({"MONGO_URL": mongo_url} if mongo_url else {})}


def snapshot(tree, harness, scratch):
    """Copies of a tree's modules and of this harness, compiled, so that nobody's edit, nor a first
    import's compiling, falls in one of a target's two runs and not the other."""
    copy = tempfile.mkdtemp(dir=scratch)
    for module in glob.glob(os.path.join(tree, "*.py")):
        shutil.copy(module, copy)
    if not os.path.exists(harness):
        ignore = shutil.ignore_patterns("__pycache__", "out", "*.png", "*.md")
        shutil.copytree(os.path.join(ROOT, "bench"), os.path.join(harness, "bench"), ignore=ignore)
        shutil.copytree(os.path.join(ROOT, "tests", "support"), os.path.join(harness, "tests", "support"),
                        ignore=ignore)
        compileall.compile_dir(harness, quiet=1)
    compileall.compile_dir(copy, quiet=1)
    return copy


def instructions(column, target, kind, count, cookies, sessions, mongo_url=None):
    """I refs of one run of a target: started under valgrind, sent `count` requests of `kind`, stopped.
    column: (label, the tree's copy, code, the harness's copy); cookies None: fill the embedded store."""
    _, root, patch, harness = column
    env = environment(root, harness, mongo_url)
    code = (f"import sys, service, sessions\n{patch}\nfrom bench import instructions\n"
            f"instructions.in_child(service, sessions, spread={kind == 'login'})\n{ENTRY[target]}")
    with tempfile.TemporaryDirectory() as scratch:
        if cookies is None:
            env.update(BENCH_FILL=str(sessions), BENCH_COOKIES=os.path.join(scratch, "cookies"))
        # cwd: `python -c` puts it first on sys.path, so the column's tree is the one imported.
        with Child([*VALGRIND, sys.executable, "-c", code], env=env, ready=LISTENING, timeout=900,
                   cwd=root) as child:
            if cookies is None:
                with open(env["BENCH_COOKIES"]) as f:
                    cookies = f.read().split("\n")
            conn = http.client.HTTPConnection("127.0.0.1", child.port, timeout=120)
            expected = 404 if kind == "anonymous read" else 200
            for method, path, headers, body in itertools.islice(traffic.requests(kind, cookies), count):
                conn.request(method, path, body, headers)
                response = conn.getresponse()
                response.read()
                if response.status != expected:
                    raise RuntimeError(f"{target}, {kind}: {response.status}, expected {expected}")
            conn.close()
            time.sleep(0.5)  # the last access lines are written
            child.stop(signal.SIGINT, timeout=120)
    found = re.search(r"I\s+refs:\s+([\d,]+)", child.log())
    if not found:
        raise RuntimeError(f"{target}: no valgrind summary:\n{child.log()[-2000:]}")
    return int(found.group(1).replace(",", ""))


def fill_wire(column, mongo_url, sessions):
    """The wire database's sessions, made by logins on the tree's own service (not under valgrind)."""
    _, root, _, harness = column
    env = {**environment(root, harness, mongo_url), "ACCESS_LOG": "0"}
    with Child([sys.executable, "-c", "import sys, service; sys.exit(service.main())"], env=env,
               ready=LISTENING, timeout=60, cwd=root) as child:
        cookies = traffic.login_over_http(child.port, sessions)
        child.stop()
    return cookies


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="two targets, logged-in reads, 200 sessions")
    parser.add_argument("--column", nargs=3, action="append", metavar=("LABEL", "TREE", "CODE"),
                        help="a tree and code run in its targets first (repeatable; default: this tree)")
    parser.add_argument("--kinds", nargs="+", choices=traffic.KINDS, default=traffic.KINDS)
    parser.add_argument("--sessions", type=int, default=traffic.SESSIONS, help="logged-in reads spread over")
    args = parser.parse_args(argv)
    columns = [(label, os.path.abspath(tree), code) for label, tree, code in args.column or [("this tree", ROOT, "")]]
    # Each tree's yardsticks are counted with its first column and shown under that column's label.
    yard_of = {label: next(first for first, t, _ in columns if t == tree) for label, tree, _ in columns}
    kinds = ["logged-in read"] if args.smoke else list(args.kinds)
    first, more, n = (20, 200, 200) if args.smoke else (100, 500, args.sessions)
    fake = traffic.fake_cookies(n)
    per = {}  # (column label, target, kind) -> instructions per request

    def count(column, target, kind, cookies, mongo_url=None):
        key = (column[0], target, kind)
        runs = [instructions(column, target, kind, c, cookies, n, mongo_url) for c in (first, first + more)]
        per[key] = (runs[1] - runs[0]) / more
        print(f"  {column[0]}, {target}, {kind}: {per[key]:,.0f}", file=sys.stderr, flush=True)
    server = None if args.smoke or "logged-in read" not in kinds else wire.start()
    with tempfile.TemporaryDirectory() as scratch:
        harness = os.path.join(scratch, "harness")
        copies = {tree: snapshot(tree, harness, scratch) for _, tree, _ in columns}  # as they are now
        try:
            for i, (label, tree, code) in enumerate(columns):
                column = (label, copies[tree], code, harness)
                yardsticks = yard_of[label] == label
                if server:  # first, so every read is within the touch interval of its login
                    url = f"{server.url}svc{i}"
                    cookies = fill_wire(column, url, n)
                    if yardsticks:
                        count(column, LIMIT, "logged-in read", cookies, url)
                    count(column, WIRE, "logged-in read", cookies, url)
                for kind in kinds:
                    if yardsticks:
                        count(column, BARE, kind, fake)
                    count(column, EMBEDDED, kind, None)
        finally:
            if server:
                server.stop()
    print(f"\nServer instructions per request (valgrind; {more} requests beyond {first}; logged-in reads over "
          f"{n:,} sessions), thousands; in brackets the yardstick's count over this one\n")
    print("| target | " + " | ".join(kinds) + " |\n|---|" + "---|" * len(kinds))
    yardstick = {EMBEDDED: BARE, WIRE: LIMIT}
    for label, target in [(label, target) for label, _, _ in columns for target in (BARE, LIMIT, EMBEDDED, WIRE)]:
        cells = []
        for kind in kinds:
            got, yard = per.get((label, target, kind)), per.get((yard_of[label], yardstick.get(target), kind))
            cells.append("—" if got is None else f"{got / 1000:,.1f}k" + (f" ({yard / got:.2f})" if yard else ""))
        if any(c != "—" for c in cells):
            print(f"| {target}, {label} | " + " | ".join(cells) + " |")
    print()
    for label, _, _ in columns:
        for target, stick, kind, least in GUARDS:
            got, yard = per.get((label, target, kind)), per.get((yard_of[label], stick, kind))
            if got and yard:
                verdict = "met" if yard / got >= least else "MISSED"
                print(f"guard, {label}: {target}, {kind} vs {stick}: {yard / got:.2f} (at least {least:.2f}): "
                      f"{verdict}")
    return per


if __name__ == "__main__":
    main()
