"""The benchmarks run end to end (python -m bench.run --smoke, python -m bench.instructions --smoke),
so they cannot rot.

No timings or counts are asserted: a benchmark measures, a test checks.  What is checked is
that each job ran and measured what it claims to: the yardstick keeps the service's promises,
every target answered the request kind it was loaded with (a logged-in read that 404s would
measure the wrong path), every table and guard was printed, the results were written.
"""

import json
import re
import shutil
import subprocess
import sys
import urllib.request

import pytest

from bench import limit
from support.basics import skip_unless
from support.child import Child
from support.realhttp import LISTENING, ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]


def bench(*args):
    return subprocess.run([sys.executable, "-m", *args], capture_output=True, text=True, timeout=170, cwd=ROOT)


def test_limit_app_takes_the_session_id_from_an_express_cookie():
    assert limit.session_id("_ga=GA1.2.7; example.sid=s%3Aabc-_12.c2lnbmF0dXJl") == "abc-_12"
    assert limit.session_id("example.sid=plain") == "plain"
    assert limit.session_id("other=s%3Aabc.sig") is None


def test_hardened_bare_sends_the_services_headers_and_access_line():
    env = {"HOST": "127.0.0.1", "PORT": "0", "SESSION_SECRET": "bench-smoke-secret-of-32-characters"}
    with Child([sys.executable, "-m", "bench.bare"], env=env, ready=LISTENING, cwd=ROOT) as bare:
        request = urllib.request.Request(f"http://127.0.0.1:{bare.port}/name",
                                         headers={"Cookie": "_ga=GA1.2.1; example.sid=s%3Aany.sig"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["Cache-Control"] == "no-store"
            assert response.headers["Vary"] == "Cookie"
        assert bare.wait_for(r" INFO GET /name 200 ", timeout=10)
        bare.stop()


def test_smoke_run_measures_every_job_and_writes_results(tmp_path):
    skip_unless(None if shutil.which("wrk") else "wrk not found (apt-get install wrk)")
    done = bench("bench.run", "--smoke", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    for title in ("HTTP on loopback (wrk)", "against sessions stored"):
        assert title in done.stdout
    results = json.loads((tmp_path / "results.json").read_text())
    http = results["http"]
    targets = {"hardened bare", "service, embedded", "service, wire", "limit app (wire)"}
    assert {key.split(" | ")[0] for key in http} == targets
    for key, run in http.items():
        assert run["requests"] > 0, key
        if key.endswith("anonymous read"):
            assert run["non2xx"] == run["requests"], key  # every answer a 404, the limit app's too
        else:
            assert run["non2xx"] == 0, key  # every session cookie was accepted; every login stored
    assert "limit app (wire) | login" in http  # its one insert_one a login
    assert [g["sessions"] for g in results["growth"]] == [1, 1000]
    assert all(g["rss_after"] >= g["rss_before"] and g["json_mean"] > 100 for g in results["growth"])
    assert "| service, wire |" in (tmp_path / "tables.md").read_text()


def test_instruction_counts_come_from_the_requests_and_meet_a_guard_or_not():
    skip_unless(None if shutil.which("valgrind") else "valgrind not found (apt-get install valgrind)")
    done = bench("bench.instructions", "--smoke")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = dict(re.findall(r"^\| (.+?), this tree \| ([\d,.]+)k(?: \([\d.]+\))? \|$", done.stdout, re.M))
    assert list(rows) == ["hardened bare", "service, embedded"], done.stdout
    # A request is about half a million instructions, a server's start about 600 million: a count
    # in this range is per request.
    assert all(100 < float(count.replace(",", "")) < 3000 for count in rows.values()), rows
    assert re.search(r"^guard, this tree: service, embedded, logged-in read vs hardened bare: [\d.]+ "
                     r"\(at least 0\.70\): (met|MISSED)$", done.stdout, re.M), done.stdout
