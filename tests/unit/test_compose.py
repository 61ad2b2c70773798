"""docker-compose.yaml, validated without Docker: the Compose Specification's schema (vendored, as
Docker Compose checks it), then services (Airflow's official CeleryExecutor layout), pins, health
checks, start order, volumes, the login, and the connections its init service creates.

YAML anchors and merge keys (``<<: *airflow-common``) are resolved by PyYAML as Compose resolves them.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess

import pytest
import yaml

from market_ingest.config import load_config
from tests.conftest import ROOT

COMPOSE = ROOT / "docker-compose.yaml"
DOCKERFILE = ROOT / "deploy" / "compose" / "Dockerfile"
AIRFLOW = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-triggerer", "airflow-worker"}
#: every service that runs the project image (flower: only under ``--profile flower``)
IMAGE = AIRFLOW | {"airflow-init", "standin", "flower"}
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
    assert set(services) == IMAGE | {"postgres", "redis", "timescaledb", "moto", "standin"}
    assert services["airflow-apiserver"]["ports"] == ["127.0.0.1:8080:8080"]
    assert services["timescaledb"]["image"].startswith("timescale/timescaledb:")
    for name in AIRFLOW | {"flower", "airflow-init"}:
        env = services[name]["environment"]
        assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith(
            "postgresql+psycopg2://airflow:${AIRFLOW_DB_PASSWORD}@postgres/"
        ), name
        assert env["AIRFLOW__CORE__EXECUTION_API_SERVER_URL"] == "http://airflow-apiserver:8080/execution/", name
    assert services["airflow-scheduler"]["environment"]["AIRFLOW__SCHEDULER__ENABLE_HEALTH_CHECK"] == "true"


def test_the_executor_is_celery_with_a_redis_broker_and_a_worker(services):
    """Airflow's official file (airflow-core/docs/howto/docker-compose/docker-compose.yaml): the
    CeleryExecutor, Redis as the broker, the metadata PostgreSQL as the result backend, a worker
    running ``celery worker``, and Flower behind the ``flower`` profile. On main it was the
    LocalExecutor, with no broker and no worker."""
    for name in AIRFLOW | {"flower", "airflow-init"}:
        env = services[name]["environment"]
        assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor", name
        assert env["AIRFLOW__CELERY__BROKER_URL"] == "redis://:@redis:6379/0", name
        assert env["AIRFLOW__CELERY__RESULT_BACKEND"] == "db+postgresql://airflow:${AIRFLOW_DB_PASSWORD}@postgres/airflow", name
    redis = services["redis"]
    assert redis["image"].startswith("redis:7.2"), "7.2, as Airflow's file: later Redis changed its licence"
    assert redis["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    assert "ports" not in redis, "the broker is reached inside the Compose network only"
    worker = services["airflow-worker"]
    assert worker["command"] == "celery worker"
    assert "inspect ping" in worker["healthcheck"]["test"][1]
    assert worker["environment"]["DUMB_INIT_SETSID"] == "0", "warm shutdown: the worker finishes its tasks on stop"
    assert worker["depends_on"]["airflow-apiserver"] == {"condition": "service_healthy"}, "tasks report to the execution API"
    assert "container_name" not in worker and "ports" not in worker, "`--scale airflow-worker=N` stays possible"
    flower = services["flower"]
    assert (flower["command"], flower["profiles"], flower["ports"]) == ("celery flower", ["flower"], ["127.0.0.1:5555:5555"])
    assert [name for name, s in services.items() if "profiles" in s] == ["flower"], "`up` starts everything else"
    dockerfile = DOCKERFILE.read_text()
    dev = (ROOT / "requirements-dev.txt").read_text()
    for package in ("apache-airflow-providers-celery", "celery[redis]"):  # celery 5.7 breaks provider 3.26's workers
        (image_pin,) = re.findall(rf'"{re.escape(package)}==([\d.]+)"', dockerfile)
        (test_pin,) = re.findall(rf"^{re.escape(package)}==(\S+)", dev, re.M)
        assert image_pin == test_pin, f"the image runs the {package} the tests run"


def test_the_ui_asks_for_a_login(compose, services, monkeypatch, tmp_path):
    """On main every user was admin without a password (``simple_auth_manager_all_admins``). Now the
    simple auth manager knows one user, ``admin``, whose password airflow-init writes from
    ``AIRFLOW_ADMIN_PASSWORD`` into the passwords file the API server reads; the API server, starting
    after it, keeps that password instead of generating one (Airflow's own code, run here)."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    env = compose["x-airflow-common"]["environment"]
    assert "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS" not in env
    assert env["AIRFLOW__CORE__AUTH_MANAGER"] == f"{SimpleAuthManager.__module__}.SimpleAuthManager"
    assert env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    passwords_file = env["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"]
    config_mount = next(v for v in services["airflow-apiserver"]["volumes"] if v.endswith(":/opt/airflow/config"))
    assert passwords_file.startswith("/opt/airflow/config/"), "in the config volume init and the API server share"
    assert config_mount in services["airflow-init"]["volumes"]
    assert services["airflow-apiserver"]["depends_on"]["airflow-init"] == {"condition": "service_completed_successfully"}

    local = tmp_path / "simple_auth_manager_passwords.json"
    for key in ("AIRFLOW__CORE__AUTH_MANAGER", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"):
        monkeypatch.setenv(key, env[key])
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(local))
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", "admin-secret-4")
    assert _init_module().write_admin_password() == str(local)
    assert local.stat().st_mode & 0o777 == 0o600
    SimpleAuthManager().init()  # what the API server does when it starts
    assert SimpleAuthManager.get_passwords() == {"admin": "admin-secret-4"}
    monkeypatch.setenv("AIRFLOW_ADMIN_PASSWORD", "changed-in-env-5")  # a later `up` after .env changed
    _init_module().write_admin_password()
    assert SimpleAuthManager.get_passwords() == {"admin": "changed-in-env-5"}


def test_every_image_is_pinned(services):
    for name, service in services.items():
        assert PINNED.match(service["image"]), f"{name}: {service['image']}"
    (base,) = re.findall(r"^FROM (\S+)", DOCKERFILE.read_text(), re.M)
    assert PINNED.match(base), base
    airflow_pin = re.search(r"^apache-airflow==(\S+)", (ROOT / "requirements-dev.txt").read_text(), re.M)[1]
    assert base.startswith(f"apache/airflow:{airflow_pin}-"), "the image runs the Airflow the tests run"
    assert f'"apache-airflow=={airflow_pin}"' in DOCKERFILE.read_text(), "and pip may not move it"


def test_the_airflow_services_run_the_project_image(services):
    for name in IMAGE:
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
    for name in AIRFLOW | {"flower"}:
        depends_on = {**services[name]["depends_on"]}
        if name == "airflow-worker":
            assert depends_on.pop("airflow-apiserver") == {"condition": "service_healthy"}
        assert depends_on == {
            "redis": {"condition": "service_healthy"},
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


PASSWORDS = {
    "AIRFLOW_DB_PASSWORD": "db-secret-1",
    "AIRFLOW_ADMIN_PASSWORD": "admin-secret-4",
    "TIMESCALE_PASSWORD": "tsdb-secret-2",
    "MARKET_READER_PASSWORD": "view-secret-3",
}


@pytest.fixture
def passwords(monkeypatch) -> dict[str, str]:
    """The .env passwords, as Compose passes them to the init service."""
    for name, value in PASSWORDS.items():
        monkeypatch.setenv(name, value)
    return PASSWORDS


def test_published_ports_are_bound_to_loopback(services):
    """On main every published port listened on every interface ("8080:8080"), with fixed passwords
    behind it and a UI where every user is admin."""
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"airflow-apiserver", "timescaledb", "moto", "standin", "flower"}
    for name, ports in published.items():
        for port in ports:
            assert isinstance(port, str) and port.startswith("127.0.0.1:") and port.count(":") == 2, (name, port)


def test_passwords_come_from_env_without_defaults(compose, services):
    """On main: ``POSTGRES_PASSWORD: airflow`` and ``${TIMESCALE_PASSWORD:-market}``. Every password
    is now a variable of ``.env`` (git-ignored, kept out of images) that Compose requires
    (``${VAR:?...}``: no default), and ``.env.example`` lists every variable the file uses, with the
    passwords empty."""
    text = COMPOSE.read_text()
    required = re.compile(r"^\$\{([A-Z_]+):\?[^}]+\}$")
    found = {}
    for name, service in services.items():
        for key, value in (service.get("environment") or {}).items():
            if key.endswith("PASSWORD"):  # not ..._PASSWORDS_FILE, a path
                assert required.match(str(value)), f"{name} {key}: {value}"
                found[key, name] = required.match(value)[1]
    assert found == {
        ("POSTGRES_PASSWORD", "postgres"): "AIRFLOW_DB_PASSWORD",
        ("POSTGRES_PASSWORD", "timescaledb"): "TIMESCALE_PASSWORD",
        ("TIMESCALE_PASSWORD", "airflow-init"): "TIMESCALE_PASSWORD",
        ("MARKET_READER_PASSWORD", "airflow-init"): "MARKET_READER_PASSWORD",
        ("AIRFLOW_ADMIN_PASSWORD", "airflow-init"): "AIRFLOW_ADMIN_PASSWORD",
    }
    for name in AIRFLOW | {"flower"}:  # the warehouse's and admin's passwords reach the init service only
        assert not {k for k in services[name]["environment"] if k.endswith("PASSWORD")}, name
    assert not re.search(r":-(airflow|market)\b|:airflow@", text), "no fixed password left"
    example = dict(
        line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines() if line and not line.startswith("#")
    )
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", text))  # $${HOSTNAME}: an escaped $, the container's
    assert used <= set(example), "every variable is in .env.example"
    assert {k: v for k, v in example.items() if "PASSWORD" in k} == dict.fromkeys(set(found.values()), "")
    assert subprocess.run(["git", "check-ignore", "-q", ".env"], cwd=ROOT).returncode == 0, ".env is git-ignored"
    assert ".env" in (ROOT / ".dockerignore").read_text().split(), "and kept out of the images"


def test_init_refuses_to_start_without_a_password(monkeypatch, passwords):
    monkeypatch.delenv("MARKET_READER_PASSWORD")
    with pytest.raises(SystemExit, match="MARKET_READER_PASSWORD is not set: copy .env.example to .env"):
        _init_module().connections(load_config())


def test_init_creates_every_connection_the_config_uses(compose, passwords):
    cfg = load_config()
    conns = _init_module().connections(cfg)
    vendor_ids = {src.connection_id(name) for name, src in cfg.sources.items()}
    assert vendor_ids <= set(conns)
    assert conns[cfg.timescale.conn_id]["host"] == "timescaledb"
    assert (conns[cfg.timescale.conn_id]["login"], conns[cfg.timescale.conn_id]["password"]) == ("postgres", "tsdb-secret-2")
    reader = conns[cfg.timescale.reader_conn_id]  # the coverage view's own read-only login
    assert (reader["host"], reader["login"], reader["password"]) == ("timescaledb", "market_view", "view-secret-3")
    for conn_id in {cfg.kinesis.aws_conn_id, cfg.alerts.aws_conn_id, *cfg.lake.aws_conn_ids}:
        assert "moto:5000" in conns[conn_id]["extra"], conn_id
    assert conns["market_alpha_vantage"]["password"] == "demo", "Alpha Vantage's public demo key, which the stand-in takes"
    # the run notes: admin's token from /auth/token (market_ingest.run_note), with the .env password
    assert conns[cfg.report.run_note_conn_id] == {
        "conn_type": "http",
        "host": "http://airflow-apiserver:8080",
        "login": "admin",
        "password": "admin-secret-4",
    }
    assert compose["x-airflow-common"]["environment"]["AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS"] == "admin:admin"
    for conn_id in vendor_ids:
        assert conns[conn_id]["host"].startswith("http://standin:8790"), conn_id
