"""The pipeline configuration as typed data (``include/pipeline.yaml``) and its universes
(``include/symbols/*.csv``).

Parsed at DAG parse time, so this package imports only pydantic (an Airflow dependency), PyYAML
and stdlib-only modules of this package at the top. A bad config raises :class:`PipelineConfigError` naming the file, the line and
the field; it never silently drops a DAG. :func:`load_config_parts` keeps what is good: a problem
confined to one source, one interval, a source's quotes or the repair settings (a bad universe
file, interval or schedule) stops only the DAGs that use that part, each named in a
:class:`ConfigProblem`, and the DAG folder reports them as an import error of their own
(``dags/market_config_check.py``).

A package of one module per job; every public name is importable from here
(``from market_ingest.config import load_config``), as callers do:

* :mod:`~market_ingest.config.base`: ``include/``'s location, the models' base class and field
  types, :class:`PipelineConfigError`;
* :mod:`~market_ingest.config.sources`: a source's settings (:class:`SourceConfig`, its DAGs'
  :class:`IntervalConfig`, anomaly checks and bounds);
* :mod:`~market_ingest.config.pipeline`: the sinks, retries, report, repair, alerts and
  reconciliation, and :class:`PipelineConfig` (with the ``instruments`` several sources serve);
* :mod:`~market_ingest.config.universes`: :func:`load_universe`;
* :mod:`~market_ingest.config.loading`: the YAML file, file and line of each error, and
  :func:`load_config_parts`, :func:`load_config`, :func:`load_timescale_config`.
"""

from __future__ import annotations

from market_ingest.config.base import INCLUDE_DIR, PROJECT_ROOT, Interval, PipelineConfigError, Schedule, SourceName
from market_ingest.config.loading import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    ConfigParts,
    ConfigProblem,
    config_path,
    load_config,
    load_config_parts,
    load_timescale_config,
)
from market_ingest.config.pipeline import (
    AlertsConfig,
    KinesisConfig,
    LakeConfig,
    PipelineConfig,
    ReconciliationConfig,
    RepairConfig,
    ReportConfig,
    RetryConfig,
    TimescaleConfig,
)
from market_ingest.config.sources import AnomalyConfig, BoundsConfig, IntervalConfig, SourceConfig, SplitsFrom
from market_ingest.config.universes import SYMBOL_COLUMNS, load_universe, universe_path

__all__ = [
    "AlertsConfig",
    "AnomalyConfig",
    "BoundsConfig",
    "CONFIG_ENV",
    "ConfigParts",
    "ConfigProblem",
    "DEFAULT_CONFIG",
    "INCLUDE_DIR",
    "Interval",
    "IntervalConfig",
    "KinesisConfig",
    "LakeConfig",
    "PROJECT_ROOT",
    "PipelineConfig",
    "PipelineConfigError",
    "ReconciliationConfig",
    "RepairConfig",
    "ReportConfig",
    "RetryConfig",
    "SYMBOL_COLUMNS",
    "Schedule",
    "SourceConfig",
    "SplitsFrom",
    "SourceName",
    "TimescaleConfig",
    "config_path",
    "load_config",
    "load_config_parts",
    "load_timescale_config",
    "load_universe",
    "universe_path",
]
