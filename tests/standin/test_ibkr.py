"""The stand-in answers Interactive Brokers' Client Portal Web API as IB does.

Contract search from its recording (synthetic listings for other symbols); history from the
recordings cut to ``[startTime - period, startTime)`` and 1000 points, else the synthetic market;
the session endpoints; IB's error bodies; at most 5 history requests in flight and 10 requests a
second, an excess answering 429, configurable through ``POST /_standin/limits {"ibkr": {...}}``.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone

import pytest

from market_ingest.vendors.ibkr import bodies as ib
from standin import ibkr as standin_ibkr
from standin.server import StandIn, StandInServer
from tests.conftest import RECORDINGS

GW = "/localhost:5000/v1/api"
OAUTH = "/api.ibkr.com/v1/api"
NOW = datetime(2026, 11, 20, 18, 0, 30, tzinfo=timezone.utc)  # a Friday, 13:00 in New York
UTC = timezone.utc


def call(server, path: str, method: str = "GET", doc=None):
    """``(status, parsed JSON or None, raw text)`` of a request through the stand-in."""
    data = None if doc is None else json.dumps(doc).encode()
    req = urllib.request.Request(server.url + path, data=data, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            status, raw = r.status, r.read()
    except urllib.error.HTTPError as e:
        status, raw = e.code, e.read()
    try:
        parsed = json.loads(raw)
    except ValueError:
        parsed = None
    return status, parsed, raw.decode()


def limits(server, conf) -> None:
    status, _, _ = call(server, "/_standin/limits", "POST", conf)
    assert status == 200


@pytest.fixture()
def recorded():
    server = StandInServer(StandIn(RECORDINGS)).start()
    limits(server, {"ibkr": {"per_second": None}})
    yield server
    server.shutdown()


@pytest.fixture()
def synthetic():
    server = StandInServer(StandIn(RECORDINGS, synthetic=True, clock=NOW)).start()
    limits(server, {"ibkr": {"per_second": None}})
    yield server
    server.shutdown()


def test_search_answers_the_recording_on_both_hosts(recorded):
    for base in (GW, OAUTH):
        status, doc, raw = call(recorded, f"{base}/iserver/secdef/search?symbol=AAPL")
        assert status == 200
        assert raw == (RECORDINGS / "ibkr" / "ibkr_secdef_search_AAPL_docs.json").read_text()
        assert ib.parse_search(doc, "AAPL") == 265598


def test_search_by_post_reads_the_json_body(recorded):
    status, doc, _ = call(recorded, f"{GW}/iserver/secdef/search", "POST", {"symbol": "AAPL"})
    assert status == 200 and ib.parse_search(doc, "AAPL") == 265598


def test_unknown_symbol_without_the_synthetic_market_is_an_empty_list(recorded):
    status, doc, _ = call(recorded, f"{GW}/iserver/secdef/search?symbol=ZZZZ")
    assert status == 200 and doc == []
    assert ib.classify("[]", 200).kind == ib.UNKNOWN_CONTRACT


def test_the_hooks_daily_request_is_cut_from_the_recording(recorded):
    """Period 1y ending at startTime; the recording holds 08-31 .. 11-06. ``startTime`` 2020-11-08 00:00 UTC
    is Nov 7 in New York: every session before it, 11-06 included."""
    status, doc, raw = call(
        recorded,
        f"{GW}/iserver/marketdata/history?conid=265598&period=1y&bar=1d&outsideRth=false&startTime=20201108-00:00:00",
    )
    assert status == 200 and ib.classify(raw, status).kind == ib.DATA
    assert len(doc["data"]) == 49 and doc["points"] == 48
    assert doc["startTime"] == "20200831-13:30:00" and doc["timePeriod"] == "1y"
    table = ib.history_to_bars(doc, symbol="AAPL", interval="1d", ingested_at=NOW)
    times = table.column("time").to_pylist()
    assert times[0] == datetime(2020, 8, 31, tzinfo=UTC) and times[-1] == datetime(2020, 11, 6, tzinfo=UTC)


def test_midnight_utc_is_still_the_day_before_in_new_york(recorded):
    """As measured on the live gateway: startTime 2020-11-07 00:00 UTC is Nov 6, 19:00 in New York, so
    the answer ends with Nov 5; the session of the startTime's New York date is never included."""
    status, doc, _ = call(recorded, f"{GW}/iserver/marketdata/history?conid=265598&period=1y&bar=1d&startTime=20201107-00:00:00")
    assert status == 200 and len(doc["data"]) == 48
    assert datetime.fromtimestamp(doc["data"][-1]["t"] / 1000, UTC).date().isoformat() == "2020-11-05"


def test_start_time_is_the_end_of_the_window_and_days_count_sessions(recorded):
    """startTime 2020-10-01 12:00 UTC (Oct 1 in New York), period 5d: the five sessions ending Oct 1,
    whose own bar is not answered (the live gateway's 100d gave 99 bars the same way)."""
    status, doc, _ = call(recorded, f"{GW}/iserver/marketdata/history?conid=265598&period=5d&bar=1d&startTime=20201001-12:00:00")
    assert status == 200
    days = [datetime.fromtimestamp(r["t"] / 1000, UTC).date().isoformat() for r in doc["data"]]
    assert days == ["2020-09-25", "2020-09-28", "2020-09-29", "2020-09-30"]
    status, doc, _ = call(recorded, f"{GW}/iserver/marketdata/history?conid=265598&period=1w&bar=1d&startTime=20201001-12:00:00")
    days = [datetime.fromtimestamp(r["t"] / 1000, UTC).date().isoformat() for r in doc["data"]]
    assert days == ["2020-09-24", "2020-09-25", "2020-09-28", "2020-09-29", "2020-09-30"]


def test_minutes_are_served_and_capped_at_1000_points(recorded):
    status, doc, _ = call(
        recorded, f"{GW}/iserver/marketdata/history?conid=265598&period=1h&bar=1min&startTime=20241002-14:30:00"
    )
    assert status == 200 and len(doc["data"]) == 60
    assert doc["data"][0]["t"] == int(datetime(2024, 10, 2, 13, 30, tzinfo=UTC).timestamp() * 1000)
    assert standin_ibkr.MAX_POINTS == 1000


def test_a_window_without_bars_answers_no_data(recorded):
    """Oct 6 00:00 UTC is Oct 5 in New York: one session back is Oct 5 itself, which is never answered."""
    status, doc, raw = call(
        recorded, f"{GW}/iserver/marketdata/history?conid=265598&period=1d&bar=1d&startTime=20201006-00:00:00"
    )
    assert doc == {"error": "No data."} and ib.classify(raw, status).kind == ib.NO_DATA


def test_an_unknown_conid_answers_as_ib_does(recorded):
    status, _, raw = call(recorded, f"{GW}/iserver/marketdata/history?conid=1&period=1d&bar=1d")
    assert status == 400 and ib.classify(raw, status).kind == ib.UNKNOWN_CONTRACT


def test_bad_parameters_are_refused(recorded):
    for q in (
        "conid=265598&period=1d&bar=7min",
        "conid=265598&period=99x&bar=1d",
        "conid=265598&period=1d&bar=1d&startTime=2020-11-07",
    ):
        status, doc, _ = call(recorded, f"{GW}/iserver/marketdata/history?{q}")
        assert status == 400 and "error" in doc


def test_synthetic_symbols_get_a_listing_and_bars(synthetic):
    status, doc, _ = call(synthetic, f"{GW}/iserver/secdef/search?symbol=IBM")
    assert status == 200
    conid = ib.parse_search(doc, "IBM", "NASDAQ")
    status, hist, raw = call(synthetic, f"{GW}/iserver/marketdata/history?conid={conid}&period=2w&bar=1d&outsideRth=false")
    assert status == 200 and ib.classify(raw, status).kind == ib.DATA
    table = ib.history_to_bars(hist, symbol="IBM", interval="1d", ingested_at=NOW)
    times = table.column("time").to_pylist()
    assert 8 <= len(times) <= 11 and all(t.weekday() < 5 for t in times)
    assert all(t.hour == 0 for t in times) and times[-1] <= datetime(2026, 11, 20, tzinfo=UTC)
    again = call(synthetic, f"{GW}/iserver/marketdata/history?conid={conid}&period=2w&bar=1d&outsideRth=false")[1]
    assert again == hist  # deterministic


def test_synthetic_minutes_end_before_start_time(synthetic):
    conid = standin_ibkr.conid_of("MSFT")
    status, doc, _ = call(
        synthetic, f"{GW}/iserver/marketdata/history?conid={conid}&period=30min&bar=1min&startTime=20261119-15:00:00"
    )
    assert status == 200 and len(doc["data"]) == 30
    assert doc["data"][-1]["t"] == int(datetime(2026, 11, 19, 14, 59, tzinfo=UTC).timestamp() * 1000)


def test_conids_round_trip():
    for symbol in ("IBM", "BRK.B", "AAPL", "SPY", "Z"):
        assert standin_ibkr.symbol_of(standin_ibkr.conid_of(symbol)) == symbol
    assert standin_ibkr.symbol_of(12345) is None


def test_session_endpoints(recorded):
    status, doc, raw = call(recorded, f"{GW}/tickle", "POST")
    assert status == 200 and doc["iserver"]["authStatus"]["authenticated"] is True and doc["session"]
    assert ib.classify(raw, status).kind == ib.DATA
    status, doc, _ = call(recorded, f"{GW}/iserver/auth/status", "POST")
    assert status == 200 and doc["authenticated"] is True and doc["connected"] is True
    status, doc, _ = call(recorded, f"{GW}/iserver/reauthenticate", "POST")
    assert status == 200 and doc == {"message": "triggered"}


def test_the_session_answers_have_the_recorded_shape(recorded):
    """ibind's recorded /tickle and /iserver/auth/status answers: the stand-in's have the same keys."""
    for path, name in (("/tickle", "ibkr_tickle_ibind.json"), ("/iserver/auth/status", "ibkr_auth_status_ibind.json")):
        recorded_doc = json.loads((RECORDINGS / "ibkr" / name).read_text())
        _, doc, _ = call(recorded, f"{GW}{path}", "POST")
        assert set(doc) == set(recorded_doc)
    assert doc == recorded_doc


def test_a_gateway_not_logged_in_answers_401_everywhere(recorded):
    limits(recorded, {"ibkr": {"logged_in": False, "per_second": None}})
    for path in ("/tickle", "/iserver/auth/status", "/iserver/secdef/search?symbol=AAPL"):
        status, _, raw = call(recorded, f"{GW}{path}", "POST" if "tickle" in path else "GET")
        assert status == 401 and ib.classify(raw, status).kind == ib.UNAUTHENTICATED


def test_a_session_not_logged_in_answers_401(recorded):
    limits(recorded, {"ibkr": {"authenticated": False, "per_second": None}})
    status, _, raw = call(recorded, f"{GW}/iserver/marketdata/history?conid=265598&period=1w&bar=1d")
    assert status == 401 and ib.classify(raw, status).kind == ib.UNAUTHENTICATED
    status, doc, _ = call(recorded, f"{GW}/tickle", "POST")
    assert status == 200 and doc["iserver"]["authStatus"]["authenticated"] is False


def test_a_sixth_concurrent_history_request_answers_429(recorded):
    # Eight requests sent together (a barrier), each admitted one held 3 s: on a loaded machine a
    # thread starting late must still find the first five in flight.
    limits(recorded, {"ibkr": {"hold_ms": 3000, "per_second": None}})
    url = f"{GW}/iserver/marketdata/history?conid=265598&period=1w&bar=1d&startTime=20201001-00:00:00"
    together = threading.Barrier(8)

    def send(_):
        together.wait(timeout=30)
        return call(recorded, url)

    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(send, range(8)))
    statuses = sorted(a[0] for a in answers)
    assert statuses.count(200) == 5 and statuses.count(429) == 3
    refused = next(a for a in answers if a[0] == 429)
    assert refused[1] == {"error": "Too many requests"} and ib.classify(refused[2], 429).kind == ib.PACING
    assert call(recorded, url)[0] == 200  # the in-flight ones done: admitted again


def test_requests_per_second_and_the_penalty_box(recorded):
    limits(recorded, {"ibkr": {"per_second": 3, "penalty_s": 30}})
    url = f"{GW}/iserver/auth/status"
    statuses = [call(recorded, url)[0] for _ in range(5)]
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    limits(recorded, {})  # defaults restored: the penalty box goes with the old limits
    assert call(recorded, url)[0] == 200


def test_the_oauth_host_allows_50_a_second_the_gateway_10(recorded):
    limits(recorded, {})
    gateway = [call(recorded, f"{GW}/iserver/auth/status")[0] for _ in range(12)]
    oauth = [call(recorded, f"{OAUTH}/iserver/auth/status")[0] for _ in range(12)]
    assert 429 in gateway and gateway[:8] == [200] * 8  # 10 a second (some may fall into the next second)
    assert oauth == [200] * 12


def test_injected_faults_answer_ibs_bodies(recorded):
    status, _, _ = call(recorded, "/_standin/faults", "POST", [{"vendor": "ibkr", "kind": "status", "status": 503}])
    assert status == 200
    status, _, raw = call(recorded, f"{GW}/iserver/marketdata/history?conid=265598&period=1w&bar=1d")
    assert status == 503 and ib.classify(raw, status).kind == ib.SERVER
    call(recorded, "/_standin/faults", "POST", [{"vendor": "ibkr", "kind": "throttled"}])
    status, _, raw = call(recorded, f"{GW}/iserver/marketdata/history?conid=265598&period=1w&bar=1d")
    assert status == 429 and ib.classify(raw, status).kind == ib.PACING


def test_with_an_oauth_consumer_the_oauth_host_answers_only_signed_requests(recorded):
    """Once a consumer is configured, ``api.ibkr.com`` answers 401 to a request without its OAuth
    signature (the gateway's host still answers as a logged-in gateway), and a live session token
    request from an unknown consumer is refused."""
    consumer = {"consumer_key": "TESTCONS1", "access_token": "tok", "prepend": "00ff", "dh_prime": "17"}
    limits(recorded, {"ibkr": {"per_second": None, "oauth": consumer}})
    status, _, raw = call(recorded, f"{OAUTH}/iserver/secdef/search?symbol=AAPL")
    assert status == 401 and ib.classify(raw, status).kind == ib.UNAUTHENTICATED
    status, _, _ = call(recorded, f"{GW}/iserver/secdef/search?symbol=AAPL")
    assert status == 200
    status, _, _ = call(recorded, f"{OAUTH}/oauth/live_session_token", "POST")
    assert status == 401
