"""Build one DAG per configured (source, interval): ``market_<source>_<interval>``.

Parse-time cost only: reads the YAML config, no network, no database, and no pandas, pyarrow,
yfinance, ccxt or boto3 (tests/dags checks this).
"""

from __future__ import annotations

import re
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, BaseOperator, Param, TaskGroup
from airflow.sdk.definitions.callback import AsyncCallback
from airflow.sdk.definitions.deadline import DeadlineAlert
from airflow.sdk.definitions.retry_policy import ExceptionRetryPolicy, RetryAction, RetryRule
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

from market_ingest.alerts import DAG_FAILED, DEADLINE_MISSED, MarketEventNotifier
from market_ingest.assets import bars_asset
from market_ingest.config import IntervalConfig, PipelineConfig, PipelineConfigError, load_config_parts, load_universe
from market_ingest.contracts import Dataset
from market_ingest.deadlines import DataIntervalEndDeadline
from market_ingest.operators.base import Series
from market_ingest.operators.extract import MarketExtractOperator
from market_ingest.operators.kinesis import KinesisPublishOperator
from market_ingest.operators.lake import LakePublishOperator
from market_ingest.operators.plan import MarketPlanOperator, MarketRepairPlanOperator
from market_ingest.operators.report import RunReportOperator
from market_ingest.operators.setup import LakeCompactOperator, WarehouseSetupOperator
from market_ingest.operators.warehouse import TimescaleLoadOperator
from market_ingest.run import form_pattern


def dag_id(source: str, interval: str) -> str:
    """``market_<source>_<interval>``."""
    return f"market_{source}_{interval}"


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


def task_arguments(cfg: PipelineConfig, source: str, interval: str, dataset: Dataset = Dataset.BARS) -> dict[str, dict]:
    """What each task of the DAG of ``(source, interval)`` is given, by task id.

    The one place where configuration becomes task arguments: operators read no configuration
    file, so a task runs on what its DAG was built with, and tests build any task from here.

    :param interval: canonical interval, or ``quote`` with ``dataset`` quotes.
    :return: ``{"plan": {...}, "extract": {...}, "publish_lake": {...}, "load_timescale": {...},
        "publish_kinesis": {...}, "report": {...}}``: keyword arguments of each operator, without
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
        "repair_plan": {
            **common,
            "max_requests": cfg.repair.max_requests_per_source,
            "max_days_back": cfg.repair.max_days_back,
            "max_attempts": cfg.repair.max_attempts,
        },
    }


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


_PRESETS = {"@hourly": "every hour", "@daily": "every day", "@weekly": "every week", "@monthly": "every month"}


def describe(source: str, src, what: str, universes: list[str], schedule: str) -> str:
    """The one line the DAG list shows: vendor, what, universes, when, where to.

    :param src: the source's ``SourceConfig``; the vendor's name is its description up to
        `` through `` or `` (`` ("Yahoo Finance through yfinance ..." -> "Yahoo Finance").
    :param what: ``1m bars`` or ``quote snapshots``.
    """
    vendor = re.split(r" through | \(", src.description or "")[0].strip() or source
    when = _PRESETS.get(schedule, f"at cron {schedule} UTC")
    return f"{vendor} {what} of {', '.join(universes)} {when} into the lake, TimescaleDB and Kinesis"


def _ingest_after(plan: BaseOperator, pool: str, args: dict[str, dict], asset) -> None:
    """The tasks after a plan, as every ingestion (and each repair) chains them: ``extract``
    (mapped over the plan's batches, in ``pool``) -> ``publish_lake`` -> ``load_timescale``
    (updating ``asset``) and ``publish_kinesis`` -> ``report``.

    :param args: :func:`task_arguments` of the (source, interval).
    """
    extract = MarketExtractOperator.partial(task_id="extract", pool=pool, **args["extract"]).expand(batch=plan.output)
    lake = LakePublishOperator(task_id="publish_lake", extracts=extract.output, **args["publish_lake"])
    timescale = TimescaleLoadOperator(
        task_id="load_timescale",
        lake=lake.output,
        plan=plan.output,
        extracts=extract.output,
        outlets=[asset],
        **args["load_timescale"],
    )
    kinesis = KinesisPublishOperator(task_id="publish_kinesis", lake=lake.output, **args["publish_kinesis"])
    RunReportOperator(
        task_id="report",
        plan=plan.output,
        extracts=extract.output,
        lake=lake.output,
        timescale=timescale.output,
        kinesis=kinesis.output,
        extract_task_id=extract.task_id,
        **args["report"],
    )


def build_dag(cfg: PipelineConfig, source: str, interval: str, dataset: Dataset = Dataset.BARS) -> DAG:
    """The DAG for one (source, interval) pair, or for a source's quote snapshots.

    Tasks: ``plan`` -> ``extract`` (mapped over symbol batches, in the source's pool) ->
    ``publish_lake`` -> ``load_timescale`` and ``publish_kinesis`` in parallel -> ``report``.

    :param interval: canonical interval, or ``quote`` with ``dataset`` quotes.
    """
    src, dataset = cfg.sources[source], Dataset(dataset)
    quotes = dataset is Dataset.QUOTES
    ic = src.interval_config(interval)
    default_args = _default_args(cfg)
    universes = cfg.universes_of(source, interval)
    args = task_arguments(cfg, source, interval, dataset)
    channels = args["report"]["alerts"]
    what = "quote snapshots" if quotes else f"{interval} bars"
    stream = cfg.kinesis.quotes_stream if quotes else cfg.kinesis.stream
    doc = (
        f"### {source} {what}\n\n{src.description}\n\n"
        f"Each run ingests `[data_interval_start, data_interval_end)` for the universes "
        f"{', '.join(universes)} in batches of {ic.batch_size or src.batch_size} symbols "
        f"(pool `{src.pool}`), then writes the Parquet lake, upserts TimescaleDB "
        f"`market.{'quotes' if quotes else 'bars'}` and publishes to Kinesis `{stream}`. "
        "Reruns replace, never duplicate.\n\n"
        "Manual runs: set **Symbols** and/or **Window start/end** in the form."
    )
    with DAG(
        dag_id=dag_id(source, interval),
        description=describe(source, src, what, universes, ic.schedule),
        # Explicit data-interval timetable: Airflow 3 maps a bare cron string to CronTriggerTimetable,
        # whose data interval is empty; a run here must own the bars of one whole period.
        # Manual runs get the last complete period before their trigger time.
        schedule=CronDataIntervalTimetable(ic.schedule, timezone="UTC"),
        start_date=ic.start_date,
        catchup=ic.catchup,
        max_active_runs=ic.max_active_runs,
        default_args=default_args,
        tags=["market-data", f"source:{source}", f"interval:{interval}", f"dataset:{dataset}"],
        doc_md=doc,
        params=_params(src.symbols_like),
        deadline=deadline_alerts(ic, channels) or None,
        on_failure_callback=MarketEventNotifier(kind=DAG_FAILED, channels=channels),
    ) as dag:
        plan = MarketPlanOperator(task_id="plan", **args["plan"])
        _ingest_after(plan, src.pool, args, bars_asset(dataset, source, None if quotes else interval))
    return dag


SETUP_DAG_ID = "market_setup"
REPAIR_DAG_ID = "market_repair"


def build_repair_dag(cfg: PipelineConfig, pairs: list[tuple[str, str]] | None = None) -> DAG:
    """``market_repair``: ask the vendors again for what the coverage ledger lacks.

    :param pairs: the ``(source, interval)`` pairs to repair; default every configured one.

    One task group per (source, interval) of bars, ``<source>_<interval>``: ``plan``
    (:class:`~market_ingest.operators.plan.MarketRepairPlanOperator`: the ledger's ``partial``,
    ``missing`` and ``failed`` days the vendor still serves and that were asked again fewer than
    ``repair.max_attempts`` times, fewest attempts first, within ``repair.max_requests_per_source``
    requests) then the ingestion's own tasks (:func:`_ingest_after`: extract in the source's pool,
    lake, warehouse with its ledger, Kinesis, report). A group with nothing to repair skips its
    sinks and reports so.
    """
    channels = cfg.alerts.model_dump(mode="json")
    with DAG(
        dag_id=REPAIR_DAG_ID,
        description="Re-fetch the partial, missing and failed days of the coverage ledger, within each vendor's lookback",
        schedule=cfg.repair.schedule,
        start_date=datetime(2024, 1, 1, tzinfo=timezone.utc),
        catchup=False,
        max_active_runs=1,
        default_args=_default_args(cfg),
        tags=["market-data", "repair"],
        doc_md=(
            "### Coverage repair\n\nReads `market.coverage` (the ledger every load writes) and asks each vendor "
            "again for the `partial`, `missing` and `failed` days of the last "
            f"{cfg.repair.max_days_back} days, the days asked fewest times first and newest first among those, at most "
            f"{cfg.repair.max_requests_per_source} requests per source and interval, through the same pools, lake, "
            "warehouse and stream as the ingestion DAGs. Days beyond a vendor's lookback, and days asked "
            f"{cfg.repair.max_attempts} times without being served, become `unrecoverable` in the ledger (the reason "
            "says why) and are not asked again."
        ),
        on_failure_callback=MarketEventNotifier(kind=DAG_FAILED, channels=channels),
    ) as dag:
        for source, interval in cfg.dag_pairs() if pairs is None else pairs:
            args = task_arguments(cfg, source, interval)
            # A repair asks days the vendor may never serve: an empty answer is expected there, and
            # the ledger's attempts (repair.max_attempts) decide when to stop asking, not a failed run.
            args["report"]["max_unserved_share"] = None
            with TaskGroup(group_id=f"{source}_{interval}"):
                plan = MarketRepairPlanOperator(task_id="plan", **args["repair_plan"])
                _ingest_after(plan, cfg.sources[source].pool, args, bars_asset(Dataset.BARS, source, interval))
    return dag


def setup_arguments(cfg: PipelineConfig) -> dict:
    """The ``market_setup`` task's arguments: the warehouse connection and its policies in seconds per interval."""
    return {
        "timescale_conn_id": cfg.timescale.conn_id,
        "columnstore_after_seconds": {i: int(d.total_seconds()) for i, d in cfg.timescale.columnstore_delays().items()},
        "retention_seconds": {i: int(d.total_seconds()) for i, d in cfg.timescale.retention.items()},
        "restatement_window_seconds": int(cfg.timescale.restatement_window.total_seconds()),
    }


def build_setup_dag(cfg: PipelineConfig) -> DAG:
    """``market_setup``: apply the warehouse migrations and compact the lake, once per deployment
    and after each upgrade.

    Triggered by hand (no schedule). The ingestion DAGs never migrate: their tasks check the
    schema version and fail fast, naming this DAG, when it is behind. ``compact_lake`` folds
    objects of earlier lake layouts into the current one (:class:`LakeCompactOperator`).
    """
    with DAG(
        dag_id=SETUP_DAG_ID,
        description="Apply the warehouse migrations: trigger once after each deploy or upgrade",
        schedule=None,
        catchup=False,
        max_active_runs=1,
        default_args={"owner": cfg.owner, "retries": 1, "retry_delay": timedelta(seconds=30)},
        tags=["market-data", "setup"],
        doc_md=(
            "### Warehouse setup\n\nApplies the pending migrations of `include/sql/migrations/` to the warehouse "
            f"(connection `{cfg.timescale.conn_id}`) under an advisory lock, each recorded in "
            "`public.market_ingest_migrations`. Trigger it once after deploying or upgrading; ingestion tasks "
            "fail with a message naming this DAG while the schema is behind.\n\n"
            "`compact_lake` folds objects of earlier lake layouts (daily bars by date, several objects per "
            "partition) into the current one: month partitions for daily bars, year for weekly and monthly."
        ),
    ) as dag:
        WarehouseSetupOperator(task_id="migrate", **setup_arguments(cfg))
        LakeCompactOperator(
            task_id="compact_lake",
            lake_url=cfg.lake.url,
            quotes_url=cfg.lake.quotes_url,
            pairs=[list(p) for p in cfg.dag_pairs()],
            quote_sources=cfg.quote_sources(),
            compression=cfg.lake.compression,
        )
    return dag


def build_dags(path: Path | str | None = None) -> dict[str, DAG]:
    """Every DAG the config can build, keyed by dag id: one per (source, interval) and quote
    source, ``market_setup`` and ``market_repair`` (a group per pair it builds).

    A pair (or the repair DAG) with a problem of its own (:func:`market_ingest.config.load_config_parts`:
    a bad universe file, interval, schedule or source setting) is left out; :func:`check_config`
    names it, from its own DAG file.

    :raises market_ingest.config.PipelineConfigError: when the whole config is invalid (file, line
        and field named): a YAML syntax error, a sink or retry setting, no usable source.
    """
    parts = load_config_parts(path)
    cfg, stopped = parts.config, parts.stopped()
    pairs = [p for p in cfg.dag_pairs() if p not in stopped]
    dags = {dag_id(s, i): build_dag(cfg, s, i) for s, i in pairs}
    dags.update(
        {
            dag_id(s, "quote"): build_dag(cfg, s, "quote", dataset=Dataset.QUOTES)
            for s in cfg.quote_sources()
            if (s, "quote") not in stopped
        }
    )
    dags[SETUP_DAG_ID] = build_setup_dag(cfg)
    if not parts.repair_stopped:
        dags[REPAIR_DAG_ID] = build_repair_dag(cfg, pairs)
    return dags


def config_problems(path: Path | str | None = None) -> list[str]:
    """What :func:`build_dags` leaves out and why, one entry per problem: the DAG ids it stops, then
    the file, line, field and reason (:attr:`market_ingest.config.ConfigProblem.message`).

    :raises market_ingest.config.PipelineConfigError: when the whole config is invalid.
    """
    problems = []
    for p in load_config_parts(path).problems:
        stopped = [dag_id(s, i) for s, i in p.pairs] + [f"{REPAIR_DAG_ID}'s group {s}_{i}" for s, i in p.pairs if i != "quote"]
        stopped = stopped or [REPAIR_DAG_ID if p.part == "repair" else f"every DAG of {p.part}"]
        problems.append(f"{', '.join(stopped)} not built: {p.message}")
    return problems


def check_config(path: Path | str | None = None) -> None:
    """Raise the config's problems as one error, for ``dags/market_config_check.py``.

    Airflow 3.3 records import errors per DAG file and marks every DAG of a file with one stale
    (``airflow.dag_processing.collection._update_import_errors``), and a module that raises
    yields no DAG at all; so ``dags/market_data.py`` builds every good DAG and never raises for a
    part of the config, and this check, in a file of its own, fails to import naming what was
    left out: the import error the UI and ``airflow dags list-import-errors`` show.

    :raises market_ingest.config.PipelineConfigError: one line per problem (:func:`config_problems`).
        Nothing is raised when the whole config is invalid: ``dags/market_data.py`` fails with
        that error, and it is not reported twice.
    """
    try:
        problems = config_problems(path)
    except PipelineConfigError:
        return
    if problems:
        raise PipelineConfigError("\n".join([*problems, "Every other DAG of the config is built."]))
