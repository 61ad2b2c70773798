"""YahooFinanceHook on recorded Yahoo responses: the real yfinance requests and parsing, against the stand-in."""

from __future__ import annotations

import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from urllib.parse import urlsplit

import pyarrow.compute as pc
import pytest

from market_ingest import outcomes
from market_ingest.errors import WindowNotServableError
from market_ingest.hooks.yahoo import YahooFinanceHook
from market_ingest.intervals import Window
from market_ingest.quality import keep_closed_in_window
from market_ingest.schema import BAR_SCHEMA
from market_ingest.vendors.yahoo import clamp_window, split_window
from standin.core import Fault, RateLimit
from standin.server import StandIn
from tests.conftest import RECORDINGS, serving

UTC = timezone.utc
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)


def d(*a):
    return datetime(*a, tzinfo=UTC)


@pytest.fixture
def hook():
    return YahooFinanceHook()  # connection market_yahoo: the stand-in (tests/conftest.py)


def rows(table, symbol):
    return {r["time"]: r for r in table.filter(pc.equal(table["symbol"], symbol)).to_pylist()}


def test_intraday_bars_are_utc_and_inside_the_window(hook):
    bars, results = hook.fetch_bars(["AAPL"], "1m", Window(d(2024, 10, 2), d(2024, 10, 3)), INGESTED)
    assert bars.schema == BAR_SCHEMA
    times = bars["time"].to_pylist()
    # The regular session of 2024-10-02 is 09:30-16:00 EDT = 13:30-20:00 UTC.
    assert min(times) == d(2024, 10, 2, 13, 30) and max(times) == d(2024, 10, 2, 19, 59)
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(0) for t in times)
    # 391 recorded timestamps: one trailing bar outside the window and one without prices (15:15 UTC).
    assert bars.num_rows == 389 and d(2024, 10, 2, 15, 15) not in times
    first = rows(bars, "AAPL")[d(2024, 10, 2, 13, 30)]
    assert first["open"] == pytest.approx(225.89, abs=0.01) and first["currency"] == "USD"
    assert first["adj_close"] is None and first["dividend"] is None  # intraday: no adjustment data
    assert results == [outcomes.SymbolOutcome("AAPL", "ok", rows=389)]


def test_split_day_carries_the_ratio_and_unadjusted_close(hook):
    bars, _ = hook.fetch_bars(["NVDA"], "1d", Window(d(2021, 7, 19), d(2021, 7, 22)), INGESTED)
    by_time = rows(bars, "NVDA")
    assert sorted(by_time) == [d(2021, 7, 19), d(2021, 7, 20), d(2021, 7, 21)]  # daily bars at 00:00 UTC
    assert by_time[d(2021, 7, 20)]["split_ratio"] == 4.0  # 4:1 split on 2021-07-20
    assert by_time[d(2021, 7, 19)]["split_ratio"] == 1.0
    assert by_time[d(2021, 7, 20)]["dividend"] == 0.0


def test_dividend_day_and_adjusted_close(hook):
    bars, _ = hook.fetch_bars(["MSFT"], "1d", Window(d(2021, 8, 16), d(2021, 8, 21)), INGESTED)
    by_time = rows(bars, "MSFT")
    assert by_time[d(2021, 8, 18)]["dividend"] == pytest.approx(0.56)
    assert sum(1 for r in by_time.values() if r["dividend"]) == 1
    # auto_adjust=False: close is as traded, adj_close is Yahoo's dividend-adjusted close.
    assert all(r["adj_close"] < r["close"] for r in by_time.values())


def test_one_day_of_a_year_long_recording_is_that_day_only(hook):
    """The recording spans 2021-02-01 .. 2022-01-28; Yahoo (and the stand-in) answer the window asked."""
    bars, results = hook.fetch_bars(["MSFT"], "1d", Window(d(2021, 7, 19), d(2021, 7, 20)), INGESTED)
    (msft,) = results
    assert msft.rows == 1 and bars["time"].to_pylist() == [d(2021, 7, 19)]


def test_weekend_window_is_no_data_not_success(hook):
    bars, results = hook.fetch_bars(["AAPL"], "1m", Window(d(2025, 2, 1), d(2025, 2, 2)), INGESTED)
    assert bars.num_rows == 0
    assert results[0].status == outcomes.NO_DATA and results[0].rows == 0
    assert "no bars" in results[0].reason


def test_delisted_symbol_404_is_skipped_and_the_batch_goes_on(hook):
    bars, results = hook.fetch_bars(["SIX", "BTC-USD"], "1d", Window(d(2020, 1, 1), d(2020, 1, 3)), INGESTED)
    by_symbol = {o.symbol: o for o in results}
    assert by_symbol["SIX"].status == outcomes.UNKNOWN_SYMBOL
    assert by_symbol["SIX"].reason.startswith("Yahoo does not know the symbol or it is delisted")
    assert by_symbol["BTC-USD"].status == outcomes.OK and by_symbol["BTC-USD"].rows == 2
    assert set(bars["symbol"].to_pylist()) == {"BTC-USD"}


def test_crypto_and_fx_currency_and_volume(hook):
    bars, _ = hook.fetch_bars(["BTC-USD", "EURUSD=X"], "1d", Window(d(2020, 1, 1), d(2020, 1, 2)), INGESTED)
    btc, fx = rows(bars, "BTC-USD")[d(2020, 1, 1)], rows(bars, "EURUSD=X")[d(2020, 1, 1)]
    assert btc["close"] == pytest.approx(7200.17, abs=0.01) and btc["currency"] == "USD"
    assert fx["volume"] == 0.0 and fx["currency"] == "USD"


def test_a_symbol_nothing_answers_is_unknown_and_named(hook):
    bars, results = hook.fetch_bars(["ZZZZ"], "1d", Window(d(2020, 1, 1), d(2020, 1, 3)), INGESTED)
    assert bars.num_rows == 0 and results[0].symbol == "ZZZZ" and results[0].status == outcomes.UNKNOWN_SYMBOL


def test_the_closed_bar_rule_uses_yahoos_clock(hook):
    """The recording answered at 2024-10-04 12:07:44; a window reaching past it keeps only bars closed by then."""
    bars, results = hook.fetch_bars(["AAPL"], "1m", Window(d(2024, 10, 2), d(2024, 10, 3)), INGESTED)
    assert results[0].dropped.get("open_bar", 0) == 0  # every 10-02 bar closed by Yahoo's clock
    lookback = hook.fetch_bars(["AAPL"], "1m", Window(d(2024, 8, 20), d(2024, 10, 3)), INGESTED)[1][0]
    # 43 days asked: Yahoo refuses by its own clock (422), the hook clamps to its 30 days and asks again
    assert lookback.status == outcomes.OK and lookback.rows == 389


def test_an_interval_no_recording_holds_is_reported_as_that_not_as_yahoos_lookback(hook):
    """yfinance asks Yahoo for 15m bars when asked for 30m. AAPL's recordings hold 1m and 1d bars of
    that day, no 15m: on main the stand-in answered a 422 dated today (15m: within the last 60 days)
    and the run failed with Yahoo's lookback named, which is not what happened. The symbol now
    fails with the stand-in's own answer: no recording of that interval."""
    bars, (aapl,) = hook.fetch_bars(["AAPL"], "30m", Window(d(2024, 10, 2), d(2024, 10, 3)), INGESTED)
    assert bars.num_rows == 0 and aapl.status == outcomes.FAILED
    assert "no recording of AAPL 15m (recorded: 1m, 1d)" in aapl.reason and "30m resampled from 15m" in aapl.reason
    assert "60 days" not in aapl.reason


def test_open_bar_is_dropped():
    import pyarrow as pa

    from market_ingest.schema import conform

    times = [d(2024, 10, 2, 19, 58), d(2024, 10, 2, 19, 59)]
    table = conform(
        pa.table(
            {
                "time": pa.array(times, pa.timestamp("us", tz="UTC")),
                "source": ["yahoo"] * 2,
                "symbol": ["AAPL"] * 2,
                "interval": ["1m"] * 2,
                "open": [1.0, 1.0],
                "high": [1.0, 1.0],
                "low": [1.0, 1.0],
                "close": [1.0, 1.0],
                "volume": [1.0, 1.0],
                "ingested_at": pa.array([INGESTED] * 2, pa.timestamp("us", tz="UTC")),
            }
        )
    )
    kept, dropped = keep_closed_in_window(table, "1m", Window(d(2024, 10, 2), d(2024, 10, 3)), now=d(2024, 10, 2, 19, 59, 30))
    assert kept["time"].to_pylist() == [d(2024, 10, 2, 19, 58)]
    assert dropped == {"open_bar": 1}


def test_backfill_beyond_the_lookback_cap_is_a_clear_error():
    with pytest.raises(WindowNotServableError, match=r"1m bars are served only for the last 30 days"):
        clamp_window("1m", Window(d(2024, 1, 1), d(2024, 1, 2)), now=d(2024, 10, 2))


def test_window_partly_beyond_the_cap_is_clamped_and_split():
    clamped = clamp_window("1m", Window(d(2024, 8, 1), d(2024, 10, 2)), now=d(2024, 10, 2))
    assert clamped == Window(d(2024, 9, 2), d(2024, 10, 2))
    pieces = split_window("1m", clamped)
    assert all(p.end - p.start <= timedelta(days=8) for p in pieces)
    assert pieces[0].start == clamped.start and pieces[-1].end == clamped.end


def test_rate_limit_fails_the_task_for_a_retry(monkeypatch):
    """A 429 on every request surfaces as RateLimitedError (retryable), not as a skipped symbol."""
    from market_ingest.errors import RateLimitedError

    standin = StandIn(RECORDINGS)
    standin.limits["yahoo"] = RateLimit(0, 60)  # Yahoo's throttle answer to everything
    with serving(standin, monkeypatch), pytest.raises(RateLimitedError) as err:
        YahooFinanceHook().fetch_bars(["MSFT"], "1d", Window(d(2021, 6, 7), d(2021, 6, 8)), INGESTED)
    assert err.value.retryable and err.value.symbol == "MSFT"


def test_a_malformed_answer_fails_only_that_symbol(monkeypatch):
    """A chart body cut mid-JSON (a dropped connection) marks that symbol failed, with the reason; the batch goes on."""
    standin = StandIn(RECORDINGS)
    standin.faults = [Fault("yahoo", "truncate", count=10, match="/chart/GC=F")]
    with serving(standin, monkeypatch):
        bars, results = YahooFinanceHook().fetch_bars(["GC=F", "BTC-USD"], "1d", Window(d(2020, 1, 2), d(2020, 1, 3)), INGESTED)
    by_symbol = {o.symbol: o for o in results}
    assert by_symbol["GC=F"].status == outcomes.FAILED and by_symbol["GC=F"].reason
    assert by_symbol["BTC-USD"].status == outcomes.OK and set(bars["symbol"].to_pylist()) == {"BTC-USD"}


@contextmanager
def yahoo_extra(monkeypatch, url: str, **extra):
    """Inside ``serving``: the Yahoo connection with ``extra``, undone before ``serving`` restores
    its own (a bare ``monkeypatch.setenv`` there would restore the finished stand-in's URL for every
    later test)."""
    import json

    with monkeypatch.context() as m:
        m.setenv("AIRFLOW_CONN_MARKET_YAHOO", json.dumps({"conn_type": "yahoo_finance", "host": url, "extra": extra}))
        yield


def test_a_dropped_connection_is_asked_again_before_it_fails_the_batch(monkeypatch):
    """yfinance's own retry of transient network errors (``retries`` in the connection's extra,
    default 3): a connection the server closes without answering costs one request, not the task."""
    from market_ingest.errors import VendorUnavailableError

    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    window = Window(d(2026, 11, 19), d(2026, 11, 20))
    with serving(standin, monkeypatch) as url:
        standin.faults = [Fault("yahoo", "timeout", seconds=0.2, count=1, match="/chart/MSFT")]
        bars, results = YahooFinanceHook().fetch_bars(["MSFT", "AAPL"], "1d", window, INGESTED)
        assert [(o.symbol, o.status, o.rows) for o in results] == [("MSFT", outcomes.OK, 1), ("AAPL", outcomes.OK, 1)]
        msft = [r["status"] for r in standin.log if r["path"].endswith("/chart/MSFT")]
        assert msft[:2] == [None, 200] and msft.count(None) == 1  # dropped, then asked again and answered
        standin.faults = [Fault("yahoo", "timeout", seconds=0.2, count=1, match="/chart/MSFT")]
        # Neither yfinance's retries nor the symbol's attempts: the drop fails the task for a retry.
        with (
            yahoo_extra(monkeypatch, url, retries=0, symbol_attempts=1),
            pytest.raises(VendorUnavailableError, match="RemoteDisconnected") as err,
        ):
            YahooFinanceHook().fetch_bars(["MSFT"], "1d", window, INGESTED)
    assert err.value.symbol == "MSFT" and err.value.retryable


def test_yahoos_5xx_page_is_asked_again_for_that_symbol(monkeypatch):
    """Seen in the soak benchmark: two 503 pages in a row (yfinance asks once more by itself) made
    the symbol ``failed`` with "YAHOO! FINANCE IS CURRENTLY DOWN!" although the next request would
    have been served. The hook now asks again (``symbol_attempts``, default 3); with 1, the page
    fails the task for a retry (a 5xx is transient), naming the answer."""
    from market_ingest.errors import VendorUnavailableError

    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    window = Window(d(2026, 11, 19), d(2026, 11, 20))
    with serving(standin, monkeypatch) as url:
        standin.faults = [Fault("yahoo", "status", status=503, count=2, match="/chart/MSFT")]
        _, results = YahooFinanceHook().fetch_bars(["MSFT", "AAPL"], "1d", window, INGESTED)
        assert [(o.symbol, o.status, o.rows) for o in results] == [("MSFT", outcomes.OK, 1), ("AAPL", outcomes.OK, 1)]
        assert [r["status"] for r in standin.log if r["path"].endswith("/chart/MSFT")][:3] == [503, 503, 200]
        standin.faults = [Fault("yahoo", "status", status=503, count=2, match="/chart/MSFT")]
        with yahoo_extra(monkeypatch, url, symbol_attempts=1), pytest.raises(VendorUnavailableError) as err:
            YahooFinanceHook().fetch_bars(["MSFT", "AAPL"], "1d", window, INGESTED)
    page = f"HTTP 503 Service Unavailable from {urlsplit(url).netloc}/query2.finance.yahoo.com/v8/finance/chart/MSFT (text/html)"
    assert err.value.retryable and err.value.symbol == "MSFT" and err.value.reason == f"Yahoo answered {page}"


def test_a_503_page_that_stays_is_named_as_such_not_as_a_json_error(monkeypatch):
    """Seen on main: Yahoo's 503 page, still answered after the symbol's tries, was reported as
    ``JSONDecodeError: Expecting value: line 1 column 1 (char 0)`` (yfinance's timezone probe, the
    first request for a symbol new to the process, reads the page as JSON) and failed the symbol as
    a malformed answer. It is now a retryable VendorUnavailableError naming the status, the host and
    the URL path, without the query string (it carries yfinance's crumb; other vendors' carry keys)."""
    from market_ingest.errors import VendorUnavailableError

    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    with serving(standin, monkeypatch) as url, yahoo_extra(monkeypatch, url, symbol_attempts=2):
        standin.faults = [Fault("yahoo", "status", status=503, count=100, match="/chart/ORCL")]
        with pytest.raises(VendorUnavailableError) as err:
            YahooFinanceHook().fetch_bars(["ORCL"], "1d", Window(d(2026, 11, 19), d(2026, 11, 20)), INGESTED)
    asked = [r for r in standin.log if r["path"].endswith("/chart/ORCL")]
    assert asked and {r["status"] for r in asked} == {503}  # every answer was the page
    page = f"HTTP 503 Service Unavailable from {urlsplit(url).netloc}/query2.finance.yahoo.com/v8/finance/chart/ORCL (text/html)"
    assert err.value.retryable and err.value.symbol == "ORCL" and err.value.reason == f"Yahoo answered {page}"
    assert "?" not in str(err.value) and "crumb" not in str(err.value)


def test_a_daily_symbol_costs_its_timezone_probe_and_one_chart_request(monkeypatch):
    """Seen in the soak benchmark: every daily symbol cost a third chart request (a 5-day hourly
    chart) because reading the answer's metadata made yfinance fill in ``tradingPeriods``, which
    only intraday answers carry. A daily symbol now costs the window's chart, at most yfinance's
    timezone probe and its events request (whole history, monthly: the split history its prices
    are converted with); a 1m symbol the same, its sessions taken from its own answer."""
    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    with serving(standin, monkeypatch):
        hook = YahooFinanceHook()
        _, daily = hook.fetch_bars(["MSFT", "AAPL"], "1d", Window(d(2026, 11, 19), d(2026, 11, 20)), INGESTED)
        _, minute = hook.fetch_bars(["NVDA"], "1m", Window(d(2026, 11, 19, 15), d(2026, 11, 19, 16)), INGESTED)
    assert [(o.status, o.rows) for o in daily] == [(outcomes.OK, 1)] * 2 and minute[0].rows == 60
    charts = [
        (r["path"].rsplit("/", 1)[1], r["query"].get("range"), r["query"]["interval"])
        for r in standin.log
        if "/chart/" in r["path"]
    ]
    # yfinance's timezone probe (range 1d) is made once per symbol and process: a fresh task makes
    # it; an earlier test in this process may already have.
    assert {c for c in charts if c[1] is not None} <= {("MSFT", "1d", "1d"), ("AAPL", "1d", "1d"), ("NVDA", "1d", "1d")}
    # Plus one whole-history events request (monthly) per equity: its split history (issue 30).
    assert [c for c in charts if c[1] is None] == [
        ("MSFT", None, "1d"),
        ("MSFT", None, "1mo"),
        ("AAPL", None, "1d"),
        ("AAPL", None, "1mo"),
        ("NVDA", None, "1m"),
        ("NVDA", None, "1mo"),
    ]


@pytest.mark.parametrize("in_flight", [1, 4])
def test_requests_per_second_keeps_a_task_under_the_vendors_limit(monkeypatch, in_flight):
    """The stand-in throttles Yahoo above 5 requests per second: unpaced, a batch is throttled
    (yfinance sends two requests per symbol, and a cookie fetch through a gateway); with
    ``requests_per_second`` 4.5 in the connection's extra, requests start at least 1/4.5 s apart
    (at most 4.5 per second as the stand-in counts them) and none is throttled, also when four
    symbols are in flight at once (``symbols_in_flight``: the threads share the task's spacing)."""
    from market_ingest.errors import RateLimitedError

    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    window = Window(d(2026, 11, 19), d(2026, 11, 20))
    symbols = ["MSFT", "AAPL", "NVDA", "AMZN", "META"]
    with serving(standin, monkeypatch) as url:
        standin.limits["yahoo"] = RateLimit(5, 1.0)
        with pytest.raises(RateLimitedError):
            YahooFinanceHook().fetch_bars(symbols, "1d", window, INGESTED)
        time.sleep(1.1)  # the window empties
        standin.log.clear()
        with yahoo_extra(monkeypatch, url, requests_per_second=4.5):
            bars, results = YahooFinanceHook().fetch_bars(symbols, "1d", window, INGESTED, concurrency=in_flight)
    assert [(o.symbol, o.status) for o in results] == [(s, outcomes.OK) for s in symbols] and bars.num_rows == 5
    assert bars["symbol"].to_pylist() == symbols  # in the order asked, whatever order they were answered in
    starts = [r["t"] - r["seconds"] for r in standin.log]  # as the stand-in saw them (arrival jitter included)
    assert len(starts) >= 10 and not any(r["throttled"] for r in standin.log)
    assert (len(starts) - 1) / (starts[-1] - starts[0]) <= 4.5 * 1.05


def test_30m_bars_and_daily_bars_east_of_utc_load_completely(monkeypatch):
    """yfinance asks Yahoo for 15m bars and resamples them to 30m, and starts a daily request at the
    exchange's local midnight (15:00 UTC the day before, for Tokyo): neither loses a bar."""
    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    with serving(standin, monkeypatch):
        hook = YahooFinanceHook()
        bars, (msft,) = hook.fetch_bars(["MSFT"], "30m", Window(d(2026, 11, 19), d(2026, 11, 20)), INGESTED)
        times = bars["time"].to_pylist()
        assert msft.status == outcomes.OK and msft.rows == 13  # 09:30-16:00 New York: 13 half hours
        assert times[0] == d(2026, 11, 19, 14, 30) and times[-1] == d(2026, 11, 19, 20, 30)
        asked = [r["query"]["interval"] for r in standin.log if r["path"].endswith("/MSFT") and "period1" in r["query"]]
        assert asked == ["15m", "1mo"]  # the bars, then the whole history of events (its split history)
        bars, (toyota,) = hook.fetch_bars(["7203.T"], "1d", Window(d(2026, 11, 16), d(2026, 11, 21)), INGESTED)
    assert toyota.rows == 5 and bars["time"].to_pylist() == [d(2026, 11, day) for day in range(16, 21)]
    assert set(bars["currency"].to_pylist()) == {"JPY"}


@pytest.mark.parametrize(("extended_hours", "rows", "dropped"), [(False, 78, {"outside_session": 114}), (True, 192, {})])
def test_pre_and_post_market_bars_are_kept_or_counted(monkeypatch, extended_hours, rows, dropped):
    """Intraday bars are asked with pre- and post-market (04:00-20:00 New York: 192 five-minute bars);
    an interval without extended_hours keeps the regular session's 78 and counts the rest."""
    with serving(StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12)), monkeypatch):
        bars, (msft,) = YahooFinanceHook().fetch_bars(
            ["MSFT"], "5m", Window(d(2026, 11, 19, 5), d(2026, 11, 20, 5)), INGESTED, extended_hours=extended_hours
        )
    assert msft.rows == bars.num_rows == rows and msft.dropped == dropped
    first, last = bars["time"].to_pylist()[0], bars["time"].to_pylist()[-1]
    assert (first, last) == (
        (d(2026, 11, 19, 9), d(2026, 11, 20, 0, 55)) if extended_hours else (d(2026, 11, 19, 14, 30), d(2026, 11, 19, 20, 55))
    )


#: Run in a new process, as an extract task is: prepare a batch, then report yfinance's cache files.
_PREPARED_CACHES = """
import json, sqlite3
from datetime import datetime, timezone
from yfinance import cache
from market_ingest.hooks.yahoo import Window, YahooFinanceHook

YahooFinanceHook().prepare("1d", Window(datetime(2021, 7, 19, tzinfo=timezone.utc), datetime(2021, 7, 24, tzinfo=timezone.utc)))
paths = [cache.get_tz_cache().get_db().database, cache.get_cookie_cache().get_db().database]
print(json.dumps({p.rsplit("/", 1)[1]: sqlite3.connect(p).execute("PRAGMA journal_mode").fetchone()[0] for p in paths}))
"""


def test_a_batch_opens_yfinance_s_caches_before_its_symbol_threads_do():
    """yfinance's SQLite caches are created, in WAL mode, by ``prepare`` in the thread that
    prepares the batch: first opened by four symbol threads at once, a new cache's switch to WAL
    failed a symbol with "OperationalError: database is locked" (a CI run of the backfill test)."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", _PREPARED_CACHES], capture_output=True, text=True, check=True).stdout
    assert json.loads(out.splitlines()[-1]) == {"tkr-tz.db": "wal", "cookies.db": "wal"}


def test_a_connection_dropped_after_a_5xx_page_is_asked_again_not_the_tasks_retry(monkeypatch):
    """Seen in the soak benchmark: Yahoo's 503 page, then the connection dropped, failed the whole
    extract task (VendorUnavailableError "RemoteDisconnected") and cost the run a task retry, 60 s
    of backoff and the batch's symbols again. After a >= 400 answer yfinance 1.7 asks once more
    with its other cookie strategy (``YfData.get``), and that second request has no network retry.
    The hook asks the symbol again for a dropped connection as for a 5xx page."""
    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    window = Window(d(2026, 11, 19), d(2026, 11, 20))
    with serving(standin, monkeypatch):
        standin.faults = [
            Fault("yahoo", "status", status=503, count=1, match="/chart/MSFT"),
            Fault("yahoo", "timeout", seconds=0.2, count=1, match="/chart/MSFT"),
        ]
        _, results = YahooFinanceHook().fetch_bars(["MSFT", "AAPL"], "1d", window, INGESTED)
    assert [(o.symbol, o.status, o.rows) for o in results] == [("MSFT", outcomes.OK, 1), ("AAPL", outcomes.OK, 1)]
    msft = [r["status"] for r in standin.log if r["path"].endswith("/chart/MSFT")]
    assert msft[:2] == [503, None] and 200 in msft[2:]  # the page, the dropped request, then an answer


def test_a_5xx_page_for_corporate_actions_is_asked_again_for_that_symbol(monkeypatch):
    """Seen in the soak benchmark: two 503 pages in a row for a symbol's corporate-actions request
    (yfinance asks once more by itself) failed the extract task for a retry, where the bars'
    request would have been asked again (``symbol_attempts``). The actions request is now asked
    again the same way; with ``symbol_attempts=1`` the page still fails the task, naming it."""
    from market_ingest.errors import VendorUnavailableError

    standin = StandIn(None, synthetic=True, clock=d(2026, 11, 21, 12))
    with serving(standin, monkeypatch) as url:
        standin.faults = [Fault("yahoo", "status", status=503, count=2, match="/chart/WBD")]
        answer = YahooFinanceHook().corporate_actions("WBD")
        assert answer.now is not None
        assert [r["status"] for r in standin.log if r["path"].endswith("/chart/WBD")][:3] == [503, 503, 200]
        standin.faults = [Fault("yahoo", "status", status=503, count=2, match="/chart/WBD")]
        with yahoo_extra(monkeypatch, url, symbol_attempts=1), pytest.raises(VendorUnavailableError) as err:
            YahooFinanceHook().corporate_actions("WBD")
    assert err.value.retryable and err.value.reason == "Yahoo answered HTTP 503 to the request for WBD's corporate actions"


def test_a_dropped_connection_is_asked_again_but_a_timeout_is_not():
    """A vendor that stops answering must fail the task after one symbol's requests (each already
    retried by yfinance), not after ``symbol_attempts`` times their timeouts."""
    import requests

    from market_ingest.hooks.yahoo import _is_dropped

    assert _is_dropped(requests.ConnectionError("Remote end closed connection without response"))
    assert not _is_dropped(requests.ReadTimeout("read timed out"))
    assert not _is_dropped(requests.ConnectTimeout("connect timed out"))  # a ConnectionError and a Timeout
    assert not _is_dropped(requests.exceptions.SSLError("certificate verify failed"))


def test_yfinances_own_session_dropping_the_connection_is_asked_again_too():
    """Without a gateway (the production setting) yfinance sends through curl_cffi, whose errors are
    not requests' (review finding: the symbol's retry then never applied against real Yahoo). The
    errors are made the way curl_cffi makes them from libcurl's codes."""
    from curl_cffi.const import CurlECode
    from curl_cffi.requests.exceptions import code2error

    from market_ingest.hooks.yahoo import _is_dropped

    def curl_error(code: CurlECode) -> Exception:
        return code2error(code, f"Failed to perform, curl: ({code.value}) {code.name}")(f"curl: ({code.value})", code=code)

    for dropped in (CurlECode.RECV_ERROR, CurlECode.GOT_NOTHING, CurlECode.SEND_ERROR):
        assert _is_dropped(curl_error(dropped)), dropped
    for lasting in (CurlECode.OPERATION_TIMEDOUT, CurlECode.COULDNT_RESOLVE_HOST, CurlECode.SSL_CONNECT_ERROR):
        assert not _is_dropped(curl_error(lasting)), lasting
