"""The mapped extract task: one batch of symbols from the vendor, validated and staged in the lake."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, cast

from airflow.sdk.exceptions import AirflowFailException

from market_ingest import kinds, outcomes
from market_ingest.contracts import Batch, Dataset, ExtractResult, FailureXCom, OutcomeXCom, RejectsObject
from market_ingest.operators.base import FAILURE_CHARS, FAILURE_KEY, SeriesOperator, failing_fast

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

    from market_ingest.actions import SplitHistories
    from market_ingest.config import SourceConfig


class MarketExtractOperator(SeriesOperator):
    """Fetch one batch of symbols, normalise, validate and stage it as Parquet in the lake.

    Runs in the source's pool. Checks the lake's bucket first, so a missing one costs no vendor
    request. A symbol the vendor does not know, or that has no bar in the window, is recorded in
    the outcomes and skipped. Rate limits and network failures fail the task instance so Airflow
    retries it; permanent errors (a window the vendor cannot serve, configuration) fail at once.
    A failed try leaves its error for the report under the XCom key
    :data:`~market_ingest.operators.base.FAILURE_KEY`.

    :param series: the source, interval, dataset, settings, lake and warehouse
        (:class:`~market_ingest.operators.base.Series`); the warehouse keeps deferred symbols and
        Alpha Vantage's shared daily budget.
    :param batch: the plan's :class:`~market_ingest.contracts.BatchXCom` (templated; mapped).
    :param compression: Parquet compression of the staged objects.
    :return: :class:`~market_ingest.contracts.ExtractResult`: one staged object per batch, keyed by
        the run; bars that failed validation go to the lake's rejects table with their reason
        (:mod:`market_ingest.lake.rejects`). Quotes are stamped at the window's end. Bars
        are stored as traded: a vendor's split adjustment is undone with the symbol's split
        history, asked of the vendor at most once a day per symbol and kept in the lake
        (:class:`market_ingest.lake.actions.ActionsCache`; the objects refreshed are listed in
        ``actions`` for the warehouse).
    """

    template_fields: Sequence[str] = ("batch",)

    def __init__(self, *, batch: Any, compression: str = "zstd", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.batch = batch
        self.compression = compression

    def execute(self, context: Context) -> ExtractResult:
        try:
            return self._extract(context)
        except Exception as exc:
            # For the run report: what stopped this batch, on which try. The report cannot read
            # another task's exception; an XCom pushed before failing stays (a retry clears it
            # when it starts, so the last try's failure is the one the report sees).
            cause = exc.__cause__ if isinstance(exc, AirflowFailException) and exc.__cause__ else exc
            try:
                ti = context["ti"]
                failure: FailureXCom = {
                    "error": f"{type(cause).__name__}: {str(cause)[:FAILURE_CHARS]}",
                    "try_number": ti.try_number,
                    "tries": ti.max_tries + 1,
                }
                ti.xcom_push(key=FAILURE_KEY, value=failure)
            except Exception as push_error:  # the task fails with its own exception whatever happens here
                self.log.warning("Could not keep this failure for the run report: %s", push_error)
            raise

    def _extract(self, context: Context) -> ExtractResult:
        from market_ingest.lake import check_lake, lake_root, stage
        from market_ingest.lake.actions import ActionsCache
        from market_ingest.sources import bar_hook

        series, batch = self.series, Batch.from_xcom(self.batch)
        src, window = series.settings, batch.window
        root = lake_root(series.lake_url)
        with failing_fast():
            check_lake(root)
        now = datetime.now(timezone.utc)
        with failing_fast((window.start, window.end)):
            hook = bar_hook(self.source, src, timescale_conn_id=series.timescale_conn_id, splits_from=series.splits)
            hook.check_reachable()  # an unreachable vendor fails the try in seconds, naming host and connection
            rejected: list = []
            actions = ActionsCache(root, self.source)
            if series.dataset is Dataset.QUOTES:
                bars, results = hook.fetch_quotes(list(batch.symbols), as_of=window.end, ingested_at=now)
            else:
                bars, results = self._fetch_bars(hook, src, batch, now, rejected, actions)
        if series.dataset is Dataset.BARS and kinds.kind(src.kind).defers:
            self._update_backlog(results, batch)
        with failing_fast():
            staged = stage(bars, root, self.source, series.stored_interval, context["run_id"], batch.index, self.compression)
            rejects = self._write_rejects(rejected, root, context, batch.index)
        for o in results:
            self.log.info(
                "%-12s %-15s rows=%-6d %s %s %s",
                o.symbol,
                o.status,
                o.rows,
                o.reason,
                o.dropped or "",
                f"nulled {o.nulled}" if o.nulled else "",
            )
        return {
            "batch": batch.index,
            "staged": staged,
            "rows": bars.num_rows,
            "outcomes": [cast(OutcomeXCom, o.as_dict()) for o in results],
            "ingested_at": now.isoformat(),
            "rejects": rejects,
            "actions": sorted(actions.refreshed),
            "new_actions": [
                {
                    "symbol": a.symbol,
                    "kind": a.kind,
                    "ex_date": a.ex_date.isoformat(),
                    "ratio": a.ratio,
                    "amount": a.amount,
                    "currency": a.currency,
                }
                for a in actions.new
            ],
        }

    def _write_rejects(self, rejected: list[pa.Table], root: Any, context: Context, index: int) -> RejectsObject | None:
        """Replace the batch's rows of the lake's rejects table with the bars that failed
        validation (:func:`market_ingest.lake.write_rejects`, one commit; a retry replaces its
        earlier try's rows). Return where and how many, or ``None`` when there were none (a retry
        then still deletes what an earlier try left)."""
        from market_ingest.lake import write_rejects

        if not rejected and context["ti"].try_number <= 1:
            return None
        import pyarrow as pa

        from market_ingest.schema import BAR_SCHEMA, as_sent

        table = (
            pa.concat_tables(rejected, promote_options="permissive")
            if rejected
            else as_sent(BAR_SCHEMA).append(pa.field("reason", pa.string())).empty_table()
        )
        written = write_rejects(root, table, self.source, self.interval, context["run_id"], index)
        if not rejected:
            return None
        self.log.warning(
            "%d bars failed validation; written with their reasons to %s (run %s, batch %d, version %d)",
            written["rows"],
            written["path"],
            written["run_id"],
            index,
            written["version"],
        )
        return cast(RejectsObject, written)

    def _fetch_bars(
        self,
        hook: Any,
        src: SourceConfig,
        batch: Batch,
        now: datetime,
        rejected: list[pa.Table],
        actions: SplitHistories,
    ) -> tuple[pa.Table, list[outcomes.SymbolOutcome]]:
        """One ``fetch_bars`` per distinct window start (deferred symbols reach back to their
        deferral), asking nothing for a symbol whose market has no session in its window
        (:func:`~market_ingest.calendars.closed_throughout`): it is ``no_data``, and says so.
        Split-adjusted answers are converted with the split histories of ``actions``."""
        import pyarrow as pa

        from market_ingest.calendars import closed_throughout
        from market_ingest.errors import ConfigurationError
        from market_ingest.intervals import Window
        from market_ingest.schema import empty_bars

        end, extended_hours = batch.window.end, self.series.interval_config.extended_hours
        groups: dict[datetime, list[str]] = {}
        by_symbol: dict[str, outcomes.SymbolOutcome] = {}
        closed: dict[tuple[str, datetime], bool] = {}  # most symbols share a market and a window
        for sym in batch.symbols:
            sym_start = batch.start_of(sym)
            market = src.market_of(sym)
            if (market, sym_start) not in closed:
                try:
                    closed[market, sym_start] = closed_throughout(
                        market, self.interval, Window(sym_start, end), extended_hours=extended_hours
                    )
                except ValueError as exc:
                    raise ConfigurationError(self.source, f"{exc} (sources.{self.source}.market)") from exc
            if closed[market, sym_start]:
                reason = f"no {market} session in the window (weekend or holiday): the vendor was not asked"
                by_symbol[sym] = outcomes.SymbolOutcome(sym, outcomes.NO_DATA, reason=reason, asked=False)
                continue
            groups.setdefault(sym_start, []).append(sym)
        tables = [empty_bars()]
        for group_start, group in sorted(groups.items()):
            table, outs = hook.fetch_bars(
                group,
                self.interval,
                Window(group_start, end),
                ingested_at=now,
                extended_hours=extended_hours,
                rejects=rejected,
                concurrency=src.symbols_in_flight,
                bounds=src.bounds.bounds(),
                split_histories=actions,
                keep_actions=src.actions_enabled,
            )
            tables.append(table)
            by_symbol.update({o.symbol: o for o in outs})
        return pa.concat_tables(tables), [by_symbol[s] for s in batch.symbols]

    def _update_backlog(self, results: list[outcomes.SymbolOutcome], batch: Batch) -> None:
        """Defer the symbols a spent daily budget left unasked; settle those fetched now."""
        from market_ingest import backlog
        from market_ingest.hooks.timescale import TimescaleHook

        warehouse = TimescaleHook(timescale_conn_id=self.series.timescale_conn_id)
        start, end = batch.window.start, batch.window.end
        deferred = [o for o in results if o.status == outcomes.DEFERRED]
        if deferred:
            backlog.defer(warehouse, self.source, self.interval, [o.symbol for o in deferred], start, end, deferred[0].reason)
        fetched = [o.symbol for o in results if o.status in (outcomes.OK, outcomes.NO_DATA)]
        if fetched:
            settled = backlog.settle(warehouse, self.source, self.interval, fetched, end)
            if settled:
                self.log.info("Settled %d deferred windows", settled)
