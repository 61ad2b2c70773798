"""The provider package's metadata (``pyproject.toml`` and ``market_ingest.get_provider_info``) agrees
with Airflow's schema, with itself and with the hooks it names."""

from __future__ import annotations

import importlib
import json
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
