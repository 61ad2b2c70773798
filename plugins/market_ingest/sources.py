"""Hooks, request plans and lookbacks per source kind, read from the registered kind (:mod:`market_ingest.kinds`).

Every bar hook offers ``fetch_bars(symbols, interval, window, ingested_at, *, extended_hours) -> (bars, outcomes)``, and
hooks of sources with quote snapshots ``fetch_quotes(symbols, as_of, ingested_at) -> (quotes, outcomes)``.
Request plans and lookbacks are the vendor module's offline functions (no hook, no client);
a hook is imported only when :func:`bar_hook` builds it (it imports its vendor library lazily).
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from market_ingest.config import SourceConfig, SplitsFrom
from market_ingest.contracts import Dataset
from market_ingest.intervals import Window
from market_ingest.kinds import kind


def oldest_servable(src: SourceConfig, interval: str, now: datetime) -> datetime | None:
    """The oldest bar open time (UTC) ``src``'s vendor serves for ``interval`` at ``now``, from the
    facts its vendor module holds (Yahoo's lookback caps, an exchange's ``max_lookback_bars``:
    the kind's ``oldest_servable``); ``None`` when it serves any past window. Offline: no
    client, no request."""
    return kind(src.kind).oldest_servable(src, interval, now)


def bar_hook(name: str, src: SourceConfig, *, timescale_conn_id: str, splits_from: SplitsFrom | None = None) -> Any:
    """The hook serving source ``name`` configured as ``src`` (the kind's ``hook`` class, built by
    its ``for_source``), reaching the vendor through the source's connection, with the source's
    ``bar_stamp`` (:attr:`market_ingest.extract.SharedExtract.bar_stamp`).

    :param timescale_conn_id: the warehouse, for kinds that keep state there (Alpha Vantage's
        shared daily request budget).
    :param splits_from: for a kind whose vendor states no splits (``splits_elsewhere``:
        Interactive Brokers), the source its splits come from: the hook's ``splits`` asks that
        source's hook (built on first use) for the symbol's actions there. Without it such a hook
        fails a symbol whose bars need converting, naming the source.
    :raises ValueError: for a kind that is not registered.
    """
    module, _, cls = kind(src.kind).hook.rpartition(".")
    hook = getattr(importlib.import_module(module), cls).for_source(name, src, timescale_conn_id=timescale_conn_id)
    if src.bar_stamp != "start":  # hooks stamp by the open unless told (SharedExtract.bar_stamp); the extract step reads it
        hook.bar_stamp = src.bar_stamp
    if kind(src.kind).splits_elsewhere and splits_from is not None:
        hook.splits = _asking(splits_from, timescale_conn_id)
    return hook


def _asking(splits_from: SplitsFrom, timescale_conn_id: str) -> Callable[[str], Any]:
    """``symbol -> ActionsAnswer`` from ``splits_from``'s hook, built on first use (one thread: the
    kinds that take their splits elsewhere fetch one symbol at a time). A symbol the other source
    cannot answer fails (``failed``, naming the source and its symbol there), whatever status the
    other source would give it: IB's bars cannot be stored without the splits."""
    built: list[Any] = []

    def splits(symbol: str) -> Any:
        from market_ingest.errors import SymbolError

        if not built:
            built.append(bar_hook(splits_from.source, splits_from.settings, timescale_conn_id=timescale_conn_id))
        there = splits_from.symbol_of(symbol)
        try:
            return built[0].corporate_actions(there)
        except SymbolError as exc:  # the other vendor's unknown symbol is not this one's: the symbol fails, saying why
            raise SymbolError(splits_from.source, f"splits of {there} from {splits_from.source}: {exc.reason}", symbol) from None

    return splits


def planned_requests(
    src: SourceConfig,
    name: str,
    interval: str,
    symbols: list[str] | tuple[str, ...],
    window: Window,
    now: datetime,
    dataset: Dataset = Dataset.BARS,
) -> int:
    """Upper bound of vendor requests a run of ``symbols`` over ``window`` makes, computed offline.

    Bars: the per-symbol figure of the source's kind (its vendor module's ``planned_requests``;
    Yahoo: pieces of the window within its lookback; Alpha Vantage: months of an old intraday
    window, else one; ccxt: pages of the exchange's per-request maximum) times the symbols. Not
    counted: the corporate-actions requests (``SourceKind.actions_requests``: Yahoo one, Alpha
    Vantage two when the source keeps them), asked at most once per symbol and day whatever the
    runs, so a repair's or a manual run's budget stays a budget of bar requests. Quotes: one request per symbol (kinds with ``quote_request_per_symbol``: Alpha Vantage
    ``GLOBAL_QUOTE``) or one per batch (ccxt ``fetch_tickers``). Builds no hook and no client and
    makes no request; ccxt's class is read for its page size.

    :param name: the source's name (unused: the plan depends on its configuration only).
    """
    if dataset is Dataset.QUOTES:
        size = (src.quotes.batch_size if src.quotes else None) or src.batch_size
        return len(symbols) if kind(src.kind).quote_request_per_symbol else math.ceil(len(symbols) / size)
    return len(symbols) * kind(src.kind).planned_requests(src, interval, window, now)
