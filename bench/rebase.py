"""Benchmark: re-basing a warehouse's bars stored before the price basis (``market_setup``'s ``rebase_bars``).

``.venv/bin/python bench/rebase.py [--warehouse timescaledb] [--symbols 200] [--days 5000] [--columnstore]``

An upgrade to bar schema 2 leaves every stored row ``price_basis`` NULL; ``rebase_bars`` converts
Yahoo's (split-adjusted as of their ``ingested_at``) to as traded, one series per transaction
(``TimescaleHook.rebase_bars``, SQL ``market.rebase_bars``). This fills a private warehouse
server-side (``generate_series``) with ``--symbols`` Yahoo series of ``--days`` daily bars
(200 x 5,000 = 1,000,000 by default) as the previous release stored them, gives each symbol two
splits inside the window and marks its actions asked, then times:

1. **first run**: every row converted (``--columnstore``: every chunk first converted to the
   columnstore, TimescaleDB only);
2. **second run**: nothing left to convert (one scan per bar table).

A bare ``UPDATE`` of the same rows' prices is timed too, for scale. Appends the figures and the
command line to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

#: The rows an earlier release stored: prices around 50, ingested after every split of the window.
FILL = """
INSERT INTO market.bars_1d (time, source, symbol, interval, open, high, low, close, volume, currency, ingested_at)
SELECT '2000-01-03'::timestamptz + d * interval '1 day', 'yahoo', 'S' || lpad(s::text, 3, '0'), '1d',
       50 + s * 0.01, 51 + s * 0.01, 49 + s * 0.01, 50 + s * 0.01, 1000, 'USD', '2025-06-01'::timestamptz
FROM generate_series(0, %(symbols)s - 1) AS s, generate_series(0, %(days)s - 1) AS d
"""
ACTIONS = (
    """INSERT INTO market.corporate_actions (source, symbol, ex_date, kind, ratio, first_seen, extracted_at)
    SELECT 'yahoo', 'S' || lpad(s::text, 3, '0'), e, 'split', r, e, e
    FROM generate_series(0, %(symbols)s - 1) AS s,
         (VALUES ('2005-06-01'::date, 2.0), ('2012-03-01'::date, 3.0)) AS v(e, r)""",
    """INSERT INTO market.corporate_actions_checked (source, symbol, checked_at)
    SELECT 'yahoo', 'S' || lpad(s::text, 3, '0'), '2025-06-02' FROM generate_series(0, %(symbols)s - 1) AS s""",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warehouse", choices=("postgres", "timescaledb"), default="postgres")
    parser.add_argument("--symbols", type=int, default=200)
    parser.add_argument("--days", type=int, default=5000)
    parser.add_argument("--columnstore", action="store_true", help="TimescaleDB: every chunk in the columnstore first")
    args = parser.parse_args()
    from demo.services import unwind_on_signals

    unwind_on_signals()  # a killed benchmark stops the servers it started

    import json
    import os

    import psycopg

    from demo.services import warehouse_server
    from market_ingest.hooks.timescale import LegacyBasis, TimescaleHook, apply_migrations

    rows = args.symbols * args.days
    with tempfile.TemporaryDirectory() as tmp, warehouse_server(args.warehouse, Path(tmp) / "pg") as sock:
        conninfo = f"host={sock} port=5432 user=postgres dbname=postgres"
        with psycopg.connect(conninfo, autocommit=True) as conn:
            if args.warehouse == "timescaledb":
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            apply_migrations(conn)
            params = {"symbols": args.symbols, "days": args.days}
            conn.execute(FILL, params)  # price_basis NULL: as the previous release stored them
            for statement in ACTIONS:
                conn.execute(statement, params)
            if args.columnstore and args.warehouse == "timescaledb":
                for (chunk,) in conn.execute("SELECT show_chunks('market.bars_1d')").fetchall():
                    conn.execute("CALL convert_to_columnstore(%s::regclass, if_not_columnstore => true)", (chunk,))
            conn.execute("VACUUM ANALYZE market.bars_1d")
        os.environ["AIRFLOW_CONN_MARKET_TIMESCALE"] = json.dumps(
            {"conn_type": "postgres", "host": sock, "port": 5432, "login": "postgres", "schema": "postgres"}
        )
        hook = TimescaleHook()
        basis = LegacyBasis(True, "America/New_York")
        t0 = time.perf_counter()
        first = hook.rebase_bars(lambda source, symbol: basis)
        first_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        second = hook.rebase_bars(lambda source, symbol: basis)
        second_s = time.perf_counter() - t0
        with psycopg.connect(conninfo) as conn:
            converted = conn.execute("SELECT count(*) FROM market.bars_1d WHERE price_basis = 'as_traded'").fetchone()[0]
            t0 = time.perf_counter()
            conn.execute("UPDATE market.bars_1d SET open = open * 1, high = high * 1, low = low * 1, close = close * 1")
            bare_s = time.perf_counter() - t0
            conn.rollback()
    done = first.get("yahoo", {})
    lines = [
        f"- {args.warehouse}{' (every chunk in the columnstore)' if args.columnstore else ''}: {args.symbols} series x "
        f"{args.days:,} daily bars = {rows:,} rows stored before the price basis, 2 splits per series",
        f"- first run: {done.get('rebased', 0):,} rows converted in {first_s:.1f} s ({rows / first_s:,.0f} rows/s); "
        f"{done.get('pending', 0)} pending; {converted:,} rows as_traded after",
        f"- second run: {second_s:.2f} s, {second or 'nothing'} converted",
        f"- a bare UPDATE of the same rows' prices: {bare_s:.1f} s",
    ]
    print("\n".join(lines))
    from bench.results import record

    record(lines, "rebase")
    return 0


if __name__ == "__main__":
    sys.exit(main())
