"""Shared fixtures: Airflow environment, a real warehouse (PostgreSQL from pgserver, or TimescaleDB
with ``--warehouse timescaledb``), a moto server and the vendor stand-in.

The servers are started once per test session on loopback / a unix socket and stopped at the end;
nothing needs to be running beforehand. Every vendor connection of the pipeline config points at
the stand-in (``vendors``), which serves ``include/recordings``; a test that needs other answers
starts its own with :func:`serving` over a folder written by :func:`recording`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "include" / "recordings"
#: A ccxt connection to the stand-in for exchanges the pipeline config has no source for (coinbaseexchange, okx).
STANDIN_CONN = "market_standin"
STANDIN_CONN_ENV = f"AIRFLOW_CONN_{STANDIN_CONN.upper()}"

# Airflow reads its configuration at import: set it before any test imports airflow.
_AIRFLOW_HOME = Path(os.environ.get("MARKET_INGEST_TEST_HOME", "/tmp")) / f"market-ingest-tests-{os.getpid()}"
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
    }
)


def pytest_addoption(parser):
    parser.addoption(
        "--warehouse",
        choices=("postgres", "timescaledb"),
        default=os.environ.get("MARKET_TEST_WAREHOUSE", "postgres"),
        help="the warehouse the session's services run: plain PostgreSQL (pgserver) or TimescaleDB "
        "(PostgreSQL 15 with timescaledb preloaded; fails when it is not installed, never falls back)",
    )
    parser.addoption(
        "--executors",
        type=lambda value: [e.strip() for e in value.split(",") if e.strip()],
        default=os.environ.get("MARKET_TEST_EXECUTORS", "local,celery"),
        help="the Airflow layouts the scheduler tests (tests/e2e/test_scheduler.py) run in, comma-separated: "
        "local (airflow standalone, LocalExecutor) and celery (CeleryExecutor: two workers, two schedulers, "
        "Debian's redis-server as broker)",
    )
    parser.addoption(
        "--mwaa-python",
        default=os.environ.get("MWAA_PYTHON"),
        help="a Python 3.12 interpreter: runs the MWAA packaging tests (tests/packaging, marker mwaa), "
        "which build make mwaa's artefacts and install them in a clean virtualenv of it; without it "
        "they are deselected (make test passes the python3.12 it finds)",
    )


def _uses_session_services(item) -> bool:
    """Whether test ``item`` uses :func:`services` of this file (not a module's own fixture of
    that name, such as the compose file's services in tests/unit/test_compose.py)."""
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.get("services") if info else None
    return bool(defs) and defs[-1].func.__module__ == __name__


def pytest_collection_modifyitems(config, items):
    """Mark every test that uses the session's services ``warehouse``: the TimescaleDB half of
    ``make test`` runs exactly those (``-m warehouse --warehouse timescaledb``), and ``make
    test-fast`` none of them. Deselect the scheduler tests of layouts ``--executors`` did not
    choose, and the MWAA packaging tests unless ``--mwaa-python`` names an interpreter for them."""
    for item in items:
        if _uses_session_services(item):
            item.add_marker(pytest.mark.warehouse)
    # A scheduler test of layouts --executors did not choose runs in none: deselected, not skipped.
    chosen = set(config.getoption("--executors"))
    unchosen = [item for item in items if (m := item.get_closest_marker("executors")) and not chosen & set(m.args)]
    if unchosen:
        config.hook.pytest_deselected(items=unchosen)
        items[:] = [item for item in items if item not in unchosen]
    if not config.getoption("--mwaa-python"):
        deselected = [item for item in items if item.get_closest_marker("mwaa")]
        if deselected:
            config.hook.pytest_deselected(items=deselected)
            items[:] = [item for item in items if not item.get_closest_marker("mwaa")]


def pytest_report_header(config):
    return f"warehouse: {config.getoption('--warehouse')}"


def expected_dag_ids(cfg) -> set[str]:
    """The DAG ids ``dags/market_data.py`` must produce for the pipeline config ``cfg``: one
    ``market_<source>_<interval>`` per configured pair, one ``market_<source>_quote`` per quote
    source, ``market_setup`` and ``market_repair``. Spelled here, apart from
    ``market_ingest.dag_factory``, so that a change of the naming rule fails the tests."""
    bars = {f"market_{s}_{i}" for s, i in cfg.dag_pairs()}
    return bars | {f"market_{s}_quote" for s in cfg.quote_sources()} | {"market_setup", "market_repair"}


def recording(folder: Path, name: str, body: str | bytes, **meta) -> Path:
    """Write a recording (``<name>.json`` and its sidecar ``<name>.meta.yaml``) into ``folder``; return the body's path.

    :param meta: sidecar fields (``vendor``, ``endpoint``, ``symbol``, ``interval``, ``requested_at``, ``status``, ...).
    """
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.json"
    path.write_bytes(body.encode() if isinstance(body, str) else body)
    (folder / f"{name}.meta.yaml").write_text(yaml.safe_dump(meta, sort_keys=False))
    return path


def built(operator: type, task_id: str, source: str = "yahoo", interval: str = "1d", *, dataset: str = "bars", **upstream):
    """An operator of this package built as its DAG builds it: the arguments
    :func:`market_ingest.dag_factory.task_arguments` gives task ``task_id`` of ``(source,
    interval)`` under the config ``load_config()`` reads now, plus ``upstream`` (``batch``,
    ``extracts``, ``lake``, ...) and any argument to override."""
    from market_ingest.config import load_config
    from market_ingest.dag_factory import task_arguments

    return operator(task_id=task_id, **{**task_arguments(load_config(), source, interval, dataset)[task_id], **upstream})


@contextmanager
def serving(standin, monkeypatch, connections=None) -> Iterator[str]:
    """Serve ``standin`` (a :class:`standin.server.StandIn`) on loopback and point every vendor connection at it.

    :param connections: ``url -> {conn_id: connection dict}``: connections to set instead of the
        defaults, reaching the stand-in at ``url`` (e.g. Alpha Vantage with another key). Set here
        so they go back with the others: a test's own ``monkeypatch.setenv`` inside this block
        would restore, at teardown, this block's value pointing at the stopped stand-in.
    :return: a context manager yielding the stand-in's URL; the connections go back on exit.
    """
    from demo.services import vendor_env
    from market_ingest.config import load_config
    from standin.server import StandInServer

    server = StandInServer(standin).start()
    try:
        with monkeypatch.context() as m:
            for key, value in vendor_env(server.url, load_config()).items():
                m.setenv(key, value)
            m.setenv(STANDIN_CONN_ENV, json.dumps({"conn_type": "ccxt", "host": server.url}))
            for conn_id, conn in (connections(server.url) if connections else {}).items():
                m.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(conn))
            yield server.url
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session", autouse=True)
def vendors():
    """The vendor stand-in over ``include/recordings``, in this process; every vendor connection points at it."""
    from demo.services import vendor_env
    from market_ingest.config import load_config
    from standin.server import StandIn, StandInServer

    server = StandInServer(StandIn(RECORDINGS)).start()
    os.environ.update(vendor_env(server.url, load_config()))
    os.environ[STANDIN_CONN_ENV] = json.dumps({"conn_type": "ccxt", "host": server.url})
    yield server
    server.shutdown()


@pytest.fixture(scope="session")
def warehouse(pytestconfig) -> str:
    """``postgres`` or ``timescaledb``: what the session's warehouse is (``--warehouse``)."""
    return pytestconfig.getoption("--warehouse")


@pytest.fixture(scope="session")
def services(tmp_path_factory, warehouse):
    """Embedded warehouse + moto server, with the lake bucket and Kinesis stream created.

    With ``--warehouse timescaledb`` the warehouse is TimescaleDB, its extension created and
    checked here: the session fails rather than run TimescaleDB tests on plain PostgreSQL.
    """
    import psycopg

    from demo.services import create_sinks, embedded_services
    from market_ingest.config import load_config

    cfg = load_config()
    with embedded_services(tmp_path_factory.mktemp("services"), vendors=False, warehouse=warehouse) as svc:
        with psycopg.connect(svc.pg_conninfo(), autocommit=True) as conn:
            if warehouse == "timescaledb":
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            found = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
        assert bool(found) == (warehouse == "timescaledb"), f"warehouse {warehouse}: timescaledb extension {found}"
        os.environ.update(svc.airflow_env(cfg.timescale.conn_id, cfg.kinesis.aws_conn_id, cfg.timescale.reader_conn_id))
        create_sinks(svc, cfg)
        yield svc


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata DB, with the project's pools imported, for tests that run DAGs."""
    from demo.stack import migrate_metadata_db

    migrate_metadata_db({})
    return os.environ["AIRFLOW_HOME"]
