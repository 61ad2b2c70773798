"""The lake as query engines read it (issues 14 and 32): the bars Delta table partitioned by source,
interval and period (the UTC year for daily bars); after overlapping runs deltalake/pyarrow, DuckDB and
Polars over the table's Arrow dataset (through moto's S3 on loopback) read each bar once, the
newest extraction; and the conversion copies what earlier layouts left into the table without
losing a bar, once."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

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


def _dataset(root):
    """The bars table's current version as a ``pyarrow.dataset`` (delta-rs lists its files from
    the log; DuckDB's ``delta_scan`` downloads an extension on first use, and these machines have
    no internet, so DuckDB and Polars read this dataset)."""
    from deltalake import DeltaTable

    return DeltaTable(lake.table_uri(root), storage_options=lake.storage_options(root)).to_pyarrow_dataset()


def test_overlapping_runs_leave_each_bar_once_for_duckdb_and_polars_in_year_partitions(services):
    import duckdb
    import polars as pl

    from market_ingest.config import load_config

    root = lake.lake_root(load_config().lake.url) / "test-readers"
    # 200 symbols x 2 years of daily bars, then an overlapping restatement of 100 of them for a
    # quarter, then the recorded AAPL bars over Aug..Nov 2020 and a re-extraction of mid-Sep..mid-Oct.
    universe = _daily_bars("yahoo", 200, 730, 100.0, T0, datetime(2019, 1, 1, tzinfo=UTC))
    first = _run(root, universe, "scheduled__2021-01-01")
    assert [o["partition"] for o in first] == ["2019", "2020"]  # a year each: one file each, not 24 month files
    assert [o["run_rows"] for o in first] == [200 * 365, 200 * 365]
    assert len({o["version"] for o in first}) == 1  # the run's partitions in one commit
    restated = _daily_bars("yahoo", 100, 92, 101.0, T0 + timedelta(hours=1), datetime(2019, 7, 1, tzinfo=UTC))
    second = _run(root, restated, "manual__restatement")
    assert [o["partition"] for o in second] == ["2019"]
    assert [o["run_rows"] for o in second] == [100 * 92] and sum(o["kept_newer"] for o in second) == 0
    _run(root, _aapl(RECORDED, T0), "manual__aapl")
    _run(
        root,
        _aapl(Window(datetime(2020, 9, 15, tzinfo=UTC), datetime(2020, 10, 16, tzinfo=UTC)), T0 + timedelta(days=1)),
        "manual__aapl2",
    )

    s3 = services.boto3_client("s3")
    pages = s3.get_paginator("list_objects_v2").paginate(Bucket="market-lake", Prefix="bars/test-readers/bars/source=")
    folders = {o["Key"].rsplit("/", 1)[0] for page in pages for o in page["Contents"]}
    assert folders == {f"bars/test-readers/bars/source=yahoo/interval=1d/period={y}" for y in (2019, 2020)}

    con = duckdb.connect()
    bars = _dataset(root)  # noqa: F841 (DuckDB reads the Python variable by name)
    total, distinct, misfiled = con.sql(
        "SELECT count(*), count(DISTINCT (symbol, time)), count(*) FILTER (WHERE strftime(time AT TIME ZONE 'UTC', '%Y') <> period) "
        "FROM bars"
    ).fetchone()
    aapl_days = _aapl(RECORDED, T0).num_rows
    assert aapl_days == 49
    assert (total, distinct, misfiled) == (200 * 730 + aapl_days, 200 * 730 + aapl_days, 0)
    # The newest extraction of each bar: the restated closes, and AAPL's re-extracted days.
    by_close = dict(con.sql("SELECT close, count(*) FROM bars WHERE symbol LIKE 'S%' GROUP BY close").fetchall())
    assert by_close == {101.0: 100 * 92, 100.0: 200 * 730 - 100 * 92}
    reextracted = con.sql(
        "SELECT min(time AT TIME ZONE 'UTC')::date, max(time AT TIME ZONE 'UTC')::date, count(*) "
        "FROM bars WHERE symbol = 'AAPL' AND ingested_at > TIMESTAMPTZ '2026-01-01 12:00:00+00'"
    ).fetchone()
    assert [str(d) for d in reextracted[:2]] == ["2020-09-15", "2020-10-15"] and reextracted[2] == 23

    # A one-symbol, one-month read prunes to one partition, and inside it to the files whose
    # symbol and time statistics (in the log) admit the read: here the one AAPL file of 2020, not
    # the file of the 200 other symbols beside it.
    import pyarrow.compute as pc

    one_month = (
        (pc.field("period") == "2020")
        & (pc.field("symbol") == "AAPL")
        & (pc.field("time") >= datetime(2020, 10, 1, tzinfo=UTC))
        & (pc.field("time") < datetime(2020, 11, 1, tzinfo=UTC))
    )
    year = [f.path for f in _dataset(root).get_fragments(filter=pc.field("period") == "2020")]
    touched = [f.path for f in _dataset(root).get_fragments(filter=one_month)]
    assert len(year) >= 2 and len(touched) == 1 and touched[0] in year
    assert _dataset(root).to_table(filter=one_month).num_rows == 22
    # Polars over the same dataset, the same read.
    october = (
        pl.scan_pyarrow_dataset(_dataset(root))
        .filter(
            (pl.col("period") == "2020")
            & (pl.col("symbol") == "AAPL")
            & (pl.col("time") >= datetime(2020, 10, 1, tzinfo=UTC))
            & (pl.col("time") < datetime(2020, 11, 1, tzinfo=UTC))
        )
        .select("time", "close", "ingested_at")
        .collect()
    )
    assert october.height == 22 and october["ingested_at"].max() == T0 + timedelta(days=1)

    # The product's reader returns the same bars as the engines.
    ours = lake.read_lake(root, "yahoo", "1d", datetime(2019, 1, 1, tzinfo=UTC), datetime(2021, 1, 1, tzinfo=UTC))
    theirs = con.sql("SELECT symbol, time, close, ingested_at FROM bars ORDER BY symbol, time").fetch_arrow_table()
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
    # The bars table keeps daily bars by year (its files' statistics prune inside it).
    by_table = [lake.partition_of("2020-09-30", i, lake.TABLE_PARTITION_BY) for i in ("1h", "1d", "1mo")]
    assert by_table == ["2020-09-30", "2020", "2020"]
    with pytest.raises(ValueError, match=r"yahoo 1d: partition '2020-09-01' is not a month"):
        lake.partition_dir(root, "yahoo", "1d", "2020-09-01")


def test_conversion_copies_every_earlier_layout_into_the_table_once(tmp_path):
    """A lake written before the bars table: daily bars in ``date=`` folders (before month
    partitions), a month object, and (the per-window layout) a second object in a folder holding
    an older copy of days across two months. The conversion leaves the same bars by the product's
    reader, the newest extraction of each, each once by DuckDB over the table; run again, it finds
    nothing to do and commits nothing."""
    import duckdb

    root = lake.lake_root(f"file://{tmp_path}")
    base = root / "source=yahoo" / "interval=1d"
    aapl = _aapl(RECORDED, T0)
    september = aapl.filter(pa.compute.less(aapl["time"], datetime(2020, 10, 1, tzinfo=UTC)))  # Aug 31 .. Sep 30
    for day, rows in lake.split_by_partition(september, "1h"):
        lake.write_parquet(rows, base / f"date={day}" / "bars.parquet")  # per date, as the earliest layout wrote 1d
    # October and November as month objects, a newer extraction of October, and a per-window
    # object beside it holding an older copy of October 29 and 30 and November 2 and 3.
    newer = _aapl(Window(datetime(2020, 10, 1, tzinfo=UTC), datetime(2020, 11, 1, tzinfo=UTC)), T0 + timedelta(days=1))
    lake.write_parquet(newer, lake.partition_object(root, "yahoo", "1d", "2020-10"))
    november = aapl.filter(pa.compute.greater_equal(aapl["time"], datetime(2020, 11, 1, tzinfo=UTC)))
    lake.write_parquet(november, lake.partition_object(root, "yahoo", "1d", "2020-11"))
    lake.write_parquet(
        _aapl(Window(datetime(2020, 10, 29, tzinfo=UTC), datetime(2020, 11, 4, tzinfo=UTC)), T0),
        base / "month=2020-10" / "window-x.parquet",
    )
    assert lake.read_lake(root, "yahoo", "1d", RECORDED.start, RECORDED.end).num_rows == 0  # nothing in the table yet

    stats = lake.convert_lake(root, "yahoo", "1d")
    assert stats == {"objects": september.num_rows + 3, "rows": 49, "rows_merged": 49, "commits": 1, "version": 1}
    after = lake.read_lake(root, "yahoo", "1d", RECORDED.start, RECORDED.end)
    assert after.select(["time", "close"]).to_pylist() == aapl.select(["time", "close"]).to_pylist()
    october = after.filter(pa.compute.equal(pa.compute.strftime(after["time"], "%Y-%m"), "2020-10"))
    assert set(october["ingested_at"].to_pylist()) == {T0 + timedelta(days=1)}  # the newer extraction kept
    again = lake.convert_lake(root, "yahoo", "1d")
    assert again == {**stats, "rows_merged": 0, "commits": 0}  # the same version: nothing committed

    bars = _dataset(root)  # noqa: F841
    total, distinct = duckdb.sql("SELECT count(*), count(DISTINCT time) FROM bars").fetchone()
    assert total == distinct == 49


def test_the_setup_dags_compact_task_converts_a_legacy_lake_on_s3_once(services):
    """``market_setup``'s ``compact_lake`` over every configured series: the daily bars an earlier
    version wrote by date (January 1999, which no other test writes) end in the bars table's month
    partition, counted; run again, the table's version does not move."""
    import pyarrow.compute as pc

    from market_ingest.config import load_config
    from market_ingest.dag_factory import build_setup_dag

    cfg = load_config()
    root = lake.lake_root(cfg.lake.url)
    legacy = _daily_bars("yahoo", 20, 10, 50.0, T0, datetime(1999, 1, 4, tzinfo=UTC))  # 10 days x 20 series
    for day, rows in lake.split_by_partition(legacy, "1h"):  # by date, as the earlier layout wrote 1d
        lake.write_parquet(rows, root / "source=yahoo" / "interval=1d" / f"date={day}" / "bars.parquet")

    # NVDA as an earlier version stored it: Yahoo's answer of 2025-02-22, split-adjusted as of then
    # (one more object in each month partition; other tests of the session may have published some
    # of these bars as traded since, and a publish's newer extraction wins the conversion).
    from tests.unit.test_actions import daily_bars, on

    for _, rows in lake.split_by_partition(daily_bars(NVDA_REC, "NVDA"), "1d"):
        month = rows["time"][0].as_py().strftime("%Y-%m")
        lake.write_parquet(rows, root / "source=yahoo" / "interval=1d" / f"month={month}" / "nvda-legacy.parquet")

    task = build_setup_dag(cfg).get_task("compact_lake")
    done = task.execute({})
    assert done["yahoo/1d"]["objects"] >= 10 + 12 and done["yahoo/1d"]["rows"] >= 200 + 252
    assert done["yahoo/1d"]["rows_merged"] >= 200  # NVDA's days other tests published since, extracted later, are kept
    assert {f"{s}/{i}" for s, i in cfg.dag_pairs()} <= set(done)
    # Then the rows stored before the price basis: NVDA's actions were in no lake object, so the
    # task asked Yahoo for them (the stand-in's whole-history NVDA events) and converted NVDA to as
    # traded; the 20 made-up series Yahoo does not know stay unconverted and are named.
    rebased = done["yahoo/rebase"]
    assert rebased["rows_converted"] > 0 and rebased["rows_left"] == 200
    assert rebased["symbols_lacking_actions"] == sorted(set(legacy["symbol"].to_pylist()))
    nvda = lake.read_lake(root, "yahoo", "1d", *YEAR)
    nvda = nvda.filter(pc.equal(nvda["symbol"], "NVDA"))
    assert nvda.num_rows == 252 and set(nvda["price_basis"].to_pylist()) == {"as_traded"}
    assert on(nvda, "2021-07-16")["close"] == pytest.approx(726.44, abs=0.01)
    january = lake.read_lake(root, "yahoo", "1d", datetime(1999, 1, 1, tzinfo=UTC), datetime(1999, 2, 1, tzinfo=UTC))
    assert january.num_rows == 200 and pc.all(pc.equal(january["close"], 50.0)).as_py()

    version = lake.open_table(root).version()
    again = task.execute({})
    assert again["yahoo/1d"]["rows_merged"] == 0 and again["yahoo/1d"]["rows"] == done["yahoo/1d"]["rows"]
    assert all(again[f"{s}/{i}"]["commits"] == 0 for s, i in cfg.dag_pairs())
    assert again["bars/maintenance"]["files_added"] == 0 and lake.open_table(root).version() == version  # nothing changed


# Adjusted series and re-basing (issue 30), on a file:// lake holding Yahoo's recorded NVDA and
# MSFT answers of 2025-02-22 (tests/unit/test_actions.py reads them as canonical bars).
NVDA_REC, MSFT_REC = "yahoo_chart_NVDA_1d_2021-02-01_2022-01-28_split", "yahoo_chart_MSFT_1d_2021-02-01_2022-01-28_dividends"
YEAR = (datetime(2021, 2, 1, tzinfo=UTC), datetime(2022, 1, 29, tzinfo=UTC))


def _nvda_splits() -> list:
    """NVDA's documented splits (4:1 2021-07-20, 10:1 2024-06-10), each first seen on its ex-date."""
    from tests.unit.test_actions import NVDA_SPLITS
    from tests.unit.test_adjusted import splits

    return splits("NVDA", NVDA_SPLITS)


def _write_actions(root, symbol: str, actions: list) -> None:
    from market_ingest.lake.actions import actions_object, write_actions
    from tests.unit.test_actions import RECORDED

    write_actions(actions_object(root, "yahoo", symbol), actions, RECORDED)


def test_read_adjusted_gives_yahoos_closes_back_from_as_traded_bars_and_the_actions_object(tmp_path, caplog):
    """NVDA and MSFT published as traded, their actions in the lake: read adjusted as of the
    recording's date they are Yahoo's ``close`` and, up to one factor for the dividends after the
    recording, its ``adjclose``; a window ending before the dividends takes their prior closes
    from the lake's daily series, and a dividend whose prior close the lake lacks is named."""
    from tests.unit.test_actions import NVDA_SPLITS, RECORDED, daily_bars
    from tests.unit.test_adjusted import msft, relative_errors, traded

    root = lake.lake_root(f"file://{tmp_path}")
    url = f"file://{tmp_path}"
    _run(root, traded(NVDA_REC, "NVDA", NVDA_SPLITS), "nvda")
    _write_actions(root, "NVDA", _nvda_splits())
    adjusted, skipped = lake.read_adjusted(url, "yahoo", "NVDA", "1d", *YEAR, "split", as_of=RECORDED)
    sent = daily_bars(NVDA_REC, "NVDA")
    assert adjusted.num_rows == sent.num_rows == 252 and skipped == []
    assert relative_errors(adjusted["close"].to_pylist(), sent["close"].to_pylist()) < 1e-6

    sent, stored, dividends = msft()
    _write_actions(root, "MSFT", dividends)
    _run(root, stored.filter(pa.compute.less(stored["time"], datetime(2021, 11, 1, tzinfo=UTC))), "msft-to-october")
    as_of = datetime(2022, 1, 28, 23, 0, tzinfo=UTC)
    # March and April 2021 only: the dividends of May, August and November are after the window.
    spring = (datetime(2021, 3, 1, tzinfo=UTC), datetime(2021, 5, 1, tzinfo=UTC))
    with caplog.at_level("WARNING", logger="market_ingest.lake.adjusted"):
        adjusted, skipped = lake.read_adjusted(url, "yahoo", "MSFT", "1d", *spring, "split_dividend", as_of=as_of)
    # November's close before its ex-date is not in the lake yet: left out, and said so.
    assert [(a.ex_date, a.amount) for a in skipped] == [(date(2021, 11, 17), 0.62)]
    assert "yahoo:MSFT 1d split_dividend: 1 cash distributions left out" in caplog.text and "dividend 2021-11-17" in caplog.text
    _run(root, stored, "msft-all")
    adjusted, skipped = lake.read_adjusted(url, "yahoo", "MSFT", "1d", *spring, "split_dividend", as_of=as_of)
    whole, _ = lake.read_adjusted(url, "yahoo", "MSFT", "1d", *YEAR, "split_dividend", as_of=as_of)
    in_spring = sent.filter(
        pa.compute.and_(pa.compute.greater_equal(sent["time"], spring[0]), pa.compute.less(sent["time"], spring[1]))
    )
    assert skipped == [] and adjusted.num_rows == in_spring.num_rows == 44  # 23 + 21 sessions
    ratios = [a / y for a, y in zip(adjusted["close"].to_pylist(), in_spring["adj_close"].to_pylist())]
    whole_ratios = [a / y for a, y in zip(whole["close"].to_pylist(), sent["adj_close"].to_pylist())]
    assert max(ratios + whole_ratios) / min(ratios + whole_ratios) - 1 < 1e-6  # the same series, windowed


def _legacy(table: pa.Table, root, source: str = "yahoo") -> None:
    """Write ``table`` as a version before bar schema 2 did: monthly objects without ``price_basis``."""
    from market_ingest.schema import BAR_SCHEMA

    v1 = pa.schema([f for f in BAR_SCHEMA if f.name != "price_basis"], metadata={"schema": "market_ingest.bar", "version": "1"})
    for month, rows in lake.split_by_partition(table, "1d"):
        path = lake.partition_object(root, source, "1d", month)
        existing = [lake.read_parquet(path).select(v1.names).cast(v1)] if path.exists() else []
        lake.write_parquet(pa.concat_tables([*existing, rows.select(v1.names).cast(v1)]), path)


def _scaled(table: pa.Table, factor: float, ingested: datetime) -> pa.Table:
    """``table``'s prices times ``factor``, volume divided by it, extracted at ``ingested``."""
    for name in ("open", "high", "low", "close", "volume"):
        column = pa.compute.divide(table[name], factor) if name == "volume" else pa.compute.multiply(table[name], factor)
        table = table.set_column(table.schema.get_field_index(name), name, column)
    return table.set_column(
        table.schema.get_field_index("ingested_at"),
        "ingested_at",
        pa.array([ingested] * table.num_rows, pa.timestamp("us", tz="UTC")),
    )


def test_rebasing_converts_legacy_yahoo_rows_to_as_traded_once_and_refuses_them_before(tmp_path):
    """A lake written before schema 2: NVDA's Yahoo answers split-adjusted as of their extraction
    (the recording of 2025-02-22 for most months; July 2021 as Yahoo answered on 2022-01-31, before
    the 10:1 split, and August as it answered at 02:00 UTC on that split's ex-date, still the 9th in
    New York: both constructed from the recording), MSFT's without an actions object, and an
    as-traded source's rows. Read adjusted, they are refused; re-based, NVDA's are as traded,
    MSFT's are left and named, and a second run writes nothing."""
    import os

    from market_ingest.actions import AS_TRADED, SPLIT_ADJUSTED
    from market_ingest.errors import PriceBasisError
    from market_ingest.kinds import kind
    from tests.unit.test_actions import NVDA_SPLITS, RECORDED, daily_bars, on
    from tests.unit.test_adjusted import relative_errors, traded

    root = lake.lake_root(f"file://{tmp_path}")
    sent = daily_bars(NVDA_REC, "NVDA")
    month = pa.compute.strftime(sent["time"], "%Y-%m")
    july, august = (sent.filter(pa.compute.equal(month, m)) for m in ("2021-07", "2021-08"))
    others = sent.filter(pa.compute.invert(pa.compute.is_in(month, pa.array(["2021-07", "2021-08"]))))
    _legacy(others, root)
    _legacy(_scaled(july, 10.0, datetime(2022, 1, 31, 22, 0, tzinfo=UTC)), root)
    _legacy(_scaled(august, 10.0, datetime(2024, 6, 10, 2, 0, tzinfo=UTC)), root)
    _legacy(daily_bars(MSFT_REC, "MSFT"), root)
    _legacy(daily_bars(MSFT_REC, "MSFT").set_column(1, "source", pa.array(["alpha_vantage"] * 252)), root, "alpha_vantage")
    _write_actions(root, "NVDA", _nvda_splits())
    assert lake.convert_lake(root, "yahoo", "1d")["rows_merged"] == 2 * 252  # into the table as they are: basis null

    with pytest.raises(
        PriceBasisError,
        match=r"yahoo:NVDA: 1d: 252 bars from 2021-02-01 to 2022-01-28 were stored before bar schema 2 .*split-adjusted.*re-base the lake first",
    ):
        lake.read_adjusted(root, "yahoo", "NVDA", "1d", *YEAR, "split", as_of=RECORDED, legacy_basis=SPLIT_ADJUSTED)
    with pytest.raises(PriceBasisError, match=r"of unknown basis"):
        lake.read_adjusted(root, "yahoo", "NVDA", "1d", *YEAR, "split", as_of=RECORDED)

    assert kind("yahoo").price_basis == SPLIT_ADJUSTED and kind("alpha_vantage").price_basis == AS_TRADED
    done = lake.rebase_lake(root, "yahoo", kind("yahoo").price_basis)
    assert done == {
        "rows_converted": 252,
        "rows_labelled": 0,
        "rows_left": 252,
        "objects_written": 12,
        "symbols_lacking_actions": ["MSFT"],
    }
    # The conversion run again carries the re-based rows (same extraction, now with a basis) into the table.
    assert lake.convert_lake(root, "yahoo", "1d")["rows_merged"] == 252
    stored = lake.read_lake(root, "yahoo", "1d", *YEAR)
    nvda = stored.filter(pa.compute.equal(stored["symbol"], "NVDA"))
    assert on(nvda, "2021-07-16")["close"] == pytest.approx(726.44, abs=0.01)  # 18.161 x 40
    assert on(nvda, "2021-08-02")["close"] == pytest.approx(on(traded(NVDA_REC, "NVDA", NVDA_SPLITS), "2021-08-02")["close"])
    assert relative_errors(nvda["close"].to_pylist(), traded(NVDA_REC, "NVDA", NVDA_SPLITS)["close"].to_pylist()) < 1e-9
    assert relative_errors(nvda["volume"].to_pylist(), traded(NVDA_REC, "NVDA", NVDA_SPLITS)["volume"].to_pylist()) < 1e-9
    assert set(nvda["price_basis"].to_pylist()) == {AS_TRADED}
    msft_rows = stored.filter(pa.compute.equal(stored["symbol"], "MSFT"))
    assert msft_rows["price_basis"].null_count == 252 and msft_rows["close"].equals(daily_bars(MSFT_REC, "MSFT")["close"])
    adjusted, _ = lake.read_adjusted(root, "yahoo", "NVDA", "1d", *YEAR, "split", as_of=RECORDED, legacy_basis=SPLIT_ADJUSTED)
    assert relative_errors(adjusted["close"].to_pylist(), sent["close"].to_pylist()) < 1e-6

    objects = sorted(tmp_path.glob("source=*/interval=1d/month=*/bars.parquet"))
    before = {p: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in objects}
    again = lake.rebase_lake(root, "yahoo", SPLIT_ADJUSTED)
    assert again == {
        "rows_converted": 0,
        "rows_labelled": 0,
        "rows_left": 252,
        "objects_written": 0,
        "symbols_lacking_actions": ["MSFT"],
    }
    assert {p: (p.read_bytes(), os.stat(p).st_mtime_ns) for p in objects} == before

    labelled = lake.rebase_lake(root, "alpha_vantage", kind("alpha_vantage").price_basis)
    assert labelled == {
        "rows_converted": 0,
        "rows_labelled": 252,
        "rows_left": 0,
        "objects_written": 12,
        "symbols_lacking_actions": [],
    }
    lake.convert_lake(root, "alpha_vantage", "1d")
    av = lake.read_lake(root, "alpha_vantage", "1d", *YEAR)
    assert set(av["price_basis"].to_pylist()) == {AS_TRADED} and av["close"].equals(daily_bars(MSFT_REC, "MSFT")["close"])
    assert lake.rebase_lake(root, "alpha_vantage", AS_TRADED)["objects_written"] == 0


def test_a_publish_landing_during_the_conversion_is_kept(services, monkeypatch):
    """On S3 (moto): a run publishes a newer extraction of July 2021 after the conversion compared
    the Parquet objects with the table and before it merged them; the conversion's merge keeps the
    run's bars (newer extraction wins), converts the rest, and its check passes."""
    from market_ingest.actions import AS_TRADED
    from market_ingest.config import load_config
    from market_ingest.lake import table
    from tests.unit.test_actions import daily_bars

    root = lake.lake_root(load_config().lake.url) / "test-convert-race"
    sent = daily_bars(NVDA_REC, "NVDA")
    july = sent.filter(pa.compute.equal(pa.compute.strftime(sent["time"], "%Y-%m"), "2021-07"))
    _legacy(july, root)
    run = _scaled(july.slice(0, 3), 1.0, T0)  # three of July's days, extracted later, as traded
    run = run.set_column(run.schema.get_field_index("price_basis"), "price_basis", pa.array([AS_TRADED] * 3))
    staged = lake.stage(run, root, "yahoo", "1d", "concurrent", 0)

    real, merges = table.merge_bars, []

    def publish_first(*args, **kwargs):
        merges.append(kwargs.get("replace_when"))
        if len(merges) == 1:
            lake.publish(staged, root, "yahoo", "1d")  # lands between the comparison and the merge
        return real(*args, **kwargs)

    monkeypatch.setattr(table, "merge_bars", publish_first)
    done = lake.convert_lake(root, "yahoo", "1d")
    assert done["rows"] == done["rows_merged"] == july.num_rows and done["commits"] == 1
    stored = lake.read_lake(root, "yahoo", "1d", datetime(2021, 7, 1, tzinfo=UTC), datetime(2021, 8, 1, tzinfo=UTC))
    assert stored.num_rows == july.num_rows
    assert stored.slice(0, 3)["ingested_at"].to_pylist() == [T0] * 3  # the run's bars
    assert stored.slice(0, 3)["price_basis"].to_pylist() == [AS_TRADED] * 3
    assert stored.slice(3)["price_basis"].null_count == july.num_rows - 3  # the rest as the objects held them


def test_conversion_copies_the_reject_objects_into_the_rejects_table_once(tmp_path):
    """Rejects an earlier version wrote as one object per extract batch (``_rejects/.../run=/batch-n.parquet``)
    end in the rejects table, each batch once, read back by run; a batch a retry wrote to the
    table since keeps the table's rows; run again, the conversion commits nothing."""
    from tests.faults.test_lake import _rejected

    root = lake.lake_root(f"file://{tmp_path}")
    run = "scheduled__2021-08-14T00:00:00+00:00"
    for batch, symbols in ((0, ("MSFT", "NVDA")), (1, ("TSLA",))):
        rows = _rejected(symbols, 2)
        rows = rows.append_column("run_id", pa.array([run] * rows.num_rows, pa.string()))
        lake.write_parquet(rows, lake.rejects_object(root, "yahoo", "1d", run, batch))
    lake.write_rejects(root, _rejected(("TSLA",), 1), "yahoo", "1d", run, 1)  # batch 1's retry, after the upgrade
    version = lake.open_table(root, dataset="rejects").version()

    stats = lake.convert_rejects(root)
    assert stats == {"objects": 2, "rows": 6, "rows_merged": 4, "commits": 1}
    stored = lake.read_rejects(root, "yahoo", "1d", run)
    assert sorted(zip(stored["batch"].to_pylist(), stored["symbol"].to_pylist())) == [
        (0, "MSFT"),
        (0, "MSFT"),
        (0, "NVDA"),
        (0, "NVDA"),
        (1, "TSLA"),
    ]
    assert set(stored["reason"].to_pylist()) == {"invalid: non_finite_value"}
    assert lake.open_table(root, dataset="rejects").version() == version + 1
    again = lake.convert_rejects(root)
    assert again == {**stats, "rows_merged": 0, "commits": 0}
    assert lake.open_table(root, dataset="rejects").version() == version + 1  # nothing committed


def test_conversion_copies_the_ledger_mirror_objects_into_the_coverage_table_once(tmp_path):
    """Ledger mirrors an earlier version wrote as one object per run (``_coverage/.../run=<token>.parquet``,
    two runs covering the same days) end in the coverage table, each day once with the later
    run's row; a day a load mirrored since, later, is kept; run again, nothing is committed."""
    from tests.faults.test_lake import _ledger_rows

    root = lake.lake_root(f"file://{tmp_path}")
    for run, when, symbols in (("scheduled__a", T0, ("MSFT", "NVDA")), ("scheduled__b", T0 + timedelta(hours=1), ("MSFT",))):
        rows = _ledger_rows("1d", symbols, run, when).to_pylist()
        lake.write_parquet(pa.Table.from_pylist(rows), lake.coverage_object(root, "yahoo", "1d", run))
    since = _ledger_rows("1d", ("NVDA",), "scheduled__since", T0 + timedelta(days=1), loaded=0).slice(0, 1)  # NVDA 2021-08-02,
    lake.mirror_ledger(root, since)  # mirrored after the upgrade
    version = lake.open_table(root, dataset="coverage").version()

    stats = lake.convert_mirror(root)
    assert stats == {"objects": 2, "rows": 10, "rows_merged": 9, "commits": 1}
    stored = lake.read_mirror(root, "yahoo", "1d").to_pylist()
    assert [(r["symbol"], r["day"].day, r["run_id"]) for r in stored] == [("MSFT", d, "scheduled__b") for d in range(2, 7)] + [
        ("NVDA", 2, "scheduled__since")
    ] + [("NVDA", d, "scheduled__a") for d in range(3, 7)]
    again = lake.convert_mirror(root)
    assert again == {**stats, "rows_merged": 0, "commits": 0}
    assert lake.open_table(root, dataset="coverage").version() == version + 1  # nothing committed the second time


def test_conversion_copies_the_quote_objects_into_the_quotes_table_once(tmp_path):
    """Quotes an earlier version wrote as one object per (source, date), plus a second object in a
    folder (an older layout) holding an older extraction of the same snapshot, end in the quotes
    table each once, the newer extraction kept, read back by the product's reader, DuckDB and
    Polars; run again, the conversion commits nothing."""
    import duckdb
    import polars as pl

    from market_ingest.contracts import Dataset
    from tests.faults.test_lake import _quotes

    root = lake.lake_root(f"file://{tmp_path}")
    days = [datetime(2025, 11, d, 21, tzinfo=UTC) for d in (13, 14)]
    for day in days:
        lake.write_parquet(
            _quotes(day, T0 + timedelta(hours=1)),
            lake.partition_object(root, "alpha_vantage", None, day.date().isoformat(), "quotes"),
        )
    folder = lake.partition_dir(root, "alpha_vantage", None, "2025-11-14")
    lake.write_parquet(_quotes(days[1], T0), folder / "window-x.parquet")  # older extraction of the same quotes

    stats = lake.convert_quotes(root, "alpha_vantage")
    assert stats == {"objects": 3, "rows": 4, "rows_merged": 4, "commits": 1}
    version = lake.open_table(root, dataset="quotes").version()
    stored = lake.read_lake(root, "alpha_vantage", None, days[0], days[1] + timedelta(hours=1), Dataset.QUOTES)
    assert sorted(zip(stored["symbol"].to_pylist(), stored["time"].to_pylist())) == [
        (s, d) for s in ("IBM", "MSFT") for d in days
    ]
    assert set(stored["ingested_at"].to_pylist()) == {T0 + timedelta(hours=1)}
    again = lake.convert_quotes(root, "alpha_vantage")
    assert again == {**stats, "rows_merged": 0, "commits": 0}
    assert lake.open_table(root, dataset="quotes").version() == version  # nothing committed the second time

    quotes = lake.open_table(root, dataset="quotes").to_pyarrow_dataset()  # noqa: F841
    assert duckdb.sql("SELECT count(*), count(DISTINCT (symbol, time)) FROM quotes").fetchone() == (4, 4)
    by_polars = pl.scan_delta(lake.table_uri(root, "quotes")).filter(pl.col("period") == "2025-11-14").collect()
    assert sorted(by_polars["symbol"].to_list()) == ["IBM", "MSFT"]
