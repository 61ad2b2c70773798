"""Interactive Brokers bodies: every recorded kind is classified before parsing; contract search picks
the stock listing; history answers become canonical bars (open time UTC, daily bars on their session
date, volume from IB's lots of 100 shares)."""

from __future__ import annotations

import json
from datetime import date, datetime, timezone

import pytest

from market_ingest.schema import BAR_SCHEMA
from market_ingest.vendors.ibkr import bodies as ib
from tests.conftest import RECORDINGS

FOLDER = RECORDINGS / "ibkr"
UTC = timezone.utc
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)


def body(name: str) -> str:
    return (FOLDER / name).read_text()


def doc(name: str):
    return json.loads(body(name))


@pytest.mark.parametrize(
    ("name", "status", "kind"),
    [
        pytest.param("ibkr_ERROR_401_not_authenticated.json", 401, ib.UNAUTHENTICATED, id="401"),
        pytest.param("ibkr_ERROR_400_no_bridge.json", 400, ib.UNAUTHENTICATED, id="no-bridge-quoted"),
        pytest.param("ibkr_ERROR_429_too_many_requests.json", 429, ib.PACING, id="429"),
        pytest.param("ibkr_ERROR_500_no_data.json", 500, ib.NO_DATA, id="no-data"),
        pytest.param("ibkr_ERROR_500_chart_data_unavailable.json", 500, ib.SERVER, id="chart-data-unavailable"),
        pytest.param("ibkr_ERROR_400_no_permission.json", 400, ib.NO_PERMISSION, id="no-permission"),
        pytest.param("ibkr_ERROR_400_unknown_conid.json", 400, ib.UNKNOWN_CONTRACT, id="unknown-conid"),
        pytest.param("ibkr_history_AAPL_1d_2020-08-31_2020-11-06_from_av.json", 200, ib.DATA, id="daily"),
        pytest.param("ibkr_history_AAPL_1min_2024-10-02_from_yahoo.json", 200, ib.DATA, id="minutes"),
        pytest.param("ibkr_history_AAPL_1m_2023-11_ibind.json", 200, ib.DATA, id="monthly-genuine"),
        pytest.param("ibkr_secdef_search_AAPL_docs.json", 200, ib.DATA, id="search"),
        pytest.param("ibkr_tickle_ibind.json", 200, ib.DATA, id="tickle-genuine"),
        pytest.param("ibkr_auth_status_ibind.json", 200, ib.DATA, id="auth-status-genuine"),
    ],
)
def test_every_recorded_body_is_classified(name, status, kind):
    assert ib.classify(body(name), status).kind == kind


def test_every_error_recording_has_a_test():
    """A new error body dropped into the folder must be classified here too."""
    tested = {
        "ibkr_ERROR_401_not_authenticated.json",
        "ibkr_ERROR_400_no_bridge.json",
        "ibkr_ERROR_429_too_many_requests.json",
        "ibkr_ERROR_500_no_data.json",
        "ibkr_ERROR_500_chart_data_unavailable.json",
        "ibkr_ERROR_400_no_permission.json",
        "ibkr_ERROR_400_unknown_conid.json",
    }
    assert {p.name for p in FOLDER.glob("ibkr_ERROR_*.json")} == tested


@pytest.mark.parametrize(
    ("text", "status", "kind"),
    [
        pytest.param("", 401, ib.UNAUTHENTICATED, id="401-empty"),
        pytest.param("<html><body>Access Denied</body></html>", 401, ib.UNAUTHENTICATED, id="401-html"),
        pytest.param("", 429, ib.PACING, id="429-empty"),
        pytest.param("", 503, ib.SERVER, id="503-empty"),
        pytest.param("{not json", 502, ib.SERVER, id="502-garbage"),
        pytest.param("[]", 200, ib.UNKNOWN_CONTRACT, id="search-nothing"),
        pytest.param('{"data": [], "points": 0}', 200, ib.NO_DATA, id="history-empty"),
        pytest.param(
            '{"data": [{"t": 1, "o": 1, "h": 1, "l": 1, "c": 1, "v": 1}], "mdAvailability": "N"}',
            200,
            ib.NO_PERMISSION,
            id="not-subscribed",
        ),
        pytest.param('{"session": "x", "iserver": {"authStatus": {"authenticated": true}}}', 200, ib.DATA, id="tickle"),
        pytest.param('{"foo": 1}', 200, ib.UNKNOWN, id="unknown-shape"),
        pytest.param('{"error": "something odd"}', 400, ib.UNKNOWN, id="unknown-400"),
    ],
)
def test_shapes_without_recordings_are_classified(text, status, kind):
    assert ib.classify(text, status).kind == kind


def test_a_company_name_is_not_read_as_an_error_and_a_5xx_is_retried_whatever_it_names():
    """A history answer's ``text`` is the company's name: one reading "Unavailable Data Permissions
    Inc" is still data; a 500 naming a conid is the server's failure (retried), not an unknown contract."""
    answer = doc("ibkr_history_AAPL_1d_2020-08-31_2020-11-06_from_av.json")
    answer["text"] = "UNAVAILABLE DATA PERMISSIONS INC"
    assert ib.classify(json.dumps(answer), 200).kind == ib.DATA
    assert ib.classify('{"error": "conid 265598: internal error"}', 500).kind == ib.SERVER
    assert ib.classify('{"error": "No security definition has been found for the request"}', 400).kind == ib.UNKNOWN_CONTRACT


def test_the_unknown_names_the_keys():
    c = ib.classify('{"foo": 1, "bar": 2}', 200)
    assert c.kind == ib.UNKNOWN and "bar" in c.message and "foo" in c.message


def test_search_picks_the_stock_on_its_primary_or_named_exchange():
    answer = doc("ibkr_secdef_search_AAPL_docs.json")
    assert ib.parse_search(answer, "AAPL") == 265598
    assert ib.parse_search(answer, "aapl", "NASDAQ") == 265598
    assert ib.parse_search(answer, "AAPL", "MEXI") == 38708077
    # a foreign listing IB happens to answer first is not taken for the US one
    foreign_first = [e for e in answer if e.get("description") != "NASDAQ"] + [
        e for e in answer if e.get("description") == "NASDAQ"
    ]
    assert ib.parse_search(foreign_first, "AAPL", ib.US_EXCHANGES) == 265598
    assert ib.parse_search(foreign_first, "AAPL") != 265598


def test_search_refuses_naming_the_symbol():
    answer = doc("ibkr_secdef_search_AAPL_docs.json")
    with pytest.raises(ValueError, match="'AAPL' on LSE"):
        ib.parse_search(answer, "AAPL", "LSE")
    with pytest.raises(ValueError, match="'MSFT'"):
        ib.parse_search(answer, "MSFT")
    with pytest.raises(ValueError, match="'ZZZ'"):
        ib.parse_search([], "ZZZ")
    options_only = [{"conid": "1", "symbol": "XYZ", "description": "CBOE", "sections": [{"secType": "OPT"}]}]
    with pytest.raises(ValueError, match="'XYZ'"):
        ib.parse_search(options_only, "XYZ")


def test_search_reads_numeric_conids_and_the_header_exchange():
    answer = [{"conid": 265598, "companyHeader": "Apple Inc - NASDAQ", "symbol": "AAPL", "secType": "STK", "sections": []}]
    assert ib.parse_search(answer, "AAPL", "NASDAQ") == 265598


def test_daily_bars_are_dated_by_their_session_and_volumes_are_shares():
    table = ib.history_to_bars(
        doc("ibkr_history_AAPL_1d_2020-08-31_2020-11-06_from_av.json"),
        symbol="AAPL",
        interval="1d",
        ingested_at=INGESTED,
        source="ibkr",
        currency="USD",
    )
    assert table.schema == BAR_SCHEMA
    rows = table.to_pylist()
    assert len(rows) == 49
    first, last = rows[0], rows[-1]
    assert first["time"] == datetime(2020, 8, 31, tzinfo=UTC)  # t = 13:30 UTC (09:30 EDT)
    assert last["time"] == datetime(2020, 11, 6, tzinfo=UTC)  # t = 14:30 UTC (09:30 EST)
    # Alpha Vantage's recorded as-traded 2020-08-31 bar: 127.58 / 131.00 / 126.00 / 129.04, 223,505,733 shares
    assert (first["open"], first["high"], first["low"], first["close"]) == (127.58, 131.0, 126.0, 129.04)
    assert first["volume"] == pytest.approx(223_505_733, abs=1)
    assert first["source"] == "ibkr" and first["symbol"] == "AAPL" and first["interval"] == "1d"
    assert first["currency"] == "USD" and first["ingested_at"] == INGESTED
    assert [r["time"].date() for r in rows] == sorted({r["time"].date() for r in rows})
    assert all(r["time"].weekday() < 5 for r in rows)


def test_minute_bars_keep_their_open_in_utc():
    table = ib.history_to_bars(
        doc("ibkr_history_AAPL_1min_2024-10-02_from_yahoo.json"),
        symbol="AAPL",
        interval="1m",
        ingested_at=INGESTED,
    )
    rows = table.to_pylist()
    assert len(rows) == 389
    assert rows[0]["time"] == datetime(2024, 10, 2, 13, 30, tzinfo=UTC)
    assert rows[-1]["time"] == datetime(2024, 10, 2, 19, 59, tzinfo=UTC)
    assert rows[0]["open"] == 225.89 and rows[0]["volume"] == pytest.approx(1_205_461, abs=1)  # Yahoo's first minute


def test_the_genuine_monthly_answer_is_dated_the_first_of_its_month():
    """ibind's recorded answer: t = 2023-11-01 00:00 UTC, which in New York is still October 31."""
    rows = ib.history_to_bars(
        doc("ibkr_history_AAPL_1m_2023-11_ibind.json"), symbol="AAPL", interval="1mo", ingested_at=INGESTED
    ).to_pylist()
    assert [r["time"] for r in rows] == [datetime(2023, 11, 1, tzinfo=UTC)]
    assert rows[0]["close"] == 189.37 and rows[0]["volume"] == pytest.approx(694_299_804)


def test_an_empty_history_gives_no_rows():
    assert ib.history_to_bars({"data": []}, symbol="AAPL", interval="1d", ingested_at=INGESTED).num_rows == 0


def test_volume_lot_one_for_units():
    rows = ib.history_to_bars(
        {"data": [{"t": 1727875800000, "o": 1, "h": 2, "l": 0.5, "c": 1.5, "v": 3.5}]},
        symbol="EUR.USD",
        interval="1m",
        ingested_at=INGESTED,
        volume_lot=1,
    ).to_pylist()
    assert rows[0]["volume"] == 3.5


def test_bar_open_uses_the_exchange_date():
    t = int(datetime(2024, 3, 4, 8, 0, tzinfo=UTC).timestamp() * 1000)  # 09:00 Berlin
    assert ib.bar_open(t, "1d", "Europe/Berlin") == datetime(2024, 3, 4, tzinfo=UTC)
    late = int(datetime(2024, 3, 5, 0, 30, tzinfo=UTC).timestamp() * 1000)  # 19:30 New York, March 4
    assert ib.bar_open(late, "1d").date() == date(2024, 3, 4)


def test_weeks_and_months_land_on_the_canonical_grid_whatever_session_ib_stamps():
    """A week whose Monday is a holiday (2024-01-15, MLK day) opens Tuesday 09:30 New York: its bar is
    Monday's; the recorded monthly bar (t 00:00 UTC of 2023-11-01) stays on the 1st, and so does a month
    stamped at its first session (2024-09-03, after Labor Day)."""
    tuesday = int(datetime(2024, 1, 16, 14, 30, tzinfo=UTC).timestamp() * 1000)
    assert ib.bar_open(tuesday, "1wk") == datetime(2024, 1, 15, tzinfo=UTC)
    assert ib.bar_open(1698796800000, "1mo") == datetime(2023, 11, 1, tzinfo=UTC)
    first_session = int(datetime(2024, 9, 3, 13, 30, tzinfo=UTC).timestamp() * 1000)
    assert ib.bar_open(first_session, "1mo") == datetime(2024, 9, 1, tzinfo=UTC)
