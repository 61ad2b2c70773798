"""Market-data Airflow DAGs, one per (source, interval) in include/pipeline.yaml: market_<source>_<interval>.

A part of the config that cannot be built is left out here and named, with its file, line and
field, by the import error of dags/market_config_check.py.

(Airflow's safe-mode parser only opens files mentioning both "airflow" and "dag".)
"""

from __future__ import annotations

from market_ingest.dag_factory import build_dags

globals().update(build_dags())
