"""Hooks and request plans per source kind (:mod:`market_ingest.kinds`), looked up, not branched on.

Every bar hook offers ``fetch_bars(symbols, interval, window, ingested_at, *, extended_hours) -> (bars, outcomes)``, and
hooks of sources with quote snapshots ``fetch_quotes(symbols, as_of, ingested_at) -> (quotes, outcomes)``.
Imported inside tasks only (it builds hooks that import vendor libraries lazily).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import Any

from market_ingest.config import SourceConfig
from market_ingest.contracts import Dataset
from market_ingest.intervals import Window
from market_ingest.kinds import KINDS, kind


def _yahoo_hook(name: str, src: SourceConfig, timescale_conn_id: str) -> Any:
    from market_ingest.hooks.yahoo import YahooFinanceHook

    return YahooFinanceHook(yahoo_conn_id=src.connection_id(name), source=name)


def _alpha_vantage_hook(name: str, src: SourceConfig, timescale_conn_id: str) -> Any:
    from market_ingest.hooks.alpha_vantage import AlphaVantageHook
    from market_ingest.hooks.timescale import TimescaleHook
    from market_ingest.quota import PostgresQuotaStore

    warehouse = TimescaleHook(timescale_conn_id=timescale_conn_id)
    warehouse.check_schema()  # the shared daily budget lives in market.vendor_quota
    return AlphaVantageHook(alpha_vantage_conn_id=src.connection_id(name), quota=PostgresQuotaStore(warehouse), source=name)


def _exchange_hook(name: str, src: SourceConfig, timescale_conn_id: str) -> Any:
    from market_ingest.hooks.exchange import ExchangeHook

    return ExchangeHook(
        src.exchange_id,
        src.connection_id(name),
        source=name,
        page_limit=src.page_limit,
        max_lookback_bars=src.max_lookback_bars,
        markets_file=src.markets_file,
        options=src.options,
    )


def _yahoo_plan(src: SourceConfig, name: str, interval: str, window: Window, now: datetime) -> int:
    from market_ingest.hooks.yahoo import planned_requests as per_symbol

    return per_symbol(interval, window)


def _alpha_vantage_plan(src: SourceConfig, name: str, interval: str, window: Window, now: datetime) -> int:
    from market_ingest.hooks.alpha_vantage import planned_requests as per_symbol

    return per_symbol(interval, window, now)


def _exchange_plan(src: SourceConfig, name: str, interval: str, window: Window, now: datetime) -> int:
    from market_ingest.hooks.exchange import ExchangeHook

    hook = ExchangeHook(src.exchange_id, None, source=name, page_limit=src.page_limit, max_lookback_bars=src.max_lookback_bars)
    return hook.planned_requests(interval, window)


def _yahoo_lookback(src: SourceConfig, interval: str, now: datetime) -> datetime | None:
    from market_ingest.hooks.yahoo import LOOKBACK

    cap = LOOKBACK.get(interval)
    return now - cap if cap else None


def _no_lookback(src: SourceConfig, interval: str, now: datetime) -> datetime | None:
    return None  # Alpha Vantage: full daily history; intraday by month back to 2000 (its documentation)


def _exchange_lookback(src: SourceConfig, interval: str, now: datetime) -> datetime | None:
    from market_ingest.hooks.exchange import oldest_servable

    return oldest_servable(src.max_lookback_bars, interval, now)


#: kind -> ``(source name, source config, TimescaleDB connection id) -> hook``
HOOKS: dict[str, Callable[..., Any]] = {"yahoo": _yahoo_hook, "alpha_vantage": _alpha_vantage_hook, "ccxt": _exchange_hook}
#: kind -> ``(source config, name, interval, window, now) -> requests per symbol`` (offline)
PLANS: dict[str, Callable[..., int]] = {"yahoo": _yahoo_plan, "alpha_vantage": _alpha_vantage_plan, "ccxt": _exchange_plan}
#: kind -> ``(source config, interval, now) -> oldest bar open time the vendor serves, or None (no cap)``
LOOKBACKS: dict[str, Callable[..., datetime | None]] = {
    "yahoo": _yahoo_lookback,
    "alpha_vantage": _no_lookback,
    "ccxt": _exchange_lookback,
}


def register_hook(
    kind_name: str,
    hook: Callable[..., Any],
    plan: Callable[..., int],
    lookback: Callable[..., datetime | None] = _no_lookback,
) -> None:
    """Serve a kind registered with :func:`market_ingest.kinds.register`: its hook builder, request
    planner and lookback (default: the vendor serves any past window)."""
    kind(kind_name)
    HOOKS[kind_name], PLANS[kind_name], LOOKBACKS[kind_name] = hook, plan, lookback


def oldest_servable(src: SourceConfig, interval: str, now: datetime) -> datetime | None:
    """The oldest bar open time (UTC) ``src``'s vendor serves for ``interval`` at ``now``, from the
    vendor facts its hook holds (Yahoo's lookback caps, an exchange's ``max_lookback_bars``);
    ``None`` when it serves any past window. Offline: no client, no request."""
    return LOOKBACKS[src.kind](src, interval, now)


def bar_hook(name: str, src: SourceConfig, *, timescale_conn_id: str) -> Any:
    """The hook serving source ``name`` configured as ``src``, reaching the vendor through the source's connection,
    with the source's ``bar_stamp`` (:attr:`market_ingest.extract.SharedExtract.bar_stamp`).

    :param timescale_conn_id: the warehouse, for kinds that keep state there (Alpha Vantage's
        shared daily request budget).
    :raises ValueError: for a kind no hook serves (registered in :mod:`market_ingest.kinds` but not here).
    """
    if src.kind not in HOOKS:
        raise ValueError(f"no hook serves source kind {src.kind!r} (kinds: {', '.join(sorted(KINDS))})")
    hook = HOOKS[src.kind](name, src, timescale_conn_id)
    if src.bar_stamp != "start":  # hooks stamp by the open unless told (SharedExtract.bar_stamp); the extract step reads it
        hook.bar_stamp = src.bar_stamp
    return hook


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

    Bars: the per-symbol figure of the source's kind (Yahoo: pieces of the window within its
    lookback; Alpha Vantage: months of an old intraday window, else one; ccxt: pages of the
    exchange's per-request maximum) times the symbols. Quotes: one request per symbol (kinds with
    ``quote_request_per_symbol``: Alpha Vantage ``GLOBAL_QUOTE``) or one per batch (ccxt
    ``fetch_tickers``). Builds no client and makes no request; ccxt's class is read for its page size.
    """
    if dataset is Dataset.QUOTES:
        size = (src.quotes.batch_size if src.quotes else None) or src.batch_size
        return len(symbols) if kind(src.kind).quote_request_per_symbol else math.ceil(len(symbols) / size)
    return len(symbols) * PLANS[src.kind](src, name, interval, window, now)
