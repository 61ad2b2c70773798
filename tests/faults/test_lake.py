"""The lake never drops a bar it held: runs replace only what they extracted, concurrent
publishes of one partition both land, and overlapping windows leave each bar once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from tests.e2e.test_dag_run import _run, report_of
from tests.faults.support import key_counts, raw_lake_rows

pytestmark = pytest.mark.e2e
UTC = timezone.utc
WEEK = {"start": "2021-08-02T00:00:00Z", "end": "2021-08-07T00:00:00Z"}  # Mon..Fri; no other test writes it
DAYS = ["2021-08-02", "2021-08-03", "2021-08-04", "2021-08-05", "2021-08-06"]
PREFIX = "bars/source=yahoo/interval=1d/month=2021-08/"


def _week_rows(services):
    return [r for r in raw_lake_rows(services, "market-lake", PREFIX) if r["time"].date().isoformat() in DAYS]


def test_a_second_run_of_the_same_window_keeps_every_symbol(services, airflow_db):
    """Seen on main: MSFT and NVDA loaded for a week, then TSLA for the same week; the lake held TSLA only."""
    first = _run("market_yahoo_1d", datetime(2021, 8, 9, tzinfo=UTC), {"symbols": ["MSFT", "NVDA"], **WEEK})
    assert str(first.state).endswith("success")
    second = _run("market_yahoo_1d", datetime(2021, 8, 9, tzinfo=UTC), {"symbols": ["TSLA"], **WEEK})
    assert str(second.state).endswith("success") and report_of(second)["symbols"]["TSLA"]["lake"] == 5

    counts = key_counts(_week_rows(services))
    assert counts == {(s, d): 1 for s in ("MSFT", "NVDA", "TSLA") for d in DAYS}

    # An overlapping window (Wed..Thu) for one symbol: still each bar once, in the month's one object.
    third = _run(
        "market_yahoo_1d",
        datetime(2021, 8, 9, tzinfo=UTC),
        {"symbols": ["NVDA"], "start": "2021-08-04T00:00:00Z", "end": "2021-08-06T00:00:00Z"},
    )
    assert str(third.state).endswith("success")
    rows = _week_rows(services)
    assert key_counts(rows) == counts
    assert len({r["_key"] for r in rows}) == 1  # the month of August 2021


def _bars(symbol: str, day: datetime, ingested_at: datetime, close: float = 100.0) -> pa.Table:
    from market_ingest.schema import conform

    return conform(
        pa.Table.from_pylist(
            [
                {
                    "time": day,
                    "source": "yahoo",
                    "symbol": symbol,
                    "interval": "1d",
                    "open": close,
                    "high": close + 1,
                    "low": close - 1,
                    "close": close,
                    "volume": 1000.0,
                    "ingested_at": ingested_at,
                }
            ]
        )
    )


def test_concurrent_publishes_of_one_partition_both_land(services, monkeypatch):
    """Two runs read the same partition object, then both write: the conditional write makes the
    second merge again instead of overwriting the first."""
    from market_ingest import lake
    from market_ingest.config import load_config
    from market_ingest.lake import merge

    root = lake.lake_root(load_config().lake.url) / "test-concurrent"
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    lake.publish(lake.stage(_bars("AAPL", day, t0), root, "yahoo", "1d", "seed", 0), root, "yahoo", "1d")
    staged = {
        s: lake.stage(_bars(s, day, t0 + timedelta(minutes=1)), root, "yahoo", "1d", f"run-{s}", 0) for s in ("MSFT", "NVDA")
    }

    both_read = threading.Barrier(2, timeout=30)
    reads = {"partition": 0}
    real_read = lake.read_parquet

    def read_then_wait(path, dataset="bars"):
        table = real_read(path, dataset)
        if str(path).endswith("/bars.parquet"):
            reads["partition"] += 1
            if reads["partition"] <= 2:  # the first read of each writer: both hold the same version
                both_read.wait()
        return table

    monkeypatch.setattr(merge, "read_parquet", read_then_wait)
    errors = []

    def publish(symbol):
        try:
            lake.publish(staged[symbol], root, "yahoo", "1d")
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=publish, args=(s,)) for s in ("MSFT", "NVDA")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert reads["partition"] == 3  # one writer had to read again after its conditional write failed
    merged = real_read(lake.partition_object(root, "yahoo", "1d", "2021-08"))
    assert sorted(merged["symbol"].to_pylist()) == ["AAPL", "MSFT", "NVDA"]


def test_a_partition_replaced_between_its_etag_and_its_body_is_read_again(services, monkeypatch):
    """Seen in CI once daily bars shared one month object: a backfill's runs published at once, one
    replaced the object after another had opened it, and s3fs's ``FileExpired`` (its ranged read
    carries ``If-Match`` on the ETag it opened) failed the task instead of merging again."""
    import io

    import pyarrow.parquet as pq

    from market_ingest import lake
    from market_ingest.config import load_config

    root = lake.lake_root(load_config().lake.url) / "test-expired"
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    lake.publish(lake.stage(_bars("AAPL", day, t0), root, "yahoo", "1d", "seed", 0), root, "yahoo", "1d")
    staged = lake.stage(_bars("MSFT", day + timedelta(days=1), t0), root, "yahoo", "1d", "ours", 0)
    target = lake.partition_object(root, "yahoo", "1d", "2021-08")
    key = target.path.split("/", 1)[1]
    real_read, reads = pq.read_table, {"n": 0}

    def other_writer_then_read(source, *args, **kw):
        reads["n"] += 1
        if reads["n"] == 1 and not isinstance(source, (str, io.BytesIO)):  # our merge has just opened the object
            s3 = services.boto3_client("s3")
            both = pa.concat_tables(
                [real_read(io.BytesIO(s3.get_object(Bucket="market-lake", Key=key)["Body"].read())), _bars("NVDA", day, t0)]
            )
            body = io.BytesIO()
            pq.write_table(both, body)
            s3.put_object(Bucket="market-lake", Key=key, Body=body.getvalue())  # another run's merge lands
        return real_read(source, *args, **kw)

    monkeypatch.setattr(pq, "read_table", other_writer_then_read)
    lake.publish(staged, root, "yahoo", "1d")
    assert reads["n"] >= 2  # read again
    assert sorted(lake.read_parquet(target)["symbol"].to_pylist()) == ["AAPL", "MSFT", "NVDA"]


def test_concurrent_publishes_to_a_local_lake_all_land(tmp_path):
    from market_ingest import lake

    root = lake.lake_root(f"file://{tmp_path}")
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    symbols = [f"S{i}" for i in range(8)]
    staged = {s: lake.stage(_bars(s, day, t0), root, "yahoo", "1d", f"run-{s}", 0) for s in symbols}
    threads = [threading.Thread(target=lake.publish, args=(staged[s], root, "yahoo", "1d")) for s in symbols]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    merged = lake.read_parquet(lake.partition_object(root, "yahoo", "1d", "2021-08"))
    assert sorted(merged["symbol"].to_pylist()) == symbols


def test_an_older_extraction_never_replaces_a_newer_bar_in_the_lake(tmp_path):
    from market_ingest import lake

    root = lake.lake_root(f"file://{tmp_path}")
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    newer = lake.stage(_bars("MSFT", day, t0 + timedelta(hours=1), close=101.0), root, "yahoo", "1d", "newer", 0)
    older = lake.stage(_bars("MSFT", day, t0, close=99.0), root, "yahoo", "1d", "older", 0)
    lake.publish(newer, root, "yahoo", "1d")
    (obj,) = lake.publish(older, root, "yahoo", "1d")  # an old run's publish, re-run late
    assert obj["kept_newer"] == 1
    assert lake.read_parquet(obj["path"])["close"].to_pylist() == [101.0]
