"""Benchmark: what 100,000 bars cost on Kinesis, packed or not, with injected failures, and a hot series' shards.

``make bench-kinesis`` (or ``.venv/bin/python bench/kinesis.py``). Starts moto's server on
loopback and publishes 100,000 canonical 1m bars with the product's own ``build_records`` and
``put_records`` (what ``publish_kinesis`` runs), once per case, each into a fresh 4-shard stream:

* ``one per bar``, ``packed N`` (``kinesis.record_format: json_lines``, ``bars_per_record``: N
  bars of one symbol per JSON Lines record) and ``kpl N`` (``record_format: kpl``: KPL aggregated
  records of up to N bars of one symbol, read back through ``aws_kinesis_agg``'s deaggregator),
  for 100 symbols x 1,000 bars;
* the same two with 10% of the entries of every ``PutRecords`` call answered
  ``ProvisionedThroughputExceededException`` (seeded; a shard throttling), which ``put_records``
  sends again with backoff;
* one hot series (BTC/USDT, 100,000 bars, one per record) without and with
  ``kinesis.spread_keys`` of 4 (four partition keys, each with its explicit hash key);
* both packings with the publish progress saved to S3 (moto) as ``publish_kinesis`` saves it,
  after every call (the default) and, for one record per bar, every 20 calls (main's cadence): what
  bounding a killed task's re-sends to one call costs, in S3 ``PUT`` requests and time.

Per case it prints ``PutRecords`` calls, records and bytes (``Data`` plus partition key, as
Kinesis counts them, re-sent entries included) per 100,000 bars, the time, the share of records
on the busiest shard, and what a reader of every shard finds: bars, duplicates and bars lost
(each must be 0). moto enforces no shard limits, so the time is this process's and moto's, not
Kinesis's; at 1,000 records per second per shard, the records figure is what decides how long a
real stream takes. Appends the figures to bench/RESULTS.md (``--no-record``: print only;
``--cases WORD``: only the cases whose name holds WORD, never recorded).
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
UTC = timezone.utc
BARS = 100_000
SHARDS = 4
T0 = datetime(2024, 1, 1, tzinfo=UTC)
KPL_MAGIC = b"\xf3\x89\x9a\xc2"  # the KPL aggregated record format's first four bytes (aws_kinesis_agg.MAGIC)


def bars(symbols: int, per_symbol: int, source: str = "binance"):
    """``symbols`` x ``per_symbol`` canonical 1m bars (a random walk), symbol by symbol, as a table."""
    import numpy as np
    import pyarrow as pa

    from market_ingest.schema import conform

    n = symbols * per_symbol
    rng = np.random.default_rng(7)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    names = ["BTC/USDT"] if symbols == 1 else [f"S{i:03d}/USDT" for i in range(symbols)]
    minutes = np.tile(np.arange(per_symbol, dtype="int64"), symbols)
    return conform(
        pa.table(
            {
                "time": pa.array(
                    (np.datetime64(T0.replace(tzinfo=None), "us") + minutes * 60_000_000), pa.timestamp("us", tz="UTC")
                ),
                "source": [source] * n,
                "symbol": np.repeat(names, per_symbol).tolist(),
                "interval": ["1m"] * n,
                "open": close,
                "high": close * 1.001,
                "low": close * 0.999,
                "close": close,
                "volume": rng.uniform(0.1, 10, n),
                "currency": ["USDT"] * n,
                "ingested_at": pa.array([T0 + timedelta(days=1)] * n, pa.timestamp("us", tz="UTC")),
            }
        )
    )


class Counting:
    """A boto3 Kinesis client that counts what is sent and, with ``fail_share`` > 0, answers that
    share of every call's entries (chosen by a seeded RNG) ProvisionedThroughputExceededException
    without passing them on, as a throttled shard does; the rest go to the stream."""

    def __init__(self, client, fail_share: float = 0.0, seed: int = 1):
        self.client, self.fail_share, self.rng = client, fail_share, random.Random(seed)
        self.exceptions = client.exceptions
        self.calls = self.entries = self.bytes = self.failed = 0

    def put_records(self, StreamName, Records):
        self.calls += 1
        self.entries += len(Records)
        self.bytes += sum(len(r["Data"]) + len(r["PartitionKey"].encode()) for r in Records)
        refused = {i for i in range(len(Records)) if self.rng.random() < self.fail_share}
        self.failed += len(refused)
        passed = [r for i, r in enumerate(Records) if i not in refused]
        answers = iter(self.client.put_records(StreamName=StreamName, Records=passed)["Records"] if passed else [])
        results = [
            {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}
            if i in refused
            else next(answers)
            for i in range(len(Records))
        ]
        return {"FailedRecordCount": sum(1 for r in results if "ErrorCode" in r), "Records": results}


def read_back(client, stream: str) -> tuple[Counter, Counter]:
    """``(bars per record_id, records per shard)`` of everything in ``stream``."""
    ids: Counter = Counter()
    per_shard: Counter = Counter()
    for shard in client.list_shards(StreamName=stream)["Shards"]:
        it = client.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while it:
            out = client.get_records(ShardIterator=it, Limit=10_000)
            for r in out["Records"]:
                per_shard[shard["ShardId"]] += 1
                if r["Data"].startswith(KPL_MAGIC):  # a KPL aggregate: its user records, one bar each
                    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

                    users = iter_deaggregate_records([r], data_format="Boto3")
                    ids.update(json.loads(base64.b64decode(u["kinesis"]["data"]))["record_id"] for u in users)
                else:
                    ids.update(json.loads(line)["record_id"] for line in r["Data"].split(b"\n"))
            if not out["Records"]:
                break
            it = out.get("NextShardIterator")
    return ids, per_shard


def run_case(
    client,
    name: str,
    table,
    bars_per_record: int,
    fail_share: float,
    spread: dict[str, int],
    save_every: int | None = None,
    record_format: str | None = None,
) -> dict:
    """One case; ``save_every``: save the publish progress to ``s3://bench_aws@bench-progress/``
    every that many calls (``None``: no progress kept)."""
    from market_ingest.kinesis import PublishProgress, bar_lines, build_records, put_records

    stream = "bench-" + "".join(c if c.isalnum() else "-" for c in name)
    client.create_stream(StreamName=stream, ShardCount=SHARDS)
    client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 100})
    counting = Counting(client, fail_share)
    saves = []
    progress = None
    if save_every:
        from airflow.sdk import ObjectStoragePath

        class CountedProgress(PublishProgress):
            def save(self) -> None:
                saves.append(1)
                super().save()

        progress = CountedProgress(stream, path=ObjectStoragePath(f"s3://bench_aws@bench-progress/{stream}.json"))
    started = time.monotonic()
    record_format = record_format or ("json_lines" if bars_per_record > 1 else "json")
    records = build_records(table, "bars", bars_per_record, spread, record_format)
    if progress is None:
        stats = put_records(counting, stream, records)
    else:
        stats = put_records(counting, stream, records, progress=progress, checkpoint_calls=save_every)
    seconds = time.monotonic() - started
    ids, per_shard = read_back(client, stream)
    expected = {json.loads(line)["record_id"] for _, line in bar_lines(table.to_batches())}
    assert len(expected) == table.num_rows
    scale = BARS / table.num_rows
    return {
        "case": name,
        "calls": round(counting.calls * scale),
        "records": round(stats["records"] * scale),
        "entries_sent": round(counting.entries * scale),
        "mib": counting.bytes * scale / 2**20,
        "injected_failures": counting.failed,
        "seconds": seconds,
        "busiest_shard": max(per_shard.values()) / sum(per_shard.values()),
        "bars_read": sum(ids.values()),
        "duplicates": sum(n - 1 for n in ids.values() if n > 1),
        "lost": len(expected - set(ids)),
        "progress_puts": round(len(saves) * scale),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars-per-record", type=int, default=500, help="packing of the packed cases")
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument("--cases", default="", help="only the cases whose name holds this (not recorded)")
    args = parser.parse_args()
    from demo.services import unwind_on_signals

    unwind_on_signals()  # a killed benchmark stops moto

    import boto3

    from demo.services import AWS_REGION, moto_server

    work = ROOT / ".bench" / "kinesis"
    work.mkdir(parents=True, exist_ok=True)
    universe, hot = bars(100, 1_000), bars(1, BARS)
    n = args.bars_per_record
    cases = [
        ("one per bar", universe, 1, 0.0, {}),
        (f"packed {n}", universe, n, 0.0, {}),
        (f"kpl {n}", universe, n, 0.0, {}, None, "kpl"),
        ("one per bar, 10% failed", universe, 1, 0.1, {}),
        (f"packed {n}, 10% failed", universe, n, 0.1, {}),
        (f"kpl {n}, 10% failed", universe, n, 0.1, {}, None, "kpl"),
        ("hot series, one key", hot, 1, 0.0, {}),
        ("hot series, spread_keys 4", hot, 1, 0.0, {"binance:BTC/USDT": 4}),
        ("one per bar, progress saved every call", universe, 1, 0.0, {}, 1),
        ("one per bar, progress saved every 20 calls", universe, 1, 0.0, {}, 20),
        (f"packed {n}, progress saved every call", universe, n, 0.0, {}, 1),
    ]
    cases = [c for c in cases if args.cases in c[0]]
    results = []
    import os

    os.environ.setdefault("AIRFLOW_HOME", str(work / "airflow"))  # ObjectStoragePath imports Airflow
    with moto_server(work / "moto.log") as endpoint:
        aws = {"conn_type": "aws", "login": "testing", "password": "testing"}
        aws["extra"] = {"region_name": AWS_REGION, "endpoint_url": endpoint}
        os.environ["AIRFLOW_CONN_BENCH_AWS"] = json.dumps(aws)  # the progress objects' bucket, on the same moto
        boto3.client(
            "s3", region_name=AWS_REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
        ).create_bucket(Bucket="bench-progress")
        client = boto3.client(
            "kinesis", region_name=AWS_REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
        )
        for case in cases:
            r = run_case(client, *case)
            results.append(r)
            print(_line(r), flush=True)
    ok = all(r["bars_read"] - r["duplicates"] == BARS and r["duplicates"] == 0 and r["lost"] == 0 for r in results)
    verdict = "PASS" if ok else "FAIL: a bar was lost or read twice"
    print(verdict)
    if not args.no_record and not args.cases:
        command = "python bench/kinesis.py" + (f" --bars-per-record {n}" if n != 500 else "")
        lines = [f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, kinesis\n", f"`{command}`\n"]
        lines += [f"- {_line(r)}" for r in results] + [f"- {verdict}\n"]
        with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
            fh.write("\n".join(lines))
    return 0 if ok else 1


def _line(r: dict) -> str:
    return (
        f"{r['case']}: per 100,000 bars {r['calls']:,} PutRecords calls, {r['records']:,} records "
        f"({r['entries_sent']:,} entries sent with re-sends; {r['injected_failures']:,} failed by injection), "
        f"{r['mib']:.1f} MiB; {r['seconds']:.1f} s; busiest of {SHARDS} shards {r['busiest_shard']:.0%} of records; "
        f"read back {r['bars_read']:,} bars, duplicates {r['duplicates']}, lost {r['lost']}"
        + (f"; progress saved {r['progress_puts']:,} times (S3 PUT)" if r["progress_puts"] else "")
    )


if __name__ == "__main__":
    sys.exit(main())
