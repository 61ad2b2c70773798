"""The extract step's loop over symbols (:func:`market_ingest.extract.each_symbol`), one after
another and several at once (``symbols_in_flight``)."""

from __future__ import annotations

import threading
import time

import pytest

from market_ingest import outcomes
from market_ingest.errors import QuotaExhaustedError, RateLimitedError, UnknownSymbolError
from market_ingest.extract import each_symbol

SYMBOLS = [f"S{i:02d}" for i in range(12)]


class Vendor:
    """``fetch_one`` for :func:`each_symbol`: answers later symbols sooner (so threads finish out of
    order), remembers how many symbols were in flight at once, and fails the symbols it is told to."""

    def __init__(self, fails: dict[str, Exception] | None = None) -> None:
        self.fails = fails or {}
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.asked: list[str] = []

    def __call__(self, symbol: str):
        with self.lock:
            self.asked.append(symbol)
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(0.05 * (1 - SYMBOLS.index(symbol) / len(SYMBOLS)))
            if symbol in self.fails:
                raise self.fails[symbol]
            return outcomes.SymbolOutcome(symbol, outcomes.OK, rows=1), symbol
        finally:
            with self.lock:
                self.in_flight -= 1


@pytest.mark.parametrize("concurrency", [1, 4])
def test_outcomes_come_in_the_order_asked_with_each_symbols_own_failure(concurrency):
    vendor = Vendor({"S03": UnknownSymbolError("yahoo", "HTTP 404", "S03"), "S07": ValueError("naive index")})
    payloads, results = each_symbol("yahoo", SYMBOLS, vendor, concurrency=concurrency)
    assert [o.symbol for o in results] == SYMBOLS
    assert {o.symbol: o.status for o in results if o.status != outcomes.OK} == {"S03": "unknown_symbol", "S07": "failed"}
    assert results[7].reason == "ValueError: naive index"
    assert payloads == [s for s in SYMBOLS if s not in ("S03", "S07")]
    assert vendor.most_in_flight == concurrency


def test_a_task_wide_error_in_a_thread_fails_the_task_and_starts_no_further_symbol():
    vendor = Vendor({"S02": RateLimitedError("yahoo", "429 Too Many Requests", "S02")})
    with pytest.raises(RateLimitedError, match="S02"):
        each_symbol("yahoo", SYMBOLS, vendor, concurrency=4)
    assert len(vendor.asked) < len(SYMBOLS) and vendor.in_flight == 0  # those in flight answered first


@pytest.mark.parametrize("concurrency", [1, 4])
def test_a_spent_quota_defers_every_symbol_not_yet_asked(concurrency):
    vendor = Vendor({"S05": QuotaExhaustedError("alpha_vantage", "daily quota spent", "S05")})
    _, results = each_symbol("alpha_vantage", SYMBOLS, vendor, concurrency=concurrency)
    deferred = [o.symbol for o in results if o.status == outcomes.DEFERRED]
    assert deferred[0] == "S05" and deferred == [s for s in SYMBOLS if s not in vendor.asked or s == "S05"]
    assert all(o.reason == "daily quota spent" for o in results if o.status == outcomes.DEFERRED)
    if concurrency == 1:
        assert deferred == SYMBOLS[5:] and vendor.asked == SYMBOLS[:6]
