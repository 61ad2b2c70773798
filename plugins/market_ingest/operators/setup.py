"""The tasks of ``market_setup``: the warehouse's migrations and policies, and the lake's compaction."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from market_ingest.contracts import Dataset
from market_ingest.operators.base import failing_fast

if TYPE_CHECKING:
    from airflow.sdk import Context


class WarehouseSetupOperator(BaseOperator):
    """Apply the warehouse's pending migrations: the one task of the ``market_setup`` DAG.

    Run once per deployment and after every upgrade; the pipeline's tasks only check the schema
    version (:meth:`~market_ingest.hooks.timescale.TimescaleHook.check_schema`) and fail, naming
    this DAG, when it is behind.

    Then sets each bar table's columnstore and retention policies from the pipeline config
    (TimescaleDB only; :meth:`~market_ingest.hooks.timescale.TimescaleHook.apply_policies`).

    :param timescale_conn_id: connection id of the warehouse.
    :param columnstore_after_seconds: interval -> age (seconds) at which chunks convert to the
        columnstore, for every canonical interval (``TimescaleConfig.columnstore_delays``).
    :param retention_seconds: interval -> age (seconds) after which bars are dropped; absent: kept.
    :param restatement_window_seconds: how far back the rollups' refresh reaches (seconds).
    :return: ``{"applied": [versions applied now], "version": schema version, "hypertable": bool,
        "policies": {table: {...}}}``.
    """

    def __init__(
        self,
        *,
        timescale_conn_id: str,
        columnstore_after_seconds: dict[str, int],
        retention_seconds: dict[str, int] | None = None,
        restatement_window_seconds: int = 60 * 86400,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.timescale_conn_id = timescale_conn_id
        self.restatement_window_seconds = restatement_window_seconds
        self.columnstore_after_seconds = columnstore_after_seconds
        self.retention_seconds = retention_seconds or {}

    def execute(self, context: Context) -> dict[str, Any]:
        from datetime import timedelta

        from market_ingest.hooks.timescale import TimescaleHook

        hook = TimescaleHook(timescale_conn_id=self.timescale_conn_id)
        applied = hook.migrate()
        version = hook.schema_version()
        self.log.info("Warehouse schema at version %s (applied now: %s)", version, applied or "none")
        delays = {i: timedelta(seconds=v) for i, v in self.columnstore_after_seconds.items()}
        policies = hook.apply_policies(
            delays,
            {i: timedelta(seconds=v) for i, v in self.retention_seconds.items()},
            timedelta(seconds=self.restatement_window_seconds),
        )
        return {"applied": applied, "version": version, "hypertable": hook.is_hypertable(), "policies": policies}


class LakeCompactOperator(BaseOperator):
    """Fold what earlier versions left in the lake into its current layout: a task of ``market_setup``.

    Runs :func:`market_ingest.lake.compact` for every configured (source, interval) and each
    source's quotes: daily and coarser bars written by date before month and year partitions,
    and several objects per partition from the per-window layout before that, are merged into
    the partition objects and then deleted. On a lake written by this version it only lists the
    partition folders (one ``LIST`` per folder) and changes nothing. Safe while runs publish.

    :param lake_url: the bars lake root (``lake.url``).
    :param quotes_url: the quotes lake root (``lake.quotes_url``).
    :param pairs: ``[[source, interval], ...]`` of the bars DAGs.
    :param quote_sources: sources with quote snapshots.
    :param compression: Parquet compression of the objects rewritten.
    :return: ``{"<source>/<interval or quotes>": {"objects_folded", "rows_folded", "partitions_written"}}``.
    """

    def __init__(
        self,
        *,
        lake_url: str,
        quotes_url: str,
        pairs: list[list[str]],
        quote_sources: list[str],
        compression: str = "zstd",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.lake_url, self.quotes_url = lake_url, quotes_url
        self.pairs, self.quote_sources = pairs, quote_sources
        self.compression = compression

    def execute(self, context: Context) -> dict[str, Any]:
        from market_ingest.lake import check_lake, compact, lake_root

        bars, quotes = lake_root(self.lake_url), lake_root(self.quotes_url)
        with failing_fast():
            check_lake(bars)
            check_lake(quotes)
        work: list[tuple[Any, str, str | None, Dataset]] = [(bars, s, i, Dataset.BARS) for s, i in self.pairs]
        work += [(quotes, s, None, Dataset.QUOTES) for s in self.quote_sources]
        done = {}
        for root, source, interval, dataset in work:
            stats = compact(root, source, interval, dataset, self.compression)
            done[f"{source}/{interval or 'quotes'}"] = stats
            if stats["objects_folded"]:
                self.log.info("%s %s: %s", source, interval or "quotes", stats)
        self.log.info(
            "Compacted %d series: %d objects of earlier layouts folded in",
            len(done),
            sum(v["objects_folded"] for v in done.values()),
        )
        return done
