"""wrk and memory figures, for context: the service beside hardened bare Bottle, the limit app, the Node seed
and Flask-Session, on realistic traffic.  The verdict is the instruction count (python -m bench.instructions).

    pip install -r requirements-bench.txt    # plus wrk and Node.js >= 20.8 from the OS
    python -m bench.run            # about 12 minutes; --quick: about 5; --smoke: seconds (for the tests)
    python -m bench.run --only http --targets "service, embedded" "service, RAND_bytes ids" --kinds login \\
        --variant "service, RAND_bytes ids" "sessions.new_id = ..."      # an A/B, interleaved

Two jobs: http (over_http.py: child processes under wrk, bench/traffic.py's traffic from a Lua
script) and growth (growth.py: sessions stored, time and memory); report.py prints the tables.
Results go to bench/out/ (results.json, tables.md).
"""

import argparse
import json
import os
import shutil
import sys

from bench import growth, over_http, report, traffic, wire

BENCH = os.path.dirname(os.path.abspath(__file__))
MODES = {  # wrk runs are whole seconds; sizes are sessions stored
    "default": dict(reps=3, seconds=3, warmup=1, sessions=traffic.SESSIONS, sizes=(1, 10_000, 100_000, 1_000_000),
                    reads=3000),
    "quick": dict(reps=1, seconds=2, warmup=1, sessions=traffic.SESSIONS, sizes=(1, 10_000, 1_000_000), reads=1000),
    "smoke": dict(reps=1, seconds=1, warmup=0, sessions=100, sizes=(1, 1000), reads=50),
}
ALL = ["hardened bare", "service, embedded", "Node seed, MemoryStore", "service, wire", "limit app (wire)",
       "Node seed, connect-mongo (wire)", "Flask-Session (wire)"]
SMOKE = ["hardened bare", "service, embedded", "service, wire", "limit app (wire)"]


def node_app(out_dir):
    """The seed's Node app installed in out_dir/node-app (`npm ci` only when its lock file changed), or None."""
    from tests.support import nodeapp
    if nodeapp.node_available():
        return None
    dest = os.path.join(out_dir, "node-app")
    lock, stamp = os.path.join(nodeapp.INTEROP_DIR, "package-lock.json"), os.path.join(dest, ".installed-lock.json")
    if not (os.path.exists(stamp) and open(stamp).read() == open(lock).read()):
        nodeapp.install_node_app(dest)
        shutil.copyfile(lock, stamp)
    shutil.copyfile(os.path.join(nodeapp.INTEROP_DIR, "app.js"), os.path.join(dest, "app.js"))
    return dest


def http_section(mode, args, info):
    labels = args.targets or (SMOKE if args.smoke else ALL + [label for label, _ in args.variant])
    node_dir = node_app(args.out) if any("Node" in x for x in labels) else None
    labels = [x for x in labels if node_dir or "Node" not in x]
    try:
        import flask_session  # noqa: F401
    except ImportError:
        labels = [x for x in labels if x != report.FLASK]
    server = wire.start()
    try:
        targets = over_http.start_targets(labels, server, node_dir, args.threads, mode["sessions"], args.variant)
        try:
            http = over_http.measure(targets, args.kinds, reps=mode["reps"], seconds=mode["seconds"],
                                     warmup=mode["warmup"], lua_dir=args.out)
        finally:
            for t in targets:
                t.stop()
    finally:
        server.stop()
    how = (f"wrk -t2 -c16, {mode['seconds']} s per run, {mode['reps']} interleaved repetition(s), medians; "
           f"logged-in reads over {mode['sessions']:,} sessions; waitress threads {args.threads} for every Python "
           f"target; load average before: {info['load']}.")
    return http, report.http_table(http, args.kinds, labels, how)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="one repetition of 2 s runs")
    group.add_argument("--smoke", action="store_true", help="seconds: hardened bare, the service and the limit app")
    parser.add_argument("--only", choices=("http", "growth"), action="append", help="run only these jobs")
    parser.add_argument("--targets", nargs="+", help="run only these targets (labels as in the tables)")
    parser.add_argument("--kinds", nargs="+", choices=traffic.KINDS, default=list(traffic.KINDS))
    parser.add_argument("--variant", nargs=2, action="append", default=[], metavar=("LABEL", "CODE"),
                        help="the embedded service with CODE run after `import service, sessions` (repeatable)")
    parser.add_argument("--threads", type=int, default=8, help="waitress threads for every Python target")
    parser.add_argument("--out", default=os.path.join(BENCH, "out"), help="where results go (default bench/out)")
    args = parser.parse_args(argv)
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "default"
    mode, jobs = MODES[mode_name], set(args.only or ("http", "growth"))
    os.makedirs(args.out, exist_ok=True)
    info = report.machine()
    print(f"bench.run {mode_name}: {info['cores']} cores ({info['cpu']}), Python {info['python']}, "
          f"Node {info['node']}, {info['wrk']}, load {info['load']}\n", flush=True)
    tables, results, http = [], {"machine": info, "mode": mode_name, "threads": args.threads}, {}

    def show(t):
        tables.append(t)
        print(report.as_text(t), flush=True)
    if "http" in jobs and shutil.which("wrk"):
        http, http_table = http_section(mode, args, info)
        results["http"] = {f"{label} | {kind}": r for (label, kind), r in http.items()}
        show(http_table)
    elif "http" in jobs:
        print("HTTP: skipped, wrk not found (apt-get install wrk)\n")
    if "growth" in jobs:
        results["growth"] = growth.measure(mode["sizes"], mode["reads"], mode["reps"])
        show(report.growth_table(results["growth"]))
    results["tables"] = tables
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(args.out, "tables.md"), "w") as f:
        f.write("\n".join(report.as_markdown(t) for t in tables))
    print(f"wrote {args.out}/results.json, tables.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
