"""Benchmark: the lake's publish costs what the run brings, not what the table holds.

``.venv/bin/python bench/lake.py [--series 5000] [--hours 24] [--symbols 100] [--days 1000] [--s3] [--no-record]``

Publishes through the product's path (``lake.stage`` then ``lake.publish`` into the bars Delta
table; ``--s3``: on a moto S3 server on loopback, else a local ``file://`` lake) and times:

1. **hourly 1m runs**: ``--series`` series x 60 one-minute bars per hour, published hour after
   hour into one UTC day that holds 0, 1, ... ``--hours``-1 hours already. Goal (issue 32 item 2):
   the last hour's publish within 1.5x the first's.
2. **daily backfill**: ``--symbols`` x ``--days`` daily bars (100 x 1,000: 3 year partitions)
   published into an empty table (created beforehand and timed apart, as a deployment's table
   exists), against one ``pyarrow.parquet.write_table`` of the same rows to the same storage.
   Goal: at most 2x. Printed twice: the publish alone, and staging and publish together (the
   extract's write of the bars' data files, once, and the commit: all a run's bars cost the lake).
3. **rerun**: the last hour published again: the table's rows and distinct keys before and after
   (goal: no row added, no duplicate), and its time.

Prints the figures and appends them with the command line to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]

DAY = datetime(2024, 3, 4, tzinfo=UTC)
EXTRACTED = datetime(2026, 1, 1, tzinfo=UTC)


def minute_bars(series: int, hour: int):
    """``series`` x 60 canonical 1m bars of ``binance`` for ``hour`` of :data:`DAY`."""
    import pyarrow as pa

    from market_ingest.schema import conform, utc_timestamps

    start = DAY + timedelta(hours=hour)
    n = series * 60
    base = int(start.timestamp() * 1_000_000)
    times = pa.array([base + m * 60_000_000 for _ in range(series) for m in range(60)], pa.int64()).cast(
        pa.timestamp("us", tz="UTC")
    )
    prices = pa.array([100.0 + (i % 97) * 0.01 for i in range(n)], pa.float64())
    return conform(
        pa.table(
            {
                "time": times,
                "source": pa.array(["binance"] * n),
                "symbol": pa.array([f"C{s:05d}/USDT" for s in range(series) for _ in range(60)]),
                "interval": pa.array(["1m"] * n),
                **{c: prices for c in ("open", "high", "low", "close")},
                "volume": pa.array([1.5] * n),
                "ingested_at": utc_timestamps(EXTRACTED + timedelta(hours=hour), n),
                "price_basis": pa.array(["as_traded"] * n),
            }
        )
    )


def daily_bars(symbols: int, days: int):
    """``symbols`` x ``days`` canonical daily bars of ``yahoo`` from 2020-01-01."""
    from tests.integration.test_sinks import _daily_bars

    return _daily_bars("yahoo", symbols, days, 100.0, EXTRACTED, datetime(2020, 1, 1, tzinfo=UTC))


def publish(root, table, interval: str, run: str) -> float:
    """Stage ``table`` as one extract batch and publish it; the publish's seconds."""
    return stage_and_publish(root, table, interval, run)[1]


def stage_and_publish(root, table, interval: str, run: str) -> tuple[float, float]:
    """Stage ``table`` as one extract batch (the extract task's lake write) and publish it: the
    seconds of each."""
    from market_ingest import lake

    t0 = time.perf_counter()
    staged = lake.stage(table, root, table["source"][0].as_py(), interval, run, 0)
    t1 = time.perf_counter()
    lake.publish(staged, root, table["source"][0].as_py(), interval)
    return t1 - t0, time.perf_counter() - t1


def counts(root, source: str, interval: str) -> tuple[int, int]:
    """Rows of ``source``/``interval`` in the table, and distinct natural keys among them."""
    import pyarrow.compute as pc

    from market_ingest import lake

    rows = lake.read_table(root, (pc.field("source") == source) & (pc.field("interval") == interval))
    keys = rows.group_by(["symbol", "time"]).aggregate([])
    return rows.num_rows, keys.num_rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=5000, help="1m series per hourly run")
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--symbols", type=int, default=100, help="daily backfill: symbols")
    parser.add_argument("--days", type=int, default=1000, help="daily backfill: days per symbol")
    parser.add_argument("--s3", action="store_true", help="on a moto S3 server (loopback) instead of a local lake")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    args = parser.parse_args()

    import json

    import pyarrow.parquet as pq

    from market_ingest import lake

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-lake-")))
        if args.s3:
            from demo.services import AWS_REGION, moto_server

            endpoint = stack.enter_context(moto_server(work / "moto.log"))
            os.environ["AIRFLOW_CONN_BENCH_AWS"] = json.dumps(
                {
                    "conn_type": "aws",
                    "login": "testing",  # moto accepts any key; not credentials
                    "password": "testing",
                    "extra": {"region_name": AWS_REGION, "endpoint_url": endpoint},
                }
            )
            import boto3

            boto3.client(
                "s3", endpoint_url=endpoint, region_name=AWS_REGION, aws_access_key_id="testing", aws_secret_access_key="testing"
            ).create_bucket(Bucket="bench-lake")
            url = "s3://bench_aws@bench-lake/lake"
        else:
            (work / "lake").mkdir()
            url = f"file://{work}/lake"
        root = lake.lake_root(url)
        warm = root / "warm-up"  # imports and first connections, outside the timings
        if not args.s3:
            Path(warm.path).mkdir()
        publish(warm, minute_bars(1, 0), "1m", "warm-up")

        # 1. hourly 1m runs into one day
        hourly = []
        for hour in range(args.hours):
            hourly.append(publish(root, minute_bars(args.series, hour), "1m", f"hour-{hour:02d}"))
            print(f"hour {hour:2d}: {args.series * 60:,} bars published in {hourly[-1]:.2f} s", flush=True)
        rows_before, keys_before = counts(root, "binance", "1m")

        # 3. rerun of the last hour
        rerun_s = publish(root, minute_bars(args.series, args.hours - 1), "1m", "rerun")
        rows_after, keys_after = counts(root, "binance", "1m")

        # 2. daily backfill against one Parquet write of the same rows (medians of 3)
        backfill = daily_bars(args.symbols, args.days)
        delta_s, total_s, parquet_s, create_s = [], [], [], []
        for i in range(3):
            sub = root / f"backfill-{i}"
            if not args.s3:
                Path(sub.path).mkdir()
            t0 = time.perf_counter()
            lake.open_table(sub, create=True)  # a deployment's table exists: its creation is timed apart
            create_s.append(time.perf_counter() - t0)
            stage_s, publish_s = stage_and_publish(sub, backfill, "1d", f"backfill-{i}")
            delta_s.append(publish_s)
            total_s.append(stage_s + publish_s)
            target = sub / "one-write.parquet"
            t0 = time.perf_counter()
            with target.open("wb") as fh:
                pq.write_table(backfill, fh, compression="zstd")
            parquet_s.append(time.perf_counter() - t0)
        files = len(lake.open_table(root / "backfill-0").file_uris())

    first, last = hourly[0], hourly[-1]
    backfill_ratio = statistics.median(delta_s) / statistics.median(parquet_s)
    total_ratio = statistics.median(total_s) / statistics.median(parquet_s)
    where = "moto S3 on loopback" if args.s3 else "a local file:// lake"
    lines = [
        f"- where: {where}; shared 2-core machine",
        f"- hourly 1m runs, {args.series:,} series x 60 bars ({args.series * 60:,} per run) into one day of "
        f"{args.hours} hours: first {first:.2f} s, last {last:.2f} s, median {statistics.median(hourly):.2f} s, "
        f"max {max(hourly):.2f} s; last/first {last / first:.2f} (goal <= 1.5), max/first {max(hourly) / first:.2f}",
        f"- daily backfill, {args.symbols} x {args.days:,} = {backfill.num_rows:,} bars into an empty table "
        f"({files} files; creating the table took {statistics.median(create_s):.3f} s more): "
        f"{statistics.median(delta_s):.3f} s against one Parquet write of the same rows "
        f"{statistics.median(parquet_s):.3f} s (medians of 3): {backfill_ratio:.2f}x (goal <= 2); staging and "
        f"publish together (all the run writes to the lake for its bars) {statistics.median(total_s):.3f} s: {total_ratio:.2f}x",
        f"- rerun of the last hour: {rerun_s:.2f} s; rows {rows_before:,} -> {rows_after:,}, distinct keys "
        f"{keys_before:,} -> {keys_after:,} (goal: no row added, no duplicate)",
    ]
    print("\n".join(lines))
    if not args.no_record:
        from bench.results import record

        record(lines, "lake")
    return 0


if __name__ == "__main__":
    sys.exit(main())
