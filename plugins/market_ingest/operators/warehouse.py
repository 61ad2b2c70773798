"""The warehouse load task: the run's bars upserted into TimescaleDB, with the coverage ledger, in one transaction."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from market_ingest.contracts import Batch, Dataset, LoadResult, plan_window, read_plan, window_xcom
from market_ingest.operators.base import SeriesOperator, counting, failing_fast, materialise

if TYPE_CHECKING:
    from airflow.sdk import Context

    from market_ingest.hooks.timescale import LoadSpan


def plan_span(source: str, interval: str, batches: Sequence[Batch]) -> LoadSpan | None:
    """Where a run's staged bars lie, from its plan: each symbol's ``[start, end)`` (its batch's
    window, from its deferral's start when earlier: :meth:`Batch.start_of`; the hull when several
    batches hold it), as the extract keeps only bars inside it (``out_of_window`` otherwise).
    ``None`` for an empty plan. The load checks every row against it
    (:class:`~market_ingest.hooks.timescale.LoadSpan`).
    """
    from market_ingest.hooks.timescale import LoadSpan

    ranges: dict[tuple[str, ...], tuple] = {}
    for batch in batches:
        for symbol in batch.symbols:
            key = (source, symbol, interval)
            lo, hi = batch.start_of(symbol), batch.window.end
            if key in ranges:
                lo, hi = min(lo, ranges[key][0]), max(hi, ranges[key][1])
            ranges[key] = (lo, hi)
    return LoadSpan(ranges) if ranges else None


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
    (the coverage table, :mod:`market_ingest.lake.mirror`) and the parked objects deleted.

    Before the bars, the corporate actions the run's extract tasks asked the vendor for (the lake
    objects listed in their results' ``actions``, :class:`market_ingest.lake.actions.ActionsCache`)
    are upserted into ``market.corporate_actions``, and when each symbol's were asked into
    ``market.corporate_actions_checked`` (:meth:`~market_ingest.hooks.timescale.TimescaleHook.upsert_actions`:
    a retry or a rerun writes nothing more).

    Once the load has committed, each of the task's ``outlets`` (the DAG gives it its
    :func:`~market_ingest.assets.bars_asset`) gets an Asset event whose ``extra`` says what came in:
    ``{"window": {"start", "end"} (ISO, UTC), "symbols": [loaded, sorted], "rows": n, "applied": m}``.

    :param series: the source, interval, dataset (``bars``: ``market.bars`` with the ledger;
        ``quotes``: ``market.quotes``, no ledger), settings, warehouse and lake
        (:class:`~market_ingest.operators.base.Series`).
    :param lake: the lake publish task's :class:`~market_ingest.contracts.LakeResult` (templated).
    :param plan: the plan task's batches (templated): the run's window and symbols.
    :param extracts: the extract tasks' results (templated; mapped XCom): each symbol's outcome,
        for the ledger (a symbol of a batch whose task did not succeed is ``failed``), and the
        corporate-action objects each refreshed.
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
        extracts = materialise(self.extracts)
        with failing_fast():
            actions = self._load_actions(hook, extracts)
        rows: Counter[str] = Counter()
        ledger = None
        if series.dataset.has_ledger and batches:
            ledger = LoadLedger(
                source=self.source,
                interval=self.interval,
                settings=series.settings,
                batches=batches,
                extracts=extracts,
                run_id=context["run_id"],
                lake_url=series.lake_url,
            )
        staged = (self.lake or {}).get("staged", [])

        def staged_batches():
            rows.clear()  # read again when a copy of new rows falls back to the upsert
            return counting(iter_staged(staged, series.dataset), rows)

        with failing_fast():
            stats = hook.upsert(
                staged_batches,
                series.dataset,
                then=ledger.write if ledger else None,
                span=plan_span(self.source, self.interval, batches) if series.dataset is Dataset.BARS else None,
            )
        self.log.info(
            "Upserted %d of %d rows into %s (%d not written: identical to the stored row, or a newer extraction is stored; "
            "%d copied straight in as new)",
            stats["applied"],
            stats["rows"],
            table,
            stats["skipped"],
            stats["copied"],
        )
        result: LoadResult = {
            "rows": stats["rows"],
            "applied": stats["applied"],
            "skipped": stats["skipped"],
            "copied": stats["copied"],
            "rows_by_symbol": dict(rows),
            "hypertable": hook.is_hypertable(table),
        }
        if actions is not None:
            result["actions"] = actions
        if ledger:
            from market_ingest.anomalies import FLAGS

            result["coverage"] = counts(ledger.rows)
            result["flags"] = {f: n for f in FLAGS if (n := sum(1 for x in ledger.flags if x["flag"] == f))}
            self.log.info("Coverage ledger: %d days written %s", ledger.rows.num_rows, result["coverage"])
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

    def _load_actions(self, hook, extracts: list) -> int | None:
        """Upsert the corporate-action objects the extract results list; ``None`` when they list none.

        :return: actions inserted or changed.
        :raises CorruptObjectError: an object is not Parquet of the action schema.
        """
        urls = sorted({url for result in extracts if result for url in result.get("actions") or []})
        if not urls:
            return None
        applied = upsert_action_objects(hook, urls)
        self.log.info("Upserted %d corporate actions from %d symbols' lake objects", applied, len(urls))
        return applied


def upsert_action_objects(hook, urls: list[str]) -> int:
    """Upsert the lake's corporate-action objects at ``urls`` into the warehouse of ``hook``
    (:meth:`~market_ingest.hooks.timescale.TimescaleHook.upsert_actions`), with when each symbol's
    were asked (the objects' ``checked_at``).

    :return: actions inserted or changed.
    :raises CorruptObjectError: an object is not Parquet of the action schema, or its URL names no series.
    """
    import pyarrow as pa

    from market_ingest.actions import actions_table
    from market_ingest.lake import lake_root
    from market_ingest.lake.actions import read_actions

    tables, checked = [], {}
    for url in urls:
        found, checked_at = read_actions(lake_root(url))
        tables.append(actions_table(found))
        if checked_at is not None:
            checked[_series_of(url)] = checked_at
    return hook.upsert_actions(pa.concat_tables(tables), checked)


def _series_of(url: str) -> tuple[str, str]:
    """``(source, symbol)`` of a lake actions object's URL, from its ``source=`` and ``symbol=``
    folders (:func:`market_ingest.lake.actions.actions_object`; the symbol URL-quoted), which also
    name an object holding no action.

    :raises CorruptObjectError: the URL has no such folders.
    """
    from urllib.parse import unquote

    from market_ingest.errors import CorruptObjectError

    parts = dict(p.split("=", 1) for p in url.split("/") if p.startswith(("source=", "symbol=")))
    if set(parts) != {"source", "symbol"}:
        raise CorruptObjectError("lake", f"{url} is not a corporate-actions object (no source= and symbol= folders)")
    return parts["source"], unquote(parts["symbol"])
