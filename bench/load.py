"""Benchmark: the warehouse load against the speed of COPY (server-side CSV, client-side binary), on PostgreSQL and TimescaleDB.

``make bench-load`` (or ``.venv/bin/python bench/load.py``). For each warehouse, in one run on
the same machine: plain PostgreSQL (pgserver) and TimescaleDB (PostgreSQL 15 with timescaledb,
``demo.services.timescaledb``), both with fsync on, migrated as ``market_setup`` does. The data:
``--rows`` 1-minute bars (default 1,000,000: 200 symbols x 5,000 minutes), written once as a
Parquet file (what the load reads from the lake's staging) and as CSV (for the ceiling).

Each step runs ``--repeat`` times (median reported):

1. **ceilings**, into the empty table: ``COPY market.bars_1m FROM '<file>' (FORMAT csv)`` read by
   the server (**CSV ceiling**), and ``COPY market.bars_1m FROM STDIN (FORMAT binary)`` from this
   process, the Parquet file's record batches encoded by ``pgpq`` as the load encodes them
   (**binary ceiling**); the faster of the two is **the ceiling** the load is measured against;
2. **new rows**: the product's load (``TimescaleHook.upsert`` over the Parquet file's record
   batches, as ``load_timescale`` streams the staged objects, with the span its plan gives:
   :func:`plan_span`) into the empty table: copied straight in;
3. **reload, unchanged**: the same load again over the stored rows (writes nothing);
4. **reload, 10% changed**: the same rows with 10% of closes changed.

Every product load runs in its own Python process, as Airflow's LocalExecutor runs a task; its
peak RSS is that process's high-water mark (``VmHWM``), Airflow's import included. Its time starts
after the first open of a lake object and the import of pandas (a task's start-up cost, printed
apart as the median start-up seconds) and includes the connection. The new-rows load also runs on
``--rows / 10`` rows to show memory does not grow with the row count. Prints rows per second,
each as a ratio of the ceiling, and peak RSS; appends them with the command line to
bench/RESULTS.md. Goals (issue "Cost that follows the run", item 4): new rows at least 0.8 of the
faster ceiling, the unchanged reload at least 1.0 of the new-rows rate, peak RSS under 500 MB and
flat from 100,000 to 1,000,000 rows.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
UTC = timezone.utc
T0 = datetime(2024, 6, 3, tzinfo=UTC)
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)


def make_bars(rows: int, symbols: int = 200, changed: float = 0.0):
    """``rows`` canonical 1m bars: ``symbols`` series of ``rows / symbols`` consecutive minutes from
    2024-06-03, a deterministic walk; ``changed`` of the closes (every 10th row for 0.1) moved by 0.1%."""
    import numpy as np
    import pyarrow as pa

    from market_ingest.schema import conform

    per = rows // symbols
    minutes = np.tile(np.arange(per, dtype="int64"), symbols)
    series = np.repeat(np.arange(symbols), per)
    rng = np.random.default_rng(7)
    price = 100 + np.cumsum(rng.normal(0, 0.05, rows)).astype("float64")
    close = price * (1 + rng.normal(0, 0.0005, rows))
    if changed:
        step = round(1 / changed)
        close[::step] *= 1.001
    times = pa.array(int(T0.timestamp() * 1e6) + minutes * 60_000_000, pa.int64()).cast(pa.timestamp("us", tz="UTC"))
    table = pa.table(
        {
            "time": times,
            "source": pa.array(["bench"] * rows),
            "symbol": pa.array([f"S{s:03d}" for s in series]),
            "interval": pa.array(["1m"] * rows),
            "open": price,
            "high": np.maximum(price, close) * 1.0005,
            "low": np.minimum(price, close) * 0.9995,
            "close": close,
            "volume": rng.integers(1, 10_000, rows).astype("float64"),
            "currency": pa.array(["USD"] * rows),
            "ingested_at": pa.array([INGESTED] * rows, pa.timestamp("us", tz="UTC")),
        }
    )
    return conform(table)


def plan_span(rows: int, symbols: int = 200):
    """The span the load task would take from its plan for :func:`make_bars`' rows: each symbol's
    window of ``rows / symbols`` minutes from 2024-06-03 (:func:`market_ingest.operators.warehouse.plan_span`)."""
    from datetime import timedelta

    from market_ingest.hooks.timescale import LoadSpan

    end = T0 + timedelta(minutes=rows // symbols)
    return LoadSpan({("bench", f"S{s:03d}", "1m"): (T0, end) for s in range(symbols)})


def child_load(parquet: str, rows: int) -> None:
    """Child process: the product's load of one Parquet file, read as ``load_timescale`` reads the
    staged objects (``iter_staged``: streamed by record batch, read again if a copy of new rows
    falls back), with the span the load task takes from its plan (each symbol's window); prints
    its stats.

    The timing starts after the first open of a lake object and the import of pandas (Airflow's
    object storage, fsspec, boto3, pandas: 1-2 s; the load task's ledger imports pandas in any
    case), the task's start-up cost rather than the load's, reported as ``startup_seconds``."""
    from market_ingest.hooks.timescale import TimescaleHook
    from market_ingest.lake import iter_staged

    url = Path(parquet).as_uri()
    started = time.perf_counter()
    next(iter_staged([url]), None)
    import pandas  # noqa: F401  pyarrow imports it at its first Python conversion; a load task's ledger (exchange_calendars) does anyway

    startup = time.perf_counter() - started
    span = plan_span(rows)
    started = time.perf_counter()
    stats = TimescaleHook().upsert(lambda: iter_staged([url]), "bars", span=span)
    seconds = time.perf_counter() - started
    # This process's own peak: VmHWM of its address space. (wait4's ru_maxrss would report the
    # benchmark parent's size, which Linux carries into a forked child across exec.)
    status = Path("/proc/self/status").read_text()
    hwm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM:")))
    print(json.dumps({**stats, "seconds": seconds, "startup_seconds": startup, "peak_rss_mb": hwm_kb / 1024}))


def run_child(parquet: Path, rows: int, env: dict[str, str]) -> dict:
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", str(parquet), "--rows", str(rows)],
        stdout=subprocess.PIPE,
        env={**os.environ, **env},
        text=True,
    )
    out = proc.stdout.read()
    if proc.wait() != 0:
        raise RuntimeError(f"load of {parquet} failed (status {proc.returncode})")
    return json.loads(out.strip().splitlines()[-1])


def ceiling(conninfo: str, csv: Path) -> float:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE market.bars_1m")
        started = time.perf_counter()
        conn.execute(
            "COPY market.bars_1m (time, source, symbol, interval, open, high, low, close, volume, currency, ingested_at) "
            f"FROM '{csv}' (FORMAT csv, HEADER true)"
        )
        seconds = time.perf_counter() - started
        conn.execute("TRUNCATE market.bars_1m")
    return seconds


def binary_ceiling(conninfo: str, parquet: Path) -> float:
    """Seconds of a client-side ``COPY ... FROM STDIN (FORMAT binary)`` of the Parquet file's rows
    into the empty ``market.bars_1m``, encoded by pgpq from the file's record batches exactly as
    ``TimescaleHook.upsert`` encodes them (same columns, same wire schema), read included."""
    import psycopg
    import pyarrow as pa
    import pyarrow.parquet as pq
    from pgpq import ArrowToPostgresBinaryEncoder
    from psycopg import sql

    from market_ingest.schema import DATASETS

    spec = DATASETS["bars"]
    wire = pa.schema([f.with_nullable(True) for f in spec.schema])
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE market.bars_1m")
        started = time.perf_counter()
        encoder = ArrowToPostgresBinaryEncoder(wire)
        with conn.cursor() as cur, cur.copy(sql.SQL("COPY market.bars_1m ({}) FROM STDIN (FORMAT binary)").format(cols)) as copy:
            copy.write(encoder.write_header())
            for batch in pq.ParquetFile(parquet).iter_batches(batch_size=65_536):
                copy.write(encoder.write_batch(batch.select(list(spec.columns)).cast(wire)))
            copy.write(encoder.finish())
        seconds = time.perf_counter() - started
        conn.execute("TRUNCATE market.bars_1m")
    return seconds


def truncate(conninfo: str) -> None:
    import psycopg

    with psycopg.connect(conninfo, autocommit=True) as conn:
        conn.execute("TRUNCATE market.bars_1m")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3, help="runs per step; medians are reported")
    parser.add_argument("--warehouse", choices=("postgres", "timescaledb", "both"), default="both")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    from demo.services import unwind_on_signals

    unwind_on_signals()  # a killed benchmark stops the servers it started
    if args.child:
        child_load(args.child, args.rows)
        return 0

    import psycopg
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    from demo.services import postgres, timescaledb, timescaledb_missing
    from market_ingest.hooks.timescale import apply_migrations

    kinds = ["postgres", "timescaledb"] if args.warehouse == "both" else [args.warehouse]
    if "timescaledb" in kinds and timescaledb_missing():
        sys.exit(f"TimescaleDB is not installed here ({timescaledb_missing()}); use --warehouse postgres")
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="bench-load-") as work:
        work = Path(work)
        work.chmod(0o755)  # the server reads the CSV file itself
        files = {}
        for name, rows, changed in (("new", args.rows, 0.0), ("changed", args.rows, 0.1), ("small", args.rows // 10, 0.0)):
            table = make_bars(rows, changed=changed)
            files[name] = work / f"{name}.parquet"
            pq.write_table(table, files[name], compression="zstd", row_group_size=65_536)
            if name == "new":
                csv = work / "new.csv"
                pcsv.write_csv(
                    table.select(
                        [
                            "time",
                            "source",
                            "symbol",
                            "interval",
                            "open",
                            "high",
                            "low",
                            "close",
                            "volume",
                            "currency",
                            "ingested_at",
                        ]
                    ),
                    csv,
                )
                csv.chmod(0o644)
            del table
        for kind in kinds:
            with ExitStack() as stack:
                server = timescaledb(work / "tsdb", fsync=True) if kind == "timescaledb" else postgres(work / "pg")
                sock = stack.enter_context(server)
                conninfo = f"host={sock} port=5432 user=postgres dbname=postgres"
                with psycopg.connect(conninfo) as conn:
                    apply_migrations(conn)
                conn_json = {"conn_type": "postgres", "host": sock, "port": 5432, "login": "postgres", "schema": "postgres"}
                env = {"AIRFLOW_CONN_MARKET_TIMESCALE": json.dumps(conn_json), "PYTHONPATH": f"{ROOT / 'plugins'}:{ROOT}"}
                steps: dict[str, list] = {
                    "CSV ceiling": [],
                    "binary ceiling": [],
                    "new rows": [],
                    "reload, unchanged": [],
                    "reload, 10% changed": [],
                    "new rows (1/10)": [],
                }
                for _ in range(args.repeat):
                    steps["CSV ceiling"].append({"seconds": ceiling(conninfo, csv), "applied": args.rows})
                    steps["binary ceiling"].append({"seconds": binary_ceiling(conninfo, files["new"]), "applied": args.rows})
                    truncate(conninfo)
                    steps["new rows (1/10)"].append(run_child(files["small"], args.rows // 10, env))
                    truncate(conninfo)
                    steps["new rows"].append(run_child(files["new"], args.rows, env))
                    steps["reload, unchanged"].append(run_child(files["new"], args.rows, env))
                    steps["reload, 10% changed"].append(run_child(files["changed"], args.rows, env))
                    truncate(conninfo)
                results[kind] = steps

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"## {stamp}, load",
        "",
        f"`{' '.join(['.venv/bin/python', 'bench/load.py', *sys.argv[1:]])}`: {args.rows:,} one-minute bars (200 symbols), "
        f"fsync on, medians of {args.repeat} runs; each product load in its own process (peak RSS of that process).",
        "",
        "| warehouse | step | rows | rows written | seconds | rows/s | of the faster ceiling | peak RSS MB |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    verdicts = []
    for kind, steps in results.items():
        ceilings = {c: args.rows / statistics.median(s["seconds"] for s in steps[c]) for c in ("CSV ceiling", "binary ceiling")}
        faster = max(ceilings, key=ceilings.__getitem__)
        ceiling_rate = ceilings[faster]
        rates = {}
        for step, runs in steps.items():
            rows = args.rows // 10 if step == "new rows (1/10)" else args.rows
            seconds = statistics.median(r["seconds"] for r in runs)
            rates[step] = rows / seconds
            rss = statistics.median(r["peak_rss_mb"] for r in runs) if "peak_rss_mb" in runs[0] else None
            written = statistics.median(r["applied"] for r in runs)
            lines.append(
                f"| {kind} | {step} | {rows:,} | {written:,.0f} | {seconds:.2f} | {rows / seconds:,.0f} | "
                f"{rows / seconds / ceiling_rate:.2f} | {'' if rss is None else f'{rss:.0f}'} |"
            )
        startup = statistics.median(r["startup_seconds"] for r in steps["new rows"])
        rss_big = statistics.median(r["peak_rss_mb"] for r in steps["new rows"])
        rss_small = statistics.median(r["peak_rss_mb"] for r in steps["new rows (1/10)"])
        verdicts.append(
            f"{kind}: binary ceiling at {ceilings['binary ceiling'] / ceilings['CSV ceiling']:.2f}x the CSV ceiling's rate; "
            f"new rows {rates['new rows'] / ceiling_rate:.2f} of the faster ({faster}; goal 0.8), "
            f"{rates['new rows'] / ceilings['CSV ceiling']:.2f} of the CSV ceiling; unchanged reload "
            f"{rates['reload, unchanged'] / rates['new rows']:.2f} of the new-rows rate (goal 1.0), peak RSS "
            f"{rss_small:.0f} MB at {args.rows // 10:,} rows and {rss_big:.0f} MB at {args.rows:,} (goal under 500, flat); "
            f"start-up before the load (first lake object opened) {startup:.2f} s"
        )
    text = "\n".join([*lines, "", *verdicts, ""])
    print(text)
    if not args.no_record:
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
