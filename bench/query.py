"""Benchmark: one-symbol range queries on a warehouse holding 200 symbols, per layout.

``make bench-query`` (or ``.venv/bin/python bench/query.py``). Starts a private TimescaleDB
(PostgreSQL 15 with timescaledb preloaded, fsync on; ``demo.services.timescaledb``), applies the
migrations, and fills it server-side (``generate_series``, no client round trips):

* 200 symbols x 25 years of daily bars (2000-01-01 .. 2024-12-31, every day: 1,826,400 rows);
* 200 symbols x one month of 1-minute bars (2024-06-01 .. 06-30: 8,640,000 rows).

It then asks, through the ``market.bars`` view as a user would, for one symbol over the 25 years of
daily bars and one symbol over the month of 1-minute bars, with ``EXPLAIN (ANALYZE)``, ``--repeat``
times each, and prints the median planning and execution times: first with every chunk in the
rowstore, then with every chunk converted to the columnstore. ``--legacy`` also builds the former
layout (one hypertable, 7-day chunks, every interval) in schema ``legacy`` and times the same
queries there. Goal (issue "The warehouse for real", item 2): each query plans and executes in
under 50 ms. Appends the figures and the command line to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

SYMBOLS = 200
QUERIES = {
    "1d, one symbol, 25 years": (
        "SELECT time, open, high, low, close, volume FROM {table} WHERE source = 'bench' AND symbol = 'S042' "
        "AND interval = '1d' AND time >= '2000-01-01' AND time < '2025-01-01' ORDER BY time"
    ),
    "1m, one symbol, one month": (
        "SELECT time, open, high, low, close, volume FROM {table} WHERE source = 'bench' AND symbol = 'S042' "
        "AND interval = '1m' AND time >= '2024-06-01' AND time < '2024-07-01' ORDER BY time"
    ),
}

#: One row per (symbol, step) from generate_series: a deterministic walk-like price, bar-consistent OHLC.
FILL = """
INSERT INTO {table} (time, source, symbol, interval, open, high, low, close, volume, currency, ingested_at)
SELECT t, 'bench', 'S' || lpad(s::text, 3, '0'), %(interval)s,
       p, p * 1.01, p * 0.99, p * (1 + 0.001 * sin(extract(epoch FROM t) / 3600)), 1000 + s, 'USD', now()
FROM generate_series(0, {symbols} - 1) AS s,
     generate_series(%(start)s::timestamptz, %(end)s::timestamptz - %(step)s::interval, %(step)s::interval) AS t,
     LATERAL (SELECT 50 + s + 10 * sin(extract(epoch FROM t) / 86400 / 30) AS p) AS price
"""
DATA = [
    ("1d", "2000-01-01", "2025-01-01", "1 day", "market.bars_1d"),
    ("1m", "2024-06-01", "2024-07-01", "1 minute", "market.bars_1m"),
]

LEGACY = """
CREATE SCHEMA IF NOT EXISTS legacy;
CREATE TABLE IF NOT EXISTS legacy.bars (LIKE market.bars_1m INCLUDING DEFAULTS);
ALTER TABLE legacy.bars DROP CONSTRAINT IF EXISTS bars_1m_interval;
ALTER TABLE legacy.bars ADD PRIMARY KEY (source, symbol, interval, time);
SELECT create_hypertable('legacy.bars', 'time', chunk_time_interval => INTERVAL '7 days', if_not_exists => TRUE);
ALTER TABLE legacy.bars SET (timescaledb.enable_columnstore, timescaledb.segmentby = 'source, symbol, interval',
                             timescaledb.orderby = 'time DESC');
"""


def timed(conn, sql: str, repeat: int) -> dict[str, float]:
    """Median planning and execution time (ms) of ``EXPLAIN (ANALYZE)`` over ``repeat`` runs, and the rows."""
    plans, execs, rows = [], [], 0
    for _ in range(repeat):
        (doc,) = conn.execute("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchone()
        plans.append(doc[0]["Planning Time"])
        execs.append(doc[0]["Execution Time"])
        rows = doc[0]["Plan"].get("Actual Rows", rows)
    return {"planning_ms": statistics.median(plans), "execution_ms": statistics.median(execs), "rows": rows}


def measure(conn, table: str, repeat: int) -> dict[str, dict]:
    return {name: timed(conn, sql.format(table=table), repeat) for name, sql in QUERIES.items()}


def to_columnstore(conn, tables: list[str]) -> int:
    n = 0
    for table in tables:
        for (chunk,) in conn.execute("SELECT show_chunks(%s::regclass)", (table,)).fetchall():
            conn.execute("CALL convert_to_columnstore(%s::regclass, if_not_columnstore => true)", (chunk,))
            n += 1
    return n


def chunk_counts(conn, tables: list[str]) -> dict[str, int]:
    return {t: conn.execute("SELECT count(*) FROM show_chunks(%s::regclass)", (t,)).fetchone()[0] for t in tables}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7, help="runs per query; the median is reported")
    parser.add_argument("--legacy", action="store_true", help="also time the former layout (one hypertable, 7-day chunks)")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()
    from demo.services import unwind_on_signals

    unwind_on_signals()  # a killed benchmark stops the servers it started

    import psycopg

    from demo.services import timescaledb
    from market_ingest.hooks.timescale import apply_migrations

    results: dict[str, dict] = {}
    loads: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="bench-query-") as work, timescaledb(Path(work) / "tsdb", fsync=True) as sock:
        with psycopg.connect(f"host={sock} port=5432 user=postgres dbname=postgres", autocommit=True) as conn:
            apply_migrations(conn)
            version = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'").fetchone()[0]
            targets = {"per interval (market.bars view)": ("market.bars", [t for *_, t in DATA])}
            if args.legacy:
                conn.execute(LEGACY)
                targets["legacy: one hypertable, 7-day chunks"] = ("legacy.bars", ["legacy.bars"])
            for label, (view, tables) in targets.items():
                started = time.perf_counter()
                for interval, start, end, step, table in DATA:
                    target = table if view == "market.bars" else view
                    conn.execute(
                        FILL.format(table=target, symbols=SYMBOLS),
                        {"interval": interval, "start": start, "end": end, "step": step},
                    )
                for t in tables:
                    conn.execute(f"ANALYZE {t}")
                loads[label] = time.perf_counter() - started
                chunks = chunk_counts(conn, tables)
                rowstore = measure(conn, view, args.repeat)
                converted = to_columnstore(conn, tables)
                conn.execute("VACUUM ANALYZE")
                columnstore = measure(conn, view, args.repeat)
                results[label] = {"chunks": chunks, "rowstore": rowstore, "columnstore": columnstore, "converted": converted}

    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {stamp}, query",
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/query.py', *sys.argv[1:]])}` on TimescaleDB {version} (PostgreSQL 15, "
        f"fsync on), {SYMBOLS} symbols: 25 years of daily bars (1,826,400 rows) and one month of 1-minute bars "
        f"(8,640,000 rows). Medians of {args.repeat} `EXPLAIN (ANALYZE)` runs, through the view a user queries.",
        "",
        "| layout | chunks | storage | query | rows | planning ms | execution ms | total ms |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for label, r in results.items():
        chunks = ", ".join(f"{t.split('.')[-1]} {n}" for t, n in r["chunks"].items())
        for storage in ("rowstore", "columnstore"):
            for query, m in r[storage].items():
                lines.append(
                    f"| {label} | {chunks} | {storage} | {query} | {m['rows']:,} | {m['planning_ms']:.2f} | "
                    f"{m['execution_ms']:.2f} | {m['planning_ms'] + m['execution_ms']:.2f} |"
                )
    lines += [
        "",
        "Fill time (server-side INSERT ... SELECT, both datasets): " + ", ".join(f"{k} {v:.0f} s" for k, v in loads.items()),
        "",
    ]
    print("\n".join(lines))
    worst = max(m["planning_ms"] + m["execution_ms"] for m in results["per interval (market.bars view)"]["rowstore"].values())
    worst_c = max(
        m["planning_ms"] + m["execution_ms"] for m in results["per interval (market.bars view)"]["columnstore"].values()
    )
    verdict = (
        f"Goal under 50 ms per query: {'PASS' if max(worst, worst_c) < 50 else 'FAIL'} (worst {max(worst, worst_c):.1f} ms)."
    )
    print(verdict)
    if not args.no_record:
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write("\n" + "\n".join(lines) + verdict + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
