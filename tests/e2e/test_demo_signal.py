"""A demo killed by a signal while its runs are in flight leaves no process it started (issue 14
item 5; SIGKILL: issue 31 item 8); until then it reports their progress (issue 29 item 8).

Seen before: after a killed ``make demo LIVE=1``, 16 Airflow processes and its PostgreSQL were
left running; after SIGKILL, which runs no code of the demo, 9 processes, PostgreSQL among them,
until :mod:`demo.reaper` stopped them. The demo runs here in its own work folder (``MARKET_DEMO_WORK``). Every process it
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


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_a_demo_killed_by_a_signal_leaves_no_process_it_started(tmp_path, sig):
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
        # SIGTERM unwinds the demo (exit status 128 + 15); SIGKILL ends it at once (-9), its reaper stops the rest.
        assert demo.wait(180) == (128 + sig if sig == signal.SIGTERM else -sig)
    finally:
        if demo.poll() is None:
            demo.kill()
    # PostgreSQL's last backends may take a moment after pg_ctl returns; the reaper gives 10 s to SIGTERM.
    deadline = time.monotonic() + 60
    while (left := _left(work)) and time.monotonic() < deadline:
        time.sleep(1)
    assert left == [], "\n".join(left)
