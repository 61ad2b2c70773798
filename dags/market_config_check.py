"""Fails to import while a part of include/pipeline.yaml cannot be built, naming the DAGs it stops
and the file, line and field (a universe file, an interval, a schedule, a source's settings).

dags/market_data.py builds every other DAG. Airflow marks every DAG of a file with an import error
stale, so the errors of one part are raised here, in a file without DAGs (and Airflow's safe-mode
parser only opens files mentioning both "airflow" and "dag").
"""

from __future__ import annotations

from market_ingest.dag_factory import check_config

check_config()
