"""deploy/helm/values.yaml, validated without Helm or a cluster: merged over the official chart's
defaults and checked against its values schema (both vendored, tests/fixtures/helm/PROVENANCE.md),
as ``helm install`` does before rendering; then what this project needs from it: the executor, the
image and what is baked into it, the pools, the connections from Kubernetes secrets (no secret
value in the file), and the environment the product reads.
"""

from __future__ import annotations

import copy
import json
import re

import pytest
import yaml

from market_ingest.config import load_config
from tests.conftest import ROOT

VALUES = ROOT / "deploy" / "helm" / "values.yaml"
DOCKERFILE = ROOT / "deploy" / "helm" / "Dockerfile"
CHART = ROOT / "tests" / "fixtures" / "helm"
CHART_VERSION = "1.19.0"
#: the secret of the connections the shipped config cannot run without, and the optional one
CONNECTIONS_SECRET = "market-ingest-connections"
VENDOR_SECRET = "market-ingest-vendor-connections"


def coalesce(defaults: dict, values: dict) -> dict:
    """``values`` over ``defaults`` as Helm merges a values file over a chart's: maps merge key by
    key, anything else (lists included) replaces, and a null removes the chart's key."""
    merged = copy.deepcopy(defaults)
    for key, value in values.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = coalesce(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def unknown_keys(values: dict, node: dict, schema: dict, path: str = "") -> list[str]:
    """Keys of ``values`` that the schema does not declare where it declares properties: the
    schema sets ``additionalProperties: false`` on most objects but not at the top level, where
    Helm would silently ignore a misspelt key."""
    while "$ref" in node:
        node = schema["definitions"][node["$ref"].removeprefix("#/definitions/")]
    props = node.get("properties")
    if props is None or not isinstance(values, dict):
        return []
    found = []
    for key, value in values.items():
        if key not in props:
            found.append(f"{path}{key}")
        else:
            found += unknown_keys(value, props[key], schema, f"{path}{key}.")
    return found


def schema_errors(values: dict) -> list[str]:
    import jsonschema

    schema = json.loads((CHART / "values.schema.json").read_text())
    merged = coalesce(yaml.safe_load((CHART / "values.yaml").read_text()), values)
    errors = [f"{'.'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(merged)]
    return errors + [f"{key}: not in the chart's schema" for key in unknown_keys(values, schema, schema)]


@pytest.fixture(scope="module")
def values() -> dict:
    return yaml.safe_load(VALUES.read_text())


def test_the_values_are_valid_under_the_chart_s_schema(values):
    assert f"`version: {CHART_VERSION}`" in (CHART / "PROVENANCE.md").read_text(), "the schema is that chart's"
    assert f"--version {CHART_VERSION}" in VALUES.read_text(), "the install command pins the chart the schema is from"
    assert schema_errors(values) == []


@pytest.mark.parametrize(
    "path, value, error",
    [
        pytest.param(("workers", "celery", "replicas"), "two", "'two' is not of type", id="wrong-type"),
        pytest.param(("workers", "celery", "replica"), 2, "workers.celery.replica: not in the chart's schema", id="misspelt-key"),
        pytest.param(("executors",), "CeleryExecutor", "executors: not in the chart's schema", id="misspelt-top-level"),
        pytest.param(
            ("secret",), [{"envName": "AIRFLOW_CONN_X", "secretName": "s", "value": "x"}], "Additional properties", id="bad-item"
        ),
    ],
)
def test_the_schema_check_catches_a_wrong_value(values, path, value, error):
    broken = copy.deepcopy(values)
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    assert any(error in e for e in schema_errors(broken)), schema_errors(broken)


def test_the_executor_is_celery_with_ha_schedulers_and_two_workers(values):
    assert values["executor"] == "CeleryExecutor"
    assert values["scheduler"]["replicas"] == 2
    assert values["workers"]["celery"]["replicas"] == 2
    assert values["postgresql"] == {"enabled": False}, "an external PostgreSQL: the pools, shared by every worker, live there"


def test_the_image_is_this_project_s_with_dags_and_include_baked_in(values):
    compose = yaml.safe_load((ROOT / "docker-compose.yaml").read_text())
    compose_image = compose["x-airflow-common"]["image"]
    airflow_pin = re.search(r"^apache-airflow==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.M)[1]
    assert values["airflowVersion"] == values["defaultAirflowTag"] == airflow_pin
    image = values["images"]["airflow"]
    assert not image["repository"].startswith("apache/"), "the project's image, not Airflow's"
    assert image["tag"] == compose_image.split(":")[1], "the version the Compose image is tagged with"
    assert values["images"]["useDefaultImageForMigration"] is False, "the pools job needs include/ from this image"

    dockerfile = DOCKERFILE.read_text()
    (base,) = re.findall(r"^ARG BASE=(\S+)", dockerfile, re.M)
    assert base == compose_image, "built on the Compose image (Airflow, requirements, the Celery provider, the package)"
    copied = {}
    for sources, target in re.findall(r"^COPY (?:--\S+ )*(.+) (\S+)$", dockerfile, re.M):
        for src in sources.split():
            assert (ROOT / src).exists(), f"the Dockerfile copies {src}, which is not in the repository"
            copied[src] = target
    (include_dir,) = re.findall(r"^ENV MARKET_INGEST_INCLUDE_DIR=(\S+)", dockerfile, re.M)
    env = {e["name"]: e["value"] for e in values["env"]}
    assert env["MARKET_INGEST_INCLUDE_DIR"] == include_dir
    assert copied["dags"] == "/opt/airflow/dags", "the chart's DAG folder without git-sync or a volume"
    for src in ("include/pipeline.yaml", "include/pools.json", "include/sql", "include/symbols"):
        assert copied[src].rstrip("/").startswith(include_dir), src
    assert "include/recordings" not in copied, "the stand-in's recordings stay out of the production image"
    assert values["dags"] == {"persistence": {"enabled": False}, "gitSync": {"enabled": False}}


def test_the_environment_names_are_the_ones_the_product_reads(values):
    read = set()
    for path in (ROOT / "plugins" / "market_ingest").rglob("*.py"):
        read |= set(re.findall(r"\b(MARKET_INGEST_[A-Z_]+)\b", path.read_text()))
    names = {e["name"] for e in values["env"]}
    assert names == {"MARKET_INGEST_INCLUDE_DIR"}
    assert names <= read


def test_the_pools_are_imported_after_every_migration(values):
    """The chart has no pools setting (1.19.0): the migration job, a Helm hook after every install
    and upgrade, imports include/pools.json from the image once the metadata DB is migrated."""
    (script,) = values["migrateDatabaseJob"]["args"][2:]
    assert values["migrateDatabaseJob"]["args"][:2] == ["bash", "-c"]
    assert script == 'airflow db migrate && exec airflow pools import "${MARKET_INGEST_INCLUDE_DIR}/pools.json"'
    pools = json.loads((ROOT / "include" / "pools.json").read_text())
    assert pools and all({"slots", "description"} <= set(p) for p in pools.values()), "what `airflow pools import` needs"


def _connection_envs(cfg) -> tuple[set[str], set[str]]:
    """(required, optional) ``AIRFLOW_CONN_<ID>`` names of the shipped config: the sinks, the
    coverage view's login, the run notes and the vendors that need a key or a gateway's address
    (Interactive Brokers: no default connection) are required."""
    required = {
        cfg.timescale.conn_id,
        cfg.timescale.reader_conn_id,
        cfg.kinesis.aws_conn_id,
        cfg.alerts.aws_conn_id,
        *cfg.lake.aws_conn_ids,
        cfg.report.run_note_conn_id,
    }
    vendors = {name: src.connection_id(name) for name, src in cfg.sources.items()}
    required |= {conn for name, conn in vendors.items() if cfg.sources[name].kind in ("alpha_vantage", "twelvedata", "ibkr")}
    optional = set(vendors.values()) - required
    env = lambda ids: {f"AIRFLOW_CONN_{i.upper()}" for i in ids if i}  # noqa: E731
    return env(required), env(optional)


def test_connections_come_from_kubernetes_secrets(values):
    required, optional = _connection_envs(load_config())
    assert {s["envName"] for s in values["secret"]} == required
    for entry in values["secret"]:
        assert (entry["secretName"], entry["secretKey"]) == (CONNECTIONS_SECRET, entry["envName"]), entry
    (ref,) = yaml.safe_load(values["extraEnvFrom"])
    assert ref == {"secretRef": {"name": VENDOR_SECRET, "optional": True}}, "vendor keys may be absent"
    docs = (ROOT / "docs" / "kubernetes.md").read_text()
    for name in required | optional:
        assert name in docs, f"docs/kubernetes.md says how to give {name}"
    assert CONNECTIONS_SECRET in docs and VENDOR_SECRET in docs


def test_no_secret_value_is_written_in_the_file(values):
    assert not re.search(r"://[^\s/@:\"]*:[^\s/@\"]+@", json.dumps(values)), "no URI with a password"
    merged = coalesce(yaml.safe_load((CHART / "values.yaml").read_text()), values)
    for key in ("fernetKey", "apiSecretKey", "jwtSecret", "webserverSecretKey", "extraSecrets"):
        assert key not in values, key
    assert "AIRFLOW_CONN_" not in json.dumps(values.get("env")), "connections only from secrets"
    # the metadata DB: a secret, not the chart's metadataConnection user/pass (postgres/postgres)
    assert merged["data"]["metadataSecretName"] == "market-ingest-airflow-metadata"
    # the admin user: the chart's default args would pass createUserJob.defaultUser.password (admin)
    job = values["createUserJob"]
    args = job["args"]
    assert args[args.index("-p") + 1] == "$(AIRFLOW_ADMIN_PASSWORD)", "expanded by Kubernetes from the job's env"
    assert "defaultUser" not in json.dumps(args)
    assert job["env"] == [
        {
            "name": "AIRFLOW_ADMIN_PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "market-ingest-airflow-admin", "key": "password"}},
        }
    ]
