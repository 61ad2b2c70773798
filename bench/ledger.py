"""Benchmark: the coverage ledger and the anomaly checks of a long run, on TimescaleDB or PostgreSQL.

``.venv/bin/python bench/ledger.py [--warehouse timescaledb] [--symbols 280] [--years 5]``

A manual run or backfill of a daily source over years writes one ledger row per (symbol, UTC
day) in the same transaction as its bars (``coverage.record_run``, issue "Completeness you can
see"), then flags anomalies over the span with one window-function statement
(``anomalies.flag``). This measures both for ``--symbols`` XNYS symbols (``S000``..) over
``--years`` of daily bars ending 2025-12-31, the bars upserted first by the product's load
(``TimescaleHook.upsert``), all in one process on one machine:

1. **load**: the bars (weekday sessions of XNYS; holidays left out, so the ledger has
   ``missing``-free complete days and the calendar decides what is expected);
2. **ledger + flags, first run**: ``record_run`` over the whole window, into an empty ledger;
3. **ledger + flags, rerun**: the same again over the stored rows (a cleared run, a backfill
   with ``--reprocess-behavior completed``);
4. **flags alone**: ``anomalies.flag`` over the same spans (rolled back).

5. **floor**: one ledger row per stored bar written by a single ``INSERT ... SELECT`` from the
   bars, nothing computed (rolled back): what storing the ledger's rows costs by itself, against
   which the ledger's goal (issue 32 item 3: ledger and flags within 1.5x the load) can be read.

And the peak Python memory (``tracemalloc``) of one more rerun: the ledger rows a load holds and
hands to the lake's mirror.

``--actions``: each symbol also has corporate actions in ``market.corporate_actions`` (a 2:1
split every two years and a quarterly dividend over the window): the anomaly checks put every
split on one basis (a running product of the ratios), so this measures what they cost.

Each of 2..4 runs ``--repeat`` times in its own transaction, rolled back except the first run's
first try; the median is reported. Prints ledger rows, seconds and rows per second; appends
them with the command line to bench/RESULTS.md.
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


#: The floor (step 5): a ledger row per stored bar, its columns constants or the bar's own.
_FLOOR_SQL = """
INSERT INTO market.coverage (source, interval, symbol, day, covered_from, covered_until, expected, loaded, state, reason, run_id)
SELECT source, '1d', symbol, (time AT TIME ZONE 'UTC')::date, time, time + interval '1 day', 1, 1, 'complete', '', 'floor'
FROM market.bars_1d
"""


def make_bars(symbols: int, years: int):
    """Daily bars of ``symbols`` series on every XNYS session of ``years`` years to 2025-12-31."""
    import exchange_calendars as xcals
    import numpy as np
    import pyarrow as pa

    from market_ingest.schema import conform

    sessions = xcals.get_calendar("XNYS").sessions_in_range(f"{2026 - years}-01-01", "2025-12-31")
    days = pa.array(sessions.tz_localize("UTC").to_pydatetime(), pa.timestamp("us", tz="UTC"))
    n, per = symbols * len(days), len(days)
    rng = np.random.default_rng(7)
    price = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    table = pa.table(
        {
            "time": pa.concat_arrays([days] * symbols),
            "source": pa.array(["yahoo"] * n),
            "symbol": pa.array([f"S{s:03d}" for s in range(symbols) for _ in range(per)]),
            "interval": pa.array(["1d"] * n),
            "open": price,
            "high": price * 1.01,
            "low": price * 0.99,
            "close": price,
            "volume": rng.integers(1_000, 1_000_000, n).astype("float64"),
            "currency": pa.array(["USD"] * n),
            "ingested_at": pa.array([INGESTED] * n, pa.timestamp("us", tz="UTC")),
        }
    )
    return conform(table), sessions[0].to_pydatetime().replace(tzinfo=UTC)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", choices=("postgres", "timescaledb"), default="postgres")
    parser.add_argument("--symbols", type=int, default=280)
    parser.add_argument("--years", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--actions", action="store_true", help="splits and dividends for every symbol (see above)")
    args = parser.parse_args()
    from demo.services import unwind_on_signals

    unwind_on_signals()  # a killed benchmark stops the servers it started

    import json
    import os

    import psycopg

    from demo.services import warehouse_server
    from market_ingest import anomalies, coverage
    from market_ingest.config import load_config
    from market_ingest.contracts import read_plan
    from market_ingest.hooks.timescale import TimescaleHook, apply_migrations

    src = load_config().sources["yahoo"]
    settings = src
    bars, first = make_bars(args.symbols, args.years)
    end = datetime(2026, 1, 1, tzinfo=UTC)
    plan = [
        {"batch": 0, "symbols": [f"S{s:03d}" for s in range(args.symbols)], "start": first.isoformat(), "end": end.isoformat()}
    ]
    extracts = [{"batch": 0, "outcomes": [{"symbol": s, "status": "ok"} for s in plan[0]["symbols"]]}]
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
        t0 = time.perf_counter()
        TimescaleHook().upsert(bars.to_batches(max_chunksize=65_536), "bars")
        load_s = time.perf_counter() - t0
        actions = 0
        if args.actions:
            with psycopg.connect(conninfo) as conn:
                actions = conn.execute(
                    "INSERT INTO market.corporate_actions (source, symbol, ex_date, kind, ratio, amount, currency, first_seen, "
                    "extracted_at) SELECT 'yahoo', 'S' || lpad(s::text, 3, '0'), d::date, k, "
                    "CASE WHEN k = 'split' THEN 2.0 END, CASE WHEN k = 'dividend' THEN 0.25 END, 'USD', d, d "
                    "FROM generate_series(0, %s - 1) AS s, "
                    "LATERAL (SELECT d, 'dividend' AS k FROM generate_series(%s::timestamptz, %s, interval '3 months') AS d "
                    "UNION ALL SELECT d, 'split' FROM generate_series(%s::timestamptz, %s, interval '2 years') AS d) AS a",
                    (args.symbols, first, end, first, end),
                ).rowcount

        def timed(step, commit: bool = False) -> tuple[float, int]:
            with psycopg.connect(conninfo) as conn, conn.cursor() as cur:
                started = time.perf_counter()
                n = step(cur)
                seconds = time.perf_counter() - started
                conn.commit() if commit else conn.rollback()
            return seconds, n

        def ledger(cur) -> int:
            rows, _ = coverage.record_run(
                cur, source="yahoo", interval="1d", settings=settings, batches=read_plan(plan), extracts=extracts, run_id="bench"
            )
            return rows.num_rows

        def flags(cur) -> int:
            spans = [(s, first, end) for s in plan[0]["symbols"]]
            return len(
                anomalies.flag(
                    cur,
                    source="yahoo",
                    interval="1d",
                    table="market.bars_1d",
                    spans=spans,
                    settings=src.anomalies,
                    run_id="bench",
                )
            )

        def floor(cur) -> int:
            """One ledger row per stored bar, nothing computed: what writing the rows alone costs."""
            return cur.execute(_FLOOR_SQL).rowcount

        floor_s = statistics.median(timed(floor)[0] for _ in range(args.repeat))  # into the empty ledger, rolled back
        first_s, rows = timed(ledger, commit=True)  # the first run writes the ledger
        rerun = [timed(ledger)[0] for _ in range(args.repeat)]
        import tracemalloc

        tracemalloc.start()  # one more rerun, untimed: the Python memory the ledger's rows take
        timed(ledger)
        peak_mb = tracemalloc.get_traced_memory()[1] / 1e6
        tracemalloc.stop()
        flag_runs = [timed(flags) for _ in range(args.repeat)]
        with psycopg.connect(conninfo) as conn:
            states = dict(conn.execute("SELECT state, count(*) FROM market.coverage GROUP BY state").fetchall())
    flag_s, flagged = statistics.median(s for s, _ in flag_runs), flag_runs[0][1]
    lines = [
        f"- {args.warehouse}: {args.symbols} symbols x {args.years} years of 1d bars = {bars.num_rows:,} bars "
        f"(load {load_s:.1f} s, {bars.num_rows / load_s:,.0f} bars/s); {actions:,} corporate actions",
        f"- ledger + flags, first run: {rows:,} ledger rows in {first_s:.1f} s ({rows / first_s:,.0f} rows/s); states {states}",
        f"- ledger + flags, rerun over stored rows: median {statistics.median(rerun):.1f} s of {args.repeat} "
        f"({rows / statistics.median(rerun):,.0f} rows/s); peak Python memory of a rerun {peak_mb:,.0f} MB (tracemalloc)",
        f"- floor: one ledger row per bar written by one INSERT ... SELECT from the bars, nothing computed: median "
        f"{floor_s:.1f} s of {args.repeat}, {floor_s / load_s:.2f}x the load",
        f"- flags alone: median {flag_s:.1f} s ({bars.num_rows / flag_s:,.0f} bars/s checked), {flagged} bars flagged",
    ]
    print("\n".join(lines))
    from bench.results import record

    record(lines, "ledger")
    return 0


if __name__ == "__main__":
    sys.exit(main())
