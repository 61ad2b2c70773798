"""A source's configured name is its identity in every sink, whatever its kind.

Seen on main: a second source of kind ``yahoo`` (``yahoo_ext``, the natural way to keep extended
hours for some symbols) wrote ``source='yahoo'`` into its rows, so the ``yahoo`` TSLA 30m series
in PostgreSQL went from 13 bars to 30 while the lake path and the ledger said ``yahoo_ext``. Alpha
Vantage's hook did the same. Here a second source of each kind (``yahoo_ext``, ``alpha_vantage_2``,
``binance_2``) loads the same recorded window as the first, through the same tasks as a DAG run,
and each keeps its own series in the warehouse, the lake, Kinesis and the ledger.
"""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest

from standin.server import StandIn
from tests.conftest import RECORDINGS, serving
from tests.faults.support import context, run_tasks

pytestmark = pytest.mark.integration
UTC = timezone.utc

#: source -> (its twin, interval, symbols, window): recorded windows of each kind.
CASES = {
    "yahoo": ("yahoo_ext", "1d", ["MSFT", "NVDA", "TSLA"], datetime(2021, 7, 19, tzinfo=UTC), datetime(2021, 7, 24, tzinfo=UTC)),
    "alpha_vantage": ("alpha_vantage_2", "1d", ["IBM"], datetime(2023, 11, 6, tzinfo=UTC), datetime(2023, 11, 11, tzinfo=UTC)),
    "binance": (
        "binance_2",
        "1m",
        ["BTC/USDT"],
        datetime(2021, 10, 22, 23, 3, tzinfo=UTC),
        datetime(2021, 10, 22, 23, 13, tzinfo=UTC),
    ),
}


def _run(source: str, interval: str, symbols: list[str], start: datetime, end: datetime) -> dict:
    """A run of ``symbols`` over ``[start, end)`` up to its sinks (:func:`tests.faults.support.run_tasks`)."""
    ctx = context(
        f"manual__identity_{source}", {"symbols": symbols, "start": start.isoformat(), "end": end.isoformat()}, start, end
    )
    return run_tasks(ctx, source, interval, kinesis=True)


def _utc(iso: str) -> datetime:
    return datetime.fromisoformat(iso.replace("Z", "+00:00"))


def _stored(services, source: str, interval: str, symbols: list[str], start: datetime, end: datetime) -> list[tuple]:
    """The stored bars of ``symbols`` (other tests of the session share the warehouse: Alpha
    Vantage's AAPL of the same week is loaded by the DAG tests)."""
    with psycopg.connect(services.pg_conninfo()) as conn:
        return conn.execute(
            "SELECT symbol, time, close FROM market.bars WHERE source = %s AND interval = %s AND symbol = ANY(%s) "
            "AND time >= %s AND time < %s ORDER BY symbol, time",
            (source, interval, symbols, start, end),
        ).fetchall()


def test_two_sources_of_each_kind_keep_separate_series_in_every_sink(services, pipeline_config, monkeypatch):
    from demo.services import lake_tables, read_stream

    def twins(raw: dict) -> None:
        for source, (twin, *_) in CASES.items():
            raw["sources"][twin] = {k: v for k, v in raw["sources"][source].items() if k != "quotes"}

    pipeline_config(twins)
    firsts = {}
    with serving(StandIn(RECORDINGS), monkeypatch):
        for source, (twin, interval, symbols, start, end) in CASES.items():
            _run(source, interval, symbols, start, end)
            firsts[source] = _stored(services, source, interval, symbols, start, end)
            assert firsts[source], f"{source}: the recorded window loaded nothing"
            _run(twin, interval, symbols, start, end)

    records = read_stream(services, "market-bars")
    with psycopg.connect(services.pg_conninfo()) as conn:
        ledger = dict(
            conn.execute(
                "SELECT run_id, array_agg(DISTINCT source) FROM market.coverage WHERE run_id LIKE 'manual__identity_%' GROUP BY run_id"
            )
        )
    for source, (twin, interval, symbols, start, end) in CASES.items():
        # the first source's series is as its own run left it; the twin holds the same bars under its name
        assert _stored(services, source, interval, symbols, start, end) == firsts[source]
        assert _stored(services, twin, interval, symbols, start, end) == firsts[source]
        lake_sources = {
            s
            for _, table in lake_tables(
                services, "market-lake", f"bars/bars/source={twin}/interval={interval}/", columns=["source"]
            )
            for s in table["source"].to_pylist()
        }
        assert lake_sources == {twin}
        on_stream = {
            (r["symbol"], r["time"])
            for r in records
            if r["source"] == twin and r["interval"] == interval and start <= _utc(r["time"]) < end
        }
        assert len(on_stream) == len(firsts[source])
        assert ledger[f"manual__identity_{twin}"] == [twin]
