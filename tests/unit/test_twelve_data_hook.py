"""TwelveDataHook and Twelve Data's bodies, on the recorded and documented answers served by the
stand-in (``include/recordings/twelve_data``; PROVENANCE says which body is what): bars, quotes,
every classified error body, credits per minute and per day, and the key kept out of every URL,
log line and message."""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone

import pytest
import requests

from market_ingest import outcomes
from market_ingest.errors import ConfigurationError, QuotaExhaustedError
from market_ingest.hooks.twelve_data import TwelveDataHook
from market_ingest.intervals import Window
from market_ingest.vendors import twelvedata as td
from market_ingest.vendors.twelvedata import bodies
from standin.server import StandIn
from tests.conftest import RECORDINGS, serving

UTC = timezone.utc
KEY = "td-test-key-7Q2W9"
#: Apple's daily bars of 2020-08-31 .. 2020-11-06 (the recording starts 2020-08-17; its prices are
#: Alpha Vantage's recorded as-traded ones: the 4:1 split of 2020-08-31 shows between 08-28 and 08-31).
WINDOW = Window(datetime(2020, 8, 31, tzinfo=UTC), datetime(2020, 11, 7, tzinfo=UTC))
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def standin(monkeypatch):
    """A stand-in over the recordings and the synthetic market (symbols not recorded), Twelve
    Data's credits lifted unless a test sets them; the connection ``market_twelvedata`` reaches it
    with :data:`KEY`, 600 credits a minute and no daily cap unless a test :func:`connect` s otherwise."""
    standin = StandIn(RECORDINGS, synthetic=True)
    with serving(standin, monkeypatch) as url:
        standin.url = url
        connect(standin, monkeypatch, credits_per_minute=600, daily_credits=0)
        limits(standin, limit=None, daily=None)
        yield standin


def connect(standin, monkeypatch, password: str | None = KEY, **extra) -> None:
    """Point ``market_twelvedata`` at ``standin`` with ``password`` and ``extra``."""
    conn = {"conn_type": "twelvedata", "host": f"{standin.url}/api.twelvedata.com", "extra": extra}
    if password:
        conn["password"] = password
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_TWELVEDATA", json.dumps(conn))


def limits(standin, **conf) -> None:
    requests.post(f"{standin.url}/_standin/limits", data=json.dumps({"twelve_data": conf}), timeout=10).raise_for_status()


def served(standin) -> list[dict]:
    return [e for e in requests.get(f"{standin.url}/_standin/log", timeout=10).json() if e["vendor"] == "twelve_data"]


def test_daily_bars_are_as_traded_at_the_session_date_in_usd(standin):
    """One request (``adjust=none``: as traded, which Twelve Data's daily bars are not by default),
    49 sessions; 2020-08-28 (499.23, before the split) lies outside the window; 08-31's close is 129.04."""
    bars, results = TwelveDataHook().fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    assert results[0].status == outcomes.OK and results[0].rows == bars.num_rows == 49
    rows = bars.to_pylist()
    assert rows[0]["time"] == datetime(2020, 8, 31, tzinfo=UTC) and rows[0]["close"] == 129.04
    assert rows[-1]["time"] == datetime(2020, 11, 6, tzinfo=UTC)
    assert {(r["currency"], r["price_basis"], r["source"], r["interval"]) for r in rows} == {
        ("USD", "as_traded", "twelvedata", "1d")
    }
    [asked] = served(standin)
    assert asked["query"] == {
        "symbol": "AAPL",
        "interval": "1day",
        "start_date": "2020-08-30",
        "end_date": "2020-11-08",
        "outputsize": "5000",
        "adjust": "none",
    }


def test_intraday_bars_are_utc_opens_from_the_exchange_wall_clock(standin):
    """The documented 1min answer: 15:59 New York on 2021-09-16 (daylight time) is 19:59 UTC."""
    window = Window(datetime(2021, 9, 16, tzinfo=UTC), datetime(2021, 9, 17, tzinfo=UTC))
    bars, results = TwelveDataHook().fetch_bars(["AAPL"], "1m", window, INGESTED)
    assert results[0].status == outcomes.OK
    recorded = [r for r in bars.to_pylist() if r["time"] == datetime(2021, 9, 16, 19, 59, tzinfo=UTC)]
    assert [(r["open"], r["close"], r["volume"]) for r in recorded] == [(148.735, 148.85001, 624277.0)]


def test_a_long_intraday_window_is_asked_in_ranges_of_at_most_5000_bars():
    """1m bars: 3 days per request (3 x 1,440 < 5,000), each range's end the next one's start."""
    window = Window(datetime(2024, 3, 4, tzinfo=UTC), datetime(2024, 3, 11, tzinfo=UTC))
    params = td.series_params("AAPL", "1m", window)
    assert [(p["start_date"], p["end_date"]) for p in params] == [
        ("2024-03-03", "2024-03-06"),
        ("2024-03-06", "2024-03-09"),
        ("2024-03-09", "2024-03-12"),
    ]
    assert td.planned_requests(None, "1m", window, window.end) == 3
    assert len(td.series_params("AAPL", "1d", Window(datetime(2000, 1, 3, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)))) == 2


def test_the_key_travels_in_a_header_and_is_in_no_url_log_line_or_message(standin, caplog):
    caplog.set_level(logging.DEBUG)
    TwelveDataHook().fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    limits(standin, limit=None, daily=None, keys=[KEY])
    with pytest.MonkeyPatch.context() as m:
        connect(standin, m, "wrong-key-Z9")
        with pytest.raises(ConfigurationError) as refused:
            TwelveDataHook().fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    assert "refused the API key (401)" in str(refused.value) and "market_twelvedata" in str(refused.value)
    assert "wrong-key-Z9" not in str(refused.value)
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "api.twelvedata.com/time_series?symbol=AAPL" in text  # urllib3 logged the URL ...
    assert KEY not in text and "wrong-key-Z9" not in text  # ... without the key


@pytest.mark.parametrize(
    ("recording", "kind", "code"),
    [
        ("td_ERROR_400_no_data", bodies.NO_DATA, 400),
        ("td_ERROR_400_interval_docs", bodies.BAD_REQUEST, 400),
        ("td_ERROR_401_apikey", bodies.UNAUTHORIZED, 401),
        ("td_ERROR_404_symbol", bodies.UNKNOWN_SYMBOL, 404),
        ("td_ERROR_429_minute", bodies.MINUTE_CREDITS, 429),
        ("td_ERROR_429_day", bodies.DAILY_CREDITS, 429),
    ],
)
def test_every_recorded_error_body_is_classified_whatever_the_http_status(recording, kind, code):
    body = (RECORDINGS / "twelve_data" / f"{recording}.json").read_text()
    for status in (200, code):  # older answers: HTTP 200 with the code in the body; now the code as status
        got = bodies.classify(body, KEY, status)
        assert (got.kind, got.code) == (kind, code), status
        assert got.message and KEY not in got.message


def test_documented_codes_without_a_recording_and_unknown_shapes_are_classified():
    """403, 414 and 500 as the documentation's error table gives them (no recorded body); the
    older 400 "symbol not found" text; a body of no known shape names its keys; a proxy's HTML page."""
    doc = lambda code, message: json.dumps({"code": code, "message": message, "status": "error"})  # noqa: E731
    assert bodies.classify(doc(403, "/time_series is not available with your plan")).kind == bodies.PLAN
    assert bodies.classify(doc(414, "Parameter too long")).kind == bodies.BAD_REQUEST
    assert bodies.classify(doc(500, "Internal server error")).kind == bodies.SERVER
    assert bodies.classify(doc(400, "**symbol** not found: XYZ. Please specify it correctly")).kind == bodies.UNKNOWN_SYMBOL
    odd = bodies.classify(json.dumps({"data": []}))
    assert odd.kind == bodies.UNKNOWN and "['data']" in odd.message
    page = bodies.classify("<html>502 Bad Gateway</html>", KEY, 502)
    assert page.kind == bodies.SERVER and page.code == 502
    gateway = bodies.classify(json.dumps({"message": "upstream timed out"}), KEY, 504)  # a proxy's JSON, not Twelve Data's
    assert gateway.kind == bodies.SERVER and gateway.code == 504
    assert bodies.classify(json.dumps({"message": "slow down"}), KEY, 429).kind == bodies.MINUTE_CREDITS


def test_an_unknown_symbol_and_an_empty_window_are_that_symbols_outcome_only(standin):
    window = Window(datetime(2020, 9, 5, tzinfo=UTC), datetime(2020, 9, 7, tzinfo=UTC))  # a weekend (and Labour Day eve)
    bars, results = TwelveDataHook().fetch_bars(["VOD:NOWHERE", "AAPL"], "1d", window, INGESTED)
    by = {r.symbol: r for r in results}
    assert by["VOD:NOWHERE"].status == outcomes.UNKNOWN_SYMBOL and "not found" in by["VOD:NOWHERE"].reason
    assert by["AAPL"].status == outcomes.NO_DATA and bars.num_rows == 0


def sleeping(monkeypatch, time_machine) -> None:
    """``time.sleep`` moves the clock (wall and monotonic) instead of waiting."""
    import time

    monotonic, slept = time.monotonic, [0.0]

    def sleep(seconds):
        slept[0] += seconds
        time_machine.shift(seconds)

    monkeypatch.setattr(time, "sleep", sleep)
    monkeypatch.setattr(time, "monotonic", lambda: monotonic() + slept[0])


def test_the_minutes_credits_are_waited_for_and_the_days_defer_the_rest(standin, monkeypatch, time_machine):
    """Two credits a minute: the third quote is asked in the next minute (sleeps move the clock);
    a day of three credits: the fourth symbol and those after it are deferred, unasked."""
    time_machine.move_to(datetime(2026, 11, 20, 18, 0, 10, tzinfo=UTC), tick=False)
    sleeping(monkeypatch, time_machine)
    connect(standin, monkeypatch, credits_per_minute=2, daily_credits=3)
    quotes, results = TwelveDataHook().fetch_quotes(
        ["AAPL", "MSFT", "NVDA", "IBM", "VOD:LSE"], datetime(2026, 11, 20, 21, 30, tzinfo=UTC), INGESTED
    )
    assert [r.status for r in results] == [outcomes.OK] * 3 + [outcomes.DEFERRED] * 2
    minutes = [datetime.fromtimestamp(e["t"], UTC).strftime("%H:%M") for e in served(standin)]
    assert minutes == ["18:00", "18:00", "18:01"] and quotes.num_rows == 3
    aapl = quotes.to_pylist()[0]
    assert (aapl["symbol"], aapl["price"], aapl["currency"]) == ("AAPL", 148.85001, "USD")


def test_the_vendors_429_for_the_minute_is_waited_out_not_failed(standin, monkeypatch, time_machine):
    """Another client spent the key's minute (the stand-in allows 1 a minute, the hook believes
    600): the hook waits for the next minute and asks again."""
    time_machine.move_to(datetime(2026, 11, 20, 18, 0, 10, tzinfo=UTC), tick=False)
    sleeping(monkeypatch, time_machine)
    limits(standin, limit=1, daily=None)
    quotes, results = TwelveDataHook().fetch_quotes(["AAPL", "AAPL"], datetime(2026, 11, 20, 21, 30, tzinfo=UTC), INGESTED)
    assert [r.status for r in results] == [outcomes.OK, outcomes.OK]
    log = served(standin)
    assert [(e["status"], datetime.fromtimestamp(e["t"], UTC).strftime("%H:%M")) for e in log] == [
        (200, "18:00"),
        (429, "18:00"),
        (200, "18:01"),
    ]


def test_a_london_listing_names_its_exchange_and_its_calendar(standin):
    from market_ingest.calendars import market_of

    assert market_of("VOD:LSE") == "XLON" and market_of("SAP:XETR") == "XETR" and market_of("AAPL") == "XNYS"
    window = Window(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC))
    bars, results = TwelveDataHook().fetch_bars(["VOD:LSE"], "1d", window, INGESTED)
    assert results[0].status == outcomes.OK and {r["currency"] for r in bars.to_pylist()} == {"GBp"}


def test_fx_pairs_state_no_volume_and_say_so(standin):
    window = Window(datetime(2026, 11, 16, tzinfo=UTC), datetime(2026, 11, 20, tzinfo=UTC))
    bars, results = TwelveDataHook().fetch_bars(["EUR/USD"], "1d", window, INGESTED)
    assert results[0].status == outcomes.OK and bars.num_rows == 4
    assert {(r["currency"], r["volume"]) for r in bars.to_pylist()} == {("USD", 0.0)}
    assert "no volume for FX pairs" in results[0].note


def test_a_connection_without_a_key_or_with_bad_credit_settings_fails_naming_it(standin, monkeypatch):
    connect(standin, monkeypatch, None)
    with pytest.raises(ConfigurationError, match="connection market_twelvedata has no API key"):
        TwelveDataHook().fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    connect(standin, monkeypatch, credits_per_minute=0)
    with pytest.raises(ConfigurationError, match="credits_per_minute must be at least 1"):
        TwelveDataHook().fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    for host in ("proxy.internal:8443", "http://proxy.internal/api"):  # no scheme, or the key in clear text
        conn = {"conn_type": "twelvedata", "password": KEY, "host": host}
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_TWELVEDATA", json.dumps(conn))
        with pytest.raises(ConfigurationError, match="must be an https:// URL"):
            TwelveDataHook().fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    assert served(standin) == []


def test_a_spent_day_is_marked_for_every_task_when_the_vendor_says_so(standin, monkeypatch):
    """The vendor's 429 for the day (credits spent elsewhere on the key): the symbol and the rest
    are deferred, and the shared store marks the day so no other task asks."""

    class Store:
        def __init__(self):
            self.marked = []

        def take(self, vendor, day, budget):
            return True

        def mark_exhausted(self, vendor, day):
            self.marked.append((vendor, day))

        def take_minute(self, vendor, minute, limit, credits=1):
            return True

    limits(standin, limit=None, daily=1)
    store = Store()
    connect(standin, monkeypatch, credits_per_minute=600, daily_credits=800)
    hook = TwelveDataHook(quota=store)
    _, results = hook.fetch_quotes(["AAPL", "MSFT", "NVDA"], datetime(2026, 11, 20, 21, 30, tzinfo=UTC), INGESTED)
    assert [r.status for r in results] == [outcomes.OK, outcomes.DEFERRED, outcomes.DEFERRED]
    assert [v for v, _ in store.marked] == ["twelvedata:market_twelvedata"]
    with pytest.raises(QuotaExhaustedError, match="the day's API credits are spent"):
        hook.query("/quote", {"symbol": "AAPL"})


def test_a_minute_that_stays_spent_gives_up_in_five_minutes_without_spending_the_days_credit(standin, monkeypatch, time_machine):
    """Other tasks keep the key's minutes spent: the request waits minute after minute, at most
    MAX_MINUTE_WAITS minutes in all, then fails for the task's retry, having taken no credit of the
    day (a credit given up on the minute is no request)."""
    from market_ingest.errors import RateLimitedError
    from market_ingest.hooks.twelve_data import MAX_MINUTE_WAITS

    class Spent:
        day = 0

        def take(self, vendor, day, budget):
            self.day += 1
            return True

        def mark_exhausted(self, vendor, day):
            raise AssertionError("the day is not spent")

        def take_minute(self, vendor, minute, limit, credits=1):
            return False

    time_machine.move_to(datetime(2026, 11, 20, 18, 0, 10, tzinfo=UTC), tick=False)
    sleeping(monkeypatch, time_machine)
    store = Spent()
    with pytest.raises(RateLimitedError, match=f"no API credit left in {MAX_MINUTE_WAITS} minutes"):
        TwelveDataHook(quota=store).query("/quote", {"symbol": "AAPL"})
    waited = datetime.now(UTC) - datetime(2026, 11, 20, 18, 0, 10, tzinfo=UTC)
    assert store.day == 0 and served(standin) == []
    assert 4 * 60 < waited.total_seconds() <= MAX_MINUTE_WAITS * 60
