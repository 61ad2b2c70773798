"""The provider package's metadata (``pyproject.toml`` and ``market_ingest.get_provider_info``) agrees
with Airflow's schema, with itself and with the hooks it names."""

from __future__ import annotations

import importlib
import json
import os
import tomllib
from pathlib import Path

import airflow
import jsonschema

from market_ingest.get_provider_info import get_provider_info

ROOT = Path(__file__).resolve().parents[2]


def test_provider_info_matches_airflows_schema_the_distribution_and_the_hooks():
    info = get_provider_info()
    schema = json.loads((Path(airflow.__file__).parent / "provider_info.schema.json").read_text())
    jsonschema.validate(info, schema)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # Airflow refuses a provider whose package-name differs from its distribution's name.
    assert info["package-name"] == project["name"] and info["versions"] == [project["version"]]
    assert project["entry-points"]["apache_airflow_provider"] == {
        "provider_info": "market_ingest.get_provider_info:get_provider_info"
    }
    for entry in info["connection-types"]:
        module, _, name = entry["hook-class-name"].rpartition(".")
        hook = getattr(importlib.import_module(module), name)
        assert (hook.conn_type, hook.hook_name) == (entry["connection-type"], entry["hook-name"])
        assert "get_ui_field_behaviour" not in vars(hook)  # the form is declared once, by the vendor module's KIND
        fields = entry["conn-fields"]
        assert all(f["schema"]["type"][-1] == "null" and f["label"] and f["description"] for f in fields.values())


def test_loading_the_plugins_folder_imports_the_plugin_module_only():
    """Airflow's plugin loader imports every ``.py`` file under ``plugins/`` as a top-level module
    named by its file name (``airflow.plugins_manager``). Without ``plugins/.airflowignore``
    keeping ``market_ingest/`` out, ``market_ingest/http.py`` became ``sys.modules["http"]`` in
    every process that loads plugins, and aiohttp's ``from http import HTTPStatus`` (s3fs, so every
    S3 lake access) failed after it. The package is imported by its name; only the plugin module
    is a plugin file."""
    import subprocess
    import sys

    code = """
import json, sys
from airflow import plugins_manager
plugins_manager.ensure_plugins_loaded()
print(json.dumps({name: getattr(sys.modules.get(name), "__file__", None) for name in ("http", "market_ingest_plugin", "kinds", "sources")}))
"""
    env = {**os.environ, "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True).stdout
    loaded = json.loads(out.strip().splitlines()[-1])
    assert loaded["market_ingest_plugin"] == str(ROOT / "plugins" / "market_ingest_plugin.py")
    assert not loaded["http"].startswith(str(ROOT)), loaded["http"]  # the standard library's
    assert loaded["kinds"] is None and loaded["sources"] is None  # no product module as a top-level one
