"""docker-compose.yaml, validated without Docker: the Compose Specification's schema (vendored, as
Docker Compose checks it), then services, pins, health checks, start order, volumes, and the
connections its init service creates.

YAML anchors and merge keys (``<<: *airflow-common``) are resolved by PyYAML as Compose resolves them.
"""

from __future__ import annotations

import importlib.util
import json
import re

import pytest
import yaml

from market_ingest.config import load_config
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "deploy" / "compose" / "Dockerfile"
AIRFLOW = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer"}
#: image:tag with a version in the tag (digits and dots), never latest or a bare name.
PINNED = re.compile(r"^[\w./-]+:(?:[\w.-]*\d+\.\d+[\w.-]*)$")


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


@pytest.fixture(scope="module")
def services(compose) -> dict:
    return compose["services"]


def test_the_file_is_valid_under_the_compose_specification(compose):
    import jsonschema

    schema = json.loads((ROOT / "tests" / "fixtures" / "compose" / "compose-spec.json").read_text())
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in jsonschema.Draft7Validator(schema).iter_errors(compose)]
    assert errors == []


def test_the_stack_has_airflow_s_services_and_the_sinks_and_vendors(services):
    assert set(services) == AIRFLOW | {"airflow-init", "postgres", "timescaledb", "moto", "standin"}
    assert services["airflow-apiserver"]["ports"] == ["8080:8080"]
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    for name in AIRFLOW:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor", name
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://airflow:airflow@postgres/"), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_every_image_is_pinned(services):
    for name, service in services.items():
        assert PINNED.match(service["image"]), f"{name}: {service['image']}"
    (base,) = re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), re.M)
    assert PINNED.match(base), base
    airflow_pin = re.search(r"^apache-airflow==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.M)[1]
    assert base.startswith(f"apache/airflow:{airflow_pin}-"), "the image runs the Airflow the tests run"
    assert f'"apache-airflow=={airflow_pin}"' in DOCKERFILE.read_text(), "and pip may not move it"


def test_the_airflow_services_run_the_project_image(services):
    for name in AIRFLOW | {"airflow-init", "standin"}:
        assert services[name]["build"] == {"context": ".", "dockerfile": "deploy/compose/Dockerfile"}, name
    dockerfile = DOCKERFILE.read_text()
    assert "pip install --no-cache-dir --no-deps /opt/market/src" in dockerfile, "the project installs as its provider package"
    for src in re.findall(r"^COPY (?:--\S+ )*(.+) \S+$", dockerfile, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"Dockerfile copies {path}, which is not in the repository"


def test_every_long_running_service_has_a_health_check(services):
    for name, service in services.items():
        if name == "airflow-init":
            assert service["restart"] == "no", "init runs once and exits"
            continue
        test = service.get("healthcheck", {}).get("test")
        assert test and test[0] in ("CMD", "CMD-SHELL"), f"{name} has no health check"
        assert service["restart"] == "always", name


def test_airflow_starts_after_init_which_starts_after_its_dependencies(services):
    for name in AIRFLOW:
        assert services[name]["depends_on"] == {
            "postgres": {"condition": "service_healthy"},
            "airflow-init": {"condition": "service_completed_successfully"},
        }, name
    init = services["airflow-init"]["depends_on"]
    assert init == {s: {"condition": "service_healthy"} for s in ("postgres", "timescaledb", "moto", "standin")}


def test_volumes_are_declared_and_mounts_exist(compose, services):
    declared = set(compose["volumes"])
    used = set()
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source, target = volume.split(":")[:2]
            if source.startswith("."):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                used.add(source)
            assert target.startswith("/"), volume
    assert used == declared, "every named volume is declared, every declared volume used"
    mounts = {v.split(":")[1] for v in services["airflow-scheduler"]["volumes"]}
    assert {"/opt/airflow/dags", "/opt/airflow/include", "/opt/airflow/config", "/opt/airflow/logs"} <= mounts


def _init_module():
    spec = importlib.util.spec_from_file_location("compose_init", ROOT / "deploy" / "compose" / "init.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_init_creates_every_connection_the_config_uses(compose):
    cfg = load_config()
    conns = _init_module().connections(cfg)
    vendor_ids = {src.connection_id(name) for name, src in cfg.sources.items()}
    assert vendor_ids <= set(conns)
    assert conns[cfg.timescale.conn_id]["host"] == "timescaledb"
    for conn_id in {cfg.kinesis.aws_conn_id, cfg.alerts.aws_conn_id, *cfg.lake.aws_conn_ids}:
        assert "moto:5000" in conns[conn_id]["extra"], conn_id
    assert conns["market_alpha_vantage"]["password"] == "demo", "Alpha Vantage's public demo key, which the stand-in takes"
    # the run notes: all-admins mode (the services' environment) signs requests without credentials
    assert conns[cfg.report.run_note_conn_id] == {"conn_type": "http", "host": "http://airflow-apiserver:8080"}
    assert compose["x-airflow-common"]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS"] == "true"
    for conn_id in vendor_ids:
        assert conns[conn_id]["host"].startswith("http://standin:8790"), conn_id
