"""How Airflow finds this project's plugin: from the package's ``airflow.plugins`` entry point, once,
and nothing of the package imported a second time from the plugins folder under its file name."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = """
import json, sys
from pathlib import Path
from airflow import plugins_manager
plugins, errors = plugins_manager._get_plugins()
folder = Path(sys.argv[1]).resolve()
loaded = sorted(
    name for name, m in list(sys.modules.items())
    if getattr(m, "__file__", None) and folder in Path(m.__file__).resolve().parents and not name.startswith("market_ingest.")
)
print(json.dumps({
    "plugins": [(p.name, type(p.source).__name__, str(p.source)) for p in plugins],
    "errors": errors,
    "deadline_references": sorted(plugins_manager.get_deadline_references_plugins()),
    "fastapi": [(a["name"], a["url_prefix"]) for a in plugins_manager.get_fastapi_plugins()[0]],
    "loaded": loaded,
}))
"""

#: How Airflow names the source of a plugin from an entry point (``EntryPointSource``): ``<dist>==<version>: <entry point>``.
ENTRY_POINT = "EntryPoint(name='market_ingest', value='market_ingest.plugin:MarketIngestPlugin', group='airflow.plugins')"


def _probe(**env: str) -> dict:
    """Airflow's plugins manager in a fresh interpreter with the test session's settings (plugins folder
    ``plugins/``, ``PYTHONPATH`` as the scheduler and API server of the e2e tests and the demo get it)."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, str(ROOT / "plugins")],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env={**os.environ, **env},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_plugin_comes_from_the_entry_point_once_and_nothing_under_its_file_name():
    """The development virtualenv has the package installed editable (``make install``), so the
    plugin comes from its ``airflow.plugins`` entry point, as from a wheel; the plugins folder holds
    no plugin file. Airflow's folder loader imports every ``.py`` under the plugins folder as a
    top-level module named by its file (``airflow/_shared/plugins_manager``: ``mod_name =
    path.stem``): without ``plugins/.airflowignore`` it loaded ``market_ingest/lake.py`` as
    ``lake``, ``report.py`` as ``report`` and so on, each a second copy of the code; a file named
    ``http.py`` replaced the standard library's ``http`` in the API server, which then failed to
    start. A setuptools build left an ``.egg-info`` in ``plugins/`` (on ``sys.path``), so the
    entry point was found twice and the second copy reported as an import error."""
    found = _probe()
    assert found["errors"] == {}
    ((name, kind, source),) = found["plugins"]
    assert (name, kind) == ("market_ingest", "EntryPointSource")
    dist, _, entry_point = source.partition(": ")
    assert dist.startswith("airflow-provider-market-ingest==") and entry_point == ENTRY_POINT
    assert found["deadline_references"] == ["market_ingest.deadlines.DataIntervalEndDeadline"]
    assert found["fastapi"] == [["Market coverage", "/market-coverage"]]
    assert found["loaded"] == ["market_ingest"]


@pytest.mark.parametrize("lazy", ["True", "False"])
def test_the_provider_infos_plugin_entry_does_not_load_it_twice(lazy):
    """With ``[core] lazy_discover_providers = False`` Airflow also loads the plugins the provider
    info lists (``plugins``: ``market_ingest.plugin.MarketIngestPlugin``): it registers the name
    once and skips the second, with its warning among the plugin import errors, as for Airflow's
    own providers, which declare both (openlineage)."""
    found = _probe(AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS=lazy)
    assert [[name, kind] for name, kind, _ in found["plugins"]] == [["market_ingest", "EntryPointSource"]]
    skipped = {"market_ingest": "Plugin 'market_ingest' already registered, skipping"}
    assert found["errors"] == ({} if lazy == "True" else skipped)
