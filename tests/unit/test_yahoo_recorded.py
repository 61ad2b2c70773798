"""YahooFinanceHook on recorded Yahoo responses: the real yfinance parsing, replayed offline."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow.compute as pc
import pytest

from market_ingest import outcomes
from market_ingest.errors import WindowNotServableError
from market_ingest.hooks.yahoo import Window, YahooFinanceHook, clamp_window, split_window
from market_ingest.quality import keep_closed_in_window
from market_ingest.replay import ReplayMissError
from market_ingest.schema import BAR_SCHEMA
from tests.conftest import YAHOO_RECORDINGS

UTC = timezone.utc
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)


def d(*a):
    return datetime(*a, tzinfo=UTC)


@pytest.fixture
def hook():
    return YahooFinanceHook(yahoo_conn_id=None, replay_dir=str(YAHOO_RECORDINGS))


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


def test_bars_outside_the_window_are_dropped_and_counted(hook):
    _, results = hook.fetch_bars(["MSFT"], "1d", Window(d(2021, 7, 19), d(2021, 7, 20)), INGESTED)
    (msft,) = results
    assert msft.rows == 1
    assert msft.dropped["out_of_window"] > 200  # the recording spans 2021-02-01 .. 2022-01-28


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


def test_unrecorded_request_fails_loudly(hook):
    with pytest.raises(ReplayMissError, match="ZZZZ"):
        hook.fetch_bars(["ZZZZ"], "1d", Window(d(2020, 1, 1), d(2020, 1, 3)), INGESTED)


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


def test_rate_limit_fails_the_task_for_a_retry(tmp_path):
    """A 429 on the chart request surfaces as RateLimitedError (retryable), not as a skipped symbol."""
    import shutil

    import yaml

    from market_ingest.errors import RateLimitedError

    shutil.copy(YAHOO_RECORDINGS / "_handshake.yaml", tmp_path)
    # Yahoo's throttle answer (status and body as yfinance checks them); synthesised for this fault path.
    cassette = {
        "version": 1,
        "interactions": [
            {
                "request": {
                    "method": "GET",
                    "uri": "https://query2.finance.yahoo.com/v8/finance/chart/MSFT?interval=1d&period1=0&period2=2000000000",
                    "body": None,
                    "headers": {},
                },
                "response": {
                    "status": {"code": 429, "message": "Too Many Requests"},
                    "headers": {"Content-Type": ["text/html"]},
                    "body": {"string": "Too Many Requests"},
                },
            }
        ],
    }
    (tmp_path / "throttled.yaml").write_text(yaml.safe_dump(cassette))
    throttled = YahooFinanceHook(yahoo_conn_id=None, replay_dir=str(tmp_path))
    with pytest.raises(RateLimitedError) as err:
        # A window no other test asks for: yfinance memoises responses per process (lru_cache).
        throttled.fetch_bars(["MSFT"], "1d", Window(d(2021, 6, 7), d(2021, 6, 8)), INGESTED)
    assert err.value.retryable and err.value.symbol == "MSFT"


def test_a_malformed_answer_fails_only_that_symbol(tmp_path):
    """A chart body that yfinance cannot parse marks that symbol failed (with the reason) and the batch goes on."""
    import shutil

    import yaml

    for name in ("_handshake.yaml", "yahoo_chart_BTC-USD_1d_2020-01-01_2020-01-03.yaml"):
        shutil.copy(YAHOO_RECORDINGS / name, tmp_path)
    recorded = yaml.safe_load((YAHOO_RECORDINGS / "yahoo_chart_GC=F_1d_2020-01-02.yaml").read_text())
    # Truncate the real GC=F body mid-JSON, as a dropped connection would.
    body = recorded["interactions"][0]["response"]["body"]["string"]
    recorded["interactions"][0]["response"]["body"]["string"] = body[: len(body) // 2]
    (tmp_path / "truncated.yaml").write_text(yaml.safe_dump(recorded))
    hook = YahooFinanceHook(yahoo_conn_id=None, replay_dir=str(tmp_path))
    bars, results = hook.fetch_bars(["GC=F", "BTC-USD"], "1d", Window(d(2020, 1, 2), d(2020, 1, 3)), INGESTED)
    by_symbol = {o.symbol: o for o in results}
    assert by_symbol["GC=F"].status == outcomes.FAILED and by_symbol["GC=F"].reason
    assert by_symbol["BTC-USD"].status == outcomes.OK and set(bars["symbol"].to_pylist()) == {"BTC-USD"}
