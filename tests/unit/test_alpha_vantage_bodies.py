"""Alpha Vantage bodies: every recorded kind is classified before parsing, then parsed to canonical rows."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest

from market_ingest.vendors import alpha_vantage
from market_ingest.vendors.alpha_vantage import bodies as av

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alpha_vantage"
UTC = timezone.utc
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)


def body(name: str) -> str:
    return (FIXTURES / name).read_text()


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        pytest.param("av_ERROR_Error_Message_invalid_call_FX_DAILY_2021-01.json", av.ERROR_MESSAGE, id="error-message"),
        pytest.param("av_ERROR_Information_rate_limit_25_per_day_2025-12.json", av.DAILY_QUOTA, id="daily-quota-2025"),
        pytest.param("av_ERROR_Note_5calls_per_minute_2018-11.json", av.BURST, id="note-per-minute-2018"),
        pytest.param("av_PREMIUM_message_REALTIME_BULK_QUOTES_demo_MSFT_AAPL_IBM.json", av.PREMIUM, id="premium-refusal"),
        pytest.param("av_CURRENCY_EXCHANGE_RATE_USD_JPY_demo_2026-05-17.json", av.UNKNOWN, id="unsupported-function"),
        pytest.param("av_TIME_SERIES_INTRADAY_MSFT_1min_compact_2017-12-18.json", av.DATA, id="intraday-json"),
        pytest.param("av_TIME_SERIES_DAILY_IBM_compact_2023-11-10.json", av.DATA, id="daily-json"),
        pytest.param("av_TIME_SERIES_WEEKLY_IBM_2000-07_2020-07.json", av.DATA, id="weekly-json"),
        pytest.param("av_GLOBAL_QUOTE_MSFT_2018-10-05.json", av.DATA, id="quote-json"),
        pytest.param("av_csv_GLOBAL_QUOTE_IBM_2025-11-14.csv", av.DATA, id="quote-csv"),
        pytest.param("av_csv_FX_DAILY_EURUSD_demo_2025-12_2026-05.csv", av.DATA, id="fx-csv"),
        pytest.param("trimmed_upstream/av_DIGITAL_CURRENCY_DAILY_BTC_CNY_2017-11-08_TRIMMED1.json", av.DATA, id="crypto-json"),
    ],
)
def test_every_recorded_body_kind_is_classified(name, kind):
    assert av.classify(body(name)).kind == kind


def test_unknown_shape_names_the_keys():
    result = av.classify(body("av_BATCH_STOCK_QUOTES_MSFT_FB_AAPL_2017-12.json"))
    assert result.kind == av.UNKNOWN and "Meta Data" in result.message and "Stock Quotes" in result.message


def test_an_echoed_key_is_redacted_from_every_message():
    fake_key = "FAKEKEY0123456789"
    echoed = body("av_ERROR_Information_rate_limit_25_per_day_2025-12.json").replace(
        "free API requests", f"free API requests (apikey={fake_key}, key {fake_key})"
    )
    result = av.classify(echoed, api_key=fake_key)
    assert result.kind == av.DAILY_QUOTA
    assert fake_key not in result.message and "***" in result.message
    assert (
        av.redact(f"https://x/query?function=F&apikey={fake_key}&symbol=IBM", None)
        == "https://x/query?function=F&apikey=***&symbol=IBM"
    )


def test_intraday_json_is_converted_from_us_eastern_to_utc():
    rows, tz = av.parse_series_json(av.classify(body("av_TIME_SERIES_INTRADAY_MSFT_1min_compact_2017-12-18.json")).doc)
    assert tz == "US/Eastern" and len(rows) == 100
    bars = av.rows_to_bars(rows, symbol="MSFT", interval="1m", tz=tz, currency="USD", ingested_at=INGESTED)
    times = bars["time"].to_pylist()
    # December: EST = UTC-5, so 14:56 ET is 19:56 UTC; rows come back oldest first.
    assert times[-1] == datetime(2017, 12, 18, 19, 56, tzinfo=UTC) and times == sorted(times)
    assert bars["close"].to_pylist()[-1] == 86.5 and bars["volume"].to_pylist()[-1] == 10494


def test_daylight_saving_moves_the_utc_offset():
    summer = av.bar_time("2020-08-21 09:30:00", "US/Eastern", intraday=True)
    winter = av.bar_time("2020-12-18 09:30:00", "US/Eastern", intraday=True)
    assert (summer.hour, winter.hour) == (13, 14)


def test_intraday_csv_and_daily_adjusted_csv():
    rows = av.parse_series_csv(body("av_csv_TIME_SERIES_INTRADAY_IBM_5min_2020-08-21.csv"), "US/Eastern")
    bars = av.rows_to_bars(rows, symbol="IBM", interval="5m", tz="US/Eastern", currency="USD", ingested_at=INGESTED)
    assert bars.num_rows == 100 and bars["time"].to_pylist()[-1] == datetime(2020, 8, 21, 23, 40, tzinfo=UTC)
    adj = av.parse_series_csv(body("av_csv_TIME_SERIES_DAILY_ADJUSTED_IBM_demo_2025-12_2026-05.csv"), "US/Eastern")
    assert any(r.dividend and r.dividend > 1 for r in adj) and all(r.split_ratio == 1.0 for r in adj)
    assert any(r.adj_close < r.close for r in adj)  # before the ex-dividend dates


def test_daily_bars_are_stamped_midnight_utc_and_keys_never_leak():
    rows, tz = av.parse_series_json(av.classify(body("av_TIME_SERIES_DAILY_IBM_compact_2023-11-10.json")).doc)
    bars = av.rows_to_bars(rows, symbol="IBM", interval="1d", tz=tz, currency="USD", ingested_at=INGESTED)
    last = bars.to_pylist()[-1]
    assert last["time"] == datetime(2023, 11, 10, tzinfo=UTC) and last["close"] == 149.02
    assert not any(name[0].isdigit() for name in bars.column_names)


def test_crypto_takes_the_market_currency_and_fx_has_no_volume():
    doc = av.classify(body("trimmed_upstream/av_DIGITAL_CURRENCY_DAILY_BTC_CNY_2017-11-08_TRIMMED1.json")).doc
    (row,), tz = av.parse_series_json(doc, market="CNY")
    assert tz == "UTC" and row.close == pytest.approx(50610.55297109) and row.volume == pytest.approx(1.18515089)
    fx = av.parse_series_csv(body("av_csv_FX_DAILY_EURUSD_demo_2025-12_2026-05.csv"), "UTC")
    assert len(fx) == 100 and all(r.volume == 0.0 for r in fx)


def test_quotes_from_json_and_csv():
    q = av.parse_quote(av.classify(body("av_GLOBAL_QUOTE_MSFT_2018-10-05.json")))
    assert (q.symbol, q.price, q.previous_close, q.latest_trading_day) == ("MSFT", 112.13, 112.79, date(2018, 10, 5))
    c = av.parse_quote(av.classify(body("av_csv_GLOBAL_QUOTE_IBM_2025-11-14.csv")))
    assert (c.symbol, c.price, c.change, c.volume) == ("IBM", 305.69, 0.83, 3592455.0)


def test_empty_global_quote_is_an_unknown_symbol():
    assert av.classify('{"Global Quote": {}}').kind == av.ERROR_MESSAGE


def test_weekly_series_parses_to_weekly_bars():
    rows, tz = av.parse_series_json(av.classify(body("av_TIME_SERIES_WEEKLY_IBM_2000-07_2020-07.json")).doc)
    bars = av.rows_to_bars(rows, symbol="IBM", interval="1wk", tz=tz, currency="USD", ingested_at=INGESTED)
    assert bars.num_rows == 1043
    last = bars.to_pylist()[-1]
    assert last["time"] == datetime(2020, 7, 10, tzinfo=UTC) and last["close"] == 118.35 and last["interval"] == "1wk"


def test_intraday_stamps_mark_the_bar_start():
    """The current API's recorded 5min day (extended hours 04:00-20:00 ET) ends at 19:55: stamps are
    bar starts, stored as the bar's open time (the retired _EXTENDED endpoint's days ran 04:01..20:00)."""
    rows = av.parse_series_csv(body("av_csv_TIME_SERIES_INTRADAY_IBM_5min_demo_2026-05-15.csv"), "US/Eastern")
    bars = av.rows_to_bars(rows, symbol="IBM", interval="5m", tz="US/Eastern", currency="USD", ingested_at=INGESTED)
    times = bars["time"].to_pylist()
    assert times[-1] == datetime(2026, 5, 15, 23, 55, tzinfo=UTC)  # 19:55 EDT: the bar 19:55-20:00, the session's last
    assert all(t + timedelta(minutes=5) <= datetime(2026, 5, 16, 0, 0, tzinfo=UTC) for t in times)  # none past 20:00 ET
    retired = av.parse_series_csv(
        body("av_csv_TIME_SERIES_INTRADAY_EXTENDED_MSFT_1min_year1month1_2020-11-23_2020-12-18.csv"), "US/Eastern"
    )
    assert max(r.stamp for r in retired)[11:] == "20:00:00"  # the bar-end convention this module does not read


@pytest.mark.parametrize(
    ("symbol", "currency"),
    [("IBM", "USD"), ("TSCO.LON", "GBp"), ("SHOP.TRT", "CAD"), ("MBG.DEX", "EUR"), ("RELIANCE.BSE", "INR"), ("X.XYZ", None)],
)
def test_listing_currency_from_the_exchange_suffix(symbol, currency):
    assert alpha_vantage.listing_currency(symbol) == currency
