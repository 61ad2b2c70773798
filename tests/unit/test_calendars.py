"""Expected bars from exchange calendars, checked against what the vendors answered (recorded)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from market_ingest.calendars import expected_bars, market_of, sessions
from market_ingest.intervals import Window
from tests.conftest import RECORDINGS

UTC = timezone.utc
AV = Path(__file__).resolve().parents[1] / "fixtures" / "alpha_vantage"


def d(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def _yahoo_chart(name: str) -> dict:
    return json.loads((RECORDINGS / "yahoo" / name).read_text())["chart"]["result"][0]


def test_24_years_of_alpha_vantage_daily_bars_fall_on_exactly_the_xnys_sessions():
    """6,047 AAPL days from 1999-11-01 to 2023-11-10: every one a session, no session without one
    (2001-09-11 to 09-14, Hurricane Sandy's 2012-10-29 and 30, national days of mourning included)."""
    body = json.loads((AV / "av_TIME_SERIES_DAILY_AAPL_full_1999-2023-11-10.json").read_text())
    days = sorted(datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC) for day in body["Time Series (Daily)"])
    assert len(days) == 6047
    expected = expected_bars("XNYS", "1d", Window(days[0], days[-1] + timedelta(days=1)))
    assert expected == days
    assert d(2001, 9, 11) not in expected and d(2012, 10, 29) not in expected and d(2018, 12, 5) not in expected


def test_13_years_of_yahoo_daily_bars_fall_on_exactly_the_xnys_sessions():
    """TSLA from its listing (2010-06-29) to 2023-08-11: Yahoo stamps each day at the session's
    open (13:30 or 14:30 UTC); the product stamps it at 00:00 UTC of the session date."""
    chart = _yahoo_chart("yahoo_chart_TSLA_1d_full_2010-06-29_2023-08-11.json")
    opens = [datetime.fromtimestamp(t, UTC) for t in chart["timestamp"]]
    days = [t.replace(hour=0, minute=0) for t in opens]
    expected_opens = [o for _, o, _ in sessions("XNYS", Window(days[0], days[-1] + timedelta(days=1)))]
    assert len(days) == 3303
    assert expected_bars("XNYS", "1d", Window(days[0], days[-1] + timedelta(days=1))) == days
    assert expected_opens == opens  # the vendor's session opens: DST moves them between 13:30 and 14:30


def test_a_session_of_one_minute_bars_is_the_390_minutes_yahoo_answered():
    """AAPL 1m on 2024-10-02: the regular session of Yahoo's ``tradingPeriods`` (13:30-20:00 UTC)
    holds 390 bars, the calendar's 390 minutes (one has a null close: the ledger will show 389 of 390)."""
    chart = _yahoo_chart("yahoo_chart_AAPL_1m_2024-10-02.json")
    period = chart["meta"]["tradingPeriods"][1][0]
    regular = [datetime.fromtimestamp(t, UTC) for t in chart["timestamp"] if period["start"] <= t < period["end"]]
    window = Window(d(2024, 10, 2), d(2024, 10, 3))
    assert expected_bars("XNYS", "1m", window) == regular and len(regular) == 390
    assert sessions("XNYS", window) == [(d(2024, 10, 2), d(2024, 10, 2, 13, 30), d(2024, 10, 2, 20))]
    # A bar belongs to the window its open time is in, and counts once it has closed.
    assert len(expected_bars("XNYS", "1m", window, now=d(2024, 10, 2, 14, 30))) == 60


def test_a_weekend_and_a_holiday_expect_nothing_and_an_early_close_expects_less():
    assert expected_bars("XNYS", "1m", Window(d(2025, 2, 1), d(2025, 2, 3))) == []  # the recorded empty weekend
    thanksgiving = Window(d(2024, 11, 28), d(2024, 11, 29))
    assert sessions("XNYS", thanksgiving) == [] and expected_bars("XNYS", "1d", thanksgiving) == []
    black_friday = expected_bars("XNYS", "1m", Window(d(2024, 11, 29), d(2024, 11, 30)))
    assert (len(black_friday), black_friday[0], black_friday[-1]) == (210, d(2024, 11, 29, 14, 30), d(2024, 11, 29, 17, 59))
    hours = expected_bars("XNYS", "1h", Window(d(2024, 10, 2), d(2024, 10, 3)))
    assert hours == [d(2024, 10, 2, 13, 30) + timedelta(hours=h) for h in range(7)]  # the last one 19:30-20:00
    christmas_eve_london = expected_bars("XLON", "30m", Window(d(2024, 12, 24), d(2024, 12, 25)))
    assert (len(christmas_eve_london), christmas_eve_london[-1]) == (9, d(2024, 12, 24, 12))  # closes 12:30


def test_weeks_and_months_hold_a_bar_when_they_hold_a_session():
    window = Window(d(2024, 12, 23), d(2025, 1, 6))
    assert expected_bars("XNYS", "1wk", window) == [d(2024, 12, 23), d(2024, 12, 30)]
    assert expected_bars("XNYS", "1mo", Window(d(2024, 12, 1), d(2025, 2, 1))) == [d(2024, 12, 1), d(2025, 1, 1)]


def test_around_the_clock_every_bar_of_the_grid_is_expected():
    """The recorded Binance BTC/USDT minutes 23:03 to 23:12 of 2021-10-22: all ten expected."""
    candles = json.loads((RECORDINGS / "binance" / "binance_spot_klines_BTCUSDT_1m_2021-10-22.json").read_text())
    opens = [datetime.fromtimestamp(c[0] / 1000, UTC) for c in candles]
    window = Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13))
    assert [t for t in opens if window.start <= t < window.end] == expected_bars("24/7", "1m", window)
    assert len(expected_bars("24/7", "1h", Window(d(2024, 3, 9), d(2024, 3, 10)))) == 24  # a Saturday
    assert expected_bars("24/7", "1d", Window(d(2024, 3, 9, 12), d(2024, 3, 12))) == [d(2024, 3, 10), d(2024, 3, 11)]


def test_the_market_of_a_symbol_comes_from_config_then_the_source_then_its_suffix():
    assert [market_of(s) for s in ("AAPL", "OCDO.L", "SAP.DE", "AIR.PA")] == ["XNYS", "XLON", "XETR", "XPAR"]
    assert market_of("BTC/USDT", continuous=True) == "24/7"
    assert market_of("OCDO.L", "XNYS") == "XNYS"


def test_an_unknown_market_is_refused_by_name():
    with pytest.raises(ValueError, match="market 'LSE-MAIN' is not an exchange_calendars calendar"):
        expected_bars("LSE-MAIN", "1d", Window(d(2024, 10, 1), d(2024, 10, 2)))


def test_which_windows_need_no_vendor_request():
    from market_ingest.calendars import closed_throughout

    saturday, thanksgiving = Window(d(2024, 1, 6), d(2024, 1, 7)), Window(d(2024, 11, 28), d(2024, 11, 29))
    assert closed_throughout("XNYS", "1d", saturday) and closed_throughout("XNYS", "1m", thanksgiving)
    assert not closed_throughout("24/7", "1d", saturday) and not closed_throughout(
        "24/5", "1h", Window(d(2024, 1, 7), d(2024, 1, 8))
    )
    # Friday's post-market (to 20:00 New York) runs to 01:00 UTC on Saturday in winter.
    assert not closed_throughout("XNYS", "1m", saturday, extended_hours=True)
    # CME Globex opens Monday's session on Sunday evening (23:00 UTC in winter).
    sunday = expected_bars("CMES", "1h", Window(d(2024, 1, 7), d(2024, 1, 8)))
    assert sunday == [d(2024, 1, 7, 23)] and not closed_throughout("CMES", "1h", Window(d(2024, 1, 7), d(2024, 1, 8)))


def _fx_daily_days() -> list[datetime]:
    """The days of Alpha Vantage's recorded EUR/USD ``FX_DAILY`` answer (2025-12-29 to 2026-05-15), oldest first."""
    import csv

    with (AV / "av_csv_FX_DAILY_EURUSD_demo_2025-12_2026-05.csv").open(newline="") as fh:
        return sorted(datetime.strptime(r["timestamp"], "%Y-%m-%d").replace(tzinfo=UTC) for r in csv.DictReader(fh))


def test_fx_pairs_are_on_24_5_and_their_daily_bars_are_its_sessions():
    """Alpha Vantage's ``EUR/USD`` (100 days, 2025-12-29 to 2026-05-15) and Yahoo's ``EURUSD=X``
    (2020-01-01 to 01-03) have a daily bar on every weekday, New Year's Day and Good Friday included,
    and none on a weekend: the 24/5 sessions (New York 17:00 Sunday to 17:00 Friday, each dated by
    the day it closes). Crypto pairs stay on 24/7."""
    from market_ingest.calendars import closed_throughout

    days = _fx_daily_days()
    assert len(days) == 100 and d(2026, 1, 1) in days and d(2026, 4, 3) in days  # Good Friday
    assert [market_of(s) for s in ("EUR/USD", "USD/JPY", "EURUSD=X")] == ["24/5", "24/5", "24/5"]
    assert [market_of(s) for s in ("BTC/EUR", "BTC-USD", "ETH/USD")] == ["24/7", "24/7", "24/7"]
    window = Window(days[0], days[-1] + timedelta(days=1))
    assert expected_bars(market_of("EUR/USD"), "1d", window) == days
    chart = _yahoo_chart("yahoo_chart_EURUSD=X_1d_2020-01-01_2020-01-03.json")
    yahoo_days = [datetime.fromtimestamp(t, UTC) for t in chart["timestamp"]]
    assert expected_bars(market_of("EURUSD=X"), "1d", Window(d(2020, 1, 1), d(2020, 1, 4))) == yahoo_days
    # A weekend of the recording: no daily bar, and a run for it need not ask the vendor.
    saturday, sunday = Window(d(2026, 5, 9), d(2026, 5, 10)), Window(d(2026, 5, 10), d(2026, 5, 11))
    assert d(2026, 5, 8) in days and d(2026, 5, 11) in days and d(2026, 5, 9) not in days and d(2026, 5, 10) not in days
    assert closed_throughout("24/5", "1d", saturday) and closed_throughout("24/5", "1d", sunday)
    assert not closed_throughout("24/7", "1d", saturday)


def test_fx_intraday_bars_run_from_sunday_17_00_to_friday_17_00_new_york():
    """Hourly FX bars: from 22:00 UTC on Sunday in New York's winter (21:00 in its summer) to the
    last hour before 17:00 New York on Friday; nothing on Saturday."""
    from market_ingest.calendars import closed_throughout

    winter = expected_bars("24/5", "1h", Window(d(2024, 1, 5), d(2024, 1, 9)))  # Friday to Monday
    assert winter[-1 - 24 - 2] == d(2024, 1, 5, 21)  # Friday's last hour, 21:00-22:00 UTC (17:00 EST)
    assert [t for t in winter if d(2024, 1, 5, 21) < t < d(2024, 1, 8)] == [d(2024, 1, 7, 22), d(2024, 1, 7, 23)]
    assert len(winter) == 22 + 2 + 24  # Friday to 22:00, Sunday from 22:00, Monday
    summer = expected_bars("24/5", "1h", Window(d(2024, 7, 5), d(2024, 7, 8)))
    assert max(t for t in summer if t < d(2024, 7, 6)) == d(2024, 7, 5, 20)
    assert min(t for t in summer if t > d(2024, 7, 6)) == d(2024, 7, 7, 21)
    assert closed_throughout("24/5", "1m", Window(d(2024, 1, 6), d(2024, 1, 7)))  # Saturday
    assert not closed_throughout("24/5", "1h", Window(d(2024, 1, 7), d(2024, 1, 8)))  # Sunday evening


@pytest.mark.parametrize(
    ("code", "fiat"),
    [
        pytest.param("EUR", True, id="euro"),
        pytest.param("CNH", True, id="offshore-yuan"),
        pytest.param("XOF", True, id="cfa-franc"),
        pytest.param("BTC", False, id="bitcoin"),
        pytest.param("USDT", False, id="tether"),
        pytest.param("XAU", False, id="gold"),
        pytest.param("DEM", False, id="withdrawn-mark"),
    ],
)
def test_fiat_means_legal_tender_today(code, fiat):
    """Which pairs go on 24/5: both sides currencies legal tender today; metals and withdrawn
    currencies, which Babel's full ISO 4217 list holds too, are not."""
    from market_ingest.calendars import is_fiat

    assert is_fiat(code) is fiat
