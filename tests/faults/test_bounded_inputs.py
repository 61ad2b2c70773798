"""Bounded inputs: symbols match their source's spelling in full, windows are clamped to what can
exist, and a manual run planning too many vendor requests is refused before any request."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException

from market_ingest.errors import ConfigurationError
from market_ingest.operators.plan import MarketPlanOperator
from market_ingest.run import select
from tests.conftest import built
from tests.faults.support import context

UTC = timezone.utc
NOW = datetime(2026, 11, 22, 12, tzinfo=UTC)
DAY = (datetime(2026, 11, 20, tzinfo=UTC), datetime(2026, 11, 21, tzinfo=UTC))


@pytest.mark.parametrize(
    ("kind", "symbol"),
    [
        pytest.param("yahoo", "A/../../v7/finance/quote", id="yahoo-path-traversal"),
        pytest.param("yahoo", "MSFT\n", id="yahoo-final-newline"),
        pytest.param("yahoo", "BTC/USDT", id="yahoo-no-slash"),
        pytest.param("ccxt", "BTC/USDT\n", id="ccxt-final-newline"),
        pytest.param("ccxt", "BTCUSDT", id="ccxt-needs-a-pair"),
        pytest.param("alpha_vantage", "IBM;DROP", id="av-punctuation"),
    ],
)
def test_a_symbol_must_match_its_source_spelling_in_full(kind, symbol):
    from market_ingest.run import SYMBOL_PATTERNS

    with pytest.raises(ConfigurationError, match="not valid"):
        select("src", [], *DAY, {"symbols": [symbol]}, symbol_pattern=SYMBOL_PATTERNS[kind], now=NOW)


@pytest.mark.parametrize(
    ("kind", "symbol"),
    [
        ("yahoo", "BRK-B"),
        ("yahoo", "BP.L"),
        ("yahoo", "EURUSD=X"),
        ("yahoo", "^GSPC"),
        ("ccxt", "BTC/USDT"),
        ("ccxt", "BTC/USDT:USDT"),
        ("ccxt", "BTC/USDT:USDT-250328"),
        ("alpha_vantage", "TSCO.LON"),
        ("alpha_vantage", "EUR/USD"),
    ],
)
def test_real_symbols_of_each_source_are_accepted(kind, symbol):
    from market_ingest.run import SYMBOL_PATTERNS

    assert select("src", [], *DAY, {"symbols": [symbol]}, symbol_pattern=SYMBOL_PATTERNS[kind], now=NOW).symbols == (symbol,)


def test_a_window_ending_in_the_future_is_clamped_to_now():
    sel = select("yahoo", ["MSFT"], *DAY, {"start": "2026-11-01", "end": "2100-01-01"}, now=NOW)
    assert sel.end == NOW and "clamped to now" in sel.clamped[0]
    far = select("yahoo", ["MSFT"], *DAY, {"start": "2026-11-01", "end": "9999-12-31"}, now=NOW)  # OverflowError on main
    assert far.end == NOW


def test_a_window_is_clamped_to_the_intervals_start_date_and_refused_wholly_before_it():
    earliest = datetime(2000, 1, 1, tzinfo=UTC)
    sel = select("yahoo", ["MSFT"], *DAY, {"start": "0001-01-01", "end": "2000-02-01"}, earliest=earliest, now=NOW)
    assert sel.start == earliest
    with pytest.raises(ConfigurationError, match="ends before the interval's start date"):
        select("yahoo", ["MSFT"], *DAY, {"start": "1990-01-01", "end": "1990-02-01"}, earliest=earliest, now=NOW)
    with pytest.raises(ConfigurationError, match="starts after now"):
        select("yahoo", ["MSFT"], *DAY, {"start": "2100-01-01", "end": "2100-02-01"}, now=NOW)


def test_a_manual_run_over_the_request_cap_is_refused_by_the_plan_with_the_figures():
    """50 Binance symbols x 30 days of 1m candles: 44 requests of 1,000 candles each, 2,200 in all."""
    symbols = [f"C{i}/USDT" for i in range(50)]
    plan = built(MarketPlanOperator, "plan", "binance", "1m")
    params = {"symbols": symbols, "start": "2026-10-01T00:00:00Z", "end": "2026-10-31T00:00:00Z"}
    with pytest.raises(AirflowFailException) as refused:
        plan.execute(context("manual__cap", params, *DAY))
    assert "would make up to 2200 requests (50 symbols" in str(refused.value)
    assert "more than the 2000 allowed per manual run (sources.binance.max_requests_per_manual_run)" in str(refused.value)
    batches = plan.execute(context("manual__cap", {**params, "symbols": symbols[:45]}, *DAY))  # 1,980: allowed
    assert sum(len(b["symbols"]) for b in batches) == 45


def test_a_far_future_window_end_plans_what_exists():
    """On main: a window ending in 2100 planned 3,341 Yahoo requests per symbol; 9999-12-31 raised OverflowError."""
    plan = built(MarketPlanOperator, "plan", "yahoo", "1m")
    (batch,) = plan.execute(
        context("manual__far", {"symbols": ["AAPL"], "start": "2026-11-01T00:00:00Z", "end": "9999-12-31T00:00:00Z"}, *DAY)
    )
    assert datetime.fromisoformat(batch["end"]) <= datetime.now(UTC)


@pytest.mark.e2e
@pytest.mark.parametrize("symbol", ["A/../../v7/finance/quote", "MSFT\n"])
def test_the_params_form_refuses_bad_symbols_before_the_run_starts(services, airflow_db, symbol):
    from airflow.sdk.exceptions import ParamValidationError

    from tests.e2e.test_dag_run import _run

    with pytest.raises(ParamValidationError, match="symbols"):
        _run("market_yahoo_1d", datetime(2021, 7, 22, tzinfo=UTC), {"symbols": [symbol]})
