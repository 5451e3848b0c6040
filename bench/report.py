"""Tables (text and Markdown), the targets of issue 10 with verdicts, the chart, the machine."""

import datetime
import os
import platform
import subprocess

SEED = {"wire": "Node seed, connect-mongo (wire)", "embedded": "Node seed, MemoryStore"}
FLASK, LIMIT, BARE = "Flask-Session (wire)", "limit app (wire)", "bare Bottle"


def table(title, headers, rows, notes=()):
    return {"title": title, "headers": list(headers), "rows": [[str(c) for c in r] for r in rows], "notes": list(notes)}


def as_text(t):
    widths = [max([len(h)] + [len(r[i]) for r in t["rows"]]) for i, h in enumerate(t["headers"])]
    line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
    out = [t["title"], "=" * len(t["title"]), line(t["headers"]), line(["-" * w for w in widths])]
    return "\n".join(out + [line(r) for r in t["rows"]] + t["notes"]) + "\n"


def as_markdown(t):
    out = [f"**{t['title']}**", "", "| " + " | ".join(t["headers"]) + " |", "|" + "---|" * len(t["headers"])]
    out += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in t["rows"]]
    return "\n".join(out + [""] + [n + "  " for n in t["notes"]]) + "\n"


def ratio(a, b):
    return f"{a / b:.2f}x" if a and b else "-"


def inproc_table(us, batch, reps):
    rows = [[kind, f"{v[BARE]:.1f}", f"{v['service, MemoryStore']:.1f}", ratio(v[BARE], v["service, MemoryStore"]),
             f"{v['service, MemoryStore'] - v[BARE]:.1f}"] for kind, v in us.items()]
    return table("In-process cost per request (microseconds, WSGI calls)",
                 ["request", "bare Bottle", "service, MemoryStore", "speed vs bare", "session layer us"], rows,
                 [f"Median of {batch} timed calls per batch, median of {reps} interleaved batches; "
                  "no sockets, no server, "
                  "the service's access line written to /dev/null."])


def store_of(label):
    return "wire" if "wire" in label else "embedded"


def limited_by(cpu):
    busiest = max(cpu, key=cpu.get)
    if cpu[busiest] >= 85:
        return f"{busiest} ({cpu[busiest]:.0f}% of a core)"
    if sum(cpu.values()) >= 170:
        return f"both cores ({sum(cpu.values()):.0f}%)"
    return f"none ({busiest} {cpu[busiest]:.0f}%)"


def http_table(http, kinds, labels, note):
    rows = []
    for kind in kinds:
        rps = lambda label: http.get((label, kind), {}).get("rps")  # noqa: E731
        for label in (x for x in labels if (x, kind) in http):
            r = http[(label, kind)]
            cpu = ", ".join(f"{p} {v:.0f}%" for p, v in r["cpu_pct"].items())
            rows.append([kind, label, f"{r['rps']:.0f}", ratio(r["rps"], rps(BARE)), ratio(r["rps"], rps(LIMIT)),
                         ratio(r["rps"], rps(SEED[store_of(label)])), ratio(r["rps"], rps(FLASK)),
                         f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", r["non2xx"] or "", cpu, limited_by(r["cpu_pct"])])
    return table("HTTP on loopback (wrk)", ["request", "server", "req/s", "vs bare", "vs limit", "vs seed",
                                            "vs Flask-Session", "p50 ms", "p99 ms", "non-2xx", "CPU", "limited by"],
                 rows, [note, "vs seed: the Node seed on the same kind of store (MemoryStore for embedded rows, "
                        "connect-mongo for wire rows). Anonymous reads are 404s (the limit app's too); the Node "
                        "seed answers them 500 (it crashes reading a missing user) and stores a session each."])


def growth_table(results):
    base = results[0]["us_median"]
    rows = []
    for r in results:
        per = (r["rss_after"] - r["rss_before"]) / (r["sessions"] - 1) if r["sessions"] > 1 else None
        rows.append([f"{r['sessions']:,}", f"{r['us_median']:.1f}", f"{r['us_p99']:.1f}", ratio(r["us_median"], base),
                     f"{per:.0f}" if per else "-", f"{r['json_mean']:.0f}",
                     f"{per - r['json_mean']:.0f}" if per else "-"])
    return table("Embedded store (MemoryStore): logged-in read and memory against sessions stored",
                 ["sessions stored", "us/read (median)", "p99 us", "vs 1", "RSS bytes/session", "stored JSON bytes",
                  "RSS beyond the JSON"], rows,
                 ["In-process WSGI calls (no sockets), one fresh child process per size and round, medians; the store "
                  "filled through its API; RSS from /proc/self/status before and after the fill."])


def connections_table(by_c, note):
    rows = [[str(c)] + [x for label in ("service, embedded", "service, wire")
                        for x in (f"{r[label]['rps']:.0f}", f"{r[label]['p99_ms']:.2f}")] for c, r in by_c.items()]
    return table("Logged-in read against concurrent connections (wrk)",
                 ["connections", "embedded req/s", "embedded p99 ms", "wire req/s", "wire p99 ms"], rows, [note])


def targets(http, growth):
    """[(target, wanted, got, verdict)] for what this run measured (issue 10)."""
    rows = []

    def check(what, want, got, ok):
        rows.append([what, want, got if got is not None else "not run",
                     "-" if got is None else "met" if ok else "MISSED"])

    def rel(a, b, kind, key="rps"):
        if (a, kind) in http and (b, kind) in http:
            return http[(a, kind)][key] / http[(b, kind)][key]
        return None

    for what, a, b, kind, want in [
            ("embedded, logged-in read vs bare Bottle", "service, embedded", BARE, "logged-in read", 0.85),
            ("embedded, anonymous read vs the limit app's 404", "service, embedded", LIMIT, "anonymous read", 0.9),
            ("wire, anonymous read vs the limit app's 404", "service, wire", LIMIT, "anonymous read", 0.9),
            ("embedded, login vs bare Bottle's POST /", "service, embedded", BARE, "login", 0.7),
            ("wire, logged-in read vs the limit app", "service, wire", LIMIT, "logged-in read", 0.9),
            ("wire, logged-in read vs the Node seed (connect-mongo)", "service, wire", SEED["wire"],
             "logged-in read", 1.1),
            ("wire, logged-in read vs Flask-Session", "service, wire", FLASK, "logged-in read", 1.6)]:
        got = rel(a, b, kind)
        check(what, f">= {want}x req/s", got and f"{got:.2f}x", got is not None and got >= want)
    got = rel("service, embedded", BARE, "logged-in read", "p99_ms")
    check("embedded, logged-in read p99 vs bare Bottle's", "<= 1.5x", got and f"{got:.2f}x",
          got is not None and got <= 1.5)
    if growth:
        medians = [r["us_median"] for r in growth]
        spread = max(medians) / min(medians)
        check("growth: us/read, largest over smallest", "<= 1.3x", f"{spread:.2f}x", spread <= 1.3)
        big = growth[-1]
        if big["sessions"] > 1:
            beyond = (big["rss_after"] - big["rss_before"]) / (big["sessions"] - 1) - big["json_mean"]
            check(f"RSS per session beyond its JSON ({big['sessions']:,} stored)", "<= 300 B", f"{beyond:.0f} B",
                  beyond <= 300)
    return table("Targets (issue 10)", ["target", "wanted", "got", "verdict"], rows)


def write_chart(path, http, kinds, labels):
    """Requests per second by request kind, one bar per server."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(11, 4.6))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        values = [http.get((label, k), {}).get("rps", 0) for k in kinds]
        bars = ax.bar([x + i * width for x in range(len(kinds))], values, width, label=label)
        names = [f"{v:.0f}" if (label, k) in http else "n/a" for v, k in zip(values, kinds)]  # the limit app: no login
        ax.bar_label(bars, labels=names, fontsize=7)
    ax.set_xticks([x + width * (len(labels) - 1) / 2 for x in range(len(kinds))], list(kinds))
    ax.set_title("HTTP on loopback, requests per second (higher is better)")
    ax.set_ylabel("req/s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine():
    with open("/proc/cpuinfo") as f:
        model = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), "unknown CPU")
    tools = {}
    for name, argv in (("node", ["node", "--version"]), ("wrk", ["wrk", "--version"])):
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            tools[name] = (out.stdout + out.stderr).split("\n")[0].strip()
        except (OSError, subprocess.TimeoutExpired):
            tools[name] = "not found"
    return {"cores": os.cpu_count(), "cpu": model, "python": platform.python_version(),
            "system": f"{platform.system()} {platform.release()}", "date": datetime.date.today().isoformat(),
            "load": " ".join(f"{x:.2f}" for x in os.getloadavg()), **tools}
