"""Build one DAG per configured (source, interval): ``market_<source>_<interval>``.

Parse-time cost only: reads the YAML config, no network, no database, and no pandas, pyarrow,
yfinance, ccxt or boto3 (tests/dags checks this).

A package of two modules; every public name is importable from here
(``from market_ingest.dag_factory import build_dags``), as the DAG files do:

* :mod:`~market_ingest.dag_factory.builders`: the DAGs (:func:`build_dags`, :func:`build_dag`,
  :func:`build_repair_dag`, :func:`build_setup_dag`) and :func:`check_config`;
* :mod:`~market_ingest.dag_factory.arguments`: what their tasks are given (:func:`task_arguments`,
  the one place configuration becomes task arguments), their retries (:func:`retry_policy`), Params
  and Deadline Alert.
"""

from __future__ import annotations

from market_ingest.dag_factory.arguments import (
    dag_test,
    deadline_alerts,
    lake_rebase_arguments,
    rebase_arguments,
    retry_policy,
    setup_arguments,
    task_arguments,
    under_dags_test,
)
from market_ingest.dag_factory.builders import (
    REPAIR_DAG_ID,
    SETUP_DAG_ID,
    build_dag,
    build_dags,
    build_repair_dag,
    build_setup_dag,
    check_config,
    config_problems,
    dag_id,
    describe,
)

__all__ = [
    "REPAIR_DAG_ID",
    "SETUP_DAG_ID",
    "build_dag",
    "build_dags",
    "build_repair_dag",
    "build_setup_dag",
    "check_config",
    "config_problems",
    "dag_id",
    "dag_test",
    "deadline_alerts",
    "describe",
    "lake_rebase_arguments",
    "rebase_arguments",
    "retry_policy",
    "setup_arguments",
    "task_arguments",
    "under_dags_test",
]
