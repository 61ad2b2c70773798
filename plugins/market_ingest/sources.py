"""The one place that maps a configured source ``kind`` to the hook that fetches its bars.

Every bar hook offers ``fetch_bars(symbols, interval, window, ingested_at) -> (bars, outcomes)``, and
hooks of sources with quote snapshots ``fetch_quotes(symbols, as_of, ingested_at) -> (quotes, outcomes)``.
Imported inside tasks only (it builds hooks that import vendor libraries lazily).
"""

from __future__ import annotations

from typing import Any

from market_ingest.config import PipelineConfig, SourceConfig

#: Source kinds whose hooks report symbols ``deferred`` (daily quota) for the next run to pick up.
DEFERRING_KINDS = frozenset({"alpha_vantage"})


def bar_hook(cfg: PipelineConfig, name: str, replay_folder: str | None) -> Any:
    """The hook serving source ``name`` of ``cfg``, replaying from ``replay_folder`` when given.

    :raises ValueError: for a kind no hook serves (the config model already restricts kinds).
    """
    src: SourceConfig = cfg.sources[name]
    if src.kind == "yahoo":
        from market_ingest.hooks.yahoo import YahooFinanceHook

        return YahooFinanceHook(yahoo_conn_id=src.conn_id or YahooFinanceHook.default_conn_name, replay_dir=replay_folder)
    if src.kind == "alpha_vantage":
        from market_ingest.hooks.alpha_vantage import AlphaVantageHook
        from market_ingest.hooks.timescale import TimescaleHook
        from market_ingest.quota import PostgresQuotaStore

        warehouse = TimescaleHook(timescale_conn_id=cfg.timescale.conn_id)
        warehouse.migrate()  # the shared daily budget lives in market.vendor_quota
        return AlphaVantageHook(
            alpha_vantage_conn_id=src.conn_id or AlphaVantageHook.default_conn_name,
            quota=PostgresQuotaStore(warehouse),
            replay_dir=replay_folder,
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
            replay_dir=replay_folder,
        )
    raise ValueError(f"no hook serves source kind {src.kind!r}")
