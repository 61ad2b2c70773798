"""``make record`` (tools/record.py) saves what the vendor answered in the form the stand-in serves:
recorded from the stand-in's synthetic market, the recordings alone then give the same bars."""

from __future__ import annotations

from datetime import datetime, timezone

import yaml

from market_ingest.hooks.exchange import ExchangeHook
from market_ingest.hooks.yahoo import YahooFinanceHook
from market_ingest.intervals import Window
from standin.server import StandIn
from tests.conftest import STANDIN_CONN, serving
from tools import record

UTC = timezone.utc
CLOCK = datetime(2026, 11, 20, 12, 0, 30, tzinfo=UTC)
INGESTED = datetime(2026, 11, 21, tzinfo=UTC)


def _bars(table):
    return [(r["time"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in table.to_pylist()]


def test_recorded_exchange_pages_serve_the_same_bars(tmp_path, monkeypatch):
    window = Window(datetime(2026, 11, 19, 0, tzinfo=UTC), datetime(2026, 11, 20, 1, tzinfo=UTC))  # 1,500 minutes: 2 pages
    with serving(StandIn(None, synthetic=True, clock=CLOCK), monkeypatch) as url:
        args = ["--source", "binance", "--symbols", "BTC/USDT", "--interval", "1m", "--base-url", url, "--out", str(tmp_path)]
        assert record.main([*args, "--start", "2026-11-19T00:00Z", "--end", "2026-11-20T01:00Z"]) == 0
        live, _ = ExchangeHook("binance", STANDIN_CONN, options={"fetchMarkets": {"types": ["spot"]}}).fetch_bars(
            ["BTC/USDT"], "1m", window, INGESTED
        )
    sidecars = sorted((tmp_path / "binance").glob("*.meta.yaml"))
    meta = yaml.safe_load(sidecars[0].read_text())
    assert len(sidecars) == 2 and meta["symbol"] == "BTCUSDT" and meta["interval"] == "1m"
    assert meta["requested_at"] == "2026-11-20T12:00:30Z" and meta["request"].startswith(
        "GET https://api.binance.com/api/v3/klines?"
    )
    with serving(StandIn(tmp_path), monkeypatch):  # the recordings only
        replayed, (outcome,) = ExchangeHook("binance", STANDIN_CONN, options={"fetchMarkets": {"types": ["spot"]}}).fetch_bars(
            ["BTC/USDT"], "1m", window, INGESTED
        )
    assert outcome.rows == 1500 and _bars(replayed) == _bars(live)


def test_recorded_yahoo_charts_serve_the_same_bars(tmp_path, monkeypatch):
    window = Window(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    with serving(StandIn(None, synthetic=True, clock=CLOCK), monkeypatch) as url:
        args = ["--source", "yahoo", "--symbols", "MSFT,BP.L", "--interval", "1d", "--base-url", url, "--out", str(tmp_path)]
        assert record.main([*args, "--start", "2026-10-01", "--end", "2026-11-01"]) == 0
        live, _ = YahooFinanceHook().fetch_bars(["MSFT", "BP.L"], "1d", window, INGESTED)
    assert len(list((tmp_path / "yahoo").glob("*.meta.yaml"))) == 2
    with serving(StandIn(tmp_path), monkeypatch):
        replayed, outcomes = YahooFinanceHook().fetch_bars(["MSFT", "BP.L"], "1d", window, INGESTED)
    assert [o.rows for o in outcomes] == [22, 22] and _bars(replayed) == _bars(live)  # October 2026: 22 weekdays
