"""Source kinds are a registry: the config validates against it and sources build hooks from it."""

from __future__ import annotations

import pytest

from market_ingest import kinds, sources
from market_ingest.config import SourceConfig

BASE = {
    "pool": "p",
    "pool_slots": 1,
    "batch_size": 5,
    "universes": ["u"],
    "description": "d",
    "intervals": {"1d": {"schedule": "@daily"}},
}


def test_an_unregistered_kind_is_refused_naming_the_registered_ones():
    with pytest.raises(ValueError, match=r"unknown source kind 'stooq'; registered kinds: alpha_vantage, ccxt, yahoo"):
        SourceConfig(kind="stooq", **BASE)


def test_a_registered_kind_is_configured_and_served_without_editing_the_pipeline(monkeypatch):
    monkeypatch.setitem(kinds.KINDS, "stooq", kinds.SourceKind("stooq", r"[a-z]{1,8}\.us"))
    built = object()
    monkeypatch.setitem(sources.HOOKS, "stooq", lambda name, src, timescale_conn_id: built)
    monkeypatch.setitem(sources.PLANS, "stooq", lambda src, name, interval, window, now: 2)
    src = SourceConfig(kind="stooq", **BASE)
    assert src.symbols_like == r"[a-z]{1,8}\.us"  # the kind's spelling, not another kind's
    assert sources.bar_hook("stooq", src, timescale_conn_id="market_timescale") is built
    assert sources.planned_requests(src, "stooq", "1d", ["aapl.us", "msft.us"], None, None) == 4
    with pytest.raises(ValueError, match="extended_hours applies"):
        SourceConfig(kind="stooq", **{**BASE, "intervals": {"5m": {"schedule": "@daily", "extended_hours": True}}})


def test_symbols_in_flight_needs_a_kind_whose_hook_is_thread_safe():
    """yfinance is asked from several threads at once; ccxt's synchronous throttle and Alpha
    Vantage's daily quota are not, so the config refuses them more than one symbol in flight."""
    assert SourceConfig(kind="yahoo", symbols_in_flight=4, **BASE).symbols_in_flight == 4
    assert SourceConfig(kind="alpha_vantage", **BASE).symbols_in_flight == 1  # the default
    with pytest.raises(ValueError, match=r"symbols_in_flight above 1 applies to kinds \['yahoo'\]; not ccxt"):
        SourceConfig(kind="ccxt", exchange="binance", symbols_in_flight=2, **BASE)
    with pytest.raises(ValueError, match="symbols_in_flight above 1 applies to kinds"):
        SourceConfig(kind="alpha_vantage", symbols_in_flight=2, **BASE)


def test_each_kind_names_its_hook_s_connection_type_and_default_connection():
    from market_ingest.hooks.alpha_vantage import AlphaVantageHook
    from market_ingest.hooks.exchange import ExchangeHook
    from market_ingest.hooks.yahoo import YahooFinanceHook

    hooks = {"yahoo": YahooFinanceHook, "alpha_vantage": AlphaVantageHook, "ccxt": ExchangeHook}
    assert set(hooks) == set(kinds.KINDS)
    for name, hook in hooks.items():
        assert kinds.kind(name).conn_type == hook.conn_type, name
    assert kinds.kind("yahoo").default_conn_id == YahooFinanceHook.default_conn_name
    assert kinds.kind("alpha_vantage").default_conn_id == AlphaVantageHook.default_conn_name
    assert kinds.kind("ccxt").default_conn_id == "", "one connection per exchange: market_<source>"
