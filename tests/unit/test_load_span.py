"""Where a load's rows lie, declared before they are read (:class:`market_ingest.hooks.timescale.LoadSpan`):
from a run's plan (:func:`market_ingest.operators.warehouse.plan_span`), and checked against each batch."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa

from market_ingest.contracts import Batch
from market_ingest.hooks.timescale import LoadSpan
from market_ingest.hooks.yahoo import Window
from market_ingest.operators.warehouse import plan_span

UTC = timezone.utc
D = datetime(2026, 3, 2, tzinfo=UTC)
SERIES = ("source", "symbol", "interval")


def test_the_plan_gives_each_symbol_its_window_from_its_deferral_and_the_hull_of_its_batches():
    batches = [
        Batch(0, ("AAPL", "MSFT"), Window(D, D + timedelta(days=1)), {"MSFT": D - timedelta(days=3)}),
        Batch(1, ("AAPL",), Window(D + timedelta(days=5), D + timedelta(days=6))),  # a repair's other days
    ]
    span = plan_span("yahoo", "1d", batches)
    assert span is not None
    assert span.ranges == {
        ("yahoo", "AAPL", "1d"): (D, D + timedelta(days=6)),
        ("yahoo", "MSFT", "1d"): (D - timedelta(days=3), D + timedelta(days=1)),
    }
    assert span.bounds == (D - timedelta(days=3), D + timedelta(days=6))
    assert plan_span("yahoo", "1d", []) is None


def _bars(rows: list[tuple[str, datetime]]) -> pa.RecordBatch:
    return pa.RecordBatch.from_pydict(
        {
            "time": pa.array([t for _, t in rows], pa.timestamp("us", tz="UTC")),
            "source": ["yahoo"] * len(rows),
            "symbol": [s for s, _ in rows],
            "interval": ["1d"] * len(rows),
        }
    )


def test_a_batch_is_held_only_when_every_row_is_a_declared_series_inside_its_half_open_range():
    span = LoadSpan({("yahoo", "AAPL", "1d"): (D, D + timedelta(days=2))})
    assert span.holds(_bars([("AAPL", D), ("AAPL", D + timedelta(days=1))]), SERIES)
    assert not span.holds(_bars([("AAPL", D), ("AAPL", D + timedelta(days=2))]), SERIES)  # the end is outside
    assert not span.holds(_bars([("AAPL", D - timedelta(microseconds=1))]), SERIES)
    assert not span.holds(_bars([("AAPL", D), ("MSFT", D)]), SERIES)  # a series not declared


def test_a_tables_own_span_holds_each_of_its_batches():
    table = pa.Table.from_batches([_bars([("AAPL", D), ("MSFT", D + timedelta(days=4)), ("AAPL", D + timedelta(days=9))])])
    span = LoadSpan.of(table, SERIES)
    assert span.ranges[("yahoo", "AAPL", "1d")] == (D, D + timedelta(days=9, microseconds=1))
    assert all(span.holds(b, SERIES) for b in table.to_batches(max_chunksize=1))
