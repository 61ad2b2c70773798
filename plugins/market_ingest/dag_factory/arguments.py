"""What the DAGs give their tasks, built from the configuration at parse time: each task's
arguments (:func:`task_arguments`, :func:`setup_arguments`, :func:`rebase_arguments`), the task defaults with their retries
by error kind (:func:`retry_policy`), the manual run's Params, and the Deadline Alert.

Parse-time cost only, as :mod:`market_ingest.dag_factory`.
"""

from __future__ import annotations

import sys
from datetime import timedelta

from airflow.sdk import DAG, Param
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule

from market_ingest.alerts import DEADLINE_MISSED, MarketEventNotifier
from market_ingest.config import IntervalConfig, PipelineConfig, load_universe
from market_ingest.contracts import Dataset
from market_ingest.deadlines import DataIntervalEndDeadline
from market_ingest.operators.base import Series
from market_ingest.run import form_pattern
from market_ingest.vendors import yahoo


def _splits_from(cfg: PipelineConfig, source: str) -> dict | None:
    """:attr:`Series.splits_from` of ``source``: its ``splits_from`` source's name, settings (JSON)
    and the instruments' symbols there; ``None`` for sources without one."""
    found = cfg.splits_from_of(source)
    if found is None:
        return None
    return {"source": found.source, "source_config": found.settings.model_dump(mode="json"), "symbols": found.symbols}


def task_arguments(cfg: PipelineConfig, source: str, interval: str, dataset: Dataset = Dataset.BARS) -> dict[str, dict]:
    """What each task of the DAG of ``(source, interval)`` is given, by task id.

    The one place where configuration becomes task arguments: operators read no configuration
    file, so a task runs on what its DAG was built with, and tests build any task from here.

    :param interval: canonical interval, or ``quote`` with ``dataset`` quotes.
    :return: ``{"plan": {...}, "extract": {...}, "publish_lake": {...}, "load_timescale": {...},
        "publish_kinesis": {...}, "reconcile": {...}, "report": {...}}``: keyword arguments
        of each operator (``reconcile``: empty for quotes and where no other source of the
        source's instruments loads the interval: that DAG has no such task), without
        ``task_id`` and without the upstream results (``batch``, ``extracts``, ``lake``, ...).
        Every pipeline task gets the one :class:`~market_ingest.operators.base.Series`; its
        source's settings travel in JSON form, the universes as their symbols (read from
        ``include/symbols/`` now, at parse time).
    """
    dataset = Dataset(dataset)
    quotes = dataset is Dataset.QUOTES
    series = Series(
        source=source,
        interval=interval,
        dataset=dataset,
        source_config=cfg.sources[source].model_dump(mode="json"),
        timescale_conn_id=cfg.timescale.conn_id,
        lake_url=cfg.lake.quotes_url if quotes else cfg.lake.url,
        splits_from=_splits_from(cfg, source),
    )
    k = cfg.kinesis
    common = {"series": series}
    return {
        "plan": {**common, "symbols": [s for u in cfg.universes_of(source, interval) for s in load_universe(u)]},
        "extract": {**common, "compression": cfg.lake.compression},
        "publish_lake": {**common, "compression": cfg.lake.compression},
        "load_timescale": common,
        "publish_kinesis": {
            "dataset": dataset,
            "stream": k.quotes_stream if quotes else k.stream,
            "aws_conn_id": k.aws_conn_id,
            "bars_per_record": k.bars_per_record,
            "record_format": k.record_format,
            "spread_keys": k.spread_keys,
            "max_records_per_call": k.max_records_per_call,
            "max_bytes_per_call": k.max_bytes_per_call,
            "max_attempts": k.max_attempts,
        },
        "report": {
            **common,
            "max_failed_share": cfg.report.max_failed_share,
            "max_unserved_share": cfg.report.max_unserved_share,
            "run_note_conn_id": cfg.report.run_note_conn_id,
            "alerts": cfg.alerts.model_dump(mode="json"),
        },
        "reconcile": {
            **common,
            "instruments": {i: dict(symbols) for i, symbols in cfg.instruments.items()},
            "reconciliation": cfg.reconciliation.model_dump(mode="json"),
        }
        if not quotes and cfg.instruments_of(source, interval)
        else {},
        "repair_plan": {
            **common,
            "max_requests": cfg.repair.max_requests_per_source,
            "max_days_back": cfg.repair.max_days_back,
            "max_attempts": cfg.repair.max_attempts,
        },
    }


def setup_arguments(cfg: PipelineConfig) -> dict:
    """The ``market_setup`` task's arguments: the warehouse connection and its policies in seconds per interval."""
    return {
        "timescale_conn_id": cfg.timescale.conn_id,
        "columnstore_after_seconds": {i: int(d.total_seconds()) for i, d in cfg.timescale.columnstore_delays().items()},
        "retention_seconds": {i: int(d.total_seconds()) for i, d in cfg.timescale.retention.items()},
        "restatement_window_seconds": int(cfg.timescale.restatement_window.total_seconds()),
    }


def rebase_arguments(cfg: PipelineConfig) -> dict:
    """The ``market_setup`` task ``rebase_bars``'s arguments: the warehouse connection and, per
    configured source, what its rows stored before schema 2 are (``split_adjusted``: the
    vendor's prices were adjusted for splits up to their ingestion, :data:`LEGACY_SPLIT_ADJUSTED`)
    and how its symbols' markets are found (:meth:`~market_ingest.config.SourceConfig.market_of`)."""
    from market_ingest import kinds

    return {
        "timescale_conn_id": cfg.timescale.conn_id,
        "lake_url": cfg.lake.url,
        "sources": {
            name: {
                "split_adjusted": src.kind in LEGACY_SPLIT_ADJUSTED,
                "market": src.market,
                "continuous": kinds.kind(src.kind).continuous,
            }
            for name, src in cfg.sources.items()
        },
    }


def lake_rebase_arguments(cfg: PipelineConfig) -> dict:
    """``compact_lake``'s re-basing arguments: what each bars source's rows stored before schema 2
    are (``split_adjusted`` for :data:`LEGACY_SPLIT_ADJUSTED` kinds, else ``as_traded``), and the
    warehouse connection its hook is built with when it asks for missing actions."""
    sources = sorted({s for s, _ in cfg.dag_pairs()})
    return {
        "rebase": {s: "split_adjusted" if cfg.sources[s].kind in LEGACY_SPLIT_ADJUSTED else "as_traded" for s in sources},
        "timescale_conn_id": cfg.timescale.conn_id,
    }


#: Source kinds whose bars earlier versions stored as their vendor sent them, adjusted for every
#: split up to the answer: Yahoo's chart prices (``market_ingest.vendors.yahoo.PRICE_BASIS``).
#: Alpha Vantage's daily series and ccxt's candles are as traded.
LEGACY_SPLIT_ADJUSTED = frozenset({yahoo.KIND.name})


def _default_args(cfg: PipelineConfig) -> dict:
    """Task defaults of the ingestion and repair DAGs: owner, retries with exponential backoff, retry policy."""
    return {
        "owner": cfg.owner,
        "retries": cfg.retry.retries,
        "retry_delay": timedelta(seconds=cfg.retry.delay_seconds),
        "retry_exponential_backoff": True,
        "max_retry_delay": timedelta(seconds=cfg.retry.max_delay_seconds),
        "retry_policy": retry_policy(cfg),
    }


def retry_policy(cfg: PipelineConfig) -> ExceptionRetryPolicy:
    """Retries by error kind (Airflow 3 ``retry_policy``), on top of exponential backoff.

    * :class:`~market_ingest.errors.RateLimitedError` (HTTP 429, a throttle body, an exchange's
      ban): retry after ``retry.rate_limited_delay_seconds``, longer than the default backoff, so
      the vendor's window can reset;
    * :class:`~market_ingest.errors.PermanentError` (configuration, bad key, premium function, bad
      Params, a window beyond a lookback cap, a missing bucket or stream, a row no sink format
      can hold) and ``OverflowError`` (out-of-range dates): fail at once, no retry
      spent (operators also raise these as ``AirflowFailException``, see
      :func:`market_ingest.operators.base.failing_fast`);
    * anything else: the task's exponential backoff.

    Exceptions are named by import path; their modules are stdlib-only, so parsing stays cheap.
    """
    errors = "market_ingest.errors."
    return ExceptionRetryPolicy(
        rules=[
            RetryRule(
                exception=errors + "RateLimitedError",
                action=RetryAction.RETRY,
                retry_delay=timedelta(seconds=cfg.retry.rate_limited_delay_seconds),
                reason="vendor rate limit: waiting for its window to reset",
            ),
            RetryRule(
                exception=[errors + "PermanentError", "builtins.OverflowError"],
                action=RetryAction.FAIL,
                reason="permanent: configuration, credentials, a missing sink, or a window the vendor cannot serve",
            ),
        ]
    )


def _params(symbol_pattern: str) -> dict[str, Param]:
    return {
        "symbols": Param(
            None,
            type=["null", "array"],
            items={"type": "string", "pattern": form_pattern(symbol_pattern)},
            title="Symbols",
            description=(
                "Override the configured universes (e.g. AAPL, MSFT). Empty: all configured symbols. "
                "Backfill: tick 'Override parameters on existing runs', or Airflow 3.3's dialog sends no "
                "parameters and every run takes all configured symbols."
            ),
        ),
        "start": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Window start (UTC)",
            description="Override the data interval start. Empty: the run's data interval.",
        ),
        "end": Param(
            None,
            type=["null", "string"],
            format="date-time",
            title="Window end (UTC, exclusive)",
            description="Override the data interval end. Empty: the run's data interval.",
        ),
    }


def under_dags_test() -> bool:
    """True in the ``airflow dags test`` command (apache/airflow#73428).

    Airflow 3.3.2's ``dags test`` runs a DAG that has ``deadline=`` to success and then crashes
    (``'dict' object has no attribute 'hex'`` in ``DagRun.update_state``), exiting non-zero.
    ``dags test`` has no scheduler loop, so a deadline can never fire there anyway: DAGs parsed by
    that command are built without one and the command works. Remove once the fix (PR #73430)
    is released.
    """
    return sys.argv[1:3] == ["dags", "test"]


def dag_test(dag: DAG, **kwargs):
    """``dag.test(**kwargs)`` for a DAG of this package, without its deadline (apache/airflow#73428).

    ``dag.test()`` is what ``airflow dags test`` runs, so it crashes the same way on a DAG with
    ``deadline=``; it never evaluates deadlines, so dropping them changes nothing else.

    :return: the finished DagRun, as ``dag.test`` returns it.
    """
    dag.deadline = None
    return dag.test(**kwargs)


def deadline_alerts(ic: IntervalConfig, channels: dict) -> list[DeadlineAlert]:
    """The DAG's Deadline Alert: done ``allowed_lateness`` after the data interval ends.

    On a miss the triggerer awaits :class:`~market_ingest.alerts.MarketEventNotifier`, which
    emits a ``deadline_missed`` event naming the DAG, the run and the deadline. The reference is
    :class:`~market_ingest.deadlines.DataIntervalEndDeadline` (manual and backfill runs count from
    when they were queued). Empty under ``airflow dags test`` (:func:`under_dags_test`).
    """
    if under_dags_test():
        return []
    return [
        DeadlineAlert(
            reference=DataIntervalEndDeadline(),
            interval=ic.allowed_lateness,
            name="data loaded in time",
            callback=AsyncCallback(MarketEventNotifier, kwargs={"kind": DEADLINE_MISSED, "channels": channels}),
        )
    ]
