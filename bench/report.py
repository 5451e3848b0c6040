"""Tables (text and Markdown) and the machine: what bench.run prints and writes."""

import datetime
import os
import platform
import subprocess

SEED = {"wire": "Node seed, connect-mongo (wire)", "embedded": "Node seed, MemoryStore"}
FLASK, LIMIT, BARE, WIRE = "Flask-Session (wire)", "limit app (wire)", "hardened bare", "service, wire"


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


def limited_by(cpu):
    busiest = max(cpu, key=cpu.get)
    if cpu[busiest] >= 85:
        return f"{busiest} ({cpu[busiest]:.0f}% of a core)"
    if sum(cpu.values()) >= 170:
        return f"both cores ({sum(cpu.values()):.0f}%)"
    return f"none ({busiest} {cpu[busiest]:.0f}%)"


def http_table(http, kinds, labels, note):
    rps = lambda label, kind: http.get((label, kind), {}).get("rps")  # noqa: E731
    rows = []
    for kind in kinds:
        for label in (x for x in labels if (x, kind) in http):
            r, store = http[(label, kind)], "wire" if "wire" in label else "embedded"
            cpu = ", ".join(f"{p} {v:.0f}%" for p, v in r["cpu_pct"].items())
            rows.append([kind, label, f"{r['rps']:.0f}", *(ratio(r["rps"], rps(other, kind)) for other in (
                BARE, LIMIT, SEED[store], FLASK)), f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", r["non2xx"] or "",
                cpu, limited_by(r["cpu_pct"])])
    ahead = "; ".join(f"{kind} {ratio(rps(WIRE, kind), rps(SEED['wire'], kind))} the Node seed's and "
                      f"{ratio(rps(WIRE, kind), rps(FLASK, kind))} Flask-Session's" for kind in kinds)
    ahead = f"The service on the wire, req/s: {ahead}." if rps(SEED["wire"], kinds[0]) or rps(FLASK, kinds[0]) else ""
    return table("HTTP on loopback (wrk)", ["request", "server", "req/s", "vs hardened bare", "vs limit", "vs seed",
                                            "vs Flask-Session", "p50 ms", "p99 ms", "non-2xx", "CPU", "limited by"],
                 rows, [note, "vs seed: the Node seed on the same kind of store (MemoryStore for embedded rows, "
                        "connect-mongo for wire rows). Anonymous reads are 404s everywhere.",
                        ahead])


def growth_table(results):
    base = results[0]["us_median"]
    rows = []
    for r in results:
        per = (r["rss_after"] - r["rss_before"]) / (r["sessions"] - 1) if r["sessions"] > 1 else None
        rows.append([f"{r['sessions']:,}", f"{r['us_median']:.1f}", f"{r['us_p99']:.1f}", ratio(r["us_median"], base),
                     f"{r['list_us']:.1f}", f"{per:.0f}" if per else "-", f"{r['json_mean']:.0f}",
                     f"{per - r['json_mean']:.0f}" if per else "-"])
    return table("Embedded store (MemoryStore): logged-in read, one user's listing and memory against sessions stored",
                 ["sessions stored", "us/read (median)", "p99 us", "vs 1", "us/listing", "RSS bytes/session",
                  "stored JSON bytes", "RSS beyond the JSON"], rows,
                 ["In-process WSGI calls (no sockets), reads spread over the sessions stored, one fresh child "
                  "process per size and round, medians; the store filled through its API; RSS from "
                  "/proc/self/status before and after the fill."])


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
