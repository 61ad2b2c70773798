"""The run note through a real API server in the simple auth manager's all-admins mode: a
``market_airflow_api`` connection that names the server only, no login and no token, writes the note.

Against ``airflow standalone``'s users (login and password exchanged for a token, as
``docker-compose.yaml``'s connection does for its ``admin``) the note is checked in
``tests/e2e/test_scheduler.py``.
"""

from __future__ import annotations

import json
import os
import subprocess
import time

import pytest
import requests

from demo.services import free_port
from demo.stack import AIRFLOW, migrate_metadata_db
from market_ingest.run_note import write_note

pytestmark = pytest.mark.integration
DAG_ID = "market_yahoo_1d"


@pytest.fixture(scope="module")
def all_admins_api(tmp_path_factory) -> str:
    """Base URL of an ``airflow api-server`` with ``[core] simple_auth_manager_all_admins``, on
    its own migrated SQLite metadata DB in which the project's DAGs are serialized."""
    home = tmp_path_factory.mktemp("all-admins")
    env = {
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home / 'airflow.db'}",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "True",
    }
    migrate_metadata_db(env)
    subprocess.run([str(AIRFLOW), "dags", "reserialize"], env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)
    port = free_port()
    with open(home / "api-server.log", "w") as log:
        proc = subprocess.Popen(
            [str(AIRFLOW), "api-server", "-H", "127.0.0.1", "-p", str(port), "-w", "1"],
            env={**os.environ, **env},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (home / "api-server.log").read_text()[-3000:]
            try:
                if requests.get(f"{base}/api/v2/monitor/health", timeout=5).ok:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline, "the API server did not answer within 180 s"
            time.sleep(1)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def test_a_connection_naming_only_the_server_writes_the_note(all_admins_api, monkeypatch):
    run_id = "manual__note-without-credentials"
    created = requests.post(
        f"{all_admins_api}/api/v2/dags/{DAG_ID}/dagRuns",
        json={"dag_run_id": run_id, "logical_date": None},
        timeout=30,
    )
    assert created.status_code == 200, created.text
    monkeypatch.setenv("AIRFLOW_CONN_NOTE_API", json.dumps({"conn_type": "http", "host": all_admins_api}))

    assert write_note("note_api", DAG_ID, run_id, "**2021-07-22 00:00 → 2021-07-23 00:00 UTC**") is None
    run = requests.get(f"{all_admins_api}/api/v2/dags/{DAG_ID}/dagRuns/{run_id}", timeout=30).json()
    assert run["note"] == "**2021-07-22 00:00 → 2021-07-23 00:00 UTC**"


def test_a_login_is_still_exchanged_for_a_token_there(all_admins_api, monkeypatch):
    """A connection carrying a login (as written for standalone) works against this server too:
    all-admins mode answers ``POST /auth/token`` for any user."""
    conn = {"conn_type": "http", "host": all_admins_api, "login": "admin", "password": "any"}
    monkeypatch.setenv("AIRFLOW_CONN_NOTE_API", json.dumps(conn))
    why = write_note("note_api", DAG_ID, "manual__no-such-run", "n")
    assert why.startswith("connection 'note_api': PATCH dagRuns/manual__no-such-run answered 404"), why
