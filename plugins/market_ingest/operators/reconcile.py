"""The reconcile task: the run's bars compared with the other sources of the same instruments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from market_ingest.contracts import ReconcileResult, read_plan
from market_ingest.intervals import Window
from market_ingest.operators.base import SeriesOperator, failing_fast

if TYPE_CHECKING:
    from airflow.sdk import Context


class ReconcileOperator(SeriesOperator):
    """Compare the run's bars, once loaded, with every other source's bars of the same instruments
    (:func:`market_ingest.reconcile.reconcile`) and store the disagreements in
    ``market.cross_source_checks``.

    Runs after ``load_timescale`` succeeded; the window is the plan's, from its earliest deferred
    symbol's start. A rerun of the window replaces its rows (a disagreement settled since is
    deleted).

    :param series: the source and interval (:class:`~market_ingest.operators.base.Series`).
    :param plan: the plan task's batches (templated): the run's window.
    :param instruments: every configured instrument (instrument -> {source: symbol}).
    :param reconciliation: the ``reconciliation`` settings in JSON form (tolerances).
    :return: :class:`~market_ingest.contracts.ReconcileResult`.
    """

    template_fields: Sequence[str] = ("plan",)

    def __init__(self, *, plan: Any, instruments: dict[str, dict[str, str]], reconciliation: dict[str, Any], **kwargs: Any):
        super().__init__(**kwargs)
        self.plan = plan
        self.instruments = instruments
        self.reconciliation = reconciliation

    def execute(self, context: Context) -> ReconcileResult:
        from market_ingest.config import ReconciliationConfig
        from market_ingest.hooks.timescale import TimescaleHook
        from market_ingest.reconcile import reconcile

        batches = read_plan(self.plan)
        empty: ReconcileResult = {"pairs": 0, "bars": 0, "disagreements": 0, "by_reason": {}, "per_pair": []}
        if not batches:
            return empty
        window = Window(
            min(b.start_of(s) for b in batches for s in b.symbols)
            if any(b.symbols for b in batches)
            else batches[0].window.start,
            max(b.window.end for b in batches),
        )
        hook = TimescaleHook(timescale_conn_id=self.series.timescale_conn_id)
        with failing_fast():
            hook.check_schema()
        result = reconcile(
            hook,
            source=self.source,
            interval=self.interval,
            window=window,
            instruments=self.instruments,
            cfg=ReconciliationConfig.model_validate(self.reconciliation),
            run_id=context["run_id"],
        )
        self.log.info(
            "Compared %d bars over %d instrument/source pairs: %d disagree %s",
            result["bars"],
            result["pairs"],
            result["disagreements"],
            result["by_reason"] or "",
        )
        for pair in result["per_pair"]:
            if pair["disagreements"]:
                self.log.warning(
                    "%s: %s and %s disagree on %d of %d %s bars (market.cross_source_checks)",
                    pair["instrument"],
                    self.source,
                    pair["other"],
                    pair["disagreements"],
                    pair["bars"],
                    self.interval,
                )
        return result
