"""The warehouse load task: the run's bars upserted into TimescaleDB, with the coverage ledger, in one transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from market_ingest.contracts import LoadResult, plan_window, read_plan, window_xcom
from market_ingest.operators.base import SeriesOperator, counting, failing_fast, materialise

if TYPE_CHECKING:
    from airflow.sdk import Context


class TimescaleLoadOperator(SeriesOperator):
    """Upsert the run's staged bars into TimescaleDB (``market.bars``) and write the coverage ledger,
    in one transaction.

    Streams the staged objects one at a time; a stored row extracted later than the run's is kept
    (see :meth:`~market_ingest.hooks.timescale.TimescaleHook.upsert`). For bars, the same
    transaction writes ``market.coverage`` for every (symbol, UTC day) the run asked for, and the
    anomaly flags of the loaded span (:class:`market_ingest.coverage.LoadLedger`: expected bars from
    the symbol's market calendar, bars stored, state and reason; before them, the ledger rows
    earlier runs of the pair parked in the lake because their own load failed with the warehouse
    down). Once committed, those rows are mirrored to the lake
    (:func:`market_ingest.lake.coverage_object`) and the parked objects deleted.

    Once the load has committed, each of the task's ``outlets`` (the DAG gives it its
    :func:`~market_ingest.assets.bars_asset`) gets an Asset event whose ``extra`` says what came in:
    ``{"window": {"start", "end"} (ISO, UTC), "symbols": [loaded, sorted], "rows": n, "applied": m}``.

    :param series: the source, interval, dataset (``bars``: ``market.bars`` with the ledger;
        ``quotes``: ``market.quotes``, no ledger), settings, warehouse and lake
        (:class:`~market_ingest.operators.base.Series`).
    :param lake: the lake publish task's :class:`~market_ingest.contracts.LakeResult` (templated).
    :param plan: the plan task's batches (templated): the run's window and symbols.
    :param extracts: the extract tasks' results (templated; mapped XCom): each symbol's outcome,
        for the ledger (a symbol of a batch whose task did not succeed is ``failed``).
    :return: :class:`~market_ingest.contracts.LoadResult`.
    """

    template_fields: Sequence[str] = ("lake", "plan", "extracts")

    def __init__(self, *, lake: Any, plan: Any = None, extracts: Any = None, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.lake = lake
        self.plan = plan
        self.extracts = extracts

    def execute(self, context: Context) -> LoadResult:
        from market_ingest.coverage import LoadLedger, counts
        from market_ingest.hooks.timescale import TimescaleHook
        from market_ingest.lake import iter_staged
        from market_ingest.schema import DATASETS

        series, batches = self.series, read_plan(self.plan)
        hook = TimescaleHook(timescale_conn_id=series.timescale_conn_id)
        with failing_fast():
            hook.check_schema()
        table = DATASETS[series.dataset].table
        rows: Counter[str] = Counter()
        ledger = None
        if series.dataset.has_ledger and batches:
            ledger = LoadLedger(
                source=self.source,
                interval=self.interval,
                settings=series.settings,
                batches=batches,
                extracts=materialise(self.extracts),
                run_id=context["run_id"],
                lake_url=series.lake_url,
            )
        with failing_fast():
            stats = hook.upsert(
                counting(iter_staged((self.lake or {}).get("staged", []), series.dataset), rows),
                series.dataset,
                then=ledger.write if ledger else None,
            )
        self.log.info(
            "Upserted %d of %d rows into %s (%d not written: identical to the stored row, or a newer extraction is stored)",
            stats["applied"],
            stats["rows"],
            table,
            stats["skipped"],
        )
        result: LoadResult = {
            "rows": stats["rows"],
            "applied": stats["applied"],
            "skipped": stats["skipped"],
            "rows_by_symbol": dict(rows),
            "hypertable": hook.is_hypertable(table),
        }
        if ledger:
            from market_ingest.anomalies import FLAGS

            result["coverage"] = counts(ledger.rows)
            result["flags"] = {f: n for f in FLAGS if (n := sum(1 for x in ledger.flags if x["flag"] == f))}
            self.log.info("Coverage ledger: %d days written %s", len(ledger.rows), result["coverage"])
            for x in ledger.flags:
                self.log.warning("Flagged %s %s %s: %s", x["symbol"], x["time"].isoformat(), x["flag"], x["detail"])
            with failing_fast():
                mirror = ledger.committed()
            if mirror:
                self.log.info("Coverage ledger mirrored to %s", mirror)
        extra: dict[str, Any] = {
            "window": window_xcom(plan_window(batches)),
            "symbols": sorted(rows),
            "rows": stats["rows"],
            "applied": stats["applied"],
        }
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = extra
        return result
