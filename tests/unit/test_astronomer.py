"""The Astronomer project files: the Runtime image, the build context, and airflow_settings.yaml.example
agreeing with the pipeline config (every connection it uses, the pools of include/pools.json)."""

from __future__ import annotations

import json
import re
import subprocess
import tomllib

import yaml
from packaging.specifiers import SpecifierSet

from market_ingest import kinds
from market_ingest.config import load_config
from tests.conftest import ROOT

SETTINGS = ROOT / "airflow_settings.yaml.example"
#: The keys the Astro CLI reads (astronomer/astro-cli, settings/types.go: Connection, Pools, Variables).
ASTRO_CONNECTION_KEYS = {
    "conn_id",
    "conn_type",
    "conn_host",
    "conn_schema",
    "conn_login",
    "conn_password",
    "conn_port",
    "conn_uri",
    "conn_extra",
}
ASTRO_POOL_KEYS = {"pool_name", "pool_slot", "pool_description"}


def test_the_dockerfile_is_astro_runtime_3_3_on_a_python_the_package_supports_and_installs_the_provider():
    dockerfile = (ROOT / "Dockerfile").read_text()
    (base,) = re.findall(r"^FROM (\S+)", dockerfile, re.M)
    # Astro's tag form <runtime>-python-<version> (astronomer/astro-cli pkg/airflowrt/dockerfile.go).
    python = re.fullmatch(r"astrocrpublic\.azurecr\.io/runtime:3\.3-\d+-python-(3\.\d+)", base)
    assert python, f"{base}: the Runtime tag pins no Python"
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert SpecifierSet(project["requires-python"]).contains(python[1] + ".0")
    assert f"Programming Language :: Python :: {python[1]}" in project["classifiers"]
    airflow = re.search(r"^apache-airflow==(\d+\.\d+)\.", (ROOT / "requirements-dev.txt").read_text(), re.M)[1]
    assert base.split(":")[1].startswith(f"{airflow}-"), "the Runtime's Airflow line is the one the tests run"
    assert "pip install --no-cache-dir --no-deps -e /usr/local/airflow" in dockerfile
    assert "apache-airflow==" not in (ROOT / "requirements.txt").read_text(), "the Runtime brings Airflow; pip must not move it"


def test_project_files_astro_reads_exist():
    assert (ROOT / "packages.txt").read_text().strip() == "", "no OS package needed: every dependency ships a wheel"
    assert yaml.safe_load((ROOT / ".astro" / "config.yaml").read_text())["project"]["name"] == "market-ingest"


def test_local_environments_stay_out_of_the_image_and_settings_out_of_git():
    ignored = set((ROOT / ".dockerignore").read_text().split())
    assert {".venv", ".venv-3.12", ".git", "airflow_settings.yaml", "dist"} <= ignored
    check = subprocess.run(["git", "check-ignore", "-q", "airflow_settings.yaml"], cwd=ROOT)
    assert check.returncode == 0, "airflow_settings.yaml (real credentials) is git-ignored"


def test_settings_example_has_every_connection_and_pool_the_config_uses():
    cfg = load_config()
    settings = yaml.safe_load(SETTINGS.read_text())["airflow"]
    conns = {c["conn_id"]: c for c in settings["connections"]}
    for name, src in cfg.sources.items():
        assert conns[src.connection_id(name)]["conn_type"] == kinds.kind(src.kind).conn_type, name
    assert conns[cfg.timescale.conn_id]["conn_type"] == "postgres"
    assert conns[cfg.timescale.reader_conn_id]["conn_type"] == "postgres"  # the coverage view's read-only login
    assert conns[cfg.kinesis.aws_conn_id]["conn_type"] == "aws"
    pools = json.loads((ROOT / "include" / "pools.json").read_text())
    assert {p["pool_name"]: p["pool_slot"] for p in settings["pools"]} == {name: p["slots"] for name, p in pools.items()}
    assert set(settings) == {"connections", "pools", "variables"}
    for conn in settings["connections"]:
        assert set(conn) <= ASTRO_CONNECTION_KEYS, conn["conn_id"]
        assert conn["conn_extra"] is None or isinstance(conn["conn_extra"], dict), conn["conn_id"]
        assert not conn["conn_password"] or conn["conn_password"].startswith("<"), "placeholders only, never a credential"
    for pool in settings["pools"]:
        assert set(pool) == ASTRO_POOL_KEYS, pool
