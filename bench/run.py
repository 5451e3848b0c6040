"""What a request costs: this service beside bare Bottle, the stack's limit app, the Node seed and Flask-Session.

    pip install -r requirements-bench.txt     # plus wrk and Node.js >= 20.8 from the OS
    python bench/run.py            # about 8 minutes; --quick: about 3; --smoke: seconds (for the tests)

Three jobs, one file each: inproc.py (WSGI calls, no sockets), over_http.py
(child processes under wrk), growth.py (sessions stored: time and memory);
report.py prints the tables, the targets and the chart. bench/README.md says
what is measured and how. Results go to bench/out/ (results.json, tables.md,
chart.png); a default run also copies the chart to bench/chart.png, the one
the README shows. Store commands per request are a correctness contract:
tests/test_store_commands.py asserts them; this measures time only.
"""

import argparse
import json
import os
import shutil
import sys

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests"), BENCH]

import growth  # noqa: E402
import inproc  # noqa: E402
import over_http  # noqa: E402
import peer  # noqa: E402
import report  # noqa: E402

MODES = {  # wrk runs are whole seconds; sizes are sessions stored
    "default": dict(batch=500, inproc_reps=7, reps=3, seconds=3, warmup=1, connections=(16, 64, 256),
                    sizes=(1, 10_000, 100_000, 1_000_000), reads=3000),
    "quick": dict(batch=200, inproc_reps=3, reps=1, seconds=2, warmup=1, connections=(16, 64, 256),
                  sizes=(1, 10_000, 100_000, 1_000_000), reads=1000),
    "smoke": dict(batch=20, inproc_reps=1, reps=1, seconds=1, warmup=0, connections=(16,), sizes=(1, 1000), reads=50),
}
ALL = ["bare Bottle", "service, embedded", "Node seed, MemoryStore", "service, wire", "limit app (wire)",
       "Node seed, connect-mongo (wire)", "Flask-Session (wire)"]


def node_app(out_dir):
    """The seed's Node app installed in out_dir/node-app (`npm ci` only when its lock file changed), or None."""
    import nodeapp
    if nodeapp.node_available():
        return None
    dest = os.path.join(out_dir, "node-app")
    lock, stamp = os.path.join(nodeapp.INTEROP_DIR, "package-lock.json"), os.path.join(dest, ".installed-lock.json")
    if not (os.path.exists(stamp) and open(stamp).read() == open(lock).read()):
        nodeapp.install_node_app(dest)
        shutil.copyfile(lock, stamp)
    shutil.copyfile(os.path.join(nodeapp.INTEROP_DIR, "app.js"), os.path.join(dest, "app.js"))
    return dest


def http_sections(mode, args, info):
    import wireserver
    labels = ALL[:2] + ALL[3:5] if args.smoke else ALL
    node_dir = None if args.smoke else node_app(args.out)
    labels = [x for x in labels if node_dir or "Node" not in x]
    try:
        import flask_session  # noqa: F401
    except ImportError:
        labels = [x for x in labels if x != report.FLASK]
    wire = wireserver.start_wire_server()
    try:
        targets = over_http.start_targets(wire, node_dir, args.threads, labels)
        try:
            http = over_http.measure(targets, over_http.KINDS, reps=mode["reps"], seconds=mode["seconds"],
                                     warmup=mode["warmup"], lua_dir=args.out)
            two = [t for t in targets if t.label in ("service, embedded", "service, wire")]
            by_c = {c: {label: r for (label, _), r in over_http.measure(
                two, ("logged-in read",), reps=mode["reps"], seconds=mode["seconds"], connections=c,
                warmup=mode["warmup"], lua_dir=args.out).items()} for c in mode["connections"]}
        finally:
            for t in targets:
                t.stop()
    finally:
        wire.stop()
    how = (f"wrk -t2, {mode['seconds']} s per run, {mode['reps']} interleaved repetition(s), medians; "
           f"waitress threads {args.threads} for every Python target; load average before: {info['load']}.")
    return http, by_c, [report.http_table(http, over_http.KINDS, labels, "wrk -c16; " + how),
                        report.connections_table(by_c, how)], labels


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--quick", action="store_true", help="one repetition of 2 s runs (about 3 minutes)")
    group.add_argument("--smoke", action="store_true", help="seconds: bare, the service and the limit app only")
    parser.add_argument("--threads", type=int, default=peer.THREADS, help="waitress threads for every Python target")
    parser.add_argument("--only", choices=("inproc", "http", "growth"), action="append", help="run only these jobs")
    parser.add_argument("--out", default=os.path.join(BENCH, "out"), help="where results go (default bench/out)")
    args = parser.parse_args(argv)
    mode_name = "smoke" if args.smoke else "quick" if args.quick else "default"
    mode, jobs = MODES[mode_name], set(args.only or ("inproc", "http", "growth"))
    os.makedirs(args.out, exist_ok=True)
    info = report.machine()
    print(f"bench/run.py {mode_name}: {info['cores']} cores ({info['cpu']}), Python {info['python']}, "
          f"Node {info['node']}, {info['wrk']}, load {info['load']}\n", flush=True)
    tables, results, http, grown, labels = [], {"machine": info, "mode": mode_name, "threads": args.threads}, {}, [], []

    def show(t):
        tables.append(t)
        print(report.as_text(t), flush=True)
    if "inproc" in jobs:
        results["inproc_us"] = inproc.measure(mode["batch"], mode["inproc_reps"])
        show(report.inproc_table(results["inproc_us"], mode["batch"], mode["inproc_reps"]))
    if "http" in jobs and shutil.which("wrk"):
        http, by_c, http_tables, labels = http_sections(mode, args, info)
        results["http"] = {f"{label} | {kind}": r for (label, kind), r in http.items()}
        results["connections"] = by_c
        for t in http_tables:
            show(t)
    elif "http" in jobs:
        print("HTTP: skipped, wrk not found (apt-get install wrk)\n")
    if "growth" in jobs:
        grown = results["growth"] = growth.measure(mode["sizes"], mode["reads"], mode["reps"])
        show(report.growth_table(grown))
    show(report.targets(http, grown))
    results["tables"] = tables
    with open(os.path.join(args.out, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(args.out, "tables.md"), "w") as f:
        f.write("\n".join(report.as_markdown(t) for t in tables))
    if http:
        try:
            report.write_chart(os.path.join(args.out, "chart.png"), http, over_http.KINDS, labels)
        except ImportError:
            print("chart skipped: matplotlib not installed (pip install -r requirements-bench.txt)")
        else:
            if mode_name == "default":
                shutil.copyfile(os.path.join(args.out, "chart.png"), os.path.join(BENCH, "chart.png"))
    print(f"wrote {args.out}/results.json, tables.md" + (", chart.png" if http else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
