"""A demo killed by a signal while its runs are in flight stops every process it started (issue 14
item 5); until then it reports their progress (issue 29 item 8).

Seen before: after a killed ``make demo LIVE=1``, 16 Airflow processes and its PostgreSQL were
left running. The demo runs here in its own work folder (``MARKET_DEMO_WORK``). Every process it
starts inherits that variable (Airflow's components, moto, the stand-in), runs in that folder or
names it on its command line (PostgreSQL's data directory), which is how the test finds what is
left.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.e2e


def _left(folder: Path) -> list[str]:
    """``pid: command line`` of every live process (not a zombie) whose environment has
    ``MARKET_DEMO_WORK=<folder>`` or whose working directory or command line is in ``folder``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cmdline = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
            environ = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            state = next(line for line in Path(f"/proc/{entry}/status").read_text().splitlines() if line.startswith("State:"))
        except (FileNotFoundError, ProcessLookupError, PermissionError, StopIteration):
            continue
        marked = f"MARKET_DEMO_WORK={folder}".encode() in environ
        if "zombie" not in state and (marked or str(folder) in cmdline or cwd.startswith(str(folder))):
            found.append(f"{entry}: {cmdline[:200]}")
    return found


def test_a_demo_killed_by_sigterm_stops_every_process_it_started(tmp_path):
    sig = signal.SIGTERM
    work = tmp_path / "demo"
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, str(ROOT / "demo" / "run_demo.py")],
            env={**os.environ, "MARKET_DEMO_WORK": str(work)},
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    try:
        deadline = time.monotonic() + 300
        while "running DAGs" not in log.read_text(errors="replace"):  # the stack is up and has runs to do
            assert demo.poll() is None, f"the demo exited early:\n{log.read_text(errors='replace')[-3000:]}"
            assert time.monotonic() < deadline, "airflow standalone not ready after 300 s"
            time.sleep(1)
        # While its runs wait, the demo says how far they are every 20 s (issue 29 item 8; before, it
        # was silent for minutes): runs finished of the total, the slowest still running (DAG, run
        # type, window) with its state and time since it started (or, before any starts, the one
        # queued longest).
        progress = re.compile(
            r"\] \d+ of \d+ runs finished( \(\d+ failed\))?; "
            r"(slowest still running|none started yet, longest queued): market_\w+ (manual|backfill) "
            r"\d{4}-\d\d-\d\d \d\d:\d\d\.\.\d{4}-\d\d-\d\d \d\d:\d\d \((running|queued) for \d+s\)"
        )
        deadline = time.monotonic() + 120
        while not progress.search(log.read_text(errors="replace")):  # the runs are in flight
            assert demo.poll() is None, f"the demo exited early:\n{log.read_text(errors='replace')[-3000:]}"
            assert time.monotonic() < deadline, f"no progress line 120 s after the runs started:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        assert _left(work), "nothing found running in the demo's folder: the check below would prove nothing"
        demo.send_signal(sig)
        assert demo.wait(180) == 128 + sig
    finally:
        if demo.poll() is None:
            demo.kill()
    deadline = time.monotonic() + 30  # PostgreSQL's last backends may take a moment after pg_ctl returns
    while (left := _left(work)) and time.monotonic() < deadline:
        time.sleep(1)
    assert left == [], "\n".join(left)
