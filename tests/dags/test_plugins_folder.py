"""What Airflow imports from ``plugins/``: the plugin module, and the provider package only as ``market_ingest``."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
import json, sys
from pathlib import Path
from airflow._shared.plugins_manager.plugins_manager import _load_plugins_from_plugin_directory as load
plugins, errors = load(sys.argv[1])
folder = Path(sys.argv[1]).resolve()
loaded = sorted(
    name for name, m in list(sys.modules.items())
    if getattr(m, "__file__", None) and folder in Path(m.__file__).resolve().parents and not name.startswith("market_ingest.")
)
print(json.dumps({"loaded": loaded, "plugins": [p.name for p in plugins], "errors": errors}))
"""


def test_airflow_loads_the_plugin_module_and_no_product_module_under_its_file_name():
    """Airflow's loader imports every ``.py`` under the plugins folder as a top-level module named
    by its file (``airflow/_shared/plugins_manager``: ``mod_name = path.stem``). Without
    ``plugins/.airflowignore`` it loaded ``market_ingest/lake.py`` as ``lake``, ``report.py`` as
    ``report`` and so on, each a second copy of the code; a file named ``http.py`` replaced the
    standard library's ``http`` in the API server, which then failed to start."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "plugins")], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    assert found["errors"] == {}
    assert found["plugins"] == ["market_ingest"]
    assert found["loaded"] == ["market_ingest", "market_ingest_plugin"]
