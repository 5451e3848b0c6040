"""The benchmark script runs and prints its tables (bench/run.py --smoke).

No timings are asserted: a benchmark is a script, and numbers on a shared
two-core machine say nothing a test could check. Smoke mode needs only
requirements-dev.txt: the Node and Flask peers are left out, the HTTP
section runs only where wrk is installed, the chart only with matplotlib.
"""

import json
import os
import subprocess
import sys

import pytest

import wireserver

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

pytestmark = pytest.mark.timeout(120)


def test_wire_server_counts_commands_by_name_and_resets():
    server = wireserver.start_wire_server(ttl_monitor=0)
    try:
        assert server.counters(reset=True) == {}  # handshakes are not counted
        import pymongo
        with pymongo.MongoClient(server.url) as client:
            client.db.c.insert_one({"_id": 1})
            client.db.c.find_one({"_id": 1})
            client.db.c.find_one({"_id": 2})
            client.admin.command("ping")  # monitoring: not counted
        assert server.counters() == {"insert": 1, "find": 2}
        assert server.counters(reset=True) == {"insert": 1, "find": 2}
        assert server.counters() == {}
    finally:
        server.stop()


def test_smoke_run_prints_every_table_and_writes_results(tmp_path):
    done = subprocess.run([sys.executable, os.path.join(ROOT, "bench", "run.py"), "--smoke", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    for title in ("1. Store commands per request", "2. In-process cost per request",
                  "2b. Embedded store", "3. HTTP throughput", "Targets"):
        assert title in out
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["store_commands"]["met"] is True  # counts, not timings: these must hold
    assert "## Performance" in (tmp_path / "PERFORMANCE.md").read_text()
