"""Benchmark: the faults of a distributed engine, with their figures, under the CeleryExecutor.

``make bench-faults`` (or ``.venv/bin/python bench/faults.py``). Runs the fault cases of
``tests/e2e/test_scheduler.py`` in the ``celery`` layout of ``demo/stack.py`` (two Celery workers,
two schedulers at once, Redis as broker, PostgreSQL metadata; ``--executors`` picks others):

* a worker SIGKILLed, with its task processes, during an extract and during a load;
* the broker stopped for 5 s while a run's tasks are queued;
* one of two schedulers SIGKILLed mid-run (in the ``local`` layout: the only one, replaced).

Each case is a test that fails unless the run succeeds with every recorded bar once in the
warehouse and the lake, and each Kinesis record id sent once per successful publish. The figures
each test prints (``FIGURE: ...``: seconds from the fault to the run's end, the killed try and the
retry's worker, bars per sink) are appended to bench/RESULTS.md with the command line, the tests'
outcome and the wall time.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]
CASES = "worker_killed or broker_restarted or scheduler_killed"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--executors", default="celery", help="layouts, comma-separated (local, celery)")
    parser.add_argument("--warehouse", default="postgres", choices=("postgres", "timescaledb"))
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "faults")
    args = parser.parse_args()
    command = [
        sys.executable,
        "-m",
        "pytest",
        "tests/e2e/test_scheduler.py",
        "-k",
        CASES,
        "--executors",
        args.executors,
        "--warehouse",
        args.warehouse,
        "-s",
        "-p",
        "no:cacheprovider",
        f"--basetemp={args.work}",
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
    seconds = time.monotonic() - started
    figures = [line.split("FIGURE: ", 1)[1] for line in done.stdout.splitlines() if "FIGURE: " in line]
    summary = (re.findall(r"=+ (.*(?:passed|failed|error).*) =+", done.stdout) or ["no pytest summary"])[-1]
    lines = [*figures, f"pytest: {summary}; {seconds:.0f} s in all, the stack's start included"]
    print("\n".join(lines))
    if done.returncode:
        print(done.stdout[-5000:], done.stderr[-3000:], sep="\n", file=sys.stderr)
    from bench.results import record

    record(lines, indent="- ")
    return done.returncode


if __name__ == "__main__":
    sys.exit(main())
