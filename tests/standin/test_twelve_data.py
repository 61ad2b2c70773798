"""The stand-in answers Twelve Data's ``/time_series`` and ``/quote`` as Twelve Data does.

Recorded symbols are served from their recording, cut to the asked range and size, newest first;
other symbols from the synthetic market; errors are the vendor's ``{"code", "message", "status"}``
bodies with that code as HTTP status; credits are counted per API key, per calendar minute and per
UTC day.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from standin.server import StandIn, StandInServer
from tests.conftest import RECORDINGS

TD = "/api.twelvedata.com"
NOW = datetime(2026, 11, 20, 18, 0, 30, tzinfo=timezone.utc)  # a Friday, 13:00 in New York

# Test data (not a recording): five daily AAPL bars in Twelve Data's shape, to check the cut.
DAILY_BODY = {
    "meta": {
        "symbol": "AAPL",
        "interval": "1day",
        "currency": "USD",
        "exchange_timezone": "America/New_York",
        "exchange": "NASDAQ",
        "mic_code": "XNGS",
        "type": "Common Stock",
    },
    "values": [
        {"datetime": d, "open": "1.00000", "high": "2.00000", "low": "0.50000", "close": c, "volume": "100"}
        for d, c in [
            ("2024-01-08", "185.00000"),
            ("2024-01-05", "181.00000"),
            ("2024-01-04", "182.00000"),
            ("2024-01-03", "184.00000"),
            ("2024-01-02", "185.50000"),
        ]
    ],
    "status": "ok",
}


def get(server, path: str, headers: dict | None = None):
    """``(status, parsed JSON, raw text)`` of a GET through the stand-in."""
    req = urllib.request.Request(server.url + path, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    return status, json.loads(raw), raw.decode()


def post(server, path: str, doc) -> None:
    req = urllib.request.Request(server.url + path, data=json.dumps(doc).encode(), method="POST")
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 200


class Clock:
    """Seconds since the epoch, moved by hand: calendar minutes and UTC days on demand."""

    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture()
def recorded(tmp_path):
    """The repository's recordings plus a five-day AAPL test body, without the synthetic market."""
    folder = tmp_path / "recordings"
    (folder / "twelve_data").mkdir(parents=True)
    for p in (RECORDINGS / "twelve_data").iterdir():
        (folder / "twelve_data" / p.name).write_bytes(p.read_bytes())
    (folder / "twelve_data" / "test_AAPL_1day.json").write_text(json.dumps(DAILY_BODY, indent=4))
    (folder / "twelve_data" / "test_AAPL_1day.meta.yaml").write_text(
        "vendor: twelve_data\nendpoint: time_series\nsymbol: AAPL\ninterval: 1d\nrequested_at: 2024-01-09T00:00:00Z\n"
    )
    server = StandInServer(StandIn(folder)).start()
    yield server
    server.shutdown()


@pytest.fixture()
def synthetic():
    server = StandInServer(StandIn(None, synthetic=True, clock=NOW)).start()
    server.standin.twelve_data.credits.clock = Clock(NOW.timestamp())
    post(server, "/_standin/limits", {"twelve_data": {"limit": None, "daily": None}})
    yield server
    server.shutdown()


def test_the_documented_recording_is_served_byte_for_byte_values(recorded):
    """The documentation's AAPL 1min answer, asked as the hook asks: start/end in New York time."""
    status, doc, _ = get(
        recorded,
        f"{TD}/time_series?symbol=AAPL&interval=1min&start_date=2021-09-16%2015:00:00&end_date=2021-09-16%2016:00:00&outputsize=5000&apikey=K",
    )
    assert status == 200 and doc["status"] == "ok"
    assert doc["meta"]["exchange_timezone"] == "America/New_York" and doc["meta"]["mic_code"] == "XNAS"
    assert doc["values"] == [
        {
            "datetime": "2021-09-16 15:59:00",
            "open": "148.73500",
            "high": "148.86000",
            "low": "148.73000",
            "close": "148.85001",
            "volume": "624277",
        }
    ]


def test_a_recorded_series_is_cut_to_the_range_and_size_newest_first(recorded):
    path = f"{TD}/time_series?symbol=AAPL&interval=1day&start_date=2024-01-03%2000:00:00&end_date=2024-01-08%2000:00:00&apikey=K"
    status, doc, _ = get(recorded, path)
    assert status == 200
    assert [v["datetime"] for v in doc["values"]] == ["2024-01-05", "2024-01-04", "2024-01-03"]  # end is exclusive
    assert [v["close"] for v in doc["values"]] == ["181.00000", "182.00000", "184.00000"]  # as recorded
    _, doc, _ = get(recorded, path + "&outputsize=2")
    assert [v["datetime"] for v in doc["values"]] == ["2024-01-05", "2024-01-04"]  # the newest of the range
    _, doc, _ = get(recorded, path + "&order=asc")
    assert [v["datetime"] for v in doc["values"]] == ["2024-01-03", "2024-01-04", "2024-01-05"]
    _, doc, _ = get(recorded, f"{TD}/time_series?symbol=AAPL&interval=1day&outputsize=2&apikey=K")
    assert [v["datetime"] for v in doc["values"]] == ["2024-01-08", "2024-01-05"]


def test_errors_are_the_vendors_bodies_with_their_code_as_http_status(recorded):
    status, doc, _ = get(recorded, f"{TD}/time_series?symbol=AAPL&interval=1day")
    assert (status, doc["code"], doc["status"]) == (401, 401, "error")
    assert doc["message"].startswith("**apikey** parameter is incorrect or not specified")
    status, doc, _ = get(recorded, f"{TD}/time_series?symbol=ZZZZ&interval=1day&apikey=K")
    assert (status, doc["code"]) == (404, 404) and doc["message"].startswith("**symbol** not found: ZZZZ.")
    status, doc, _ = get(recorded, f"{TD}/time_series?symbol=AAPL&interval=0.99min&apikey=K")
    assert (status, doc["code"]) == (400, 400) and doc["message"].startswith("Invalid **interval** provided: 0.99min.")
    status, doc, _ = get(
        recorded, f"{TD}/time_series?symbol=AAPL&interval=1day&start_date=2024-01-06&end_date=2024-01-08&apikey=K"
    )  # a weekend: no bar
    assert (status, doc["code"]) == (400, 400) and doc["message"].startswith("No data is available on the specified dates")


def test_the_key_may_come_in_a_header_is_checked_when_keys_are_set_and_is_never_echoed(recorded):
    status, _, _ = get(recorded, f"{TD}/time_series?symbol=AAPL&interval=1day", {"Authorization": "apikey S3CRET"})
    assert status == 200
    post(recorded, "/_standin/limits", {"twelve_data": {"keys": ["S3CRET"]}})
    assert get(recorded, f"{TD}/time_series?symbol=AAPL&interval=1day&apikey=S3CRET")[0] == 200
    status, doc, raw = get(recorded, f"{TD}/time_series?symbol=AAPL&interval=1day&apikey=not-a-valid-key")
    assert status == 401 and "not-a-valid-key" not in raw
    post(recorded, "/_standin/limits", {"twelve_data": {"limit": 1}})
    get(recorded, f"{TD}/quote?symbol=AAPL&apikey=S3CRET")
    status, doc, raw = get(recorded, f"{TD}/time_series?symbol=AAPL&interval=1day&apikey=S3CRET")
    assert status == 429 and "S3CRET" not in raw
    assert "S3CRET" not in json.dumps(recorded.standin.log)


def test_errors_can_be_answered_with_http_200_as_twelve_data_did_in_earlier_years(recorded):
    post(recorded, "/_standin/limits", {"twelve_data": {"error_status": 200}})
    status, doc, _ = get(recorded, f"{TD}/time_series?symbol=ZZZZ&interval=1day&apikey=K")
    assert (status, doc["code"], doc["status"]) == (200, 404, "error")


def test_credits_exactly_the_limit_per_minute_under_concurrency_then_the_day(synthetic):
    clock = synthetic.standin.twelve_data.credits.clock
    post(synthetic, "/_standin/limits", {"twelve_data": {"limit": 8, "daily": 12}})
    clock.t = 1_795_197_600.0  # 2026-11-20 18:00:00 UTC, the start of a minute
    path = f"{TD}/time_series?symbol=AAPL&interval=1day&outputsize=5&apikey=K1"
    with ThreadPoolExecutor(20) as pool:
        answers = list(pool.map(lambda _: get(synthetic, path), range(20)))
    codes = [a[0] for a in answers]
    assert codes.count(200) == 8 and codes.count(429) == 12
    messages = sorted(a[1]["message"] for a in answers if a[0] == 429)
    assert all(m.startswith("You have run out of API credits for the current minute.") for m in messages)
    assert any("20 API credits were used, with the current limit being 8." in m for m in messages)
    assert get(synthetic, path.replace("K1", "K2"))[0] == 200  # credits are counted per key
    clock.t += 59
    assert get(synthetic, path)[0] == 429  # the same calendar minute
    clock.t += 1  # the next minute: 4 of the day's 12 credits are left
    codes = [get(synthetic, path)[0] for _ in range(6)]
    assert codes == [200, 200, 200, 200, 429, 429]
    status, doc, _ = get(synthetic, path)
    assert status == 429 and doc["message"].startswith(
        "You have run out of API credits for the day. 15 API credits were used, with the current limit being 12."
    )  # refused requests count as used, as the vendor's messages show
    clock.t = 1_795_219_200.0  # 2026-11-21 00:00:00 UTC: a new day
    assert get(synthetic, path)[0] == 200


def test_the_basic_plan_is_the_default_and_an_injected_throttle_is_the_minutes_429(synthetic):
    post(synthetic, "/_standin/limits", {})
    synthetic.standin.twelve_data.credits.clock = Clock(1_795_197_600.0)
    answers = []
    for _ in range(9):
        req = urllib.request.Request(synthetic.url + f"{TD}/quote?symbol=MSFT&apikey=K")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                answers.append((r.status, r.headers["api-credits-used"], r.headers["api-credits-left"]))
        except urllib.error.HTTPError as e:
            answers.append((e.code, e.headers["api-credits-used"], e.headers["api-credits-left"]))
    assert answers[0] == (200, "1", "7") and answers[7] == (200, "8", "0") and answers[8] == (429, "9", "0")
    from standin.core import Fault

    synthetic.standin.faults = [Fault("twelve_data", "throttled", count=1)]
    status, doc, _ = get(synthetic, f"{TD}/quote?symbol=MSFT&apikey=OTHER")
    assert status == 429 and "for the current minute" in doc["message"]


@pytest.mark.parametrize(
    "query, meta, stamp, volume",
    [
        pytest.param(
            "symbol=MSFT&interval=5min",
            {"exchange_timezone": "America/New_York", "exchange": "NASDAQ", "mic_code": "XNGS", "currency": "USD"},
            "2026-11-20 13:00:00",
            True,
            id="us-listing",
        ),
        pytest.param(
            "symbol=VOD&exchange=LSE&interval=1h",
            {"exchange_timezone": "Europe/London", "exchange": "LSE", "mic_code": "XLON", "currency": "GBp"},
            "2026-11-20 16:00:00",
            True,
            id="lse-by-exchange",
        ),
        pytest.param("symbol=VOD&mic_code=XLON&interval=1day", {"mic_code": "XLON"}, "2026-11-20", True, id="lse-by-mic"),
        pytest.param(
            "symbol=EUR/USD&interval=1min",
            {"currency_base": "Euro", "currency_quote": "US Dollar", "type": "Physical Currency"},
            "2026-11-20 18:00:00",
            False,
            id="fx",
        ),
        pytest.param(
            "symbol=BTC/USD&interval=1week",
            {"currency_base": "Bitcoin", "currency_quote": "US Dollar", "type": "Digital Currency"},
            "2026-11-16",
            False,
            id="crypto",
        ),
    ],
)
def test_synthetic_series_speak_the_vendors_meta_and_stamps(synthetic, query, meta, stamp, volume):
    status, doc, _ = get(synthetic, f"{TD}/time_series?{query}&apikey=K")
    assert status == 200 and doc["status"] == "ok"
    assert meta.items() <= doc["meta"].items()
    assert "exchange_timezone" in doc["meta"] or "/" in doc["meta"]["symbol"]
    assert len(doc["values"]) == 30  # the default outputsize
    assert doc["values"][0]["datetime"] == stamp  # newest first: the bar open at the clock
    assert doc["values"][0]["datetime"] > doc["values"][-1]["datetime"]
    assert all(("volume" in v) == volume for v in doc["values"])


def test_the_exchange_may_be_named_in_the_symbol_and_symbols_are_case_insensitive(synthetic):
    _, by_param, _ = get(synthetic, f"{TD}/time_series?symbol=VOD&exchange=LSE&interval=1day&apikey=K")
    _, by_colon, _ = get(synthetic, f"{TD}/time_series?symbol=vod:lse&interval=1day&apikey=K")
    assert by_colon == by_param and by_colon["meta"]["symbol"] == "VOD"
    _, us, _ = get(synthetic, f"{TD}/time_series?symbol=VOD&interval=1day&apikey=K")
    assert us["meta"]["exchange"] == "NASDAQ" and us["values"] != by_param["values"]  # another listing
    status, doc, _ = get(synthetic, f"{TD}/time_series?symbol=VOD&exchange=NOWHERE&interval=1day&apikey=K")
    assert (status, doc["code"]) == (404, 404)


def test_synthetic_ranges_are_local_times_and_agree_across_intervals(synthetic):
    path = f"{TD}/time_series?symbol=AAPL&interval=30min&start_date=2026-11-19%2009:30:00&end_date=2026-11-19%2016:00:00&apikey=K"
    status, doc, _ = get(synthetic, path)
    stamps = [v["datetime"] for v in doc["values"]]
    assert status == 200 and stamps[0] == "2026-11-19 15:30:00" and stamps[-1] == "2026-11-19 09:30:00" and len(stamps) == 13
    _, day, _ = get(synthetic, f"{TD}/time_series?symbol=AAPL&interval=1day&start_date=2026-11-19&end_date=2026-11-20&apikey=K")
    assert [v["datetime"] for v in day["values"]] == ["2026-11-19"]
    _, again, _ = get(synthetic, path + "&outputsize=3")
    assert again["values"] == doc["values"][:3]  # the same bars whatever the page


def test_synthetic_quote(synthetic):
    status, doc, _ = get(synthetic, f"{TD}/quote?symbol=MSFT&apikey=K")
    assert status == 200
    assert {
        "symbol",
        "name",
        "exchange",
        "mic_code",
        "currency",
        "datetime",
        "timestamp",
        "close",
        "previous_close",
    } <= doc.keys()
    assert doc["is_market_open"] is True and doc["datetime"] == "2026-11-20"
    assert float(doc["fifty_two_week"]["low"]) <= float(doc["close"]) <= float(doc["fifty_two_week"]["high"])
    _, fx, _ = get(synthetic, f"{TD}/quote?symbol=EUR/USD&apikey=K")
    assert "volume" not in fx and fx["symbol"] == "EUR/USD"
