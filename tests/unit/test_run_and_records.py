"""Run selection (Params form), Kinesis record building and batching, lake keys, quality checks."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from market_ingest.errors import ConfigurationError
from market_ingest.kinesis import batches, build_records, record_id
from market_ingest.lake import dedupe_last, window_token
from market_ingest.quality import validate_bars
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
        pytest.param({"symbols": ["AAPL", "BP/.L; DROP"]}, "not valid symbols", id="bad-symbol"),
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
    first, again = build_records(table), build_records(table)
    ids = [json.loads(r["Data"])["record_id"] for r in first]
    assert ids == [json.loads(r["Data"])["record_id"] for r in again]
    assert len(set(ids)) == 2
    assert ids[0] == record_id("yahoo", "MSFT", "1d", "2021-07-19T00:00:00Z")
    assert first[0]["PartitionKey"] == "yahoo:MSFT"
    payload = json.loads(first[0]["Data"])
    assert payload["time"] == "2021-07-19T00:00:00Z" and payload["close"] == 10.5 and payload["schema_version"] == 1


def test_putrecords_batches_respect_count_and_size_limits():
    records = [{"Data": b"x" * 20_000, "PartitionKey": "yahoo:MSFT"} for _ in range(1200)]
    out = batches(records, max_records=500, max_bytes=5 * 1024 * 1024)
    assert sum(len(b) for b in out) == 1200
    assert all(len(b) <= 500 for b in out)
    assert all(sum(len(r["Data"]) + len(r["PartitionKey"]) for r in b) <= 5 * 1024 * 1024 for b in out)
    assert len(out) == 5  # 262 records of ~20 KB fit in 5 MiB, so size, not count, splits


def test_window_token_and_dedupe_keep_last():
    assert window_token(START, END) == "20210719T000000Z_20210720T000000Z"
    table = pa.concat_tables([bars([START], close=[1.0]), bars([START], close=[2.0])])
    assert dedupe_last(table)["close"].to_pylist() == [2.0]


def test_quality_checks_drop_only_bad_rows():
    t = bars([START, END, datetime(2021, 7, 21, tzinfo=UTC)], high=[11.0, 8.0, 11.0], volume=[1.0, 1.0, -5.0])
    valid, counts = validate_bars(t)
    assert valid["time"].to_pylist() == [START]
    assert counts == {"invalid: high_below_range": 1, "invalid: negative_volume": 1}


def test_universes_use_yahoo_spelling():
    from market_ingest.config import load_universe

    ftse = load_universe("ftse100")
    assert {"BP.L", "BT-A.L", "RR.L"} <= set(ftse)
    assert not [s for s in ftse if "/" in s]
    assert len(load_universe("dax40")) == 40 and "MT.PA" in load_universe("cac40")
