"""The one place that maps a configured source ``kind`` to the hook that fetches its bars.

Every bar hook offers ``fetch_bars(symbols, interval, window, ingested_at, *, extended_hours) -> (bars, outcomes)``, and
hooks of sources with quote snapshots ``fetch_quotes(symbols, as_of, ingested_at) -> (quotes, outcomes)``.
Imported inside tasks only (it builds hooks that import vendor libraries lazily).
"""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

from market_ingest.config import PipelineConfig, SourceConfig
from market_ingest.intervals import Window

#: Source kinds whose hooks report symbols ``deferred`` (daily quota) for the next run to pick up.
DEFERRING_KINDS = frozenset({"alpha_vantage"})


def bar_hook(cfg: PipelineConfig, name: str) -> Any:
    """The hook serving source ``name`` of ``cfg``, reaching the vendor through the source's connection.

    :raises ValueError: for a kind no hook serves (the config model already restricts kinds).
    """
    src: SourceConfig = cfg.sources[name]
    if src.kind == "yahoo":
        from market_ingest.hooks.yahoo import YahooFinanceHook

        return YahooFinanceHook(yahoo_conn_id=src.conn_id or YahooFinanceHook.default_conn_name)
    if src.kind == "alpha_vantage":
        from market_ingest.hooks.alpha_vantage import AlphaVantageHook
        from market_ingest.hooks.timescale import TimescaleHook
        from market_ingest.quota import PostgresQuotaStore

        warehouse = TimescaleHook(timescale_conn_id=cfg.timescale.conn_id)
        warehouse.migrate()  # the shared daily budget lives in market.vendor_quota
        return AlphaVantageHook(
            alpha_vantage_conn_id=src.conn_id or AlphaVantageHook.default_conn_name,
            quota=PostgresQuotaStore(warehouse),
        )
    if src.kind == "ccxt":
        from market_ingest.hooks.exchange import ExchangeHook

        return ExchangeHook(
            src.exchange,
            src.conn_id or f"market_{name}",
            source=name,
            page_limit=src.page_limit,
            max_lookback_bars=src.max_lookback_bars,
            markets_file=src.markets_file,
            options=src.options,
        )
    raise ValueError(f"no hook serves source kind {src.kind!r}")


def planned_requests(
    cfg: PipelineConfig,
    name: str,
    interval: str,
    symbols: list[str] | tuple[str, ...],
    window: Window,
    now: datetime,
    dataset: str = "bars",
) -> int:
    """Upper bound of vendor requests a run of ``symbols`` over ``window`` makes, computed offline.

    Bars: the per-symbol figure of the source's hook (Yahoo: pieces of the window within its
    lookback; Alpha Vantage: months of an old intraday window, else one; ccxt: pages of the
    exchange's per-request maximum) times the symbols. Quotes: one request per symbol (Alpha
    Vantage ``GLOBAL_QUOTE``) or one ``fetch_tickers`` per batch (ccxt). Builds no client and
    makes no request; ccxt's class is read for its page size.
    """
    src: SourceConfig = cfg.sources[name]
    if dataset == "quotes":
        size = (src.quotes.batch_size if src.quotes else None) or src.batch_size
        return len(symbols) if src.kind == "alpha_vantage" else math.ceil(len(symbols) / size)
    if src.kind == "yahoo":
        from market_ingest.hooks.yahoo import planned_requests as per_symbol

        return len(symbols) * per_symbol(interval, window)
    if src.kind == "alpha_vantage":
        from market_ingest.hooks.alpha_vantage import planned_requests as per_symbol

        return len(symbols) * per_symbol(interval, window, now)
    from market_ingest.hooks.exchange import ExchangeHook

    hook = ExchangeHook(src.exchange, None, source=name, page_limit=src.page_limit, max_lookback_bars=src.max_lookback_bars)
    return len(symbols) * hook.planned_requests(interval, window)
