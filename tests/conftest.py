"""Shared fixtures: Airflow environment, a real PostgreSQL server (pgserver) and a moto server.

The servers are started once per test session on loopback / a unix socket and stopped at the end;
nothing needs to be running beforehand.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
RECORDINGS = ROOT / "include" / "recordings"
YAHOO_RECORDINGS = RECORDINGS / "yahoo"

# Airflow reads its configuration at import: set it before any test imports airflow.
_AIRFLOW_HOME = Path(os.environ.get("MARKET_INGEST_TEST_HOME", "/tmp")) / f"market-ingest-tests-{os.getpid()}"
os.environ.update(
    {
        "AIRFLOW_HOME": str(_AIRFLOW_HOME / "airflow"),
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__UNIT_TEST_MODE": "False",
        "MARKET_INGEST_REPLAY_DIR": str(RECORDINGS),
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
    }
)


@pytest.fixture(scope="session")
def services(tmp_path_factory):
    """Embedded PostgreSQL + moto server, with the lake bucket and Kinesis stream created."""
    from demo.services import create_sinks, embedded_services
    from market_ingest.config import load_config

    cfg = load_config()
    with embedded_services(tmp_path_factory.mktemp("services")) as svc:
        os.environ.update(svc.airflow_env(cfg.timescale.conn_id, cfg.kinesis.aws_conn_id))
        create_sinks(svc, cfg)
        yield svc


@pytest.fixture(scope="session")
def airflow_db():
    """A migrated SQLite metadata DB, with the project's pools imported, for tests that run DAGs."""
    from demo.stack import migrate_metadata_db

    migrate_metadata_db({})
    return os.environ["AIRFLOW_HOME"]
