"""A run for a window in which a symbol's market has no session asks the vendor nothing for it."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowFailException

from market_ingest import outcomes
from market_ingest.operators.extract import MarketExtractOperator
from tests.conftest import built
from tests.faults.support import context

pytestmark = pytest.mark.integration


def _asked(vendors, since: int) -> list[str]:
    """Symbols of the Yahoo chart requests the stand-in served after the ``since``-th request."""
    return [r["path"].rsplit("/", 1)[-1] for r in vendors.standin.log[since:] if "/finance/chart/" in r["path"]]


def test_a_weekend_asks_yahoo_only_for_what_trades_on_weekends(services, vendors):
    """Daily bars of Saturday 2020-01-04: AAPL (XNYS) and OCDO.L (XLON) are ``no_data`` without a
    request; BTC-USD trades around the clock and is asked (Yahoo's recorded answer ends on the 3rd)."""
    batch = {
        "batch": 0,
        "symbols": ["AAPL", "OCDO.L", "BTC-USD"],
        "start": "2020-01-04T00:00:00+00:00",
        "end": "2020-01-05T00:00:00+00:00",
        "since": {},
    }
    before = len(vendors.standin.log)
    result = built(MarketExtractOperator, "extract", "yahoo", "1d", batch=batch).execute(context("manual__weekend"))
    by_symbol = {o["symbol"]: o for o in result["outcomes"]}
    assert [o["symbol"] for o in result["outcomes"]] == batch["symbols"]
    assert by_symbol["AAPL"]["status"] == by_symbol["OCDO.L"]["status"] == outcomes.NO_DATA
    assert by_symbol["AAPL"]["reason"] == "no XNYS session in the window (weekend or holiday): the vendor was not asked"
    assert by_symbol["OCDO.L"]["reason"].startswith("no XLON session in the window")
    assert "not asked" not in by_symbol["BTC-USD"]["reason"]
    assert set(_asked(vendors, before)) == {"BTC-USD"}
    assert result["rows"] == 0


def test_a_session_day_is_asked_and_loads_its_bars(services, vendors):
    """Wednesday 2024-10-02: AAPL is asked and its recorded 1m session is kept (389 of 390 minutes:
    Yahoo sent one with a null close)."""
    batch = {
        "batch": 0,
        "symbols": ["AAPL"],
        "start": "2024-10-02T00:00:00+00:00",
        "end": "2024-10-03T00:00:00+00:00",
        "since": {},
    }
    before = len(vendors.standin.log)
    result = built(MarketExtractOperator, "extract", "yahoo", "1m", batch=batch).execute(context("manual__session"))
    assert result["outcomes"][0]["status"] == outcomes.OK and result["rows"] == 389
    assert _asked(vendors, before) and set(_asked(vendors, before)) == {"AAPL"}


def test_a_market_no_calendar_knows_fails_the_task_naming_the_setting(services, vendors):
    """A permanent configuration error: the task fails at once (no retry), naming the setting."""
    from dataclasses import replace

    from market_ingest.config import load_config
    from market_ingest.dag_factory import task_arguments

    series = task_arguments(load_config(), "yahoo", "1m")["extract"]["series"]
    series = replace(series, source_config=series.source_config | {"market": "XXXX"})
    batch = {
        "batch": 0,
        "symbols": ["AAPL"],
        "start": "2025-02-01T00:00:00+00:00",
        "end": "2025-02-02T00:00:00+00:00",
        "since": {},
    }
    task = built(MarketExtractOperator, "extract", "yahoo", "1m", batch=batch, series=series)
    with pytest.raises(
        AirflowFailException, match=r"market 'XXXX' is not an exchange_calendars calendar .*sources\.yahoo\.market"
    ):
        task.execute(context("manual__badmarket"))
