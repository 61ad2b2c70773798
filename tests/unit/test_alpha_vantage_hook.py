"""AlphaVantageHook on recorded bodies served by the stand-in: bars, typed outcomes, quota deferral, key redaction."""

from __future__ import annotations

import json
import logging
import os
from datetime import date, datetime, timezone
from pathlib import Path

import pytest

from market_ingest import outcomes
from market_ingest.errors import ConfigurationError, RateLimitedError
from market_ingest.hooks.alpha_vantage import AlphaVantageHook, UnexpectedBodyError
from market_ingest.intervals import Window
from standin.alpha_vantage import series_symbol
from standin.server import StandIn
from tests.conftest import RECORDINGS, recording, serving

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alpha_vantage"
FAKE_KEY = "FAKEKEYZ9Y8X7W6V5"
UTC = timezone.utc
WINDOW = Window(datetime(2023, 11, 6, tzinfo=UTC), datetime(2023, 11, 11, tzinfo=UTC))
NOW = datetime(2023, 11, 11, tzinfo=UTC)


class MemoryQuota:
    """In-process stand-in for PostgresQuotaStore (which tests/integration exercises on PostgreSQL)."""

    def __init__(self):
        self.taken, self.exhausted = 0, set()

    def take(self, vendor, day, budget):
        if (vendor, day) in self.exhausted or self.taken >= budget:
            return False
        self.taken += 1
        return True

    def mark_exhausted(self, vendor, day):
        self.exhausted.add((vendor, day))


@pytest.fixture
def recordings(tmp_path):
    """The committed IBM and MSFT recordings plus per-test bodies (:func:`answer`), all real Alpha Vantage bodies."""
    for f in (RECORDINGS / "alpha_vantage").iterdir():
        if f.name.endswith((".json", ".csv", ".meta.yaml")):
            (tmp_path / f.name).write_bytes(f.read_bytes())
    return tmp_path


@pytest.fixture
def clock(time_machine):
    """Our clock at :data:`NOW` (ticking): before its first answer the hook plans by it (``compact``
    or ``full``, months of intraday history) and takes its day's quota; then by Alpha Vantage's
    ``Date`` (the recordings' ``requested_at``), never later than ours. A test moves it with
    ``clock.move_to(...)``."""
    time_machine.move_to(NOW)
    return time_machine


@pytest.fixture(autouse=True)
def connection(recordings, monkeypatch):
    """A stand-in over ``recordings`` (re-read as tests add bodies), reached with a fake key; yields the stand-in."""
    standin = StandIn(recordings, watch=True)
    with serving(standin, monkeypatch, _fake_key()):
        yield standin


def _fake_key(extra: dict | None = None):
    """``serving``'s connections: ``market_alpha_vantage`` reaching the stand-in with the fake key."""

    def connections(url: str) -> dict:
        conn = {"conn_type": "alpha_vantage", "password": FAKE_KEY, "host": f"{url}/www.alphavantage.co/query"}
        return {"market_alpha_vantage": {**conn, **({"extra": extra} if extra is not None else {})}}

    return connections


def answer(folder: Path, name: str, query: str, body: str) -> None:
    """A recorded ``body`` answering ``query`` (the function and symbol it names), as a recording in ``folder``."""
    params = dict(p.split("=", 1) for p in query.split("&"))
    recording(folder, name, body, vendor="alpha_vantage", endpoint=params["function"], symbol=series_symbol(params))


def daily(symbol):
    return f"function=TIME_SERIES_DAILY&symbol={symbol}&outputsize=compact"


def test_daily_bars_from_the_recording(recordings, clock):
    hook = AlphaVantageHook()
    bars, results = hook.fetch_bars(["IBM"], "1d", WINDOW, NOW)
    assert results == [outcomes.SymbolOutcome("IBM", "ok", rows=5, dropped={"out_of_window": 95})]
    rows = bars.to_pylist()
    assert [r["time"].day for r in rows] == [6, 7, 8, 9, 10] and rows[-1]["close"] == 149.02
    assert rows[-1]["source"] == "alpha_vantage" and rows[-1]["time"].tzinfo is not None
    assert {r["currency"] for r in rows} == {"USD"}  # a US listing (no exchange suffix)


def test_daily_quota_defers_the_rest_without_calls_and_never_leaks_the_key(recordings, caplog, clock):
    quota_body = (FIXTURES / "av_ERROR_Information_rate_limit_25_per_day_2025-12.json").read_text()
    echoed = quota_body.replace("free API requests", f"free API requests for key {FAKE_KEY}")
    answer(recordings, "msft_quota", daily("MSFT"), echoed)
    store = MemoryQuota()
    caplog.set_level(logging.DEBUG)
    hook = AlphaVantageHook(quota=store)
    bars, results = hook.fetch_bars(["IBM", "MSFT", "AAPL", "TSLA"], "1d", WINDOW, NOW)
    assert [(o.symbol, o.status) for o in results] == [
        ("IBM", "ok"),
        ("MSFT", "deferred"),
        ("AAPL", "deferred"),
        ("TSLA", "deferred"),
    ]
    assert store.taken == 2  # AAPL and TSLA were never requested (the stand-in's log would show them)
    assert store.exhausted == {("alpha_vantage:market_alpha_vantage", date(2023, 11, 11))}  # the key's connection
    assert set(bars["symbol"].to_pylist()) == {"IBM"}
    # A later task the same UTC day makes no call at all.
    later = AlphaVantageHook(quota=store)
    _, again = later.fetch_bars(["IBM"], "1d", WINDOW, NOW)
    assert again[0].status == "deferred" and store.taken == 2
    everything = caplog.text + json.dumps([o.as_dict() for o in results + again])
    assert FAKE_KEY not in everything and "25 requests per day" in results[1].reason


def test_error_message_skips_only_that_symbol(recordings, clock):
    body = (FIXTURES / "av_ERROR_Error_Message_invalid_call_FX_DAILY_2021-01.json").read_text()
    answer(recordings, "bad_symbol", daily("NOSUCH"), body)
    bars, results = AlphaVantageHook().fetch_bars(["NOSUCH", "IBM"], "1d", WINDOW, NOW)
    assert results[0].status == outcomes.UNKNOWN_SYMBOL and "Invalid API call" in results[0].reason
    assert results[1].status == outcomes.OK and bars.num_rows == 5


def test_burst_throttle_is_retryable(recordings, clock):
    answer(recordings, "burst", daily("MSFT"), (FIXTURES / "av_ERROR_Note_5calls_per_minute_2018-11.json").read_text())
    with pytest.raises(RateLimitedError) as err:
        AlphaVantageHook().fetch_bars(["MSFT"], "1d", WINDOW, NOW)
    assert err.value.retryable


def test_an_html_5xx_page_is_named_by_its_status_host_and_path_without_the_key(connection, clock):
    """On main: ``HTTP 503 for TIME_SERIES_DAILY IBM``, without the host or path answered. The page
    is named as every vendor's is (:class:`~market_ingest.routing.Answered`); the URL's query
    string, which holds the API key, never is."""
    from urllib.parse import urlsplit

    from market_ingest.errors import VendorUnavailableError
    from standin.core import Fault

    connection.faults = [Fault("alpha_vantage", "status", status=503, count=1)]
    with pytest.raises(VendorUnavailableError) as err:
        AlphaVantageHook().fetch_bars(["IBM"], "1d", WINDOW, NOW)
    host = urlsplit(json.loads(os.environ["AIRFLOW_CONN_MARKET_ALPHA_VANTAGE"])["host"]).netloc
    assert err.value.retryable and err.value.symbol == "IBM"
    assert err.value.reason == (
        f"HTTP 503 Service Unavailable from {host}/www.alphavantage.co/query (text/html) for TIME_SERIES_DAILY IBM"
    )
    assert FAKE_KEY not in str(err.value)


def test_premium_refusal_fails_fast_naming_the_function(recordings, clock):
    body = (FIXTURES / "av_PREMIUM_message_REALTIME_BULK_QUOTES_demo_MSFT_AAPL_IBM.json").read_text()
    answer(recordings, "premium", daily("MSFT"), body)
    with pytest.raises(ConfigurationError, match="TIME_SERIES_DAILY needs a premium Alpha Vantage plan") as err:
        AlphaVantageHook().fetch_bars(["MSFT"], "1d", WINDOW, NOW)
    assert not err.value.retryable and FAKE_KEY not in str(err.value)


def test_unknown_body_shape_fails_loudly_with_its_keys(recordings, clock):
    body = (FIXTURES / "av_CURRENCY_EXCHANGE_RATE_USD_JPY_demo_2026-05-17.json").read_text()
    answer(recordings, "odd", daily("MSFT"), body)
    with pytest.raises(UnexpectedBodyError, match="Realtime Currency Exchange Rate"):
        AlphaVantageHook().fetch_bars(["MSFT"], "1d", WINDOW, NOW)


def test_request_plan_compact_full_and_months(recordings, clock):
    hook = AlphaVantageHook()
    assert hook.series_params("IBM", "1d", WINDOW) == [
        {"function": "TIME_SERIES_DAILY", "symbol": "IBM", "outputsize": "compact"}
    ]
    old = Window(datetime(2020, 1, 1, tzinfo=UTC), datetime(2020, 2, 1, tzinfo=UTC))
    assert hook.series_params("IBM", "1d", old)[0]["outputsize"] == "full"
    backfill = Window(datetime(2023, 8, 20, tzinfo=UTC), datetime(2023, 10, 2, tzinfo=UTC))
    months = [p["month"] for p in hook.series_params("IBM", "5m", backfill)]
    assert months == ["2023-08", "2023-09", "2023-10"]


def test_global_quote_snapshot_is_stamped_at_the_run_end(recordings, clock):
    as_of = datetime(2018, 10, 5, 21, 30, tzinfo=UTC)
    quotes, results = AlphaVantageHook().fetch_quotes(["MSFT"], as_of, NOW)
    (row,) = quotes.to_pylist()
    assert results == [outcomes.SymbolOutcome("MSFT", "ok", rows=1)]
    assert (row["time"], row["price"], row["previous_close"], row["change"]) == (as_of, 112.13, 112.79, -0.66)
    assert row["latest_trading_day"] == date(2018, 10, 5) and row["volume"] == 29062853.0
    assert row["source"] == "alpha_vantage"


def test_fx_and_crypto_pairs_use_their_functions_and_market_currency(recordings, clock):
    """EUR/USD -> FX_DAILY, BTC/EUR -> DIGITAL_CURRENCY_DAILY; the recorded demo-key answers are CSV."""
    answer(
        recordings,
        "fx",
        "function=FX_DAILY&from_symbol=EUR&to_symbol=USD&outputsize=compact",
        (FIXTURES / "av_csv_FX_DAILY_EURUSD_demo_2025-12_2026-05.csv").read_text(),
    )
    answer(
        recordings,
        "crypto",
        "function=DIGITAL_CURRENCY_DAILY&symbol=BTC&market=EUR",
        (FIXTURES / "av_csv_DIGITAL_CURRENCY_DAILY_BTC_EUR_demo_2025-06_2026-05.csv").read_text(),
    )
    now = datetime(2026, 5, 17, tzinfo=UTC)
    clock.move_to(now)
    window = Window(datetime(2026, 5, 11, tzinfo=UTC), datetime(2026, 5, 16, tzinfo=UTC))
    bars, results = AlphaVantageHook().fetch_bars(["EUR/USD", "BTC/EUR"], "1d", window, now)
    assert [(o.symbol, o.status, o.rows) for o in results] == [("EUR/USD", "ok", 5), ("BTC/EUR", "ok", 5)]
    fx = [r for r in bars.to_pylist() if r["symbol"] == "EUR/USD"]
    assert fx[-1]["time"] == datetime(2026, 5, 15, tzinfo=UTC) and fx[-1]["close"] == 1.1625
    assert all(r["volume"] == 0.0 and r["currency"] == "USD" for r in fx)
    btc = [r for r in bars.to_pylist() if r["symbol"] == "BTC/EUR"]
    assert all(r["currency"] == "EUR" for r in btc) and btc[-1]["volume"] > 0


def test_pair_on_a_non_fiat_market_or_intraday_is_a_clear_symbol_error(recordings, clock):
    hook = AlphaVantageHook()
    _, results = hook.fetch_bars(["ETH/BTC"], "1d", WINDOW, NOW)
    assert results[0].status == outcomes.FAILED and "BTC is not one" in results[0].reason
    _, results = hook.fetch_bars(["EUR/USD"], "5m", WINDOW, NOW)
    assert results[0].status == outcomes.FAILED and "only daily bars" in results[0].reason


@pytest.mark.parametrize(("extended_hours", "rows", "dropped"), [(False, 78, {"outside_session": 114}), (True, 192, {})])
def test_pre_and_post_market_bars_are_kept_or_counted(monkeypatch, clock, extended_hours, rows, dropped):
    """TIME_SERIES_INTRADAY is asked with extended_hours=true (Alpha Vantage's default, 04:00-20:00
    ET); an interval without extended_hours keeps 09:30-16:00 and counts the rest."""
    now = datetime(2026, 11, 21, 12, tzinfo=UTC)
    clock.move_to(now)
    with serving(StandIn(None, synthetic=True, clock=now), monkeypatch, _fake_key()):
        window = Window(datetime(2026, 11, 19, 5, tzinfo=UTC), datetime(2026, 11, 20, 5, tzinfo=UTC))
        bars, (ibm,) = AlphaVantageHook().fetch_bars(["IBM"], "5m", window, NOW, extended_hours=extended_hours)
    assert ibm.rows == bars.num_rows == rows and {k: v for k, v in ibm.dropped.items() if k != "out_of_window"} == dropped


def test_extended_hours_is_refused_where_it_means_nothing():
    from market_ingest.config import SourceConfig

    base = {"pool": "p", "pool_slots": 1, "batch_size": 5, "universes": ["u"], "description": "d"}
    daily = {"1d": {"schedule": "@daily", "extended_hours": True}}
    with pytest.raises(ValueError, match="extended_hours applies to intraday intervals"):
        SourceConfig(kind="yahoo", intervals=daily, **base)
    with pytest.raises(ValueError, match="extended_hours applies to intraday intervals"):
        SourceConfig(kind="ccxt", exchange="binance", intervals={"1m": {"schedule": "@hourly", "extended_hours": True}}, **base)
    assert SourceConfig(kind="alpha_vantage", intervals={"5m": {"schedule": "@daily", "extended_hours": True}}, **base)


@pytest.mark.parametrize("rate", [None, 4.0])
def test_requests_are_spaced_by_the_connections_requests_per_second(recordings, monkeypatch, rate, clock):
    """Alpha Vantage's free key allows about one request per second: the hook's session spaces
    its requests by the connection's ``requests_per_second`` (default 1), as the stand-in sees
    them arrive."""
    standin = StandIn(recordings)
    with serving(standin, monkeypatch, _fake_key({"requests_per_second": rate} if rate else {})):
        _, results = AlphaVantageHook().fetch_bars(["IBM", "MSFT", "IBM"], "1d", WINDOW, NOW)
    # No daily MSFT is recorded: the stand-in answers Alpha Vantage's "Error Message" for it.
    assert [o.status for o in results] == ["ok", "unknown_symbol", "ok"]
    starts = [r["t"] - r["seconds"] for r in standin.log]
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert len(starts) == 3 and min(gaps) >= 1 / (rate or 1.0) - 0.02  # arrival jitter of a loopback request


def _digital_currency_daily_json(csv_text: str) -> str:
    """The recorded DIGITAL_CURRENCY_DAILY CSV (BTC/EUR, 350 days) reshaped into the JSON layout
    Alpha Vantage documents for that function (``Time Series (Digital Currency Daily)``, ``"1. open"``
    ...): no complete JSON body of it was recorded. Values unchanged; DERIVED, not a recording."""
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(csv_text)))
    meta = {"1. Information": "Daily Prices and Volumes for Digital Currency", "2. Digital Currency Code": "BTC",
            "3. Digital Currency Name": "Bitcoin", "4. Market Code": "EUR", "5. Market Name": "Euro",
            "6. Last Refreshed": f"{rows[0]['timestamp']} 00:00:00", "7. Time Zone": "UTC"}  # fmt: skip
    series = {
        r["timestamp"]: {f"{i}. {k}": r[k] for i, k in enumerate(("open", "high", "low", "close", "volume"), 1)} for r in rows
    }
    return json.dumps({"Meta Data": meta, "Time Series (Digital Currency Daily)": series}, indent=4)


@pytest.mark.parametrize(
    ("query", "symbol", "interval", "window", "body"),
    [
        pytest.param(
            "function=TIME_SERIES_WEEKLY&symbol=IBM", "IBM", "1wk",
            Window(datetime(2001, 1, 1, tzinfo=UTC), datetime(2001, 4, 1, tzinfo=UTC)),
            lambda: (FIXTURES / "av_TIME_SERIES_WEEKLY_IBM_2000-07_2020-07.json").read_text(),
            id="weekly-1043-weeks",
        ),
        pytest.param(
            "function=DIGITAL_CURRENCY_DAILY&symbol=BTC&market=EUR", "BTC/EUR", "1d",
            Window(datetime(2025, 6, 2, tzinfo=UTC), datetime(2025, 7, 1, tzinfo=UTC)),
            lambda: _digital_currency_daily_json((FIXTURES / "av_csv_DIGITAL_CURRENCY_DAILY_BTC_EUR_demo_2025-06_2026-05.csv").read_text()),
            id="digital-currency-daily-350-days",
        ),
    ],
)  # fmt: skip
def test_series_without_outputsize_are_served_whole(recordings, query, symbol, interval, window, body):
    """On main: the stand-in cut every JSON series asked without ``outputsize`` to its latest 100
    points, as if compact applied; Alpha Vantage's weekly and digital-currency series take no
    ``outputsize`` and always answer whole, so older windows came back ``no_data`` in a green run."""
    text = body()
    answer(recordings, "whole_series", query, text)
    doc = json.loads(text)
    points = doc[next(k for k in doc if "Time Series" in k)]
    expected = sorted(
        (datetime.fromisoformat(stamp).replace(tzinfo=UTC), float(values["4. close"]))
        for stamp, values in points.items()
        if window.start <= datetime.fromisoformat(stamp).replace(tzinfo=UTC) < window.end
    )
    bars, (outcome,) = AlphaVantageHook().fetch_bars([symbol], interval, window, NOW)  # Alpha Vantage's clock: the body's
    assert outcome.status == "ok" and outcome.rows == len(expected) >= 10
    assert [(r["time"], r["close"]) for r in bars.to_pylist()] == expected


@pytest.mark.parametrize("bar_stamp", ["start", "end"])
def test_a_source_declares_bars_stamped_at_their_end(recordings, bar_stamp):
    """Alpha Vantage's 2020-era intraday bodies stamp bars by their end: in the recorded IBM 5min
    day of 2020-08-21 the 09:30 stamp holds pre-market volume and the 16:00 one the closing auction.
    ``bar_stamp: end`` moves each time back one interval, so that bar is the 15:55 New York bar
    (19:55 UTC) inside the regular session, and the outcome says so; ``start`` (the default) keeps
    the stamps as opens and counts the auction bar outside the session."""
    from market_ingest.config import SourceConfig, load_config
    from market_ingest.extract import END_NOTE
    from market_ingest.sources import bar_hook

    text = (FIXTURES / "av_csv_TIME_SERIES_INTRADAY_IBM_5min_2020-08-21.csv").read_text()
    recording(
        recordings, "ibm_5min_2020", text, vendor="alpha_vantage", endpoint="TIME_SERIES_INTRADAY", symbol="IBM", interval="5m"
    )
    volume = {line.split(",")[0]: float(line.split(",")[5]) for line in text.splitlines()[1:]}
    cfg = load_config()
    src = SourceConfig.model_validate({**cfg.sources["yahoo"].model_dump(), "bar_stamp": bar_stamp})
    assert bar_hook("yahoo", src, timescale_conn_id=cfg.timescale.conn_id).bar_stamp == bar_stamp  # the config reaches the hook
    hook = AlphaVantageHook()
    hook.bar_stamp = src.bar_stamp  # as bar_hook sets it (the Alpha Vantage builder also opens the warehouse's quota)
    window = Window(datetime(2020, 8, 21, 4, tzinfo=UTC), datetime(2020, 8, 22, tzinfo=UTC))
    bars, (ibm,) = hook.fetch_bars(["IBM"], "5m", window, NOW)
    by_time = {r["time"]: r["volume"] for r in bars.to_pylist()}
    close_bar = datetime(2020, 8, 21, 19, 55, tzinfo=UTC)  # 15:55 EDT
    if bar_stamp == "end":
        assert by_time[close_bar] == volume["2020-08-21 16:00:00"] and ibm.note == END_NOTE
        assert (
            min(by_time) == datetime(2020, 8, 21, 13, 30, tzinfo=UTC) and by_time[min(by_time)] == volume["2020-08-21 09:35:00"]
        )
    else:
        assert by_time[close_bar] == volume["2020-08-21 15:55:00"] and ibm.note == ""
        assert by_time[min(by_time)] == volume["2020-08-21 09:30:00"]
    assert max(by_time) == close_bar and ibm.rows == len(by_time)
    # Daily bars are dated by their session, never stamped: bar_stamp leaves them where they are.
    daily_window = Window(datetime(2023, 11, 6, tzinfo=UTC), datetime(2023, 11, 11, tzinfo=UTC))
    days, (daily,) = hook.fetch_bars(["IBM"], "1d", daily_window, NOW)
    assert [t.date().isoformat() for t in days["time"].to_pylist()] == [f"2023-11-{d:02d}" for d in range(6, 11)]
    assert daily.note == ""
    with pytest.raises(ValueError, match="bar_stamp"):
        SourceConfig.model_validate({**cfg.sources["yahoo"].model_dump(), "bar_stamp": "middle"})


def test_corporate_actions_of_ibm_from_its_splits_and_dividends_answers(recordings, clock):
    """IBM's SPLITS and DIVIDENDS answers to the demo key (recorded CSV): two splits, the second
    the Kyndryl spin-off Alpha Vantage states as a factor of 1.046, and 108 dividends as traded."""
    from market_ingest.actions import DIVIDEND, SPLIT

    answer = AlphaVantageHook(quota=MemoryQuota()).corporate_actions("IBM")
    splits = [(a.ex_date, a.ratio) for a in answer.actions if a.kind == SPLIT]
    dividends = {a.ex_date: (a.amount, a.currency) for a in answer.actions if a.kind == DIVIDEND}
    assert splits == [(date(1999, 5, 27), 2.0), (date(2021, 11, 4), 1.046)]
    assert len(dividends) == 108
    # As traded: the dividend before the 1999 split is twice the one after it.
    assert dividends[date(1999, 5, 6)] == (0.24, "USD") and dividends[date(1999, 8, 6)] == (0.12, "USD")
    assert dividends[date(2025, 11, 10)] == (1.68, "USD")
    assert answer.tz == "US/Eastern" and {a.source for a in answer.actions} == {"alpha_vantage"}


def test_an_alpha_vantage_source_keeping_actions_refreshes_them_once_a_day_and_never_fails_its_bars(recordings, clock, tmp_path):
    """A source with ``corporate_actions: true``: the day's first extract asks SPLITS and DIVIDENDS
    (two of the budget) and keeps them in the lake; a second extract the same day asks nothing more;
    a symbol whose actions Alpha Vantage does not know still gets its bars, with a note."""
    from market_ingest.lake import lake_root
    from market_ingest.lake.actions import ActionsCache, actions_object, read_actions

    root = lake_root(f"file://{tmp_path}")
    store = MemoryQuota()
    cache = ActionsCache(root, "alpha_vantage")
    bars, (ibm,) = AlphaVantageHook(quota=store).fetch_bars(["IBM"], "1d", WINDOW, NOW, split_histories=cache, keep_actions=True)
    assert ibm.status == "ok" and store.taken == 3 and bars.num_rows == 5
    kept, checked = read_actions(actions_object(root, "alpha_vantage", "IBM"))
    assert len(kept) == 110 and checked is not None and cache.refreshed and not cache.new  # a first history is not news
    # The market knew IBM's 1999 split long before this first answer: a point-in-time read of
    # 2000 must apply it, so a first history's actions are known from their ex-date.
    split_1999 = next(a for a in kept if a.kind == "split" and a.ex_date == date(1999, 5, 27))
    assert split_1999.first_seen == datetime(1999, 5, 27, tzinfo=UTC) and split_1999.extracted_at == checked
    AlphaVantageHook(quota=store).fetch_bars(
        ["IBM"], "1d", WINDOW, NOW, split_histories=ActionsCache(root, "alpha_vantage"), keep_actions=True
    )
    assert store.taken == 4  # the bars only
    # AAPL: its bars are recorded, its actions are not (the stand-in answers Alpha Vantage's Error Message).
    bars, (aapl,) = AlphaVantageHook(quota=store).fetch_bars(
        ["AAPL"], "1d", WINDOW, NOW, split_histories=cache, keep_actions=True
    )
    assert aapl.status == "ok" and aapl.rows == 5 and "corporate actions not refreshed: SPLITS AAPL" in aapl.note
    assert not actions_object(root, "alpha_vantage", "AAPL").exists()
