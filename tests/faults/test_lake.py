"""The lake never drops a bar it held: runs replace only what they extracted, concurrent
publishes of one partition both land, and overlapping windows leave each bar once."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from functools import partial

import pyarrow as pa
import pytest

from tests.e2e.test_dag_run import _run, report_of
from tests.faults.support import key_counts, raw_lake_rows

pytestmark = pytest.mark.e2e
UTC = timezone.utc
WEEK = {"start": "2021-08-02T00:00:00Z", "end": "2021-08-07T00:00:00Z"}  # Mon..Fri; no other test writes it
DAYS = ["2021-08-02", "2021-08-03", "2021-08-04", "2021-08-05", "2021-08-06"]
PREFIX = "bars/bars/source=yahoo/interval=1d/period=2021/"


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

    # An overlapping window (Wed..Thu) for one symbol: still each bar once, in the month's partition.
    third = _run(
        "market_yahoo_1d",
        datetime(2021, 8, 9, tzinfo=UTC),
        {"symbols": ["NVDA"], "start": "2021-08-04T00:00:00Z", "end": "2021-08-06T00:00:00Z"},
    )
    assert str(third.state).endswith("success")
    rows = _week_rows(services)
    assert key_counts(rows) == counts
    assert {r["_key"].rsplit("/", 1)[0] for r in rows} == {PREFIX.rstrip("/")}  # the partition of 2021


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


def race(monkeypatch, *writes):
    """Run ``writes`` (callables that each commit to one lake table) in threads, holding the first
    table read of each of the first two (``open_table(create=True)``: the read a merge or a write
    starts from) until both have read, so both commit from the same version and one commit must
    conflict. Restores ``open_table`` before returning.

    :return: ``(results, reads)``: each write's result in order, and how many such reads there were
        (3 when one writer conflicted and read the table again).
    :raises: the first error a writer raised.
    """
    from market_ingest.lake import table

    both_read = threading.Barrier(2, timeout=30)
    reads = [0]
    real_open = table.open_table

    def open_then_wait(root, *, create=False, version=None, **kwargs):
        dt = real_open(root, create=create, version=version, **kwargs)
        if create:  # a writer's read of the table
            reads[0] += 1
            if reads[0] <= 2:  # the first of each writer: both hold the same version
                both_read.wait()
        return dt

    results: list = [None] * len(writes)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            results[i] = writes[i]()
        except Exception as exc:  # raised below
            errors.append(exc)

    monkeypatch.setattr(table, "open_table", open_then_wait)
    try:
        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(writes))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        monkeypatch.setattr(table, "open_table", real_open)
    if errors:
        raise errors[0]
    return results, reads[0]


def test_concurrent_publishes_of_one_partition_both_land(services, monkeypatch):
    """Two runs open the bars table at the same version, then both merge into the same month: on
    S3 (moto, which honours ``If-None-Match: *``) only one can create the next log entry; the
    other's commit conflicts and it merges again on the new version, instead of overwriting it."""
    from market_ingest import lake
    from market_ingest.config import load_config
    from market_ingest.lake import table

    root = lake.lake_root(load_config().lake.url) / "test-concurrent"
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    lake.publish(lake.stage(_bars("AAPL", day, t0), root, "yahoo", "1d", "seed", 0), root, "yahoo", "1d")
    seeded = table.open_table(root).version()
    staged = {
        s: lake.stage(_bars(s, day, t0 + timedelta(minutes=1)), root, "yahoo", "1d", f"run-{s}", 0) for s in ("MSFT", "NVDA")
    }

    _, reads = race(monkeypatch, *(partial(lake.publish, staged[s], root, "yahoo", "1d") for s in ("MSFT", "NVDA")))
    assert reads == 3  # one writer's commit conflicted: it read the table again and merged again
    assert table.open_table(root).version() == seeded + 2  # two commits, one per run
    merged = lake.read_lake(root, "yahoo", "1d", day, day + timedelta(days=1))
    assert sorted(merged["symbol"].to_pylist()) == ["AAPL", "MSFT", "NVDA"]


def test_a_partition_replaced_while_read_is_read_as_it_was(services):
    """A reader that opened the table keeps reading that version while a run's merge replaces the
    partition's file (on S3, moto); the next read sees the run's bars, and the old version stays
    readable by number (time travel) until a vacuum older than the retention removes its files."""
    from market_ingest import lake
    from market_ingest.config import load_config
    from market_ingest.lake import table

    root = lake.lake_root(load_config().lake.url) / "test-replaced"
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    lake.publish(lake.stage(_bars("AAPL", day, t0, close=100.0), root, "yahoo", "1d", "first", 0), root, "yahoo", "1d")
    reader = table.open_table(root).to_pyarrow_dataset()  # opened at the first version
    first = table.open_table(root).version()
    restated = lake.stage(_bars("AAPL", day, t0 + timedelta(hours=1), close=101.0), root, "yahoo", "1d", "second", 0)
    (obj,) = lake.publish(restated, root, "yahoo", "1d")
    assert obj["version"] == first + 1 and obj["rows"] == 1
    assert reader.to_table()["close"].to_pylist() == [100.0]  # the file it listed is still there
    assert lake.read_lake(root, "yahoo", "1d", day, day + timedelta(days=1))["close"].to_pylist() == [101.0]
    assert table.read_table(root, version=first)["close"].to_pylist() == [100.0]


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
    merged = lake.read_lake(root, "yahoo", "1d", day, day + timedelta(days=1))
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
    assert lake.read_lake(root, "yahoo", "1d", day, day + timedelta(days=1))["close"].to_pylist() == [101.0]


def test_two_runs_appending_the_same_new_bars_at_once_leave_each_once(tmp_path, monkeypatch):
    """Both runs find nothing stored in their span, so both take the append path at the same
    version; both commits carry the pair's application transaction, so the second conflicts,
    finds the first's files, merges, and each bar is stored once (two blind appends would both land)."""
    from market_ingest import lake
    from market_ingest.lake import table

    root = lake.lake_root(f"file://{tmp_path}")
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    rows = pa.concat_tables([_bars(s, day, t0) for s in ("MSFT", "NVDA")])
    staged = [lake.stage(rows, root, "yahoo", "1d", f"run-{i}", 0) for i in range(2)]
    table.open_table(root, create=True)

    _, reads = race(monkeypatch, *(partial(lake.publish, s, root, "yahoo", "1d") for s in staged))
    assert reads == 3  # the second append conflicted and was merged again
    stored = lake.read_table(root)
    assert sorted(stored["symbol"].to_pylist()) == ["MSFT", "NVDA"]


def _table_paths(dt) -> list[str]:
    """The paths, relative to the table's root, of the data files of ``dt``'s version."""
    return pa.table(dt.get_add_actions(flatten=True))["path"].to_pylist()


def test_a_backfill_commits_its_staged_files_as_they_are(tmp_path):
    """A run whose bars overlap nothing stored is committed without rewriting a byte: the table's
    files are the data files its extract staged (one per year), read back with every bar; before,
    the publish read the staged object and wrote the same bars into new files."""
    from market_ingest import lake
    from market_ingest.lake import table

    root = lake.lake_root(f"file://{tmp_path}")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = pa.concat_tables(
        [_bars(s, datetime(2021, 12, 31, tzinfo=UTC), t0) for s in ("MSFT", "NVDA")]
        + [_bars(s, datetime(2022, 1, 3, tzinfo=UTC), t0) for s in ("MSFT", "NVDA")]
    )
    staged = lake.stage(rows, root, "yahoo", "1d", "backfill", 0)
    table.open_table(root, create=True)

    published = lake.publish(staged, root, "yahoo", "1d")
    dt = table.open_table(root)
    assert sorted(_table_paths(dt)) == sorted(s["table_path"] for s in staged) and len(staged) == 2  # 2021 and 2022
    assert [(p["partition"], p["run_rows"], p["rows"]) for p in published] == [("2021", 2, 2), ("2022", 2, 2)]
    stored = lake.read_table(root)
    assert sorted(zip(stored["symbol"].to_pylist(), stored["time"].to_pylist())) == sorted(
        zip(rows["symbol"].to_pylist(), rows["time"].to_pylist())
    )
    assert set(stored["source"].to_pylist()) == {"yahoo"} and set(stored["interval"].to_pylist()) == {"1d"}


def test_a_staged_file_cut_short_is_never_committed(tmp_path):
    """A run's staged file damaged after its extract wrote it (cut in half) would be committed
    unread by the append: the publish checks each file's size first and fails naming it and its
    run, and the table is left as it was."""
    from market_ingest import lake
    from market_ingest.errors import CorruptObjectError
    from market_ingest.lake import table

    root = lake.lake_root(f"file://{tmp_path}")
    staged = lake.stage(
        _bars("MSFT", datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)), root, "yahoo", "1d", "run", 0
    )
    version = table.open_table(root, create=True).version()
    path = lake.lake_root(staged[0]["path"])
    path.write_bytes(path.read_bytes()[: staged[0]["size"] // 2])

    with pytest.raises(
        CorruptObjectError, match=r"staged object .* of run run-[0-9a-f]{8} cannot be read as Parquet \(it is \d+ bytes"
    ):
        lake.publish(staged, root, "yahoo", "1d")
    assert table.open_table(root).version() == version


def test_a_retried_extract_after_its_publish_adds_no_bar_and_unused_staged_files_are_vacuumed(tmp_path):
    """A run published, then cleared whole: its extract stages the same bars again as new files,
    whose publish finds them stored and merges (every bar once); the files it staged are never
    committed, and the maintenance vacuum removes them once older than the retention, while the
    committed files, as old, stay."""
    import os
    import time

    from market_ingest import lake
    from market_ingest.lake import table

    root = lake.lake_root(f"file://{tmp_path}")
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    first = lake.stage(_bars("MSFT", day, t0), root, "yahoo", "1d", "run", 0)
    lake.publish(first, root, "yahoo", "1d")
    again = lake.stage(_bars("MSFT", day, t0), root, "yahoo", "1d", "run", 0)  # the cleared extract
    assert {s["path"] for s in again}.isdisjoint(s["path"] for s in first)  # never overwrites a committed file
    lake.publish(again, root, "yahoo", "1d")
    assert lake.read_table(root)["symbol"].to_pylist() == ["MSFT"]
    assert sorted(_table_paths(table.open_table(root))) == sorted(s["table_path"] for s in first)

    week_ago = time.time() - (table.VACUUM_RETENTION_HOURS + 1) * 3600
    for s in first + again:
        os.utime(lake.lake_root(s["path"]).path, (week_ago, week_ago))
    done = table.maintain(root)
    assert done["files_vacuumed"] == len(again)
    assert not any(os.path.exists(lake.lake_root(s["path"]).path) for s in again)
    assert lake.read_table(root)["symbol"].to_pylist() == ["MSFT"]


def test_a_batch_spanning_many_periods_is_staged_as_one_object_and_merged(tmp_path):
    """A batch of 20 years of daily bars (20 year periods; a year of 1m bars is 365 dates) is not
    staged as a file per period, which would put as many files in its XCom, its HEADs and the
    commit: it is one staged object, merged by the publish into a file per period."""
    from market_ingest import lake
    from market_ingest.lake import table

    root = lake.lake_root(f"file://{tmp_path}")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = pa.concat_tables(
        [_bars("MSFT", datetime(2000 + y, 3, 1, tzinfo=UTC), t0) for y in range(table.MAX_STAGED_PERIODS + 4)]
    )
    (staged,) = lake.stage(rows, root, "yahoo", "1d", "long", 0)
    assert "/_staging/" in staged["path"] and "table_path" not in staged
    published = lake.publish([staged], root, "yahoo", "1d")
    assert len(published) == table.MAX_STAGED_PERIODS + 4 and sum(p["run_rows"] for p in published) == rows.num_rows
    assert lake.read_table(root).num_rows == rows.num_rows


def test_staged_files_older_than_half_the_retention_are_merged_not_committed_unread(tmp_path):
    """A run published days after its extract (cleared late): its staged files could be vacuumed
    between the publish's check and its commit, leaving the table pointing at a missing file, so
    they are read and their bars written anew; a staged file that is gone fails naming it and its
    run, at the publish and in the sinks."""
    import os
    import time

    from market_ingest import lake
    from market_ingest.errors import StagedObjectGoneError
    from market_ingest.lake import table

    root = lake.lake_root(f"file://{tmp_path}")
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    staged = lake.stage(_bars("MSFT", day, t0), root, "yahoo", "1d", "late", 0)
    days_ago = time.time() - table.VACUUM_RETENTION_HOURS * 3600 * 0.6
    os.utime(lake.lake_root(staged[0]["path"]).path, (days_ago, days_ago))
    lake.publish(staged, root, "yahoo", "1d")
    assert lake.read_table(root)["symbol"].to_pylist() == ["MSFT"]
    assert staged[0]["table_path"] not in _table_paths(table.open_table(root))  # merged into a new file

    gone = lake.stage(_bars("NVDA", day, t0), root, "yahoo", "1d", "gone", 0)
    os.unlink(lake.lake_root(gone[0]["path"]).path)
    with pytest.raises(StagedObjectGoneError, match=r"staged object .* of run gone-[0-9a-f]{8} is gone"):
        lake.publish(gone, root, "yahoo", "1d")
    with pytest.raises(StagedObjectGoneError, match=r"clear the run's extract tasks"):
        list(lake.iter_staged([gone[0]["path"]]))


def test_file_statistics_leave_out_bounds_json_cannot_hold():
    """A data file's statistics go into the table's log as JSON, which has no NaN or infinity: a
    column with an infinite value gets no bounds (a reader then cannot skip the file by it), never
    a log entry no reader parses; a NaN is left out of the bounds, as Arrow's min and max leave it."""
    import json
    import math

    from market_ingest.lake.table import file_stats

    data = pa.table({"close": [1.0, math.nan, 3.0], "volume": [1.0, math.inf, 2.0], "n": [1, 2, 3]})
    stats = json.loads(file_stats(data))
    assert stats["minValues"] == {"close": 1.0, "n": 1} and stats["maxValues"] == {"close": 3.0, "n": 3}
    assert stats["numRecords"] == 3 and stats["nullCount"] == {"close": 0, "volume": 0, "n": 0}


def test_a_compaction_that_a_run_commits_under_compacts_again_and_loses_no_bar(tmp_path, monkeypatch):
    """``market_setup``'s compaction opens the table, then a run's publish rewrites one of the small
    files it is about to compact: the compaction's commit conflicts, and it compacts again on the
    run's version (before, ``CommitFailedError`` failed the task). Every bar once, the run's newer close kept."""
    from market_ingest import lake
    from market_ingest.lake import table

    root = lake.lake_root(f"file://{tmp_path}")
    day, t0 = datetime(2021, 8, 2, tzinfo=UTC), datetime(2026, 1, 1, tzinfo=UTC)
    for s in ("MSFT", "NVDA"):  # two small files in one partition
        lake.publish(lake.stage(_bars(s, day, t0), root, "yahoo", "1d", f"run-{s}", 0), root, "yahoo", "1d")
    newer = lake.stage(_bars("MSFT", day, t0 + timedelta(hours=1), close=101.0), root, "yahoo", "1d", "newer", 0)

    # The compaction asks for its writer properties after opening the table, just before it
    # commits: the run publishes there.
    real_properties = table._writer_properties
    raced = []

    def a_run_commits_first():
        if not raced:
            raced.append(True)
            monkeypatch.setattr(table, "_writer_properties", real_properties)
            lake.publish(newer, root, "yahoo", "1d")
        return real_properties()

    monkeypatch.setattr(table, "_writer_properties", a_run_commits_first)
    done = table.maintain(root)
    assert raced and done["files_removed"] >= 2
    merged = lake.read_lake(root, "yahoo", "1d", day, day + timedelta(days=1))
    assert sorted(zip(merged["symbol"].to_pylist(), merged["close"].to_pylist())) == [("MSFT", 101.0), ("NVDA", 100.0)]


def _rejected(symbols: tuple[str, ...], days: int) -> pa.Table:
    """Yahoo's recorded daily bars of ``symbols`` (2021-08-09 ..), the first ``days`` of each
    with an infinite high: the rejects :func:`market_ingest.quality.split_valid` makes of them."""
    import math

    from market_ingest.hooks.yahoo import Window, YahooFinanceHook
    from market_ingest.quality import split_valid

    week = Window(datetime(2021, 8, 9, tzinfo=UTC), datetime(2021, 8, 14, tzinfo=UTC))
    table, _ = YahooFinanceHook().fetch_bars(list(symbols), "1d", week, datetime(2026, 1, 1, tzinfo=UTC))
    first = pa.compute.less(table["time"], datetime(2021, 8, 9 + days, tzinfo=UTC))
    high = pa.compute.if_else(first, math.inf, table["high"])
    _, rejected, _ = split_valid(table.set_column(table.schema.get_field_index("high"), "high", high))
    return rejected


def test_concurrent_extract_batches_both_write_their_rejects_and_a_retry_replaces_its_own(services, monkeypatch):
    """Two extract batches of one run write their rejects at the same table version (on moto):
    one commit conflicts and is merged again, both batches land. Then batch 0's retry, which
    rejected fewer bars, replaces its earlier try's rows instead of adding to them, and leaves
    batch 1's alone."""
    from market_ingest import lake
    from market_ingest.config import load_config
    from market_ingest.lake import table

    root = lake.lake_root(load_config().lake.url) / "test-rejects"
    run = "scheduled__2021-08-14T00:00:00+00:00"
    batches = {0: _rejected(("MSFT", "NVDA"), 2), 1: _rejected(("TSLA",), 3)}
    table.open_table(root, create=True, dataset="rejects")
    seeded = table.open_table(root, dataset="rejects").version()

    written, reads = race(monkeypatch, *(partial(lake.write_rejects, root, batches[b], "yahoo", "1d", run, b) for b in batches))
    assert reads == 3 and table.open_table(root, dataset="rejects").version() == seeded + 2
    assert written[0]["rows"] == 4 and written[1]["rows"] == 3

    def stored():
        rows = lake.read_rejects(root, "yahoo", "1d", run).to_pylist()
        return sorted((r["batch"], r["symbol"], r["time"].date().isoformat(), r["reason"]) for r in rows)

    assert stored() == sorted(
        [(0, s, f"2021-08-{d:02d}", "invalid: non_finite_value") for s in ("MSFT", "NVDA") for d in (9, 10)]
        + [(1, "TSLA", f"2021-08-{d:02d}", "invalid: non_finite_value") for d in (9, 10, 11)]
    )
    lake.write_rejects(root, _rejected(("MSFT",), 1), "yahoo", "1d", run, 0)  # batch 0's retry
    assert stored() == [(0, "MSFT", "2021-08-09", "invalid: non_finite_value")] + [
        (1, "TSLA", f"2021-08-{d:02d}", "invalid: non_finite_value") for d in (9, 10, 11)
    ]
    assert lake.read_rejects(root, "yahoo", "1h", run).num_rows == 0  # another interval's DAG, same run id
    # A further retry of batch 0 that rejected nothing (what the extract task writes on a retry
    # without rejects): batch 0's rows go, batch 1's stay.
    nothing = _rejected(("MSFT",), 1).slice(0, 0)
    assert lake.write_rejects(root, nothing, "yahoo", "1d", run, 0)["rows"] == 0
    assert {b for b, *_ in stored()} == {1}


def _ledger_rows(interval: str, symbols: tuple[str, ...], run_id: str, updated_at: datetime, loaded: int = 1) -> pa.Table:
    """Ledger rows (``market.coverage``'s columns, ``flagged`` and ``updated_at``, as ``coverage.record``
    returns them) of the week of 2021-08-02 for ``symbols``."""
    from datetime import date

    from market_ingest.lake.mirror import schema

    rows = [
        {
            "source": "yahoo",
            "interval": interval,
            "symbol": s,
            "day": date(2021, 8, d),
            "covered_from": datetime(2021, 8, d, tzinfo=UTC),
            "covered_until": datetime(2021, 8, d + 1, tzinfo=UTC),
            "expected": 1,
            "loaded": loaded,
            "state": "complete" if loaded else "missing",
            "reason": "",
            "run_id": run_id,
            "attempts": 0,
            "flagged": 0,
            "updated_at": updated_at,
        }
        for s in symbols
        for d in range(2, 7)
    ]
    return pa.Table.from_pylist(rows, schema=schema())


def test_concurrent_loads_both_mirror_their_ledger_rows_and_an_older_mirror_never_wins(services, monkeypatch):
    """The loads of two pairs (yahoo 1d and 1h) mirror their ledger rows at the same version of the
    coverage table (on moto): one commit conflicts and is merged again, both land, each day once.
    A mirror stamped earlier (a slow load's) does not replace a day mirrored later."""
    from market_ingest import lake
    from market_ingest.config import load_config
    from market_ingest.lake import table

    root = lake.lake_root(load_config().lake.url) / "test-mirror"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    table.open_table(root, create=True, dataset="coverage")
    seeded = table.open_table(root, dataset="coverage").version()

    mirrors = (partial(lake.mirror_ledger, root, _ledger_rows(i, ("MSFT", "NVDA"), f"run-{i}", t0)) for i in ("1d", "1h"))
    _, reads = race(monkeypatch, *mirrors)
    assert reads == 3 and table.open_table(root, dataset="coverage").version() == seeded + 2
    for interval in ("1d", "1h"):
        rows = lake.read_mirror(root, "yahoo", interval).to_pylist()
        assert [(r["symbol"], r["day"].day, r["run_id"]) for r in rows] == [
            (s, d, f"run-{interval}") for s in ("MSFT", "NVDA") for d in range(2, 7)
        ]

    lake.mirror_ledger(root, _ledger_rows("1d", ("MSFT",), "run-later", t0 + timedelta(hours=1), loaded=0))
    lake.mirror_ledger(root, _ledger_rows("1d", ("MSFT",), "run-slow", t0 + timedelta(minutes=30)))
    rows = lake.read_mirror(root, "yahoo", "1d").to_pylist()
    assert {(r["symbol"], r["run_id"], r["state"]) for r in rows} == {
        ("MSFT", "run-later", "missing"),
        ("NVDA", "run-1d", "complete"),
    }
    assert len(rows) == 10


def _quotes(as_of: datetime, ingested_at: datetime) -> pa.Table:
    """Alpha Vantage's recorded ``GLOBAL_QUOTE`` answers (MSFT 2018-10-05 as JSON, IBM 2025-11-14
    as CSV) as the hook makes quote rows of them, stamped ``as_of``."""
    from pathlib import Path

    from market_ingest.schema import QUOTE_SCHEMA, conform
    from market_ingest.vendors.alpha_vantage import bodies

    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "alpha_vantage"
    rows = []
    for name in ("av_GLOBAL_QUOTE_MSFT_2018-10-05.json", "av_csv_GLOBAL_QUOTE_IBM_2025-11-14.csv"):
        quote = bodies.parse_quote(bodies.classify((fixtures / name).read_text()))
        rows.append({**quote.__dict__, "time": as_of, "source": "alpha_vantage", "currency": "USD", "ingested_at": ingested_at})
    return conform(pa.Table.from_pylist(rows), QUOTE_SCHEMA)


def test_concurrent_quote_publishes_both_land_and_a_rerun_adds_no_row(services, monkeypatch):
    """Two quote runs (two snapshots of one day) publish at the same version of the quotes table
    (on moto): one commit conflicts and is merged again, both land. The first run published
    again (a retry) adds no row; an older extraction of it does not replace the newer quotes."""
    from market_ingest import lake
    from market_ingest.config import load_config
    from market_ingest.contracts import Dataset
    from market_ingest.lake import table

    root = lake.lake_root(load_config().lake.quotes_url) / "test-quotes"
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    noon, close = datetime(2025, 11, 14, 17, tzinfo=UTC), datetime(2025, 11, 14, 21, tzinfo=UTC)
    staged = {when: lake.stage(_quotes(when, t0), root, "alpha_vantage", None, f"run-{when.hour}", 0) for when in (noon, close)}
    table.open_table(root, create=True, dataset="quotes")
    seeded = table.open_table(root, dataset="quotes").version()

    publishes = (partial(lake.publish, staged[w], root, "alpha_vantage", None, dataset=Dataset.QUOTES) for w in staged)
    published, reads = race(monkeypatch, *publishes)
    assert reads == 3 and table.open_table(root, dataset="quotes").version() == seeded + 2
    assert {o["partition"] for objs in published for o in objs} == {"2025-11-14"}

    def stored():
        q = lake.read_lake(root, "alpha_vantage", None, noon, close + timedelta(hours=1), Dataset.QUOTES)
        return sorted(zip(q["symbol"].to_pylist(), q["time"].to_pylist(), q["price"].to_pylist()))

    expected = [(s, w, p) for s, p in (("IBM", 305.69), ("MSFT", 112.13)) for w in (noon, close)]
    assert stored() == expected
    (again,) = lake.publish(staged[noon], root, "alpha_vantage", None, dataset=Dataset.QUOTES)  # the noon run retried
    assert (again["rows"], again["kept_newer"]) == (4, 0) and stored() == expected
    newer = lake.stage(_quotes(noon, t0 + timedelta(hours=1)), root, "alpha_vantage", None, "newer", 0)
    lake.publish(newer, root, "alpha_vantage", None, dataset=Dataset.QUOTES)
    (late,) = lake.publish(staged[noon], root, "alpha_vantage", None, dataset=Dataset.QUOTES)  # an older extraction, late
    assert late["kept_newer"] == 2 and stored() == expected
    assert set(lake.read_quotes(root, "alpha_vantage", noon, close)["ingested_at"].to_pylist()) == {t0 + timedelta(hours=1)}


def test_a_quote_dag_run_publishes_to_the_quotes_table_and_a_rerun_adds_no_row(services, airflow_db):
    """``market_kucoin_quote`` through Airflow on KuCoin's recorded tickers: the run's quote lands in
    the quotes table under the quotes root (the report counts it in the lake and names the
    table's partition), and the same run again leaves it once."""
    from market_ingest import lake
    from market_ingest.config import load_config
    from market_ingest.contracts import Dataset

    trigger = datetime(2024, 3, 8, 12, tzinfo=UTC)
    reports = []
    for _ in range(2):  # a run, then the same run again (each report read before the next run replaces it)
        run = _run("market_kucoin_quote", trigger, {"symbols": ["BTC/USDT"]})
        assert str(run.state).endswith("success")
        reports.append(report_of(run))
    assert [r["symbols"]["BTC/USDT"]["lake"] for r in reports] == [1, 1]
    (path,) = reports[0]["lake_objects"]
    assert "/quotes/quotes/source=kucoin/period=" in path
    root = lake.lake_root(load_config().lake.quotes_url)
    stored = lake.read_lake(root, "kucoin", None, trigger - timedelta(days=30), trigger + timedelta(days=1), Dataset.QUOTES)
    assert stored["symbol"].to_pylist() == ["BTC/USDT"]


def test_daily_bars_a_table_kept_by_month_are_moved_to_their_year_once(tmp_path, caplog):
    """The bars table was first written with daily bars by UTC month (``period=2021-08``); it keeps
    them by year now and reads only there, so such a table hid its daily bars and a rerun stored
    them again. ``repartition_bars`` (market_setup) moves them, keeping a bar a run published into
    the year meanwhile if it was extracted later; a second run changes nothing."""
    from deltalake import write_deltalake

    from market_ingest import lake
    from market_ingest.lake.table import open_table, storage_options, table_schema, table_uri

    root = lake.lake_root(f"file://{tmp_path}")
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    days = [datetime(2021, 8, 2, tzinfo=UTC), datetime(2021, 9, 1, tzinfo=UTC), datetime(2022, 1, 3, tzinfo=UTC)]
    old = pa.concat_tables([_bars(s, d, t0) for s in ("MSFT", "NVDA") for d in days])
    by_month = old.append_column("period", pa.array([t.strftime("%Y-%m") for t in old["time"].to_pylist()])).cast(table_schema())
    open_table(root, create=True)
    write_deltalake(table_uri(root), by_month, mode="append", storage_options=storage_options(root))
    span = (days[0], days[-1] + timedelta(days=1))
    assert lake.read_lake(root, "yahoo", "1d", *span).num_rows == 0  # hidden by the old periods

    # A run republished one of those bars into its year since, extracted later: it must stay.
    later = lake.stage(_bars("MSFT", days[0], t0 + timedelta(hours=1), close=105.0), root, "yahoo", "1d", "later", 0)
    lake.publish(later, root, "yahoo", "1d")
    assert "6 yahoo/1d bars under periods it no longer uses (2021-08 ..." in caplog.text  # the run's log says so

    first = lake.repartition_bars(root, batch_rows=4)  # two moves: 2021-08 and 2021-09, then 2022-01
    assert (first["partitions"], first["rows"]) == (3, 6)
    stored = lake.read_lake(root, "yahoo", "1d", *span)
    assert sorted(zip(stored["symbol"].to_pylist(), stored["time"].to_pylist())) == sorted(
        (s, d) for s in ("MSFT", "NVDA") for d in days
    )
    msft_aug = [
        c
        for s, t, c in zip(stored["symbol"].to_pylist(), stored["time"].to_pylist(), stored["close"].to_pylist())
        if (s, t) == ("MSFT", days[0])
    ]
    assert msft_aug == [105.0]
    assert {p["period"] for p in open_table(root).partitions()} == {"2021", "2022"}

    version = open_table(root).version()
    again = lake.repartition_bars(root)
    assert (again["partitions"], again["rows"], open_table(root).version()) == (0, 0, version)
