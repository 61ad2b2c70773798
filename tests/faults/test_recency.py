"""Newest extraction wins in the warehouse, whatever order concurrent loads commit in.

Two loads of the same ~3,300 keys (TSLA's recorded daily bars, 2010-2023): an older extraction
and a newer one (a restatement, every close 1% higher). A third transaction holds the rows locked
while both loads start, so the first load to queue commits first; both orders are run.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import psycopg
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from market_ingest.hooks.timescale import TimescaleHook
from market_ingest.hooks.yahoo import Window, YahooFinanceHook

pytestmark = pytest.mark.integration
UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def tsla():
    hook = YahooFinanceHook()
    table, _ = hook.fetch_bars(["TSLA"], "1d", Window(datetime(2010, 6, 29, tzinfo=UTC), datetime(2023, 8, 11, tzinfo=UTC)), T0)
    assert table.num_rows > 3000
    return table.set_column(table.schema.get_field_index("source"), "source", pa.array(["recency-test"] * table.num_rows))


def _version(table: pa.Table, ingested_at: datetime, factor: float) -> pa.Table:
    i = table.schema.get_field_index("close")
    table = table.set_column(i, table.schema.field(i), pc.multiply(table["close"], factor))
    i = table.schema.get_field_index("ingested_at")
    return table.set_column(i, table.schema.field(i), pa.array([ingested_at] * table.num_rows, pa.timestamp("us", tz="UTC")))


def _waiting(services, n: int, timeout: float = 30) -> None:
    """Until ``n`` sessions wait on a lock."""
    end = time.monotonic() + timeout
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        while conn.execute("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'").fetchone()[0] < n:
            assert time.monotonic() < end, f"fewer than {n} loads waiting on the held rows"
            time.sleep(0.05)


@pytest.mark.parametrize("first", ["newer", "older"], ids=["newer-commits-first", "older-commits-first"])
def test_two_concurrent_loads_end_with_the_newest_extraction(services, tsla, first):
    hook = TimescaleHook()
    hook.migrate()
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'recency-test'")
    hook.load_bars(_version(tsla, T0 - timedelta(days=1), 0.5))  # what was stored before both
    older, newer = _version(tsla, T0, 1.0), _version(tsla, T0 + timedelta(hours=1), 1.01)
    order = [newer, older] if first == "newer" else [older, newer]

    results, errors = {}, []

    def load(name, table):
        try:
            results[name] = TimescaleHook().upsert(table.to_batches(), "bars")
        except Exception as exc:
            errors.append(exc)

    with psycopg.connect(services.pg_conninfo()) as holder:
        holder.execute("SELECT 1 FROM market.bars_1d WHERE source = 'recency-test' FOR UPDATE")
        threads = []
        for n, table in enumerate(order, start=1):
            threads.append(threading.Thread(target=load, args=(n, table)))
            threads[-1].start()
            _waiting(services, n)  # the n-th load is queued behind the held rows
        holder.commit()
    for t in threads:
        t.join(120)
    assert not errors

    with psycopg.connect(services.pg_conninfo()) as conn:
        stored = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE b.ingested_at = %s), min(b.close / ref.close), max(b.close / ref.close) "
            "FROM market.bars b JOIN (SELECT unnest(%s::timestamptz[]) AS time, unnest(%s::float8[]) AS close) ref USING (time) "
            "WHERE b.source = 'recency-test'",
            (T0 + timedelta(hours=1), tsla["time"].to_pylist(), tsla["close"].to_pylist()),
        ).fetchone()
    assert stored[0] == stored[1] == tsla.num_rows  # every key holds the newer extraction
    assert stored[2] == pytest.approx(1.01) and stored[3] == pytest.approx(1.01)
    applied = {("newer" if t is newer else "older"): results[n]["applied"] for n, t in enumerate(order, start=1)}
    assert applied == {"newer": tsla.num_rows, "older": 0 if first == "newer" else tsla.num_rows}


def test_rerunning_an_old_runs_load_keeps_the_newer_rows(services, tsla):
    hook = TimescaleHook()
    hook.migrate()
    hook.load_bars(_version(tsla, T0 + timedelta(days=2), 1.02))
    stats = hook.upsert(_version(tsla, T0, 1.0).to_batches(), "bars")  # an old run's load task, cleared and re-run
    assert stats == {"rows": tsla.num_rows, "applied": 0, "skipped": tsla.num_rows, "copied": 0}
    with psycopg.connect(services.pg_conninfo()) as conn:
        assert conn.execute("SELECT min(ingested_at) FROM market.bars WHERE source = 'recency-test'").fetchone()[
            0
        ] == T0 + timedelta(days=2)


def test_two_overlapping_loads_with_anomaly_flags_both_succeed(services, tmp_path, monkeypatch):
    """Seen on main: two loads of one window at once (a cleared load beside its retry, a repair
    beside the forward run) failed with ``UniqueViolation`` on ``bar_flags_pkey``: each deleted
    the span's flags and inserted the same ones, because flags were written before the ledger's
    lock. Here MSFT's recorded daily bars hold one bar made 100x (flagged on each load); the bars
    are loaded once, then the same load runs twice at once, held at ``market.bar_flags`` until
    both are waiting. Both succeed, and the span holds each flag once."""
    from market_ingest.operators.extract import MarketExtractOperator
    from market_ingest.operators.lake import LakePublishOperator
    from market_ingest.operators.plan import MarketPlanOperator
    from market_ingest.operators.warehouse import TimescaleLoadOperator
    from standin.server import StandIn
    from tests.conftest import built, serving
    from tests.faults.support import context, derived_yahoo_library

    start, end = datetime(2021, 6, 1, tzinfo=UTC), datetime(2021, 8, 1, tzinfo=UTC)
    recorded, _ = YahooFinanceHook().fetch_bars(
        ["MSFT"], "1d", Window(datetime(2021, 7, 21, tzinfo=UTC), datetime(2021, 7, 22, tzinfo=UTC)), T0
    )
    (bar,) = recorded.to_pylist()
    library = derived_yahoo_library(
        tmp_path, {"yahoo_chart_MSFT_1d_2021": [("2021-07-21", f, bar[f] * 100) for f in ("open", "high", "low", "close")]}
    )
    ctx = context(
        "manual__overlapping_loads", {"symbols": ["MSFT"], "start": start.isoformat(), "end": end.isoformat()}, start, end
    )
    with serving(StandIn(library), monkeypatch):
        plan = built(MarketPlanOperator, "plan").execute(ctx)
        extracts = [built(MarketExtractOperator, "extract", batch=b).execute(ctx) for b in plan]
    lake = built(LakePublishOperator, "publish_lake", extracts=extracts).execute(ctx)

    def load() -> dict:
        return built(TimescaleLoadOperator, "load_timescale", lake=lake, plan=plan, extracts=extracts).execute(ctx)

    assert load()["flags"] == {"return_outlier": 1, "unit_100x": 2}
    results, errors = [], []

    def again() -> None:
        try:
            results.append(load())
        except Exception as exc:
            errors.append(exc)

    with psycopg.connect(services.pg_conninfo()) as holder:
        holder.execute("LOCK TABLE market.bar_flags IN SHARE MODE")  # every load's flag step waits here
        threads = [threading.Thread(target=again) for _ in range(2)]
        for n, t in enumerate(threads, start=1):
            t.start()
            _waiting(services, n)
        holder.commit()
    for t in threads:
        t.join(120)
    assert not errors, errors
    assert [r["flags"] for r in results] == [{"return_outlier": 1, "unit_100x": 2}] * 2
    with psycopg.connect(services.pg_conninfo()) as conn:
        flags = conn.execute(
            "SELECT time::date::text, flag, count(*) FROM market.bar_flags WHERE source = 'yahoo' AND interval = '1d' "
            "AND symbol = 'MSFT' AND time >= %s AND time < %s GROUP BY 1, 2 ORDER BY 1, 2",
            (start, end),
        ).fetchall()
    assert flags == [("2021-07-21", "return_outlier", 1), ("2021-07-21", "unit_100x", 1), ("2021-07-22", "unit_100x", 1)]
