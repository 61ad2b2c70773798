"""The tasks of ``market_setup``: the warehouse's migrations and policies, the conversion of bars
stored before the price basis to as traded, and the lake's compaction."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

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


class RebaseBarsOperator(BaseOperator):
    """Convert the bars earlier versions stored (``price_basis`` NULL) to as traded: a task of
    ``market_setup``, after the migrations (docs/operations.md, "Upgrading to as-traded prices").

    Per series (:meth:`~market_ingest.hooks.timescale.TimescaleHook.rebase_bars`, SQL
    ``market.rebase_bars``): rows of a source whose vendor sent traded prices are marked
    ``as_traded`` unchanged; rows of a source whose vendor sent split-adjusted ones (Yahoo) are
    multiplied back by the splits of ``market.corporate_actions`` between the bar and its
    ingestion, once the symbol's actions were asked since (the ingestion DAGs ask for every
    equity they extract, once a day; this task asks for the others). Yahoo's currencies, crypto pairs, futures and indexes have
    no corporate actions and were never adjusted (:func:`legacy_basis`). Dates are in the
    exchange's timezone, from the symbol's market calendar.

    Symbols whose actions were not asked since their rows' ingestion (the first trigger after an
    upgrade: no DAG has asked yet) are asked here, once, through the lake's cache and upserted, and
    their series converted in the same run.

    On a warehouse without such rows it only lists them (one scan per bar table) and changes
    nothing; run again, it converts nothing more.

    :param timescale_conn_id: connection id of the warehouse.
    :param sources: ``{source: {"split_adjusted": bool, "market": configured market or None,
        "continuous": bool}}`` for every configured source
        (:func:`market_ingest.dag_factory.rebase_arguments`).
    :param lake_url: the lake, where the actions asked are kept; ``None``: ask nothing.
    :return: ``{source: {"rebased": rows converted, "pending": rows left, "pending_series":
        {"<symbol> <interval>": rows}}}`` for each source that had such rows.
    :raises AirflowFailException: rows stay unconverted (Yahoo could not answer for their
        symbol's actions, or their source is not configured), naming the series and what to do;
        what could be converted is committed first.
    """

    def __init__(
        self, *, timescale_conn_id: str, sources: dict[str, dict[str, Any]], lake_url: str | None = None, **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.timescale_conn_id = timescale_conn_id
        self.sources = sources
        self.lake_url = lake_url

    def _ask_pending_actions(self, hook, done: dict[str, dict[str, Any]]) -> int:
        """Ask the vendor for the corporate actions of the symbols whose split-adjusted rows wait
        for them (:func:`ask_actions`) and upsert them; return how many symbols were asked."""
        from market_ingest.operators.warehouse import upsert_action_objects

        asked = 0
        for source, counts in done.items():
            info = self.sources.get(source)
            symbols = sorted({series.split(" ", 1)[0] for series in counts.get("pending_series", {})})
            if not info or not info.get("split_adjusted") or not symbols or not self.lake_url:
                continue
            refreshed = ask_actions(source, symbols, self.lake_url, self.timescale_conn_id, partial(_tz_of, info), self.log)
            if refreshed:
                upsert_action_objects(hook, refreshed)
            asked += len(refreshed)
        return asked

    def execute(self, context: Context) -> dict[str, Any]:
        from market_ingest.errors import RebasePendingError
        from market_ingest.hooks.timescale import TimescaleHook

        hook = TimescaleHook(timescale_conn_id=self.timescale_conn_id)
        with failing_fast():
            hook.check_schema()
        basis = lambda source, symbol: legacy_basis(self.sources.get(source), symbol)  # noqa: E731
        done = hook.rebase_bars(basis)
        if self.lake_url and self._ask_pending_actions(hook, done):
            again = hook.rebase_bars(basis)
            for source, counts in again.items():
                counts["rebased"] += done.get(source, {}).get("rebased", 0)
            done = {**done, **again}
        for source, counts in done.items():
            self.log.info(
                "%s: %d rows stored before schema 2 converted to as traded, %d pending",
                source,
                counts["rebased"],
                counts["pending"],
            )
        pending = [(s, series, n) for s, counts in done.items() for series, n in counts["pending_series"].items()]
        if pending:
            shown = ", ".join(f"{s}:{series} ({n} rows)" for s, series, n in pending[:10])
            more = f" and {len(pending) - 10} more series" if len(pending) > 10 else ""
            unconfigured = sorted({s for s, _, _ in pending if s not in self.sources})
            with failing_fast():
                raise RebasePendingError(
                    "timescale",
                    f"{sum(n for _, _, n in pending)} bars stored before schema 2 are not converted to as traded yet: {shown}{more}. "
                    "A Yahoo series is converted once its symbol's corporate actions were asked; this task asked Yahoo for "
                    "them and it could not answer for these symbols (see the log: unknown or delisted), so their rows keep "
                    "the basis they were stored on: delete them, or trigger market_setup again if Yahoo was only unreachable"
                    + (
                        f"; sources not in the pipeline config ({', '.join(unconfigured)}) have no known basis: convert them with "
                        "SELECT market.rebase_bars(interval, source, symbol, split_adjusted) or delete them"
                        if unconfigured
                        else ""
                    )
                    + " (docs/operations.md, Upgrading to as-traded prices)",
                )
        return done


def ask_actions(source: str, symbols: list[str], lake_url: str, timescale_conn_id: str, tz_of, log) -> list[str]:
    """Ask ``source``'s vendor for the corporate actions of ``symbols``, kept in the lake.

    Through the lake's :class:`~market_ingest.lake.actions.ActionsCache`, so a symbol asked today
    (by an ingestion DAG or an earlier call) is not asked again. A symbol the vendor cannot answer
    for (unknown, delisted) is logged and skipped; throttling or the vendor being down raises (the
    task's retry asks again).

    :param tz_of: ``symbol -> IANA timezone`` of its exchange (dates "today" for the cache).
    :return: the lake objects written (URLs), for the warehouse to upsert.
    """
    from datetime import datetime, timezone

    from market_ingest.config import load_config
    from market_ingest.errors import SymbolError
    from market_ingest.lake import lake_root
    from market_ingest.lake.actions import ActionsCache
    from market_ingest.sources import bar_hook

    cfg = load_config()
    client = bar_hook(source, cfg.sources[source], timescale_conn_id=timescale_conn_id, splits_from=cfg.splits_from_of(source))
    cache = ActionsCache(lake_root(lake_url), source)
    for symbol in symbols:
        try:
            cache.split_history(client, symbol, datetime.now(timezone.utc), tz_of(symbol))
        except SymbolError as exc:
            log.warning("%s:%s: corporate actions not asked: %s", source, symbol, exc.reason)
    log.info("%s: asked the corporate actions of %d of %d symbols waiting for them", source, len(cache.refreshed), len(symbols))
    return list(cache.refreshed)


def _tz_of(source: dict[str, Any], symbol: str) -> str:
    """The timezone that dates ``symbol``'s legacy rows (:func:`legacy_basis`), ``UTC`` when it has none."""
    basis = legacy_basis(source, symbol)
    return basis.tz if basis is not None and basis.split_adjusted else "UTC"


def legacy_basis(source: dict[str, Any] | None, symbol: str):
    """What ``symbol``'s bars stored before schema 2 are, for :class:`RebaseBarsOperator`.

    :param source: the source's entry of :func:`market_ingest.dag_factory.rebase_arguments`;
        ``None`` for a source the config does not have (the basis is unknown: ``None`` returned).
    :return: :class:`~market_ingest.hooks.timescale.LegacyBasis`: split-adjusted for a source
        whose vendor adjusted prices (Yahoo), except symbols without corporate actions, whose
        market is ``24/5`` (currencies), ``24/7`` (crypto) or futures' (Yahoo's ``=F``), and
        indexes (``^GSPC``): Yahoo adjusts only equities, ETFs and funds
        (``market_ingest.vendors.yahoo.WITH_ACTIONS``). ``tz``: the market calendar's timezone.
    """
    from market_ingest.calendars import ALWAYS_OPEN, FOREX, SUFFIX_MARKETS, market_of
    from market_ingest.hooks.timescale import LegacyBasis

    if source is None:
        return None
    market = market_of(symbol, source.get("market"), continuous=bool(source.get("continuous")))
    never_adjusted = market in (ALWAYS_OPEN, FOREX, SUFFIX_MARKETS["=F"]) or symbol.startswith("^")
    if not source.get("split_adjusted") or never_adjusted:
        return LegacyBasis(False)
    return LegacyBasis(True, _market_tz(market))


def _market_tz_of(symbol: str) -> str:
    """The IANA timezone of ``symbol``'s market by its spelling (:func:`market_ingest.calendars.market_of`)."""
    from market_ingest.calendars import market_of, market_timezone

    return market_timezone(market_of(symbol))


def _market_tz(market: str) -> str:
    """The IANA timezone of an exchange calendar (``XNYS`` -> ``America/New_York``)."""
    import exchange_calendars as xcals

    return str(xcals.get_calendar(market).tz)


class LakeCompactOperator(BaseOperator):
    """Bring the lake to its current layout and keep the bars table lean: a task of ``market_setup``.

    In order:

    1. quotes: :func:`market_ingest.lake.convert_quotes` copies the quote objects earlier versions
       wrote (any layout) into the quotes table and verifies them (idempotent);
    2. bars stored before the price basis: :func:`market_ingest.lake.rebase_lake` converts them to
       as traded in the Parquet objects earlier versions wrote (``rebase``); the symbols it cannot
       convert yet (no actions in the lake) are asked of the vendor (:func:`ask_actions`, with
       ``timescale_conn_id`` for the hook) and converted in the same run;
    3. the conversion: :func:`market_ingest.lake.repartition_bars` first moves bars the table
       holds under a period it no longer uses (daily bars by month, as the table was first
       written) into their period (``repartition``); then :func:`market_ingest.lake.convert_lake` copies every (source, interval)'s
       bars from those Parquet objects into the bars Delta table and verifies that each arrived
       (idempotent: on a converted lake it reads the objects, finds nothing to merge and commits
       nothing; the objects are left for the operator to delete); the same for the rejects
       objects (:func:`market_ingest.lake.convert_rejects`, into the rejects table) and the
       ledger's mirror (:func:`market_ingest.lake.convert_mirror`, into the coverage table);
    4. maintenance: :func:`market_ingest.lake.maintain_all` compacts every table's small files and
       vacuums files older than :data:`~market_ingest.lake.table.VACUUM_RETENTION_HOURS` that
       no current version references (time travel reaches that far back).

    Safe while runs publish: conversion and compaction commit like a publish, retried on conflict.

    :param lake_url: the bars lake root (``lake.url``).
    :param quotes_url: the quotes lake root (``lake.quotes_url``).
    :param pairs: ``[[source, interval], ...]`` of the bars DAGs.
    :param quote_sources: sources with quote snapshots.
    :param rebase: ``{source: what its bars stored before schema 2 are}`` (``split_adjusted`` for
        Yahoo sources, else ``as_traded``).
    :return: ``{"<source>/quotes": convert_quotes' counts, "<source>/rebase": rebase_lake's counts,
        "repartition": repartition_bars' counts,
        "<source>/<interval>": convert_lake's counts, "rejects": convert_rejects' counts,
        "coverage": convert_mirror's counts,
        "<table>/maintenance": maintain's counts for each table of the lake}``.
    """

    def __init__(
        self,
        *,
        lake_url: str,
        quotes_url: str,
        pairs: list[list[str]],
        quote_sources: list[str],
        rebase: dict[str, str] | None = None,
        timescale_conn_id: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.lake_url, self.quotes_url = lake_url, quotes_url
        self.pairs, self.quote_sources = pairs, quote_sources
        self.rebase = rebase or {}
        self.timescale_conn_id = timescale_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from market_ingest.lake import (
            check_lake,
            convert_lake,
            convert_mirror,
            convert_quotes,
            convert_rejects,
            lake_root,
            maintain_all,
            rebase_lake,
            repartition_bars,
        )

        bars, quotes = lake_root(self.lake_url), lake_root(self.quotes_url)
        with failing_fast():
            check_lake(bars)
            check_lake(quotes)
        done: dict[str, Any] = {}
        with failing_fast():
            for source in self.quote_sources:
                stats = convert_quotes(quotes, source)
                done[f"{source}/quotes"] = stats
                if stats["rows_merged"]:
                    self.log.info("%s: quote objects converted into the quotes table: %s", source, stats)
        for source, basis in self.rebase.items():
            rebased = rebase_lake(bars, source, basis)
            lacking = rebased["symbols_lacking_actions"]
            conn_id = self.timescale_conn_id
            asked = ask_actions(source, lacking, self.lake_url, conn_id, _market_tz_of, self.log) if lacking and conn_id else []
            if asked and conn_id:
                from market_ingest.hooks.timescale import TimescaleHook
                from market_ingest.operators.warehouse import upsert_action_objects

                upsert_action_objects(TimescaleHook(timescale_conn_id=conn_id), asked)
                again = rebase_lake(bars, source, basis)
                again["rows_converted"] += rebased["rows_converted"]
                again["rows_labelled"] += rebased["rows_labelled"]
                again["objects_written"] += rebased["objects_written"]
                rebased = again
            done[f"{source}/rebase"] = rebased
            if rebased["objects_written"] or rebased["rows_left"]:
                self.log.info("%s: bars stored before schema 2, re-based: %s", source, rebased)
        with failing_fast():
            done["repartition"] = repartition_bars(bars)
            if done["repartition"]["rows"]:
                self.log.info("Bars moved out of partitions the table no longer uses: %s", done["repartition"])
            for source, interval in self.pairs:
                converted = convert_lake(bars, source, interval)
                done[f"{source}/{interval}"] = converted
                if converted["rows_merged"]:
                    self.log.info("%s %s: Parquet objects converted into the bars table: %s", source, interval, converted)
            done["rejects"] = convert_rejects(bars)
            if done["rejects"]["rows_merged"]:
                self.log.info("Reject objects converted into the rejects table: %s", done["rejects"])
            done["coverage"] = convert_mirror(bars)
            if done["coverage"]["rows_merged"]:
                self.log.info("Ledger mirror objects converted into the coverage table: %s", done["coverage"])
        for root in (bars, quotes):
            for name, counts in maintain_all(root).items():
                done[f"{name}/maintenance"] = counts
                self.log.info("%s table maintained: %s", name, counts)
        return done
