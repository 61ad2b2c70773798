"""How the ledger reads a run's outcomes (:mod:`market_ingest.coverage`), beyond what the
integration tests load: the states of symbols that brought no bar."""

from __future__ import annotations

from datetime import datetime, timezone

from market_ingest import coverage, outcomes
from market_ingest.contracts import read_plan

UTC = timezone.utc
PLAN = [
    {
        "batch": 0,
        "symbols": ["AAPL", "IBM"],
        "start": "2024-10-02T00:00:00+00:00",
        "end": "2024-10-03T00:00:00+00:00",
        "since": {"IBM": "2024-09-30T00:00:00+00:00"},
    },
    {"batch": 1, "symbols": ["OCDO.L"], "start": "2024-10-02T00:00:00+00:00", "end": "2024-10-03T00:00:00+00:00", "since": {}},
]


def test_a_batch_whose_task_failed_leaves_its_symbols_failed_naming_the_task():
    extracts = [
        {
            "batch": 0,
            "outcomes": [
                {"symbol": "AAPL", "status": outcomes.OK, "dropped": {"open_bar": 1, "invalid: high_below_low": 2}},
                {"symbol": "IBM", "status": outcomes.DEFERRED, "reason": "daily quota spent"},
            ],
        },
        None,
    ]
    runs = coverage.asked(read_plan(PLAN), extracts, lambda s: "XLON" if s.endswith(".L") else "XNYS")
    by = {a.symbol: a for a in runs}
    assert [a.symbol for a in runs] == ["AAPL", "IBM", "OCDO.L"]
    assert by["AAPL"].invalid == {"invalid: high_below_low": 2}
    assert by["IBM"].start == datetime(2024, 9, 30, tzinfo=UTC)  # a deferred symbol's window reaches back
    assert (by["OCDO.L"].status, by["OCDO.L"].market) == (outcomes.FAILED, "XLON")
    assert coverage.state_of(by["OCDO.L"], 1, 0) == (coverage.FAILED, "task extract[1] did not succeed (see its log)")
    assert coverage.state_of(by["IBM"], 1, 0) == (coverage.DEFERRED, "daily quota spent")
    assert coverage.state_of(by["AAPL"], 1, 0)[0] == coverage.REJECTED


def test_bars_already_stored_make_a_day_complete_whatever_this_run_met():
    """A rerun that failed, or that the vendor answered empty, does not undo a complete day."""
    for status in (outcomes.FAILED, outcomes.NO_DATA, outcomes.UNKNOWN_SYMBOL, outcomes.DEFERRED):
        a = coverage.Asked("AAPL", "XNYS", datetime(2024, 10, 2, tzinfo=UTC), datetime(2024, 10, 3, tzinfo=UTC), status, "x")
        assert coverage.state_of(a, 390, 390) == (coverage.COMPLETE, "")
        assert coverage.state_of(a, 390, 0)[0] == {
            outcomes.FAILED: coverage.FAILED,
            outcomes.DEFERRED: coverage.DEFERRED,
        }.get(status, coverage.VENDOR_EMPTY)
