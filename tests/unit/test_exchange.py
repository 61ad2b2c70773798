"""ExchangeHook on recorded exchange responses served by the stand-in, through ccxt's own request and parsing code.

Expected values are read straight from the raw recorded bodies in each test, never from the hook.
"""

from __future__ import annotations

import json
import shutil
import urllib.request
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
import tenacity
import yaml

from market_ingest.errors import ConfigurationError, RateLimitedError, WindowNotServableError
from market_ingest.hooks.exchange import ExchangeHook
from market_ingest.intervals import Window
from market_ingest.quality import find_gaps
from market_ingest.vendors.ccxt import iter_pages, to_ms
from standin.server import StandIn
from tests.conftest import RECORDINGS, STANDIN_CONN, recording, serving

UTC = timezone.utc
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "binance"
SPOT = {"fetchMarkets": {"types": ["spot"]}}
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)


def d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _body(folder: str, prefix: str):
    (path,) = sorted((RECORDINGS / folder).glob(f"{prefix}*.json"))
    return json.loads(path.read_text())


def _ms(t) -> datetime:
    return datetime.fromtimestamp(int(t) / 1000, UTC)


def _s(t) -> datetime:
    return datetime.fromtimestamp(int(t), UTC)


# Each recorded kline shape as (time, open, high, low, close, volume), decoded by hand from the body:
# Binance: 12-field arrays of strings [open ms, o, h, l, c, v, close ms, ...];
# KuCoin: {"data": [[sec, open, CLOSE, HIGH, LOW, volume, turnover]]}, newest first;
# Coinbase Advanced Trade: {"candles": [{"start": sec, "low", "high", "open", "close", "volume"}]}, newest first;
# Coinbase Exchange: [[sec, LOW, HIGH, OPEN, CLOSE, volume]].
SHAPES = {
    "binance": (
        "BTC/USDT",
        "1m",
        Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 12)),
        "binance_spot_klines",
        lambda b: [(_ms(r[0]), *map(float, (r[1], r[2], r[3], r[4], r[5]))) for r in b],
    ),
    "kucoin": (
        "BTC/USDT",
        "1h",
        Window(d(2024, 1, 30, 16), d(2024, 1, 30, 19)),
        "kucoin_market_candles",
        lambda b: [(_s(r[0]), *map(float, (r[1], r[3], r[4], r[2], r[5]))) for r in b["data"]],
    ),
    "coinbase": (
        "BTC/USD",
        "1h",
        Window(d(2024, 4, 4, 0), d(2024, 4, 4, 2)),
        "coinbase_advtrade",
        lambda b: [(_s(c["start"]), *(float(c[k]) for k in ("open", "high", "low", "close", "volume"))) for c in b["candles"]],
    ),
    "coinbaseexchange": (
        "BTC/USDT",
        "1h",
        Window(d(2024, 3, 13, 11), d(2024, 3, 13, 12)),
        "coinbase_exchange",
        lambda b: [(_s(r[0]), float(r[3]), float(r[2]), float(r[1]), float(r[4]), float(r[5])) for r in b],
    ),
}


def _hook(exchange: str, **kwargs) -> ExchangeHook:
    """The hook reaching the stand-in through connection ``market_standin`` (tests/conftest.py)."""
    options = SPOT if exchange == "binance" else None
    return ExchangeHook(exchange, STANDIN_CONN, options=options, **kwargs)


def _loaded(hook: ExchangeHook):
    """The hook's ccxt instance with its markets loaded from the stand-in."""
    return hook.client


#: One minute after the recorded Binance klines page (23:12:30): its last candle, 23:12, has closed.
A_MINUTE_LATER = "2021-10-22T23:13:00Z"


@contextmanager
def binance_dated(tmp_path: Path, monkeypatch, requested_at: str = A_MINUTE_LATER):
    """The stand-in serving the recorded Binance answers (markets, klines) as the exchange would
    date them at ``requested_at`` (their sidecars' ``requested_at``, so their ``Date``). Hooks
    read the exchange's clock only from its answers."""
    folder = tmp_path / "binance_dated"
    shutil.copytree(RECORDINGS / "binance", folder)
    for sidecar in folder.glob("*.meta.yaml"):
        meta = yaml.safe_load(sidecar.read_text())
        sidecar.write_text(yaml.safe_dump({**meta, "requested_at": requested_at}, sort_keys=False))
    with serving(StandIn(folder), monkeypatch):
        yield


@pytest.fixture
def slept(monkeypatch) -> list[float]:
    """The waits of the hook's retries, recorded instead of waited: the hook retries through
    tenacity, whose default sleep looks up ``time`` in ``tenacity.nap`` (ccxt's own throttle is untouched)."""
    waits: list[float] = []
    monkeypatch.setattr(tenacity.nap, "time", SimpleNamespace(sleep=waits.append))
    return waits


@pytest.mark.parametrize("exchange", sorted(SHAPES))
def test_each_recorded_kline_shape_maps_to_canonical_bars(exchange):
    symbol, interval, window, prefix, decode = SHAPES[exchange]
    expected = sorted(decode(_body(exchange, prefix)))
    expected = [row for row in expected if window.start <= row[0] < window.end]

    bars, (outcome,) = _hook(exchange).fetch_bars([symbol], interval, window, INGESTED)

    got = [(r["time"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in bars.to_pylist()]
    assert got == expected and outcome.status == "ok" and outcome.rows == len(expected) > 0
    assert set(bars["symbol"].to_pylist()) == {symbol} and set(bars["source"].to_pylist()) == {exchange}
    assert set(bars["currency"].to_pylist()) == {symbol.split("/")[1]}  # prices in the quote currency
    assert all(r["low"] <= min(r["open"], r["close"]) <= max(r["open"], r["close"]) <= r["high"] for r in bars.to_pylist())


def test_the_recorded_open_candle_is_dropped(tmp_path, monkeypatch):
    # Recorded during 23:12 (that candle has 7 trades; the others 375-769): it was still open.
    window = Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13))
    bars, (outcome,) = _hook("binance").fetch_bars(["BTC/USDT"], "1m", window, INGESTED)
    assert bars.num_rows == 9 and bars["time"].to_pylist()[-1] == d(2021, 10, 22, 23, 11)
    assert outcome.dropped == {"open_bar": 1}

    # One minute later the same candle has closed and is kept.
    with binance_dated(tmp_path, monkeypatch):
        bars, (outcome,) = _hook("binance").fetch_bars(["BTC/USDT"], "1m", window, INGESTED)
    assert bars.num_rows == 10 and outcome.dropped == {}


def test_a_window_over_several_pages_yields_one_bar_per_minute_returned(tmp_path, monkeypatch):
    window = Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13))
    recorded = sorted(_ms(r[0]) for r in _body("binance", "binance_spot_klines"))
    with binance_dated(tmp_path, monkeypatch):
        hook = _hook("binance", page_limit=3)
        calls, client = [], _loaded(hook)
        fetch = client.fetch_ohlcv
        client.fetch_ohlcv = lambda *a, **k: calls.append(a) or fetch(*a, **k)

        bars, (outcome,) = hook.fetch_bars(["BTC/USDT"], "1m", window, INGESTED)

    assert [c[2:4] for c in calls] == [(1634943780000, 3), (1634943960000, 3), (1634944140000, 3), (1634944320000, 1)]
    assert bars["time"].to_pylist() == recorded  # 10 minutes, each once, none missing
    assert outcome.rows == 10 and outcome.dropped == {} and outcome.gaps == []


def test_page_boundary_duplicates_are_kept_once_and_counted():
    # An exchange whose `since` also returns the candle before it (Kraken's API does; ccxt asks
    # Kraken for since - interval): every page after the first repeats one candle.
    candles = sorted(([int(r[0]), *map(float, r[1:6])] for r in _body("binance", "binance_spot_klines")), key=lambda c: c[0])

    asked = []

    def overlapping(since, limit):
        asked.append(since)
        first = next(i for i, c in enumerate(candles) if c[0] >= since)
        return candles[max(0, first - 1) : first + limit]

    pages = iter_pages(overlapping, Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13)), "1m", 4)
    got = sorted((c for page in pages for c in page), key=lambda c: c[0])  # repeats kept, in page order
    requests = len(asked)
    times = [c[0] for c in got]
    assert sorted(set(times)) == [c[0] for c in candles]
    assert len(times) - len(set(times)) == requests - 1 == 2  # each later page repeated one candle

    from market_ingest.quality import clean_bars
    from market_ingest.vendors.ccxt import candles_to_bars

    table = candles_to_bars(got, source="binance", symbol="BTC/USDT", interval="1m", currency="USDT", ingested_at=INGESTED)
    cleaned = clean_bars(table, "1m", Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13)), d(2021, 10, 22, 23, 13))
    assert cleaned.table["time"].to_pylist() == [_ms(t) for t in sorted(set(times))]
    assert cleaned.dropped == {"duplicate": 2} and cleaned.conflicts == {}  # identical repeats: no conflict


def test_missing_minutes_are_reported_as_gaps():
    times = [_ms(r[0]) for r in _body("binance", "binance_spot_klines")]
    del times[4:6]  # 23:07 and 23:08
    gaps = find_gaps(times, "1m", Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 14)), now=d(2021, 10, 22, 23, 20))
    assert gaps == [(d(2021, 10, 22, 23, 7), d(2021, 10, 22, 23, 9)), (d(2021, 10, 22, 23, 13), d(2021, 10, 22, 23, 14))]


@pytest.fixture
def binance_error(tmp_path, monkeypatch):
    """A stand-in answering ETHUSDT klines with a recorded Binance error body (and the recorded exchangeInfo)."""

    def serve(status: int, fixture: str):
        for name in (
            "binance_spot_exchangeInfo_trimmed_2021-10-22.json",
            "binance_spot_exchangeInfo_trimmed_2021-10-22.meta.yaml",
        ):
            shutil.copy(RECORDINGS / "binance" / name, tmp_path)
        recording(
            tmp_path,
            "error",
            (FIXTURES / fixture).read_text(),
            vendor="binance",
            endpoint="candles",
            symbol="ETHUSDT",
            interval="1m",
            status=status,
        )
        return serving(StandIn(tmp_path), monkeypatch)

    return serve


def test_binance_invalid_symbol_body_skips_the_symbol(binance_error):
    window = Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13))
    with binance_error(400, "binance_ERROR_-1121_invalid_symbol.json"):
        bars, (outcome,) = _hook("binance").fetch_bars(["ETH/USDT"], "1m", window, INGESTED)
    assert bars.num_rows == 0 and outcome.status == "unknown_symbol"
    assert "Invalid symbol." in outcome.reason and "ETH/USDT" in outcome.reason


def test_binance_ip_ban_fails_retryably_without_hammering(binance_error, slept):
    hook = _hook("binance")
    with binance_error(418, "binance_ERROR_-1003_ip_banned_http418_2022-08.json"), pytest.raises(RateLimitedError) as err:
        hook.fetch_bars(["ETH/USDT"], "1m", Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13)), INGESTED)
    assert err.value.retryable and slept == []  # a ban is not retried inside the task
    assert "banned until 2022-08-10T00:13:43.228000+00:00" in str(err.value) and "ETH/USDT" in str(err.value)


def _flaky(hook: ExchangeHook, exc: type, failures: int):
    client = _loaded(hook)
    fetch, seen = client.fetch_ohlcv, []

    def flaky(*args, **kwargs):
        seen.append(args)
        if len(seen) <= failures:
            raise exc("binance 429 Too Many Requests")
        return fetch(*args, **kwargs)

    client.fetch_ohlcv = flaky
    return seen


def test_rate_limit_is_retried_with_backoff_from_the_exchange_rate_limit(slept, tmp_path, monkeypatch):
    import ccxt

    with binance_dated(tmp_path, monkeypatch):
        hook = _hook("binance")
        _flaky(hook, ccxt.RateLimitExceeded, 2)
        bars, _ = hook.fetch_bars(["BTC/USDT"], "1m", Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13)), INGESTED)
    assert bars.num_rows == 10 and len(slept) == 2
    assert slept[0] >= max(1.0, 2 * hook.client.rateLimit / 1000) and slept[1] >= 2.0  # doubles, plus jitter

    slept.clear()
    hook = _hook("binance")
    seen = _flaky(hook, ccxt.RateLimitExceeded, 99)
    with pytest.raises(RateLimitedError, match="throttled after retries"):
        hook.fetch_bars(["BTC/USDT"], "1m", Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13)), INGESTED)
    assert len(seen) == 4 and len(slept) == 3


def test_a_dropped_connection_is_retried_like_a_timeout(slept, tmp_path, monkeypatch):
    """The soak benchmark: a connection closed without an answer is a bare ``ccxt.NetworkError``,
    which was not retried, so one drop among load_markets' requests failed the batch's try."""
    import ccxt

    with binance_dated(tmp_path, monkeypatch):
        hook = _hook("binance")
        seen = _flaky(hook, ccxt.NetworkError, 2)
        bars, _ = hook.fetch_bars(["BTC/USDT"], "1m", Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13)), INGESTED)
    assert bars.num_rows == 10 and len(seen) == 3 and len(slept) == 2


def test_a_cut_body_is_asked_again_not_taken_for_an_empty_page(monkeypatch, slept):
    """Seen in the soak benchmark: ccxt parses a KuCoin body cut mid-transfer as no candles, so a
    day of BTC/USDT was reported as the vendor having none (``vendor_empty``, never repaired). A
    page that came back empty from a body that is not JSON is now a network error: asked again."""
    from standin.core import Fault

    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    window = Window(d(2026, 11, 19), d(2026, 11, 19, 6))
    with serving(standin, monkeypatch):
        standin.faults = [Fault("kucoin", "truncate", count=1, match="candles")]
        bars, (outcome,) = _hook("kucoin").fetch_bars(["BTC/USDT"], "1h", window, INGESTED)
    candles = [r for r in standin.log if "candles" in r["path"]]
    assert [r["fault"] for r in candles] == ["truncate", None] and len(slept) == 1
    assert outcome.status == "ok" and bars.num_rows == 6


def test_an_html_5xx_page_is_named_without_the_query_or_the_page(monkeypatch, slept):
    """On main ccxt's message went through whole: ``binance GET http://.../api/v3/klines?interval=1d&
    limit=...&symbol=BTCUSDT&startTime=... 503 Service Unavailable <html>...</html>``. A query string
    carries the API key or signature on private endpoints, and the page says nothing the status
    does not: the error keeps method, host, path, status and reason."""
    from urllib.parse import urlsplit

    from market_ingest.errors import VendorUnavailableError
    from standin.core import Fault

    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    with serving(standin, monkeypatch) as url:
        standin.faults = [Fault("binance", "status", status=503, count=100, match="klines")]
        with pytest.raises(VendorUnavailableError) as err:
            _hook("binance").fetch_bars(["BTC/USDT"], "1d", Window(d(2026, 11, 19), d(2026, 11, 20)), INGESTED)
    assert [r["status"] for r in standin.log if "klines" in r["path"]] == [503] * 4  # retry_attempts, default 4
    page = f"GET {url}/api.binance.com/api/v3/klines 503 Service Unavailable (an HTML page)"
    assert err.value.retryable and err.value.symbol == "BTC/USDT"
    assert err.value.reason == f"fetch_ohlcv BTC/USDT: ExchangeNotAvailable: binance {page}"
    assert urlsplit(url).netloc in str(err.value) and "?" not in str(err.value) and "<" not in str(err.value)


def test_authentication_errors_fail_fast(slept):
    import ccxt

    hook = _hook("binance")
    _flaky(hook, ccxt.AuthenticationError, 1)
    with pytest.raises(ConfigurationError, match="authentication refused") as err:
        hook.fetch_bars(["BTC/USDT"], "1m", Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13)), INGESTED)
    assert not err.value.retryable and slept == []


def test_kraken_window_beyond_720_candles_fails_before_any_candle_request(monkeypatch):
    now = d(2026, 11, 21, 12)
    standin = StandIn(None, synthetic=True, clock=now)  # Kraken's clock: its answers' Date
    with serving(standin, monkeypatch), pytest.raises(WindowNotServableError, match="latest 720 1m candles") as err:
        hook = _hook("kraken", max_lookback_bars=720)
        hook.fetch_bars(["BTC/USD"], "1m", Window(now - timedelta(hours=13), now - timedelta(hours=12)), INGESTED)
    assert standin.log and not any("OHLC" in r["path"] for r in standin.log)  # markets only
    assert not err.value.retryable
    assert "2026-11-21T00:00:00+00:00" in str(err.value)  # the oldest servable open time, named
    hook.check_lookback("1m", Window(now - timedelta(hours=11), now), now)  # inside the cap: no error


def test_canonical_intervals_map_to_ccxt_timeframes():
    hook = _hook("coinbase")
    _loaded(hook)
    assert [hook.timeframe(i) for i in ("1m", "5m", "15m", "30m", "1h", "1d")] == ["1m", "5m", "15m", "30m", "1h", "1d"]
    kucoin = _hook("kucoin")
    _loaded(kucoin)
    assert kucoin.timeframe("1wk") == "1w" and kucoin.timeframe("1mo") == "1M"
    with pytest.raises(ConfigurationError, match="coinbase has no 1wk candles"):
        hook.timeframe("1wk")


def test_symbol_not_listed_is_skipped_without_a_request():
    bars, outcomes = _hook("kucoin").fetch_bars(
        ["NOPE/USDT", "BTC/USDT"], "1h", Window(d(2024, 1, 30, 16), d(2024, 1, 30, 19)), INGESTED
    )
    assert [(o.symbol, o.status) for o in outcomes] == [("NOPE/USDT", "unknown_symbol"), ("BTC/USDT", "ok")]
    assert bars.num_rows == 3


def test_tickers_snapshot_in_one_call_maps_to_the_quote_schema():
    body = _body("kucoin", "derived_allTickers")["data"]
    (recorded,) = body["ticker"]
    hook = _hook("kucoin")
    client = _loaded(hook)
    calls, fetch = [], client.fetch_tickers
    client.fetch_tickers = lambda *a, **k: calls.append(a) or fetch(*a, **k)

    quotes, outcomes = hook.fetch_quotes(["BTC/USDT", "ETH/USDT", "NOPE/USDT"], as_of=d(2024, 3, 8, 12), ingested_at=INGESTED)

    assert calls == [(["BTC/USDT", "ETH/USDT"],)]  # one request for every listed symbol
    assert [(o.symbol, o.status) for o in outcomes] == [
        ("BTC/USDT", "ok"),
        ("ETH/USDT", "no_data"),
        ("NOPE/USDT", "unknown_symbol"),
    ]
    (row,) = quotes.to_pylist()
    assert row["time"] == _ms(body["time"])  # the exchange's ticker time, not the run's
    assert (row["price"], row["high"], row["low"], row["change"], row["volume"]) == tuple(
        float(recorded[k]) for k in ("last", "high", "low", "changePrice", "vol")
    )
    assert row["open"] == pytest.approx(float(recorded["last"]) - float(recorded["changePrice"]))
    assert (row["symbol"], row["currency"], row["source"]) == ("BTC/USDT", "USDT", "kucoin")


def _contract_markets(tmp_path: Path) -> str:
    """OKX's BTC-USDT spot, linear swap and inverse swap as ccxt market structures (ids and contract
    sizes as OKX lists them: ``BTC-USDT-SWAP`` 0.01 BTC, ``BTC-USD-SWAP`` 100 USD)."""

    def market(symbol, market_id, kind, linear=None, size=None, settle=None):
        base, quote = symbol.split(":")[0].split("/")
        return {
            "id": market_id, "symbol": symbol, "base": base, "quote": quote, "settle": settle, "baseId": base, "quoteId": quote,
            "type": kind, "spot": kind == "spot", "swap": kind == "swap", "future": False, "option": False, "margin": False,
            "contract": kind != "spot", "linear": linear, "inverse": None if linear is None else not linear,
            "contractSize": size, "active": True,
        }  # fmt: skip

    path = tmp_path / "okx_markets.json"
    path.write_text(
        json.dumps(
            [
                market("BTC/USDT", "BTC-USDT", "spot"),
                market("BTC/USDT:USDT", "BTC-USDT-SWAP", "swap", linear=True, size=0.01, settle="USDT"),
                market("BTC/USD:BTC", "BTC-USD-SWAP", "swap", linear=False, size=100, settle="BTC"),
            ]
        )
    )
    return str(path)


def test_the_per_request_limit_follows_the_market_type(tmp_path):
    """On main: swaps and futures read ``features[type]["fetchOHLCV"]``, which ccxt nests one level
    deeper (``linear``/``inverse``), so an OKX swap paged with 500 candles while OKX caps it at 300,
    and an empty page then moved the cursor 500 minutes for 300 asked."""
    hook = ExchangeHook("okx", None, markets_file=_contract_markets(tmp_path))
    assert [hook.request_limit(s) for s in ("BTC/USDT", "BTC/USDT:USDT", "BTC/USD:BTC")] == [300, 300, 300]
    seen = []
    pages = iter_pages(lambda since, want: seen.append((since, want)) or [], Window(d(2024, 1, 1), d(2024, 1, 1, 10)), "1m", 300)
    assert list(pages) == []
    # every minute of the window was asked for exactly once: each request starts where the last one's span ended
    assert [s for s, _ in seen] == [to_ms(d(2024, 1, 1)) + i * 300 * 60_000 for i in range(len(seen))]
    assert sum(w for _, w in seen) == 600


def test_kraken_full_720_candle_window_loads_720(monkeypatch):
    """On main: the cap counted from the current instant, not the current minute's start, so a
    window of exactly 720 closed candles was refused and live runs could only ever get 719."""
    clock = d(2026, 11, 20, 12, 0, 30)
    with serving(StandIn(None, synthetic=True, clock=clock), monkeypatch):
        hook = _hook("kraken", max_lookback_bars=720)
        bars, (outcome,) = hook.fetch_bars(["BTC/USD"], "1m", Window(d(2026, 11, 20, 0), d(2026, 11, 20, 12)), INGESTED)
    assert outcome.status == "ok" and outcome.rows == bars.num_rows == 720 and outcome.gaps == []
    assert bars["time"].to_pylist()[-1] == d(2026, 11, 20, 11, 59)


def test_okx_endpoint_follows_the_runs_window_not_the_wall_clock(monkeypatch):
    """ccxt picks ``candles`` or ``history-candles`` from its own clock: a rerun of the same window
    on a later day would call another URL. The hook picks from the window's end."""
    vendor = StandIn(None, synthetic=True, clock=d(2026, 11, 20, 12, 0, 30))
    with serving(vendor, monkeypatch):
        hook = _hook("okx")
        recent = Window(d(2026, 11, 20, 10), d(2026, 11, 20, 11))  # ccxt: history-candles once the wall clock is a day later
        _, (outcome,) = hook.fetch_bars(["BTC/USDT"], "1m", recent, INGESTED)
        assert outcome.rows == 60
        paths = [r["path"] for r in vendor.log if "candles" in r["path"]]
        assert paths == ["/api/v5/market/candles"]
        backfill = Window(d(2026, 11, 18, 11), d(2026, 11, 20, 11))  # 2,880 minutes: the older 1,440 from history
        _, (outcome,) = hook.fetch_bars(["BTC/USDT"], "1m", backfill, INGESTED)
    paths = [r["path"].rsplit("/", 1)[1] for r in vendor.log if "candles" in r["path"]][1:]
    assert outcome.rows == 2880 and outcome.gaps == []
    assert paths[0] == "history-candles" and paths[-1] == "candles" and paths == sorted(paths, key=lambda p: p == "candles")


def test_another_clients_recording_dropped_in_is_served_for_windows_inside_it():
    """Kraken is configured but had no recording: ccxt's own recorded OHLC answer, dropped into
    include/recordings/kraken/ with a sidecar, serves the configured source with nothing else edited."""
    from market_ingest.config import load_config
    from market_ingest.sources import bar_hook

    body = _body("kraken", "ccxt_static_kraken_OHLC")["result"]["XBTUSDT"]
    expected = [(_s(r[0]), *map(float, (r[1], r[2], r[3], r[4], r[6]))) for r in body]
    window = Window(d(2024, 1, 30, 16), d(2024, 1, 30, 19))
    cfg = load_config()  # connection market_kraken: the stand-in; max_lookback_bars 720
    hook = bar_hook("kraken", cfg.sources["kraken"], timescale_conn_id=cfg.timescale.conn_id)
    bars, (outcome,) = hook.fetch_bars(["BTC/USDT"], "1h", window, INGESTED)
    got = [(r["time"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in bars.to_pylist()]
    assert got == [e for e in expected if window.start <= e[0] < window.end] and len(got) == 3
    assert outcome.status == "ok" and outcome.gaps == []


def test_a_recording_without_requested_at_is_served_by_the_clock_of_its_last_bar(tmp_path, monkeypatch):
    """On main: a sidecar without ``requested_at`` made the stand-in answer with today's clock, so
    Kraken's 720-candle cap (judged by that clock) refused every window the recording holds. The
    same Kraken body with an unedited sidecar (vendor, endpoint, symbol, interval: no clock, no
    window) is now served by the clock it implies, its last frame's end, and the stand-in says so."""
    from market_ingest.config import load_config
    from market_ingest.sources import bar_hook

    (body,) = (RECORDINGS / "kraken").glob("ccxt_static_kraken_OHLC_*.json")
    recording(
        tmp_path, "kraken_as_saved", body.read_bytes(), vendor="kraken", endpoint="candles", symbol="XBTUSDT", interval="1h"
    )
    frames = json.loads(body.read_text())["result"]["XBTUSDT"]
    expected = [(_s(r[0]), *map(float, (r[1], r[2], r[3], r[4], r[6]))) for r in frames]
    window = Window(d(2024, 1, 30, 16), d(2024, 1, 30, 19))
    cfg = load_config()  # kraken: max_lookback_bars 720, judged by the vendor's clock
    with serving(StandIn(tmp_path), monkeypatch) as url:
        bars, (outcome,) = bar_hook("kraken", cfg.sources["kraken"], timescale_conn_id=cfg.timescale.conn_id).fetch_bars(
            ["BTC/USDT"], "1h", window, INGESTED
        )
        with urllib.request.urlopen(f"{url}/_standin/health", timeout=10) as r:
            health = json.loads(r.read())
    got = [(r["time"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in bars.to_pylist()]
    assert got == [e for e in expected if window.start <= e[0] < window.end] and outcome.status == "ok" and outcome.rows == 3
    last_frame_end = _s(frames[-1][0]) + timedelta(hours=1)
    assert health["inferred_clocks"] == {"kraken/kraken_as_saved.json": last_frame_end.isoformat().replace("+00:00", "Z")}


def test_okx_swap_candles_recorded_by_another_client_load_from_the_recording_alone():
    """On main: the stand-in listed OKX's spot instruments only, so swap candles needed a hand-written
    markets file. The recorded BTC-USDT-SWAP answer (include/recordings/okx, sidecar without a clock)
    is now listed and served through ccxt's own market loading, with the swap's meaning stated."""
    body = _body("okx", "nautilus_okx_candles_BTC-USDT-SWAP")["data"]
    # OKX contract candles: [ts ms, o, h, l, c, contracts, coins (volCcy), quote volume, confirm]
    expected = sorted((_ms(r[0]), *map(float, (r[1], r[2], r[3], r[4], r[6]))) for r in body)
    window = Window(expected[0][0], expected[-1][0] + timedelta(minutes=1))
    bars, (outcome,) = _hook("okx").fetch_bars(["BTC/USDT:USDT"], "1m", window, INGESTED)
    got = [(r["time"], r["open"], r["high"], r["low"], r["close"], r["volume"]) for r in bars.to_pylist()]
    assert got == expected and outcome.status == "ok" and outcome.rows == 2 and outcome.gaps == []
    assert set(bars["currency"].to_pylist()) == {"USDT"}
    assert outcome.note == "swap settled in USDT: prices in USDT, volume in BTC"


def _kucoin_futures(tmp_path: Path, candles: list[list]) -> ExchangeHook:
    """KuCoin Futures through ccxt's own request building and parsing; only the HTTP transport is
    replaced. Markets as KuCoin lists them (``/api/v1/contracts/active``): ``XBTUSDTM`` linear,
    multiplier 0.001 BTC, settled in USDT; ``XBTUSDM`` inverse, 1 USD per contract, settled in XBT."""

    def market(symbol, market_id, linear, size, settle):
        base, quote = symbol.split(":")[0].split("/")
        return {
            "id": market_id, "symbol": symbol, "base": base, "quote": quote, "settle": settle, "baseId": "XBT",
            "quoteId": quote, "settleId": settle, "type": "swap", "spot": False, "swap": True, "future": False,
            "option": False, "margin": False, "contract": True, "linear": linear, "inverse": not linear,
            "contractSize": size, "active": True, "precision": {"amount": 1, "price": 0.1}, "limits": {},
        }  # fmt: skip

    path = tmp_path / "kucoinfutures_markets.json"
    path.write_text(
        json.dumps([market("BTC/USDT:USDT", "XBTUSDTM", True, 0.001, "USDT"), market("BTC/USD:BTC", "XBTUSDM", False, 1, "BTC")])
    )
    hook = ExchangeHook("kucoinfutures", None, markets_file=str(path))  # no answer with a Date: our clock closes the bars
    asked = []

    def transport(url, method="GET", headers=None, body=None):
        asked.append(url)
        return {"code": "200000", "data": candles}  # KuCoin Futures kline/query: [ms, open, high, low, close, volume in lots]

    hook.client.fetch = transport
    hook.asked = asked
    return hook


def test_swap_volume_is_in_base_units_and_its_settle_currency_is_stated(tmp_path):
    """On main: every market was taken as spot; KuCoin Futures counts volume in lots (0.001 BTC for
    XBTUSDTM), so a swap's volume landed 1,000 times too large, without a word."""
    t0 = to_ms(d(2024, 1, 22, 4))
    lots = [1520, 987, 2311, 640, 1204]
    candles = [[t0 + i * 60_000, 41200.5 + i, 41230.0 + i, 41190.1 + i, 41210.7 + i, v] for i, v in enumerate(lots)]
    hook = _kucoin_futures(tmp_path, candles)
    bars, (outcome,) = hook.fetch_bars(["BTC/USDT:USDT"], "1m", Window(d(2024, 1, 22, 4), d(2024, 1, 22, 4, 5)), INGESTED)
    assert any("XBTUSDTM" in url and "kline/query" in url for url in hook.asked)
    assert outcome.status == "ok" and outcome.rows == 5
    assert bars["volume"].to_pylist() == pytest.approx([v * 0.001 for v in lots])  # BTC, not lots
    assert bars["close"].to_pylist() == [41210.7 + i for i in range(5)] and set(bars["currency"].to_pylist()) == {"USDT"}
    assert outcome.note == "swap settled in USDT: prices in USDT, volume in BTC (contracts x 0.001)"

    _, (inverse,) = hook.fetch_bars(["BTC/USD:BTC"], "1m", Window(d(2024, 1, 22, 4), d(2024, 1, 22, 4, 5)), INGESTED)
    assert inverse.status == "failed"
    assert "inverse contract whose kucoinfutures candles count contracts worth 1 USD each" in inverse.reason


def test_spot_and_base_volume_exchanges_keep_ccxts_volume():
    from market_ingest.vendors.ccxt import market_note, volume_in_base_units

    okx_swap = {
        "type": "swap",
        "contract": True,
        "linear": True,
        "contractSize": 0.01,
        "settle": "USDT",
        "quote": "USDT",
        "base": "BTC",
    }
    assert volume_in_base_units("okx", okx_swap) == 1.0  # ccxt reads OKX's volCcy: base units already
    assert volume_in_base_units("kucoinfutures", {"type": "spot", "contract": False}) == 1.0
    assert market_note(okx_swap, 1.0) == "swap settled in USDT: prices in USDT, volume in BTC"
    assert market_note({"type": "spot", "contract": False}, 1.0) == ""


@pytest.mark.parametrize("exchange, markets_path", [("kucoin", "/api/v2/symbols"), ("binance", "exchangeInfo")])
def test_a_cut_markets_body_is_asked_again_not_taken_for_no_markets(monkeypatch, slept, exchange, markets_path):
    """The same cut body on ``load_markets``' request: ccxt read it as an exchange listing no
    market, so every symbol of the batch would be ``unknown_symbol``. It is asked again."""
    from standin.core import Fault

    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    window = Window(d(2026, 11, 19), d(2026, 11, 19, 6))
    with serving(standin, monkeypatch):
        standin.faults = [Fault(exchange, "truncate", count=1, match=markets_path)]
        bars, (outcome,) = _hook(exchange).fetch_bars(["BTC/USDT"], "1h", window, INGESTED)
    markets = [r for r in standin.log if markets_path in r["path"]]
    assert [r["fault"] for r in markets][:2] == ["truncate", None] and len(slept) >= 1
    assert outcome.status == "ok" and bars.num_rows == 6
