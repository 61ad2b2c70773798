"""The vendor stand-in answers the real clients (ccxt, yfinance, HTTP) the way the vendors do.

Recorded mode serves ``include/recordings`` by meaning (vendor, endpoint, symbol, interval, range),
whatever parameters the client spells the request with; synthetic mode serves any symbol.
"""

from __future__ import annotations

import json
import tempfile
import urllib.request
from datetime import datetime, timezone

import pytest

from market_ingest.routing import clocked_session, response_clock, route_urls
from standin.server import StandIn, StandInServer
from tests.conftest import RECORDINGS


@pytest.fixture(scope="module")
def recorded():
    server = StandInServer(StandIn(RECORDINGS)).start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def synthetic():
    server = StandInServer(StandIn(None, synthetic=True, clock=datetime(2026, 11, 20, 12, 0, 30, tzinfo=timezone.utc))).start()
    yield server
    server.shutdown()


def get(server, path: str):
    """``(status, headers, parsed JSON)`` of a GET through the stand-in."""
    try:
        with urllib.request.urlopen(server.url + path, timeout=30) as r:
            status, headers, raw = r.status, r.headers, r.read()
    except urllib.error.HTTPError as e:
        status, headers, raw = e.code, e.headers, e.read()
    try:
        return status, headers, json.loads(raw or b"null")
    except ValueError:
        return status, headers, raw.decode()


def exchange(server, name: str, **options):
    import ccxt

    client = getattr(ccxt, name)({"options": options})
    client.urls["api"] = route_urls(client.urls["api"], server.url)
    return client


def test_binance_page_is_sliced_from_a_recording_asked_another_way(recorded):
    """The recording answered startTime..endTime; ccxt asks since + limit: same candles, cut to the page."""
    client = exchange(recorded, "binance", fetchMarkets={"types": ["spot"]})
    candles = client.fetch_ohlcv("BTC/USDT", "1m", since=1634943840000, limit=3)  # 23:04 .. 23:06
    assert [c[0] for c in candles] == [1634943840000, 1634943900000, 1634943960000]
    recorded_body = json.loads((RECORDINGS / "binance" / "binance_spot_klines_BTCUSDT_1m_2021-10-22.json").read_text())
    assert candles[0][1:] == [float(x) for x in recorded_body[1][1:6]]
    # the exchange's clock is the recording's: 23:12:30, inside the last (open) candle it served
    assert response_clock(client.last_response_headers) == datetime(2021, 10, 22, 23, 12, 30, tzinfo=timezone.utc)


def test_unlisted_symbol_is_the_exchanges_own_error_naming_it(recorded):
    import ccxt

    status, headers, body = get(recorded, "/api.binance.com/api/v3/klines?symbol=NOPEUSDT&interval=1m&limit=5")
    assert status == 400 and body["code"] == -1121
    assert "NOPEUSDT" in headers["X-Standin-Missing"]
    client = exchange(recorded, "binance", fetchMarkets={"types": ["spot"]})
    with pytest.raises(ccxt.BadSymbol):
        client.fetch_ohlcv("SOL/USDT", "1m", since=1634943840000, limit=3)  # not in the recorded exchangeInfo


@pytest.mark.parametrize(
    ("name", "symbol", "since", "body_times"),
    [
        # newest-first bodies; each exchange spells the window its own way
        ("kucoin", "BTC/USDT", 1706630400000, lambda b: [int(c[0]) * 1000 for c in b["data"]]),  # startAt/endAt s
        ("coinbase", "BTC/USD", 1712188800000, lambda b: [int(c["start"]) * 1000 for c in b["candles"]]),  # start/end s
        ("coinbaseexchange", "BTC/USDT", 1710327600000, lambda b: [c[0] * 1000 for c in b]),  # ISO 8601
    ],
)
def test_recorded_candles_reach_ccxt_oldest_first(recorded, name, symbol, since, body_times):
    client = exchange(recorded, name)
    candles = client.fetch_ohlcv(symbol, "1h", since=since, limit=10)
    (body,) = [json.loads(p.read_text()) for p in (RECORDINGS / name).glob("*candles*.json")]
    assert [c[0] for c in candles] == sorted(body_times(body)) and candles[0][0] == since


def test_yahoo_chart_through_yfinance_with_the_recording_clock(recorded):
    """yfinance's own handshake and requests (30 m window asked as a date range) reach the recording."""
    import requests
    import yfinance as yf
    from yfinance.data import YfData

    yf.config.debug.hide_exceptions = False
    YfData.cache_get.cache_clear()  # yfinance memoises past windows per process: earlier tests' answers
    yf.set_tz_cache_location(tempfile.mkdtemp())
    session = clocked_session(recorded.url, requests.Session)()
    frame = yf.Ticker("MSFT", session=session).history(
        start="2021-07-19", end="2021-07-24", interval="1d", auto_adjust=False, actions=True, repair=False
    )
    assert len(frame) == 5 and str(frame.index.tz) == "America/New_York"
    assert session.clock == datetime(2025, 2, 22, 10, 1, 31, tzinfo=timezone.utc)


def test_daily_request_from_an_exchange_local_midnight_is_covered(recorded):
    """A window starting before the recording's first UTC instant (Tokyo midnight) is served by date."""
    start = int(datetime(2021, 2, 1, tzinfo=timezone.utc).timestamp()) - 9 * 3600
    status, _, body = get(
        recorded, f"/query2.finance.yahoo.com/v8/finance/chart/MSFT?interval=1d&period1={start}&period2={start + 5 * 86400}"
    )
    assert status == 200 and len(body["chart"]["result"][0]["timestamp"]) == 5  # Mon 1 .. Fri 5 Feb 2021


def test_yahoo_lookback_is_judged_by_the_recording_clock_and_unknown_symbols_404(recorded):
    """1m bars reach back 30 days from Yahoo's clock: the recording's (2024-10-04 12:07:44), not ours."""
    day = int(datetime(2024, 10, 2, tzinfo=timezone.utc).timestamp())
    chart = "/query2.finance.yahoo.com/v8/finance/chart"
    status, headers, body = get(recorded, f"{chart}/AAPL?interval=1m&period1={day}&period2={day + 86400}")
    assert status == 200 and len(body["chart"]["result"][0]["timestamp"]) == 390  # the trailing 10-03 bar is cut
    assert response_clock(headers) == datetime(2024, 10, 4, 12, 7, 44, tzinfo=timezone.utc)
    status, _, body = get(recorded, f"{chart}/AAPL?interval=1m&period1={day - 33 * 86400}&period2={day + 86400}")
    assert status == 422 and "within the last 30 days" in body["chart"]["error"]["description"]
    status, _, body = get(recorded, f"{chart}/ZZZZ?interval=1d&period1=1577836800&period2=1578009600")
    assert status == 404 and "ZZZZ" in body["chart"]["error"]["description"]


#: Documented splits (ex-date, numerator, denominator): NVIDIA's six, 480 shares per IPO share.
NVDA_SPLITS = [("2000-06-27", 2, 1), ("2001-09-17", 2, 1), ("2006-04-07", 2, 1), ("2007-09-11", 3, 2), ("2021-07-20", 4, 1), ("2024-06-10", 10, 1)]  # fmt: skip
#: Yahoo's clock when it answered the NVDA, MSFT and TSLA recordings.
RECORDED_2025_02_22 = datetime(2025, 2, 22, 10, 1, 31, tzinfo=timezone.utc)
CHART = "/query2.finance.yahoo.com/v8/finance/chart"


def yahoo_events(server, symbol: str, until: datetime):
    """``(status, headers, JSON)`` of the product's whole-history events request (``EVENTS_PARAMS``,
    ``period2=until``) sent with plain ``requests``."""
    import requests

    from market_ingest.vendors.yahoo import EVENTS_PARAMS

    params = {**EVENTS_PARAMS, "period2": str(int(until.timestamp()))}
    response = requests.get(f"{server.url}{CHART}/{symbol}", params=params, timeout=30)
    return response.status_code, response.headers, response.json()


def stated_splits(result: dict) -> list[tuple[str, int, int]]:
    """``[(exchange-local ex-date, numerator, denominator)]`` of a chart result's split events, by date."""
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(result["meta"]["exchangeTimezoneName"])
    splits = sorted((result.get("events") or {}).get("splits", {}).values(), key=lambda e: e["date"])
    return [(datetime.fromtimestamp(e["date"], tz).date().isoformat(), e["numerator"], e["denominator"]) for e in splits]


def test_yahoo_whole_history_events_answer_every_split_by_the_recording_clock(recorded):
    """The product's events request (period1=0, 1mo, events=div,splits,capitalGains) gets NVDA's
    six splits and no bars, dated by the clock of the events recording (2025-02-22)."""
    status, headers, body = yahoo_events(recorded, "NVDA", datetime(2026, 11, 21, tzinfo=timezone.utc))
    result = body["chart"]["result"][0]
    assert status == 200 and response_clock(headers) == RECORDED_2025_02_22
    assert stated_splits(result) == NVDA_SPLITS and "timestamp" not in result
    assert result["meta"]["instrumentType"] == "EQUITY" and result["meta"]["currency"] == "USD"
    # the 4:1 split is stated exactly as Yahoo's recorded answer of 2021 states it
    genuine = json.loads((RECORDINGS / "yahoo" / "yahoo_chart_NVDA_1d_2021-02-01_2022-01-28_split.json").read_text())
    assert genuine["chart"]["result"][0]["events"]["splits"].items() <= result["events"]["splits"].items()
    # dividends as Yahoo states them on 2025-02-22: 0.16 (2021-06-09) and 0.04 (2021-08-31) as 0.004, then 0.01
    amounts = {
        datetime.fromtimestamp(e["date"], timezone.utc).date().isoformat(): e["amount"]
        for e in result["events"]["dividends"].values()
    }
    assert (amounts["2021-06-09"], amounts["2021-08-31"], amounts["2024-06-11"]) == (0.004, 0.004, 0.01)

    _, _, before = yahoo_events(recorded, "NVDA", datetime(2021, 7, 20, tzinfo=timezone.utc))  # period2 before the 4:1
    assert stated_splits(before["chart"]["result"][0]) == NVDA_SPLITS[:4]
    assert (
        max(int(k) for k in before["chart"]["result"][0]["events"]["dividends"])
        < datetime(2021, 7, 20, tzinfo=timezone.utc).timestamp()
    )


@pytest.mark.parametrize(
    ("recording", "asked"),
    [
        pytest.param("yahoo_chart_MSFT_1d_2021-02-01_2022-01-28_dividends", ["dividends"], id="MSFT-2021-dividends"),
        pytest.param("yahoo_chart_AAPL_1d_2020-08-31_2020-11-06_split_div", ["dividends", "splits"], id="AAPL-split-div"),
        pytest.param("yahoo_chart_NVDA_1d_2021-02-01_2022-01-28_split", ["splits"], id="NVDA-split"),
    ],
)
def test_yahoo_whole_history_events_agree_with_each_recorded_window(recorded, recording, asked):
    """Within a genuine recording's window, the events answer states exactly the events that
    recording states (the kinds its request asked for), amounts and dates alike."""
    genuine = json.loads((RECORDINGS / "yahoo" / f"{recording}.json").read_text())["chart"]["result"][0]
    start, end = genuine["timestamp"][0], genuine["timestamp"][-1] + 86400
    _, _, body = yahoo_events(recorded, genuine["meta"]["symbol"], datetime(2026, 11, 21, tzinfo=timezone.utc))
    events = body["chart"]["result"][0]["events"]
    for kind in asked:
        inside = {k: e for k, e in events[kind].items() if start <= e["date"] < end}
        assert inside == genuine["events"][kind]


def test_yahoo_events_without_an_events_recording_are_what_the_chart_recordings_state(tmp_path):
    """No events recording of MSFT: its chart recording's meta and dividends, and a header saying so;
    an unknown symbol stays Yahoo's 404."""
    for part in (".json", ".meta.yaml"):
        name = "yahoo_chart_MSFT_1d_2021-02-01_2022-01-28_dividends" + part
        (tmp_path / "yahoo").mkdir(exist_ok=True)
        (tmp_path / "yahoo" / name).write_bytes((RECORDINGS / "yahoo" / name).read_bytes())
    genuine = json.loads((tmp_path / "yahoo" / "yahoo_chart_MSFT_1d_2021-02-01_2022-01-28_dividends.json").read_text())
    server = StandInServer(StandIn(tmp_path)).start()
    try:
        status, headers, body = yahoo_events(server, "MSFT", datetime(2026, 11, 21, tzinfo=timezone.utc))
        result = body["chart"]["result"][0]
        assert status == 200 and response_clock(headers) == RECORDED_2025_02_22
        assert result["events"] == genuine["chart"]["result"][0]["events"] and "timestamp" not in result
        assert result["meta"]["exchangeTimezoneName"] == "America/New_York" and result["meta"]["dataGranularity"] == "1mo"
        assert "no events recording of MSFT" in headers["X-Standin-Missing"]
        status, _, body = yahoo_events(server, "ZZZZ", datetime(2026, 11, 21, tzinfo=timezone.utc))
        assert status == 404 and "ZZZZ" in body["chart"]["error"]["description"]
    finally:
        server.shutdown()


@pytest.mark.parametrize(
    ("symbol", "kind"), [("S001", "EQUITY"), ("BTC-USD", "CRYPTOCURRENCY"), ("EURUSD=X", "CURRENCY")]
)  # fmt: skip
def test_synthetic_yahoo_events_are_the_meta_alone(synthetic, symbol, kind):
    status, headers, body = yahoo_events(synthetic, symbol, datetime(2026, 11, 21, tzinfo=timezone.utc))
    result = body["chart"]["result"][0]
    assert status == 200 and result["meta"]["instrumentType"] == kind
    assert "events" not in result and "timestamp" not in result
    assert response_clock(headers) == datetime(2026, 11, 20, 12, 0, 30, tzinfo=timezone.utc)


def test_yahoo_bar_requests_are_not_answered_from_events_recordings(recorded):
    """Bars at 1mo stay unrecorded (404 naming the recorded intervals, as before the events
    recordings), and the TSLA recording's own request (period1=0, 1d, events=div) gets its bars."""
    month = int(datetime(2021, 2, 1, tzinfo=timezone.utc).timestamp())
    status, _, body = get(recorded, f"{CHART}/NVDA?interval=1mo&period1={month}&period2={month + 365 * 86400}")
    assert status == 404 and "(recorded: 1d)" in body["chart"]["error"]["description"]
    status, headers, body = get(recorded, f"{CHART}/TSLA?interval=1d&events=div&period1=0&period2=1691798400")
    assert status == 200 and len(body["chart"]["result"][0]["timestamp"]) == 3303
    assert response_clock(headers) == RECORDED_2025_02_22


def test_synthetic_mode_answers_after_the_recordings_for_recorded_symbols_too():
    """``make up`` and Compose run the stand-in with ``--synthetic``: a recorded window is answered
    from its recording, any other window from the synthetic market by its clock. On main a
    recorded symbol's other windows took its recording's clock (MSFT: 2025-02-22), so a trigger
    with the defaults (yesterday) got no bar, green."""
    server = StandInServer(StandIn(RECORDINGS, synthetic=True, clock=datetime(2026, 11, 20, 12, tzinfo=timezone.utc))).start()
    try:
        chart = "/query2.finance.yahoo.com/v8/finance/chart/MSFT?interval=1d"
        week = int(datetime(2021, 7, 19, tzinfo=timezone.utc).timestamp())
        _, headers, body = get(server, f"{chart}&period1={week}&period2={week + 5 * 86400}")
        recorded = json.loads((RECORDINGS / "yahoo" / "yahoo_chart_MSFT_1d_2021-02-01_2022-01-28_dividends.json").read_text())
        closes = dict(
            zip(recorded["chart"]["result"][0]["timestamp"], recorded["chart"]["result"][0]["indicators"]["quote"][0]["close"])
        )
        result = body["chart"]["result"][0]
        assert [closes[t] for t in result["timestamp"]] == result["indicators"]["quote"][0]["close"] and len(
            result["timestamp"]
        ) == 5
        assert response_clock(headers) == datetime(2025, 2, 22, 10, 1, 31, tzinfo=timezone.utc)  # the recording's
        week = int(datetime(2026, 11, 16, tzinfo=timezone.utc).timestamp())
        status, headers, body = get(server, f"{chart}&period1={week}&period2={week + 5 * 86400}")
        assert status == 200 and len(body["chart"]["result"][0]["timestamp"]) == 5  # Mon 16 .. Fri 20 Nov 2026, synthetic
        assert response_clock(headers) == datetime(2026, 11, 20, 12, tzinfo=timezone.utc)
    finally:
        server.shutdown()


def test_synthetic_bars_do_not_depend_on_the_page_that_asked(synthetic):
    client = exchange(synthetic, "binance", fetchMarkets={"types": ["spot"]})
    day = int(datetime(2026, 11, 19, tzinfo=timezone.utc).timestamp() * 1000)
    whole = client.fetch_ohlcv("ETH/USDT", "1m", since=day, limit=300)
    halves = client.fetch_ohlcv("ETH/USDT", "1m", since=day, limit=150) + client.fetch_ohlcv(
        "ETH/USDT", "1m", since=day + 150 * 60_000, limit=150
    )
    assert len(whole) == 300 and whole == halves


def test_synthetic_serves_300_daily_series_and_50_minute_series(synthetic):
    """The scale the benches need: 300 symbols of a year of daily bars, 50 symbols of one day of 1m bars."""
    start = int(datetime(2025, 11, 20, tzinfo=timezone.utc).timestamp())
    end = int(datetime(2026, 11, 20, tzinfo=timezone.utc).timestamp())
    weekdays = 261  # 2025-11-20 .. 2026-11-19
    for i in range(300):
        status, _, body = get(
            synthetic, f"/query2.finance.yahoo.com/v8/finance/chart/S{i:03d}?interval=1d&period1={start}&period2={end}"
        )
        assert status == 200 and len(body["chart"]["result"][0]["timestamp"]) == weekdays
    day = int(datetime(2026, 11, 19, tzinfo=timezone.utc).timestamp() * 1000)
    for i in range(50):
        closes = []
        for page in range(2):  # 1,000 then 440 candles
            status, _, candles = get(
                synthetic,
                f"/api.binance.com/api/v3/klines?symbol=C{i:02d}USDT&interval=1m&startTime={day + page * 60_000_000}&endTime={day + 86_400_000 - 1}&limit=1000",
            )
            closes += candles
        assert status == 200 and len(closes) == 1440 and all(float(c[2]) >= max(float(c[1]), float(c[4])) for c in closes)


def test_rate_limits_answer_like_each_vendor(synthetic):
    standin = synthetic.standin
    try:
        standin.limits = {}
        from standin.core import RateLimit

        standin.limits["alpha_vantage"] = RateLimit(2, 60, daily=3)
        answers = [get(synthetic, "/www.alphavantage.co/query?function=GLOBAL_QUOTE&symbol=IBM&apikey=K3Y")[2] for _ in range(3)]
        assert "Global Quote" in answers[0] and "Global Quote" in answers[1]
        assert "Note" in answers[2]  # burst: the recorded 2018 throttle body
        standin.limits["alpha_vantage"] = RateLimit(10, 60, daily=0)
        body = get(synthetic, "/www.alphavantage.co/query?function=GLOBAL_QUOTE&symbol=IBM&apikey=K3Y")[2]
        assert "K3Y" in body["Information"]  # echoes the key, as Alpha Vantage does: the pipeline must redact it
        standin.limits["binance"] = RateLimit(1, 60, ban_after=1)
        codes = [get(synthetic, "/api.binance.com/api/v3/klines?symbol=BTCUSDT&interval=1m&limit=1")[0] for _ in range(3)]
        assert codes == [200, 429, 418]
    finally:
        standin.limits = {}


def test_faults_are_injected_then_clear(synthetic):
    from standin.core import Fault

    standin = synthetic.standin
    standin.faults = [Fault("kucoin", "status", count=2, status=503)]
    path = "/api.kucoin.com/api/v1/market/candles?symbol=BTC-USDT&type=1hour&startAt=1763510400&endAt=1763553600"
    codes = [get(synthetic, path)[0] for _ in range(3)]
    assert codes == [503, 503, 200]
    standin.faults = [Fault("*", "empty", count=1)]
    assert get(synthetic, path)[2]["data"] == []
    assert len(get(synthetic, path)[2]["data"]) == 12


def test_a_fault_with_a_share_hits_about_that_share_and_throttles_as_the_vendor_does(synthetic):
    from standin.core import Fault

    standin = synthetic.standin
    klines = "/api.binance.com/api/v3/klines?symbol=BTCUSDT&interval=1h&startTime=1763510400000&limit=3"
    try:
        standin.faults = [Fault("binance", "status", count=1000, status=502, share=0.1)]
        codes = [get(synthetic, klines)[0] for _ in range(400)]
        assert set(codes) == {200, 502}
        assert 20 <= codes.count(502) <= 60  # 10% of 400, give or take the draw
        standin.faults = [Fault("binance", "throttled", count=1), Fault("binance", "banned", count=1)]
        (s1, _, body1), (s2, _, body2), (s3, _, _) = (get(synthetic, klines) for _ in range(3))
        assert (s1, body1["code"]) == (429, -1003) and "1200 requests per minute" in body1["msg"]
        assert (s2, body2["code"]) == (418, -1003) and "banned until" in body2["msg"]
        assert s3 == 200
        log = standin.log[-3:]
        assert [r["throttled"] for r in log] == ["burst", "banned", None]
        assert all(r["seconds"] >= 0 for r in log)
    finally:
        standin.faults = []
