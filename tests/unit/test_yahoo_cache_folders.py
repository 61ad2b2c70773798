"""yfinance's cache folders do not pile up in a long-lived worker's ``/tmp`` (issue 31 item 8).

Each process the Yahoo hook runs in gets a private yfinance cache folder (timezones, cookies); before,
each batch made one and none was removed: a Celery worker running thousands of tasks filled its ``/tmp``.
A process preparing three batches, as a worker's task process or ``dag.test`` would, in a ``TMPDIR``
of its own: one folder at a time while it runs, none once it has exited.
"""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

BATCHES = """
import os
from pathlib import Path

from market_ingest.hooks.yahoo import YahooFinanceHook
from market_ingest.intervals import Window

hook = YahooFinanceHook(yahoo_conn_id=None, source="yahoo")
seen = []
for _ in range(3):
    hook.prepare("1d", None)
    seen.append(len(list(Path(os.environ["TMPDIR"]).glob("yfinance-cache-*"))))
print(seen)
"""


def test_a_process_keeps_one_yfinance_cache_folder_at_a_time_and_none_after_it_exits(tmp_path):
    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
    done = subprocess.run([sys.executable, "-c", BATCHES], env=env, capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[1, 1, 1]"
    assert sorted(p.name for p in tmp_path.glob("yfinance-cache-*")) == []
