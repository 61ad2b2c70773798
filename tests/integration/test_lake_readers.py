"""The lake as query engines read it (issue 14 item 7): daily bars in month partitions, weekly and
monthly bars in year partitions, intraday bars per date; after overlapping runs DuckDB's plain glob
over the lake (through moto's S3 on loopback) reads each bar once, the newest extraction; and
``compact`` folds what earlier layouts left into this one without losing a bar."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pyarrow as pa
import pytest

from market_ingest import lake
from market_ingest.hooks.yahoo import Window, YahooFinanceHook
from tests.integration.test_sinks import _daily_bars

pytestmark = pytest.mark.integration
UTC = timezone.utc
T0 = datetime(2026, 1, 1, tzinfo=UTC)  # extraction time of the first run
RECORDED = Window(datetime(2020, 8, 31, tzinfo=UTC), datetime(2020, 11, 7, tzinfo=UTC))  # AAPL 1d, recorded


def _aapl(window: Window, extracted: datetime) -> pa.Table:
    """AAPL's recorded daily bars in ``window`` (Yahoo, 2020-08-31 .. 2020-11-06), extracted at ``extracted``."""
    table, _ = YahooFinanceHook().fetch_bars(["AAPL"], "1d", window, extracted)
    return table


def _run(root, table: pa.Table, run_id: str, interval: str = "1d") -> list[dict]:
    """What a DAG run's extract and publish_lake tasks do with ``table``: stage it, merge it in."""
    return lake.publish(
        lake.stage(table, root, table["source"][0].as_py(), interval, run_id, 0), root, table["source"][0].as_py(), interval
    )


def _duckdb(services):
    """A DuckDB connection that reads ``s3://`` through s3fs against moto (DuckDB's own httpfs
    extension is downloaded on first use, and these machines have no internet)."""
    import duckdb
    import s3fs

    con = duckdb.connect()
    con.register_filesystem(s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=services.aws_endpoint))
    return con


def test_overlapping_runs_leave_each_bar_once_for_duckdb_in_one_object_per_month(services):
    from market_ingest.config import load_config

    root = lake.lake_root(load_config().lake.url) / "test-readers"
    # 200 symbols x 2 years of daily bars, then an overlapping restatement of 100 of them for a
    # quarter, then the recorded AAPL bars over Aug..Nov 2020 and a re-extraction of mid-Sep..mid-Oct.
    universe = _daily_bars("yahoo", 200, 730, 100.0, T0, datetime(2019, 1, 1, tzinfo=UTC))
    first = _run(root, universe, "scheduled__2021-01-01")
    assert [o["partition"] for o in first] == [f"{y}-{m:02d}" for y in (2019, 2020) for m in range(1, 13)]
    restated = _daily_bars("yahoo", 100, 92, 101.0, T0 + timedelta(hours=1), datetime(2019, 7, 1, tzinfo=UTC))
    second = _run(root, restated, "manual__restatement")
    assert [o["partition"] for o in second] == ["2019-07", "2019-08", "2019-09"]
    assert [o["run_rows"] for o in second] == [3100, 3100, 3000] and sum(o["kept_newer"] for o in second) == 0
    _run(root, _aapl(RECORDED, T0), "manual__aapl")
    _run(
        root,
        _aapl(Window(datetime(2020, 9, 15, tzinfo=UTC), datetime(2020, 10, 16, tzinfo=UTC)), T0 + timedelta(days=1)),
        "manual__aapl2",
    )

    s3 = services.boto3_client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="market-lake", Prefix="bars/test-readers/source=")["Contents"]]
    assert len(keys) == 24 and all(k.endswith("/bars.parquet") and "/interval=1d/month=" in k for k in keys)

    glob = "s3://market-lake/bars/test-readers/source=*/interval=*/*/*.parquet"
    con = _duckdb(services)
    total, distinct, misfiled = con.sql(
        f"SELECT count(*), count(DISTINCT (symbol, time)), count(*) FILTER (WHERE strftime(time AT TIME ZONE 'UTC', '%Y-%m') <> month) "
        f"FROM read_parquet('{glob}', hive_partitioning = true)"
    ).fetchone()
    aapl_days = _aapl(RECORDED, T0).num_rows
    assert aapl_days == 49
    assert (total, distinct, misfiled) == (200 * 730 + aapl_days, 200 * 730 + aapl_days, 0)
    # The newest extraction of each bar: the restated closes, and AAPL's re-extracted days.
    by_close = dict(
        con.sql(f"SELECT close, count(*) FROM read_parquet('{glob}') WHERE symbol LIKE 'S%' GROUP BY close").fetchall()
    )
    assert by_close == {101.0: 100 * 92, 100.0: 200 * 730 - 100 * 92}
    reextracted = con.sql(
        f"SELECT min(time AT TIME ZONE 'UTC')::date, max(time AT TIME ZONE 'UTC')::date, count(*) "
        f"FROM read_parquet('{glob}') WHERE symbol = 'AAPL' AND ingested_at > TIMESTAMPTZ '2026-01-01 12:00:00+00'"
    ).fetchone()
    assert [str(d) for d in reextracted[:2]] == ["2020-09-15", "2020-10-15"] and reextracted[2] == 23

    # The product's reader returns the same bars as the glob.
    ours = lake.read_lake(root, "yahoo", "1d", datetime(2019, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
    theirs = con.sql(
        f"SELECT symbol, time, close, ingested_at FROM read_parquet('{glob}') ORDER BY symbol, time"
    ).fetch_arrow_table()
    assert ours.select(["symbol", "time", "close", "ingested_at"]).to_pylist() == theirs.to_pylist()


def test_partitions_follow_the_interval():
    root = lake.lake_root("file:///lake")
    assert str(lake.partition_object(root, "binance", "1m", "2021-10-22")).endswith(
        "/source=binance/interval=1m/date=2021-10-22/bars.parquet"
    )
    assert str(lake.partition_object(root, "yahoo", "1d", "2020-09")).endswith(
        "/source=yahoo/interval=1d/month=2020-09/bars.parquet"
    )
    assert str(lake.partition_object(root, "yahoo", "1wk", "2020")).endswith("/interval=1wk/year=2020/bars.parquet")
    assert str(lake.partition_object(root, "yahoo", None, "2020-09-01", "quotes")).endswith(
        "/source=yahoo/date=2020-09-01/quotes.parquet"
    )
    assert [lake.partition_of("2020-09-30", i) for i in ("1h", "1d", "1mo")] == ["2020-09-30", "2020-09", "2020"]
    with pytest.raises(ValueError, match=r"yahoo 1d: partition '2020-09-01' is not a month"):
        lake.partition_dir(root, "yahoo", "1d", "2020-09-01")


def test_compact_folds_earlier_layouts_in_and_loses_no_bar(tmp_path, services):
    """A lake written before month partitions: daily bars in ``date=`` folders, and (the per-window
    layout before that) a second object in a folder. Compacting leaves only this layout's objects,
    the same bars by the product's reader, and each bar once by DuckDB's glob."""
    import duckdb

    root = lake.lake_root(f"file://{tmp_path}")
    base = root / "source=yahoo" / "interval=1d"
    aapl = _aapl(RECORDED, T0)
    for day, rows in lake.split_by_partition(aapl, "1h"):  # per date, as the earlier layout wrote 1d
        lake.write_parquet(rows, base / f"date={day}" / "bars.parquet")
    # A newer extraction of October in this layout, and a per-window object beside it holding
    # an older copy of October 29 and 30 and November 2 and 3.
    _run(root, _aapl(Window(datetime(2020, 10, 1, tzinfo=UTC), datetime(2020, 11, 1, tzinfo=UTC)), T0 + timedelta(days=1)), "new")
    lake.write_parquet(
        _aapl(Window(datetime(2020, 10, 29, tzinfo=UTC), datetime(2020, 11, 4, tzinfo=UTC)), T0),
        base / "month=2020-10" / "window-x.parquet",
    )
    before = lake.read_lake(root, "yahoo", "1d", RECORDED.start, RECORDED.end)
    assert before.num_rows == 49

    stats = lake.compact(root, "yahoo", "1d")
    assert stats == {"objects_folded": 49 + 1, "rows_folded": 49 + 4, "partitions_written": 4}
    objects = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.glob("source=*/**/*.parquet"))
    assert objects == [f"source=yahoo/interval=1d/month=2020-{m}/bars.parquet" for m in ("08", "09", "10", "11")]
    after = lake.read_lake(root, "yahoo", "1d", RECORDED.start, RECORDED.end)
    assert after.to_pylist() == before.to_pylist()
    october = after.filter(pa.compute.equal(pa.compute.strftime(after["time"], "%Y-%m"), "2020-10"))
    assert set(october["ingested_at"].to_pylist()) == {T0 + timedelta(days=1)}  # the newer extraction kept
    assert lake.compact(root, "yahoo", "1d") == {"objects_folded": 0, "rows_folded": 0, "partitions_written": 0}

    total, distinct = duckdb.sql(
        f"SELECT count(*), count(DISTINCT time) FROM read_parquet('{tmp_path}/source=*/interval=*/*/*.parquet', hive_partitioning = true)"
    ).fetchone()
    assert total == distinct == 49


def test_the_setup_dags_compact_task_folds_a_legacy_lake_on_s3(services):
    """``market_setup``'s ``compact_lake`` over every configured series: the daily bars an earlier
    version wrote by date (January 1999, which no other test writes) end in one month object."""
    import pyarrow.compute as pc

    from market_ingest.config import load_config
    from market_ingest.dag_factory import build_setup_dag

    cfg = load_config()
    root = lake.lake_root(cfg.lake.url)
    legacy = _daily_bars("yahoo", 20, 10, 50.0, T0, datetime(1999, 1, 4, tzinfo=UTC))  # 10 days x 20 series
    for day, rows in lake.split_by_partition(legacy, "1h"):  # by date, as the earlier layout wrote 1d
        lake.write_parquet(rows, root / "source=yahoo" / "interval=1d" / f"date={day}" / "bars.parquet")

    done = build_setup_dag(cfg).get_task("compact_lake").execute({})
    assert done["yahoo/1d"] == {"objects_folded": 10, "rows_folded": 200, "partitions_written": 1}
    assert sum(v["objects_folded"] for v in done.values()) == 10 and len(done) == len(cfg.dag_pairs()) + len(cfg.quote_sources())
    s3 = services.boto3_client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="market-lake", Prefix="bars/source=yahoo/interval=1d/")["Contents"]]
    assert not [k for k in keys if "/date=1999-" in k] and "bars/source=yahoo/interval=1d/month=1999-01/bars.parquet" in keys
    january = lake.read_lake(root, "yahoo", "1d", datetime(1999, 1, 1, tzinfo=UTC), datetime(1999, 2, 1, tzinfo=UTC))
    assert january.num_rows == 200 and pc.all(pc.equal(january["close"], 50.0)).as_py()
