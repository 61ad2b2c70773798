"""``make mwaa``'s artefacts, installed the way MWAA installs them, in a clean Python 3.12 virtualenv.

The virtualenv first gets exactly the distributions of MWAA's Airflow 3.3.1 image
(``deploy/mwaa/image-packages-3.3.1.txt``, from the image's bill of materials; psycopg2 and pycurl
are left out: they build from source against libpq and libcurl, and nothing here imports them).
Then, as MWAA does: ``plugins.zip`` is unpacked into ``$AIRFLOW_HOME/plugins``, the DAGs folder
copied to ``$AIRFLOW_HOME/dags``, ``requirements.txt`` installed with pip under MWAA's essential
constraints (``safe-pip-install``) with ``--no-index``, and ``startup.sh`` sourced before Airflow
starts. The only liberty: ``/usr/local/airflow`` in ``requirements.txt`` becomes the temporary
``AIRFLOW_HOME``. Needs the package index for the image's distributions and the build's wheels.

Runs when ``--mwaa-python`` names a Python 3.12 (``make test`` passes the one it finds).
"""

from __future__ import annotations

import json
import subprocess
import zipfile
from pathlib import Path

import pytest

from market_ingest.config import load_config
from tests.conftest import ROOT, expected_dag_ids
from tools import build_mwaa

pytestmark = pytest.mark.mwaa


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> Path:
    """``make mwaa``'s output directory."""
    out = tmp_path_factory.mktemp("mwaa") / "dist"
    build_mwaa.build(out)
    return out


@pytest.fixture(scope="module")
def mwaa_home(built, tmp_path_factory, request) -> Path:
    """An AIRFLOW_HOME laid out as MWAA's, installed as MWAA installs (:func:`build_mwaa.install`)."""
    home = tmp_path_factory.mktemp("mwaa-home")
    build_mwaa.install(built, home, request.config.getoption("--mwaa-python"))
    return home


@pytest.fixture(scope="module")
def probe(mwaa_home) -> dict:
    """What Airflow in the MWAA-like virtualenv finds: DAGs, plugins, providers, installed versions."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(mwaa_home), "AIRFLOW_HOME": str(mwaa_home), "LANG": "C.UTF-8"}
    script = f'. "{mwaa_home}/startup.sh" && exec "{mwaa_home}/venv/bin/python" "{ROOT}/tests/packaging/mwaa_probe.py"'
    done = subprocess.run(["bash", "-c", script], env=env, cwd=mwaa_home, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_requirements_install_from_plugins_zip_only(built):
    lines = (built / "requirements.txt").read_text().splitlines()
    options = [line for line in lines if line.startswith("-")]
    constraint = f"{build_mwaa.MWAA_PLUGINS}/{build_mwaa.CONSTRAINTS.name}"
    assert options == [f'--constraint "{constraint}"', f"--find-links {build_mwaa.MWAA_PLUGINS}", "--no-index"]
    with zipfile.ZipFile(built / "plugins.zip") as z:
        names = set(z.namelist())
    assert {n for n in names if not n.endswith(".whl")} == {build_mwaa.CONSTRAINTS.name}, (
        "the wheels and their constraints only: the plugin comes with the provider wheel (its entry point)"
    )
    assert all("/" not in name for name in names), "plugins.zip must be flat: MWAA unpacks it into plugins/"
    wheels = {build_mwaa.normalize(n.split("-")[0]): n.split("-")[1] for n in names if n.endswith(".whl")}
    pins = build_mwaa.read_pins(built / "requirements.txt")
    assert pins == wheels, "every requirement is a wheel in plugins.zip, at its pinned version, and nothing else"
    assert pins["airflow-provider-market-ingest"] == build_mwaa.provider_version()
    assert not any(n.startswith("market_ingest/") for n in names), "the package comes from its wheel, not as loose files"


def test_mwaa_requirements_ask_for_what_requirements_txt_does():
    ours = build_mwaa.requirement_names(ROOT / "requirements.txt") - {"apache-airflow"}
    assert build_mwaa.requirement_names(build_mwaa.REQUIREMENTS_IN) == ours


def test_every_dag_imports_on_mwaa_airflow(probe):
    assert probe["airflow"] == build_mwaa.AIRFLOW_VERSION
    assert probe["import_errors"] == {}
    assert set(probe["dags"]) == expected_dag_ids(load_config())
    assert sorted(Path(f).name for f in probe["dag_files"]) == ["market_config_check.py", "market_data.py"], (
        "include/ is ignored, not parsed"
    )


def test_the_plugin_and_the_provider_register(probe):
    assert "market_ingest" in probe["plugins"]
    assert probe["plugin_errors"] == {}
    assert probe["deadline_references"] == ["market_ingest.deadlines.DataIntervalEndDeadline"]
    assert probe["providers"]["airflow-provider-market-ingest"] == build_mwaa.provider_version()
    assert {"yahoo_finance", "alpha_vantage", "ccxt"} <= set(probe["field_behaviours"])


def test_no_package_of_the_image_is_replaced(probe):
    installed = {build_mwaa.normalize(name): version for name, version in probe["installed"].items()}
    image = build_mwaa.read_pins(build_mwaa.IMAGE_PACKAGES)
    changed = {n: (v, installed.get(n)) for n, v in image.items() if n not in build_mwaa.NOT_INSTALLED and installed.get(n) != v}
    assert changed == {}
