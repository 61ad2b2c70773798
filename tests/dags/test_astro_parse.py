"""Astro's own DAG-integrity check (``.astro/test_dag_integrity_default.py``, what ``astro dev parse``
and ``astro deploy`` run with pytest in the project's image) passes on this project's DAGs and
still catches a DAG file that does not import."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from market_ingest.config import load_config
from tests.conftest import ROOT, expected_dag_ids


def _astro_parse(project: Path, home: Path) -> subprocess.CompletedProcess:
    """pytest on ``project``'s ``.astro/test_dag_integrity_default.py``, from ``project`` (Astro runs it
    in its image from ``/usr/local/airflow``, the project), with ``home`` as ``AIRFLOW_HOME`` (its
    metadata database, which the file creates) and ``project/dags`` as the DAGs folder."""
    env = {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(project / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    return subprocess.run(
        [sys.executable, "-m", "pytest", ".astro/test_dag_integrity_default.py", "-q", "-p", "no:cacheprovider"],
        cwd=project, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_astros_dag_integrity_file_passes_on_every_dag(tmp_path):
    done = _astro_parse(ROOT, tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # One passing case per DAG (the file parametrizes on the DagBag's DAGs and its import errors).
    assert re.search(r"^(\d+) passed", done.stdout.splitlines()[-1]).group(1) == str(len(expected_dag_ids(load_config())))


def test_astros_dag_integrity_file_fails_on_a_dag_file_that_does_not_import(tmp_path):
    project = tmp_path / "project"
    shutil.copytree(ROOT / ".astro", project / ".astro")
    shutil.copytree(ROOT / "dags", project / "dags", ignore=shutil.ignore_patterns("__pycache__"))
    (project / "dags" / "broken_dag.py").write_text("from airflow.sdk import dag\nimport no_such_module\n")
    done = _astro_parse(project, project)
    assert done.returncode == 1
    assert "dags/broken_dag.py failed to import with message" in done.stdout
    assert "No module named 'no_such_module'" in done.stdout
