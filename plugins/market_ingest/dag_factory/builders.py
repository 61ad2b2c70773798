"""The DAGs: one per configured (source, interval) and quote source (:func:`build_dag`),
``market_repair`` (:func:`build_repair_dag`), ``market_setup`` (:func:`build_setup_dag`), all of
them from the config file (:func:`build_dags`), and what the config leaves out (:func:`check_config`).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from airflow.sdk import DAG, BaseOperator, TaskGroup
from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable

from market_ingest.alerts import DAG_FAILED, MarketEventNotifier
from market_ingest.assets import bars_asset
from market_ingest.config import PipelineConfig, PipelineConfigError, load_config_parts
from market_ingest.contracts import Dataset
from market_ingest.dag_factory.arguments import (
    _default_args,
    _params,
    deadline_alerts,
    lake_rebase_arguments,
    rebase_arguments,
    setup_arguments,
    task_arguments,
)
from market_ingest.operators.extract import MarketExtractOperator
from market_ingest.operators.kinesis import KinesisPublishOperator
from market_ingest.operators.lake import LakePublishOperator
from market_ingest.operators.plan import MarketPlanOperator, MarketRepairPlanOperator
from market_ingest.operators.reconcile import ReconcileOperator
from market_ingest.operators.report import RunReportOperator
from market_ingest.operators.setup import LakeCompactOperator, RebaseBarsOperator, WarehouseSetupOperator
from market_ingest.operators.warehouse import TimescaleLoadOperator


def dag_id(source: str, interval: str) -> str:
    """``market_<source>_<interval>``."""
    return f"market_{source}_{interval}"


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
    (updating ``asset``; then ``reconcile`` when the source serves a configured instrument) and
    ``publish_kinesis`` -> ``report``.

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
    reconcile = None
    if args.get("reconcile"):
        reconcile = ReconcileOperator(task_id="reconcile", plan=plan.output, **args["reconcile"])
        timescale >> reconcile
    RunReportOperator(
        task_id="report",
        plan=plan.output,
        extracts=extract.output,
        lake=lake.output,
        timescale=timescale.output,
        kinesis=kinesis.output,
        reconcile=reconcile.output if reconcile else None,
        reconciles=reconcile is not None,
        extract_task_id=extract.task_id,
        **args["report"],
    )


def build_dag(cfg: PipelineConfig, source: str, interval: str, dataset: Dataset = Dataset.BARS) -> DAG:
    """The DAG for one (source, interval) pair, or for a source's quote snapshots.

    Tasks: ``plan`` -> ``extract`` (mapped over symbol batches, in the source's pool) ->
    ``publish_lake`` -> ``load_timescale`` (-> ``reconcile``, for a source serving a configured
    instrument) and ``publish_kinesis`` in parallel -> ``report``.

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


def build_setup_dag(cfg: PipelineConfig) -> DAG:
    """``market_setup``: apply the warehouse migrations, convert bars stored before the price
    basis to as traded, and compact the lake, once per deployment and after each upgrade.

    Triggered by hand (no schedule). The ingestion DAGs never migrate: their tasks check the
    schema version and fail fast, naming this DAG, when it is behind. ``rebase_bars`` runs after
    ``migrate`` (:class:`RebaseBarsOperator`); ``compact_lake`` converts the Parquet objects of
    earlier lake layouts into the lake's Delta tables (bars, rejects, the ledger's mirror, quotes)
    and compacts and vacuums every table (:class:`LakeCompactOperator`).
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
            "`rebase_bars` then converts bars stored by versions before the price basis (`price_basis` NULL) to as "
            "traded, asking Yahoo for the corporate actions of the symbols it needs them for; it fails, naming them, "
            "only for series it cannot convert (a source no longer configured, a symbol Yahoo no longer knows).\n\n"
            "`compact_lake` converts the lake's bars stored before the price basis the same way in the Parquet "
            "objects earlier versions wrote, copies those objects' bars into the bars Delta table (`<lake>/bars/`) "
            "and checks each arrived (run again, it changes nothing), then compacts the table's small files and "
            "vacuums files older than a week that no current version uses; it folds the quote objects of earlier "
            "layouts into the current one."
        ),
    ) as dag:
        migrate = WarehouseSetupOperator(task_id="migrate", **setup_arguments(cfg))
        migrate >> RebaseBarsOperator(task_id="rebase_bars", **rebase_arguments(cfg))
        LakeCompactOperator(
            task_id="compact_lake",
            lake_url=cfg.lake.url,
            quotes_url=cfg.lake.quotes_url,
            pairs=[list(p) for p in cfg.dag_pairs()],
            quote_sources=cfg.quote_sources(),
            **lake_rebase_arguments(cfg),
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
        if p.part in ("instruments", "reconciliation"):
            problems.append(f"no cross-source reconciliation (every DAG is built without it): {p.message}")
            continue
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
