"""The first task of an ingestion run, and of each repair: what to ask the vendor, as extract batches."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from market_ingest import kinds
from market_ingest.contracts import Batch, BatchXCom, Dataset
from market_ingest.errors import ConfigurationError
from market_ingest.operators.base import SeriesOperator, data_interval, failing_fast
from market_ingest.run import backfill_without_conf, batch_symbols, select, whole_universe_notice

if TYPE_CHECKING:
    from airflow.sdk import Context


class MarketPlanOperator(SeriesOperator):
    """Resolve the run's window and symbols and split the symbols into extract batches.

    The window is the data interval, or the Params override, clamped to end no later than now
    and to start no earlier than the interval's ``start_date``. A manual run that would make more
    vendor requests than the source's ``max_requests_per_manual_run`` is refused here, before any
    request, with both figures named.

    :param series: the source, interval, dataset and settings (:class:`~market_ingest.operators.base.Series`).
    :param symbols: the configured universes' symbols, in order (a run's Params may narrow them).
    :return: one :class:`~market_ingest.contracts.BatchXCom` per extract task; the window is
        resolved here once and every task takes it from here.
    :raises AirflowFailException: on an invalid Params override (bad symbol, inverted or
        out-of-range window, too many requests) or a window the vendor cannot serve.
    """

    def __init__(self, *, symbols: list[str], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.symbols = symbols

    def execute(self, context: Context) -> list[BatchXCom]:
        from market_ingest.intervals import Window
        from market_ingest.sources import planned_requests

        src, ic, dataset = self.series.settings, self.series.interval_config, self.series.dataset
        now = datetime.now(timezone.utc)
        with failing_fast():
            sel = select(
                self.source,
                list(self.symbols),
                *data_interval(context),
                dict(context["params"]),
                symbol_pattern=src.symbols_like,
                earliest=ic.start_date,
                now=now,
            )
            for note in sel.clamped:
                self.log.warning("%s", note)
            window = Window(sel.start, sel.end)
            requests = planned_requests(src, self.source, self.interval, sel.symbols, window, now, dataset)
            cap = src.max_requests_per_manual_run
            if sel.manual and requests > cap:
                raise ConfigurationError(
                    self.source,
                    f"this manual run would make up to {requests} requests ({len(sel.symbols)} symbols over "
                    f"[{sel.start.isoformat()}, {sel.end.isoformat()})), more than the {cap} allowed per manual run "
                    f"(sources.{self.source}.max_requests_per_manual_run); narrow the symbols or the window, or backfill "
                    "with airflow backfill create",
                )
        if backfill_without_conf(context):
            self.log.warning("%s", whole_universe_notice(len(sel.symbols)))
        self.log.info(
            "%s %s: %d symbols over [%s, %s)%s, up to %d vendor requests",
            self.source,
            self.interval,
            len(sel.symbols),
            sel.start.isoformat(),
            sel.end.isoformat(),
            " (manual override)" if sel.manual else "",
            requests,
        )
        since = self._deferred(list(sel.symbols), sel.start) if dataset is Dataset.BARS and kinds.kind(src.kind).defers else {}
        size = ic.batch_size or src.batch_size
        return [
            Batch(i, tuple(b), window, {s: since[s] for s in b if s in since}).to_xcom()
            for i, b in enumerate(batch_symbols(list(sel.symbols), size))
        ]

    def _deferred(self, symbols: list[str], start: datetime) -> dict[str, datetime]:
        """The symbols of ``symbols`` a spent daily budget deferred before ``start``, with the
        start of the window each still lacks (:mod:`market_ingest.backlog`)."""
        from market_ingest import backlog
        from market_ingest.hooks.timescale import TimescaleHook

        warehouse = TimescaleHook(timescale_conn_id=self.series.timescale_conn_id)
        with failing_fast():
            warehouse.check_schema()
        since = {
            sym: t for sym, t in backlog.pending(warehouse, self.source, self.interval).items() if sym in symbols and t < start
        }
        if since:
            self.log.info("Picking up %d deferred symbols: %s", len(since), {s: t.isoformat() for s, t in since.items()})
        return since


class MarketRepairPlanOperator(SeriesOperator):
    """The plan of a repair: the coverage ledger's ``partial``, ``missing`` and ``failed`` days of
    one (source, interval) that the vendor still serves, as extract batches
    (:func:`market_ingest.repair.plan_repairs`), fewest attempts first, within a request budget.

    Marks ``unrecoverable`` in the ledger, in the same transaction as it reads them, the days
    beyond the vendor's lookback and those asked ``max_attempts`` times, and logs what it
    scheduled, what it gave up on and what waits for the next run (also pushed to XCom as ``repair``).
    Before reading, it writes the ledger rows that runs whose load failed while the warehouse was
    down parked in the lake (:func:`market_ingest.coverage.drain`), so the plan sees those days as
    ``failed``.

    :param series: the source, interval and settings (:class:`~market_ingest.operators.base.Series`).
    :param max_requests: vendor requests this plan may spend (``repair.max_requests_per_source``).
    :param max_days_back: days back the ledger is read (``repair.max_days_back``).
    :param max_attempts: attempts after which a day is given up (``repair.max_attempts``).
    :return: the batches (:class:`~market_ingest.contracts.BatchXCom`, each over the days it
        repairs); empty when there is nothing to repair, and then the rest of the repair is skipped.
    """

    def __init__(self, *, max_requests: int, max_days_back: int, max_attempts: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.max_requests = max_requests
        self.max_days_back = max_days_back
        self.max_attempts = max_attempts

    def execute(self, context: Context) -> list[BatchXCom]:
        from contextlib import closing

        from market_ingest import coverage
        from market_ingest.hooks.timescale import TimescaleHook
        from market_ingest.repair import plan_repairs

        src = self.series.settings
        hook = TimescaleHook(timescale_conn_id=self.series.timescale_conn_id)
        with failing_fast():
            hook.check_schema()
        parked: list = []
        with closing(hook.get_conn()) as conn, conn.transaction(), conn.cursor() as cur:
            if self.series.lake_url:
                parked = coverage.drain_parked(
                    cur, self.series.lake_url, source=self.source, interval=self.interval, settings=src
                )
            plan = plan_repairs(
                cur,
                source=self.source,
                interval=self.interval,
                src=src,
                now=datetime.now(timezone.utc),
                run_id=context["run_id"],
                max_requests=self.max_requests,
                max_days_back=self.max_days_back,
                max_attempts=self.max_attempts,
                batch_size=self.series.interval_config.batch_size or src.batch_size,
            )
        coverage.forget(parked)
        summary = plan.summary()
        self.log.info(
            "%s %s: %d repairable symbol-days; asking again %d windows in %d batches (%d requests of %d); "
            "unrecoverable (beyond the vendor's lookback): %s; given up after %d attempts: %s; left for the next run: %s",
            self.source,
            self.interval,
            plan.days,
            summary["windows"],
            len(plan.batches),
            plan.requests,
            self.max_requests,
            plan.unrecoverable or "none",
            self.max_attempts,
            plan.gave_up or "none",
            plan.left or "none",
        )
        context["ti"].xcom_push(key="repair", value=summary)
        return [b.to_xcom() for b in plan.batches]
