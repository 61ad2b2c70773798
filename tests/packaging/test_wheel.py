"""The provider wheel on its own: built from ``pyproject.toml``, installed into a clean virtualenv with
the dependencies it declares (at the versions of ``requirements.lock``), it registers the Airflow
plugin (coverage view, deadline reference) through its ``airflow.plugins`` entry point while the
plugins folder is an empty directory: nothing of the project is copied there, on MWAA, Astro,
Docker Compose or Kubernetes alike. Needs uv's cache or the package index, as ``make install``."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from market_ingest import ui
from tests.conftest import ROOT
from tools import build_mwaa

pytestmark = pytest.mark.packaging

#: Run by the clean virtualenv's Python: what its Airflow finds, as one JSON line.
PROBE = """
import json, os, sys
from importlib import metadata
from airflow import plugins_manager
from airflow.providers_manager import ProvidersManager
import market_ingest

info = plugins_manager.get_plugin_info()
print(json.dumps(default=str, obj={
    "plugins": [{k: p[k] for k in ("name", "source", "fastapi_apps", "external_views")} for p in info],
    "errors": plugins_manager.get_import_errors(),
    "deadline_references": sorted(plugins_manager.get_deadline_references_plugins()),
    "providers": {name: p.version for name, p in ProvidersManager().providers.items() if "market" in name},
    "package": market_ingest.__file__,
    "distributions": [str(d.locate_file("")) for d in metadata.distributions() if d.metadata["Name"] == "airflow-provider-market-ingest"],
    "plugins_folder": os.listdir(os.environ["AIRFLOW__CORE__PLUGINS_FOLDER"]),
    "sys_path": sys.path,
}))
"""


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory) -> Path:
    """A virtualenv of this interpreter with the wheel and what it declares, nothing else; its python."""
    tmp = tmp_path_factory.mktemp("wheel")
    wheel = build_mwaa.build_provider_wheel(tmp / "dist")
    uv = build_mwaa._uv()
    subprocess.run([uv, "venv", "--quiet", "--python", sys.executable, str(tmp / "venv")], check=True)
    python = tmp / "venv" / "bin" / "python"
    subprocess.run(
        [uv, "pip", "install", "--quiet", "--python", str(python), "-c", str(ROOT / "requirements.lock"), str(wheel)],
        check=True,
    )
    return python


def test_a_wheel_in_a_clean_virtualenv_registers_the_plugin_with_an_empty_plugins_folder(clean_venv, tmp_path):
    home = tmp_path / "airflow"
    (home / "plugins").mkdir(parents=True)
    (home / "dags").mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(home / "plugins"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(home / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    done = subprocess.run([str(clean_venv), "-c", PROBE], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    found = json.loads(done.stdout.strip().splitlines()[-1])
    site = clean_venv.parent.parent
    assert not any(p.startswith(str(ROOT)) for p in found["sys_path"]), "nothing of the repository is importable"
    assert Path(found["package"]).is_relative_to(site), found["package"]
    assert [Path(d).is_relative_to(site) for d in found["distributions"]] == [True]
    assert found["plugins_folder"] == []
    assert found["errors"] == {}
    (plugin,) = found["plugins"]
    version = build_mwaa.provider_version()
    assert plugin["name"] == "market_ingest"
    assert plugin["source"] == (
        f"airflow-provider-market-ingest=={version}: EntryPoint(name='market_ingest', "
        "value='market_ingest.plugin:MarketIngestPlugin', group='airflow.plugins')"
    )
    app = f"{type(ui.app).__module__}.{type(ui.app).__qualname__}"  # the coverage view's app, as Airflow names it
    assert plugin["fastapi_apps"] == [{"app": app, "url_prefix": ui.PREFIX, "name": "Market coverage"}]
    assert [(v["name"], v["href"]) for v in plugin["external_views"]] == [("Market coverage", f"{ui.PREFIX}/")]
    assert found["deadline_references"] == ["market_ingest.deadlines.DataIntervalEndDeadline"]
    assert found["providers"] == {"airflow-provider-market-ingest": version}
