"""Benchmark: the cross-source reconciliation of a long backfill, and reads of the consensus view.

``.venv/bin/python bench/reconcile.py [--warehouse timescaledb] [--symbols 280] [--years 5] [--sources 3]``

``--symbols`` instruments (``I000``..), each served by ``--sources`` sources (``src_a``, ``src_b``,
...) with daily bars on every XNYS session of ``--years`` years to 2025-12-31. The first source's
closes follow a random walk; every other source's are the same within +-5 bps, except one bar in a
thousand moved by 50 bps (a disagreement at the default 25 bps tolerance). Volumes differ by up
to 3%. Each source's bars are loaded by the product's load (``TimescaleHook.upsert``); then, all in
one process on one machine:

1. **reconcile, first run**: the last source's whole window against the others
   (``market_ingest.reconcile.reconcile``: what its backfill's ``reconcile`` task does), into an
   empty ``market.cross_source_checks``;
2. **reconcile, rerun**: the same again (``--repeat`` times; the disagreements deleted and written
   again);
3. **consensus reads** (``market.bars_consensus``): one instrument over one year, and every
   instrument on one day; medians of ``--repeat``.

Prints seconds, bar pairs per second, the disagreements found against those planted, and each
against the load of one source's bars; appends them with the command line to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)


def make_sources(symbols: int, years: int, sources: int):
    """``(tables, first session, planted)``: one bar table per source, and the number of bars
    planted 50 bps apart in the last source."""
    import exchange_calendars as xcals
    import numpy as np
    import pyarrow as pa

    from market_ingest.schema import conform

    sessions = xcals.get_calendar("XNYS").sessions_in_range(f"{2026 - years}-01-01", "2025-12-31")
    days = pa.array(sessions.tz_localize("UTC").to_pydatetime(), pa.timestamp("us", tz="UTC"))
    per = len(days)
    n = symbols * per
    rng = np.random.default_rng(11)
    base = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    volume = rng.integers(1_000_000, 50_000_000, n).astype("float64")
    tables, planted = [], 0
    for k in range(sources):
        close = base if k == 0 else base * (1 + rng.uniform(-5e-4, 5e-4, n))
        if k == sources - 1 and k > 0:
            moved = rng.random(n) < 0.001
            planted = int(moved.sum())
            close = np.where(moved, base * 1.005, close)
        table = pa.table(
            {
                "time": pa.concat_arrays([days] * symbols),
                "source": pa.array([f"src_{chr(97 + k)}"] * n),
                "symbol": pa.array([f"I{s:03d}" for s in range(symbols) for _ in range(per)]),
                "interval": pa.array(["1d"] * n),
                "open": close,
                "high": close * 1.01,
                "low": close * 0.99,
                "close": close,
                "volume": volume * (1 + rng.uniform(0, 0.03, n)),
                "currency": pa.array(["USD"] * n),
                "ingested_at": pa.array([INGESTED] * n, pa.timestamp("us", tz="UTC")),
                "price_basis": pa.array(["as_traded"] * n),
            }
        )
        tables.append(conform(table))
    return tables, sessions[0].to_pydatetime().replace(tzinfo=UTC), planted


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", choices=("postgres", "timescaledb"), default="postgres")
    parser.add_argument("--symbols", type=int, default=280)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--sources", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    from demo.services import unwind_on_signals

    unwind_on_signals()  # a killed benchmark stops the servers it started

    import json
    import os

    import psycopg

    from demo.services import warehouse_server
    from market_ingest.config import ReconciliationConfig
    from market_ingest.hooks.timescale import TimescaleHook, apply_migrations
    from market_ingest.intervals import Window
    from market_ingest.reconcile import reconcile

    tables, first, planted = make_sources(args.symbols, args.years, args.sources)
    names = [t["source"][0].as_py() for t in tables]
    instruments = {f"I{s:03d}": {name: f"I{s:03d}" for name in names} for s in range(args.symbols)}
    window = Window(first, datetime(2026, 1, 1, tzinfo=UTC))
    cfg = ReconciliationConfig()
    with tempfile.TemporaryDirectory() as tmp, warehouse_server(args.warehouse, Path(tmp) / "pg") as sock:
        conninfo = f"host={sock} port=5432 user=postgres dbname=postgres"
        if args.warehouse == "timescaledb":
            with psycopg.connect(conninfo, autocommit=True) as conn:
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        with psycopg.connect(conninfo) as conn:
            apply_migrations(conn)
        os.environ["AIRFLOW_CONN_MARKET_TIMESCALE"] = json.dumps(
            {"conn_type": "postgres", "host": sock, "port": 5432, "login": "postgres", "schema": "postgres"}
        )
        hook = TimescaleHook()
        loads = []
        for table in tables:
            t0 = time.perf_counter()
            hook.upsert(table.to_batches(max_chunksize=65_536), "bars")
            loads.append(time.perf_counter() - t0)
        with psycopg.connect(conninfo, autocommit=True) as conn:
            conn.execute("ANALYZE market.bars_1d")
        load_s = statistics.median(loads)

        def run():
            t0 = time.perf_counter()
            result = reconcile(
                hook, source=names[-1], interval="1d", window=window, instruments=instruments, cfg=cfg, run_id="bench"
            )
            return time.perf_counter() - t0, result

        first_s, result = run()
        reruns = [run()[0] for _ in range(args.repeat)]

        def read(sql: str, params: tuple) -> tuple[float, int]:
            with psycopg.connect(conninfo) as conn:
                t0 = time.perf_counter()
                rows = conn.execute(sql, params).fetchall()
                return time.perf_counter() - t0, len(rows)

        one_year = (
            "SELECT * FROM market.bars_consensus WHERE instrument = %s AND interval = '1d' AND time >= %s AND time < %s",
            ("I007", datetime(2025, 1, 1, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)),
        )
        one_day = (
            "SELECT * FROM market.bars_consensus WHERE interval = '1d' AND time = %s",
            (datetime(2025, 6, 16, tzinfo=UTC),),
        )
        year_reads = [read(*one_year) for _ in range(args.repeat)]
        day_reads = [read(*one_day) for _ in range(args.repeat)]
    rerun_s = statistics.median(reruns)
    bars = tables[0].num_rows
    lines = [
        f"- {args.warehouse}: {args.symbols} instruments x {args.sources} sources x {args.years} years of 1d bars = "
        f"{bars:,} bars per source (load of one source: median {load_s:.1f} s, {bars / load_s:,.0f} bars/s)",
        f"- reconcile, first run: {result['bars']:,} bar pairs over {result['pairs']} instrument/source pairs in "
        f"{first_s:.1f} s ({result['bars'] / first_s:,.0f} pairs/s, {first_s / load_s:.2f}x the load); "
        f"{result['disagreements']} disagreements ({result['by_reason']}) of {planted} planted x {args.sources - 1} pairs",
        f"- reconcile, rerun: median {rerun_s:.1f} s of {args.repeat} ({result['bars'] / rerun_s:,.0f} pairs/s, "
        f"{rerun_s / load_s:.2f}x the load)",
        f"- consensus, one instrument over one year: median {statistics.median(s for s, _ in year_reads) * 1000:.0f} ms "
        f"({year_reads[0][1]} bars); every instrument on one day: median "
        f"{statistics.median(s for s, _ in day_reads) * 1000:.0f} ms ({day_reads[0][1]} bars)",
    ]
    print("\n".join(lines))
    from bench.results import record

    record(lines, "reconcile")
    return 0


if __name__ == "__main__":
    sys.exit(main())
