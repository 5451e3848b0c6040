"""Mutation testing: how many small planted bugs do the fast tests catch?

    .venv/bin/python bench/mutation.py            # mutate, test, report
    .venv/bin/python bench/mutation.py --report   # report the last run again, without running

mutmut (configured in setup.cfg, section [mutmut]) copies the project into
mutants/, plants one small change at a time in sessions.py and service.py (a
`>` for a `>=`, a constant changed, an argument dropped, ...) and runs the
fast in-process tests that cover the changed function against each.  A
mutant the tests fail on is "killed"; one they pass on "survived": either a
behaviour no test pins, or a change that makes no observable difference.

This prints, per file, killed/total and the score, then every surviving mutant
with its diff, then how long the run took.  The score is mutmut's own: a
timeout counts as a kill (the mutant broke something), a mutant in code no
fast test reaches ("no tests": serving, main()) counts as a survivor; the last
column gives the score among the mutants the fast tests reach.  Not part of CI: it takes minutes (the duration
is printed; README's Tests section quotes a run).  mutmut keeps its results in
mutants/, and reruns only what changed since; delete mutants/ for a full run.
"""

import argparse
import os
import re
import subprocess
import sys
import time
from collections import Counter, defaultdict

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MUTMUT = os.path.join(os.path.dirname(sys.executable), "mutmut")
FILES = ("sessions.py", "service.py")  # as in setup.cfg's source_paths
TARGETS = {"sessions.py": 90.0, "service.py": 85.0}  # percent killed, issue 13
KILLED = ("killed", "timeout")


def mutmut(*args, check=True):
    return subprocess.run([MUTMUT, *args], cwd=ROOT, check=check, text=True, capture_output=True)


def results():
    """{mutant name: status} from mutmut's own bookkeeping."""
    out = mutmut("results", "--all", "true").stdout
    return dict(re.findall(r"^\s+(\S+): (.+?)\s*$", out, re.M))


def diffs(names):
    """The diff of each mutant.  `mutmut show NAME` gives the same, but starts a
    process per mutant (about a second each); this asks mutmut's own diff
    function (mutmut.mutation.diff_apply, internal, 3.8) in one process, and
    falls back to `mutmut show` if that moves."""
    script = ("import sys\nfrom mutmut.mutation.diff_apply import get_diff_for_mutant\n"
              "for name in sys.stdin.read().split():\n    print(get_diff_for_mutant(name), end='\\0')\n")
    run = subprocess.run([sys.executable, "-c", script], cwd=ROOT, input="\n".join(names), text=True,
                         capture_output=True)
    if run.returncode == 0:
        return run.stdout.split("\0")[:len(names)]
    return [mutmut("show", name, check=False).stdout for name in names]


def file_of(mutant):
    module = mutant.split(".x", 1)[0].split(".xǁ", 1)[0]  # sessions.x_unsign__mutmut_3, service.xǁClassǁm__mutmut_1
    return module.replace(".", "/") + ".py"


def report(statuses, seconds=None):
    by_file = defaultdict(Counter)
    for name, status in statuses.items():
        by_file[file_of(name)][status] += 1
    print(f"{'file':<14}{'killed':>8}{'total':>8}{'score':>9}{'target':>8}   {'no tests':>8}{'of reached':>12}")
    ok = True
    for path in FILES:
        counts = by_file.get(path, Counter())
        killed = sum(counts[s] for s in KILLED)
        total = sum(n for s, n in counts.items() if s != "skipped")  # as mutmut's own score counts
        reached = total - counts["no tests"]
        score = 100.0 * killed / total if total else 0.0
        ok &= score >= TARGETS[path]
        print(f"{path:<14}{killed:>8}{total:>8}{score:>8.1f}%{TARGETS[path]:>7.0f}%   {counts['no tests']:>8}"
              f"{100.0 * killed / reached if reached else 0.0:>11.1f}%")
    survivors = sorted(name for name, status in statuses.items() if status not in KILLED + ("no tests",))
    print(f"\n{len(survivors)} surviving mutants:")
    for name, diff in zip(survivors, diffs(survivors)):
        print(f"\n# {name}\n{diff.strip()}")
    if seconds is not None:
        print(f"\nmutmut run took {seconds:.0f} s")
    return ok


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="only report the last run")
    parser.add_argument("--max-children", type=int, default=os.cpu_count() or 1, help="mutants tested at once")
    args = parser.parse_args(argv)
    seconds = None
    if not args.report:
        started = time.monotonic()
        run = subprocess.run([MUTMUT, "run", "--max-children", str(args.max_children)], cwd=ROOT)
        seconds = time.monotonic() - started
        if run.returncode != 0:
            print(f"mutmut run failed (exit {run.returncode}) after {seconds:.0f} s; are the fast tests green?",
                  file=sys.stderr)
            return run.returncode
    statuses = results()
    if not statuses:
        print("no mutmut results: run without --report first", file=sys.stderr)
        return 1
    return 0 if report(statuses, seconds) else 3


if __name__ == "__main__":
    sys.exit(main())
