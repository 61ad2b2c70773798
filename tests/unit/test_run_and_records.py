"""Run selection (Params form), Kinesis record building and batching, lake keys, quality checks."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from market_ingest.errors import ConfigurationError
from market_ingest.kinesis import batches, build_records, record_id
from market_ingest.lake import newest_per_key, run_token
from market_ingest.run import batch_symbols, select
from market_ingest.schema import conform

UTC = timezone.utc
START, END = datetime(2021, 7, 19, tzinfo=UTC), datetime(2021, 7, 20, tzinfo=UTC)


def bars(times, symbol="MSFT", **cols):
    n = len(times)
    base = {
        "time": pa.array(times, pa.timestamp("us", tz="UTC")),
        "source": ["yahoo"] * n,
        "symbol": [symbol] * n,
        "interval": ["1d"] * n,
        "open": [10.0] * n,
        "high": [11.0] * n,
        "low": [9.0] * n,
        "close": [10.5] * n,
        "volume": [100.0] * n,
        "ingested_at": pa.array([START] * n, pa.timestamp("us", tz="UTC")),
    }
    base.update(cols)
    return conform(pa.table(base))


def test_scheduled_run_takes_the_data_interval_and_universe():
    sel = select("yahoo", ["AAPL", "MSFT"], START, END, {"symbols": None, "start": None, "end": None})
    assert (sel.start, sel.end, sel.symbols, sel.manual) == (START, END, ("AAPL", "MSFT"), False)


def test_params_override_symbols_and_window():
    sel = select(
        "yahoo",
        ["AAPL"],
        START,
        END,
        {"symbols": ["BP.L", "BT-A.L", "BP.L"], "start": "2024-10-02", "end": "2024-10-03T00:00:00Z"},
    )
    assert sel.symbols == ("BP.L", "BT-A.L")
    assert sel.start == datetime(2024, 10, 2, tzinfo=UTC) and sel.end == datetime(2024, 10, 3, tzinfo=UTC)
    assert sel.manual


@pytest.mark.parametrize(
    ("params", "message"),
    [
        pytest.param({"symbols": ["AAPL", "BP/.L; DROP"]}, "are not valid yahoo symbols", id="bad-symbol"),
        pytest.param({"start": "2024-10-03", "end": "2024-10-02"}, "not after start", id="inverted-range"),
        pytest.param({"start": "yesterday"}, "not an ISO 8601", id="unparsable-time"),
    ],
)
def test_bad_params_are_rejected_before_any_request(params, message):
    with pytest.raises(ConfigurationError, match=message) as err:
        select("yahoo", ["AAPL"], START, END, params)
    assert str(err.value).startswith("yahoo:")


def test_batches_cover_every_symbol_once():
    symbols = [f"S{i}" for i in range(53)]
    out = batch_symbols(symbols, 25)
    assert [len(b) for b in out] == [25, 25, 3] and sum(out, []) == symbols


def test_record_ids_are_deterministic_and_per_bar():
    table = bars([START, END])
    first, again = list(build_records(table)), list(build_records(table))
    ids = [json.loads(r["Data"])["record_id"] for r in first]
    assert ids == [json.loads(r["Data"])["record_id"] for r in again]
    assert len(set(ids)) == 2
    assert ids[0] == record_id("yahoo", "MSFT", "1d", "2021-07-19T00:00:00Z")
    assert first[0]["PartitionKey"] == "yahoo:MSFT"
    payload = json.loads(first[0]["Data"])
    assert payload["time"] == "2021-07-19T00:00:00Z" and payload["close"] == 10.5 and payload["schema_version"] == 2


def test_putrecords_batches_respect_count_and_size_limits():
    records = [{"Data": b"x" * 20_000, "PartitionKey": "yahoo:MSFT"} for _ in range(1200)]
    out = list(batches(records, max_records=500, max_bytes=5 * 1024 * 1024))
    assert sum(len(b) for b in out) == 1200
    assert all(len(b) <= 500 for b in out)
    assert all(sum(len(r["Data"]) + len(r["PartitionKey"]) for r in b) <= 5 * 1024 * 1024 for b in out)
    assert len(out) == 5  # 262 records of ~20 KB fit in 5 MiB, so size, not count, splits


def test_run_tokens_are_key_safe_and_distinct():
    a, b = run_token("manual__2021-07-21T00:00:00+00:00"), run_token("manual__2021-07-21T00_00_00_00_00")
    assert a.startswith("manual__2021-07-21T00_00_00_00_00-") and a != b
    assert all(c.isalnum() or c in "._-" for c in a)


def test_newest_extraction_wins_and_ties_go_to_the_later_row():
    later = datetime(2021, 7, 21, tzinfo=UTC)
    older_first = pa.concat_tables(
        [bars([START], close=[2.0], ingested_at=pa.array([later], pa.timestamp("us", tz="UTC"))), bars([START], close=[1.0])]
    )
    assert newest_per_key(older_first, ("source", "symbol", "interval", "time"))["close"].to_pylist() == [2.0]
    tie = pa.concat_tables([bars([START], close=[1.0]), bars([START], close=[3.0])])
    assert newest_per_key(tie, ("source", "symbol", "interval", "time"))["close"].to_pylist() == [3.0]


def test_kpl_aggregates_stay_within_one_mib_and_carry_a_spread_series_keys():
    """3,000 bars of one symbol with room for 10,000 per aggregate: the 1 MiB record limit (data
    plus partition key) splits them; a spread series' user records carry the record's partition
    key and explicit hash key (the KCL drops user records whose hash is outside its shard)."""
    from datetime import timedelta

    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    from market_ingest.kinesis import MAX_RECORD_BYTES

    table = bars([START + timedelta(minutes=i) for i in range(3000)], currency=["X" * 40_000] * 3000)  # ~40 KB rows
    records = list(build_records(table, bars_per_record=10_000, spread_keys={"yahoo:MSFT": 2}, record_format="kpl"))
    sizes = [len(r["Data"]) + len(r["PartitionKey"].encode()) for r in records]
    assert len(records) > 1 and max(sizes) <= MAX_RECORD_BYTES and max(sizes) > MAX_RECORD_BYTES - 45_000
    users = [
        u["kinesis"] | {"outer": r}
        for n, r in enumerate(records)
        for u in iter_deaggregate_records(
            [{"Data": r["Data"], "PartitionKey": r["PartitionKey"], "SequenceNumber": str(n), "ApproximateArrivalTimestamp": 0}],
            data_format="Boto3",
        )
    ]
    assert len(users) == 3000
    assert all(
        u["partitionKey"] == u["outer"]["PartitionKey"] and u["explicitHashKey"] == u["outer"]["ExplicitHashKey"] for u in users
    )
    assert [r["PartitionKey"][-2:] for r in records[:3]] == ["#0", "#1", "#0"]
