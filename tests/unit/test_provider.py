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


def _imported(dotted: str):
    """The object a dotted path names: a module, or a module's attribute (``pkg.mod.Class``)."""
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)


def test_every_module_and_class_the_provider_info_names_imports_and_is_what_it_says():
    """The provider info names its operators, hooks, notifier and plugin as strings (reading it imports
    none of them): each must import and be of its kind, and no operator module may be left out."""
    from airflow.sdk import BaseHook, BaseOperator
    from airflow.sdk.bases.notifier import BaseNotifier

    from market_ingest.plugin import MarketIngestPlugin

    info = get_provider_info()
    integrations = {i["integration-name"] for i in info["integrations"]}
    for role, base in (("hooks", BaseHook), ("operators", BaseOperator)):
        for entry in info[role]:
            assert entry["integration-name"] in integrations
            for name in entry["python-modules"]:
                module = importlib.import_module(name)
                own = [v for v in vars(module).values() if isinstance(v, type) and issubclass(v, base) and v.__module__ == name]
                assert own, f"{name} defines no {base.__name__}"
    # Every module of market_ingest.operators defining an operator, but base (SeriesOperator, the
    # series operators' base, is not used on its own).
    defining = set()
    for path in (ROOT / "plugins" / "market_ingest" / "operators").glob("[!_]*.py"):
        module = importlib.import_module(f"market_ingest.operators.{path.stem}")
        if path.stem != "base" and any(
            isinstance(v, type) and issubclass(v, BaseOperator) and v.__module__ == module.__name__ for v in vars(module).values()
        ):
            defining.add(module.__name__)
    assert {m for entry in info["operators"] for m in entry["python-modules"]} == defining
    for name in info["notifications"]:
        assert issubclass(_imported(name), BaseNotifier)
    assert [(p["name"], _imported(p["plugin-class"])) for p in info["plugins"]] == [("market_ingest", MarketIngestPlugin)]
    assert tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]["airflow.plugins"] == {
        "market_ingest": "market_ingest.plugin:MarketIngestPlugin"
    }


def test_the_asset_uri_scheme_is_the_one_the_assets_use():
    """``x-market`` with no handler: Airflow leaves an ``x-`` URI as written (``market_ingest.assets``)."""
    from market_ingest.assets import bars_asset

    (uris,) = get_provider_info()["asset-uris"]
    assert bars_asset("bars", "yahoo", "1d").uri.partition("://")[0] in uris["schemes"]
