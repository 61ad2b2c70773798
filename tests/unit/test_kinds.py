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
