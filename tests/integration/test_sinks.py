"""Sinks against real servers: PostgreSQL (pgserver) and moto's S3 and Kinesis over HTTP on loopback."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import psycopg
import pyarrow as pa
import pytest

from market_ingest.hooks.timescale import LoadSpan, TimescaleHook
from market_ingest.hooks.yahoo import Window, YahooFinanceHook
from market_ingest.intervals import CANONICAL_INTERVALS
from market_ingest.kinesis import build_records, put_records

pytestmark = pytest.mark.integration
UTC = timezone.utc
SOURCE = "sinks-test"
T1985 = datetime(1985, 1, 7, tzinfo=UTC)  # a span no other test loads (none of its chunks in the columnstore)


@pytest.fixture(scope="module")
def recorded_bars():
    """MSFT, NVDA and TSLA daily bars for 2021-07-19 .. 07-23 from the recordings (15 rows)."""
    hook = YahooFinanceHook()
    table, _ = hook.fetch_bars(
        ["MSFT", "NVDA", "TSLA"],
        "1d",
        Window(datetime(2021, 7, 19, tzinfo=UTC), datetime(2021, 7, 24, tzinfo=UTC)),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    assert table.num_rows == 15
    # Its own source name: other tests load the same recorded bars as `yahoo`, extracted later, and
    # the newest extraction wins; these tests are about repeating one load.
    return table.set_column(table.schema.get_field_index("source"), "source", pa.array([SOURCE] * table.num_rows))


def _snapshot(services):
    with psycopg.connect(services.pg_conninfo()) as conn:
        return conn.execute(
            "SELECT source, symbol, interval, time, open, high, low, close, volume, adj_close, dividend, split_ratio, currency "
            "FROM market.bars WHERE source = %s AND symbol IN ('MSFT','NVDA','TSLA') AND interval = '1d' ORDER BY 1, 2, 3, 4",
            (SOURCE,),
        ).fetchall()


def _daily_bars(source: str, series: int, days: int, close, ingested: datetime, t0: datetime) -> pa.Table:
    """``series`` x ``days`` canonical daily bars of ``source`` from ``t0``, series by series;
    every price ``close`` (one value, or one per bar), volume 1,000, extracted at ``ingested``."""
    from datetime import timedelta

    from market_ingest.schema import conform

    n = days * series
    prices = [close] * n if isinstance(close, float) else close
    return conform(
        pa.table(
            {
                "time": pa.array(
                    [t0 + timedelta(days=d) for _ in range(series) for d in range(days)], pa.timestamp("us", tz="UTC")
                ),
                "source": [source] * n,
                "symbol": [f"S{s:03d}" for s in range(series) for _ in range(days)],
                "interval": ["1d"] * n,
                **{c: prices for c in ("open", "high", "low", "close")},
                "volume": [1000.0] * n,
                "currency": ["USD"] * n,
                "ingested_at": pa.array([ingested] * n, pa.timestamp("us", tz="UTC")),
            }
        )
    )


def _versions(services, source: str) -> dict:
    """``{(symbol, time): (xmin, xmax, close)}`` of ``source``'s daily bars of 1985 to 1989: ``xmin``
    changes when a row is rewritten, ``xmax`` is set when one is locked (``ON CONFLICT`` locks every
    conflicting row). Those years as literals, so that TimescaleDB's planner leaves out the chunks
    other tests converted to the columnstore (whose rows have no ``xmin`` to show)."""
    from psycopg import sql

    query = sql.SQL(
        "SELECT symbol, time, xmin::text, xmax::text, close FROM market.bars_1d WHERE source = {} AND time >= {} AND time < {}"
    ).format(sql.Literal(source), sql.Literal(T1985), sql.Literal(T1985.replace(year=1990)))
    with psycopg.connect(services.pg_conninfo()) as conn:
        return {(symbol, time): (xmin, xmax, close) for symbol, time, xmin, xmax, close in conn.execute(query)}


def test_migrations_are_idempotent_and_build_the_keyed_table(services, warehouse):
    hook = TimescaleHook()
    hook.migrate()
    assert hook.migrate() == []  # second call: nothing pending
    with psycopg.connect(services.pg_conninfo()) as conn:
        pk = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint WHERE conrelid = 'market.bars_1d'::regclass AND contype = 'p'"
        ).fetchone()[0]
        columns = [
            r[0]
            for r in conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_schema='market' AND table_name='bars' ORDER BY ordinal_position"
            )
        ]
    assert pk == 'PRIMARY KEY (source, symbol, "interval", "time")'
    from market_ingest.schema import BAR_COLUMNS

    assert tuple(columns) == BAR_COLUMNS  # the DDL follows the pyarrow schema
    # TimescaleDB: a hypertable; plain PostgreSQL: a plain table with the same key and columns
    assert hook.is_hypertable() is (warehouse == "timescaledb")


def test_load_three_times_leaves_the_same_rows(services, recorded_bars):
    hook = TimescaleHook()
    hook.migrate()
    counts = [hook.load_bars(recorded_bars) for _ in range(3)]
    snapshot = _snapshot(services)
    assert counts == [15, 0, 0]  # identical reloads write nothing
    assert len(snapshot) == 15
    assert hook.load_bars(recorded_bars) == 0 and _snapshot(services) == snapshot
    newer = recorded_bars.set_column(
        recorded_bars.schema.get_field_index("ingested_at"),
        "ingested_at",
        pa.array([datetime(2026, 2, 1, tzinfo=UTC)] * 15, pa.timestamp("us", tz="UTC")),
    )
    assert hook.load_bars(newer) == 15 and _snapshot(services) == snapshot  # a newer extraction: lineage rewritten
    nvda_split = [r for r in snapshot if r[1] == "NVDA" and r[3] == datetime(2021, 7, 20, tzinfo=UTC)]
    assert nvda_split and nvda_split[0][11] == 4.0


def test_failed_load_changes_nothing(services, recorded_bars):
    """One transaction per load: a bad row aborts the whole load and earlier rows stay as they were."""
    hook = TimescaleHook()
    hook.migrate()
    hook.load_bars(recorded_bars)
    before = _snapshot(services)
    broken = recorded_bars.set_column(
        recorded_bars.schema.get_field_index("close"),
        "close",
        pa.array([999.0] * (recorded_bars.num_rows - 1) + [None], pa.float64()),
    )
    with pytest.raises(psycopg.errors.NotNullViolation):
        hook.load_bars(broken)
    assert _snapshot(services) == before


class FlakyKinesis:
    """Wraps a real boto3 Kinesis client: the first call sends only every other record and reports
    the rest as throttled, as Kinesis does under ProvisionedThroughputExceeded."""

    def __init__(self, client):
        self.client = client
        self.exceptions = client.exceptions
        self.calls = []

    def put_records(self, StreamName, Records):
        self.calls.append(len(Records))
        if len(self.calls) > 1:
            return self.client.put_records(StreamName=StreamName, Records=Records)
        sent = self.client.put_records(StreamName=StreamName, Records=Records[::2])["Records"]
        results = []
        for i in range(len(Records)):
            results.append(
                sent[i // 2]
                if i % 2 == 0
                else {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}
            )
        return {"FailedRecordCount": len(Records) // 2, "Records": results}


def test_kinesis_partial_failure_is_retried_without_loss(services, recorded_bars):
    from demo.services import read_stream

    stream = "test-partial-failure"
    client = services.boto3_client("kinesis")
    client.create_stream(StreamName=stream, ShardCount=1)
    client.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    flaky = FlakyKinesis(client)
    records = list(build_records(recorded_bars))
    stats = put_records(flaky, stream, records, max_attempts=3, max_wait=0.2)
    assert flaky.calls == [15, 7]  # exactly the 7 failed entries were re-sent
    assert stats == {"records": 15, "sent": 15, "skipped": 0, "calls": 2, "retried": 7}
    received = read_stream(services, stream)
    assert sorted(r["record_id"] for r in received) == sorted(json.loads(r["Data"])["record_id"] for r in records)


def test_kpl_records_deaggregate_to_every_bar_once_in_order_with_its_key(recorded_bars):
    """``record_format: kpl``: each record is a KPL aggregate of up to 2 bars of one symbol; AWS's
    reference deaggregator (the Lambda event shape) gives back every bar once, in order per series,
    each user record with its own ``<source>:<symbol>`` partition key."""
    import base64

    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    records = list(build_records(recorded_bars, bars_per_record=2, record_format="kpl"))
    assert [r["PartitionKey"] for r in records] == [f"{SOURCE}:{s}" for s in ("MSFT", "NVDA", "TSLA") for _ in range(3)]
    event = [
        {
            "kinesis": {
                "kinesisSchemaVersion": "1.0",
                "partitionKey": r["PartitionKey"],
                "sequenceNumber": str(n),
                "approximateArrivalTimestamp": 1.6e9,
                "data": base64.b64encode(r["Data"]).decode(),
            }
        }
        for n, r in enumerate(records)
    ]
    users = [u["kinesis"] for u in iter_deaggregate_records(event)]
    assert all(u["aggregated"] for u in users) and [u["subSequenceNumber"] for u in users[:3]] == [0, 1, 0]
    bars = [json.loads(base64.b64decode(u["data"])) for u in users]
    expected = [json.loads(r["Data"]) for r in build_records(recorded_bars)]  # one JSON record per bar
    assert bars == expected  # every bar once, in the table's order (series by series, by time)
    assert [u["partitionKey"] for u in users] == [f"{b['source']}:{b['symbol']}" for b in bars]
    assert len({b["record_id"] for b in bars}) == recorded_bars.num_rows == 15
    for symbol in ("MSFT", "NVDA", "TSLA"):
        times = [b["time"] for b in bars if b["symbol"] == symbol]
        assert len(times) == 5 and times == sorted(times)


def test_lake_publish_twice_gives_the_same_keys(services, recorded_bars):
    from market_ingest.config import load_config
    from market_ingest.lake import lake_root, publish, read_lake, stage

    root = lake_root(load_config().lake.url) / "test-idempotence"
    staged = stage(recorded_bars, root, "yahoo", "1d", "manual__2021-07-24", 0)
    first = publish(staged, root, "yahoo", "1d")
    second = publish(staged + staged, root, "yahoo", "1d")  # same batch twice: one row per key
    assert [o["path"] for o in first] == [o["path"] for o in second]
    assert [o["rows"] for o in first] == [o["rows"] for o in second] == [15]  # 3 symbols x 5 days
    assert [o["partition"] for o in first] == ["2021"]  # daily bars: one partition per UTC year
    assert [o["version"] for o in second] == [o["version"] for o in first]  # nothing changed: no commit
    assert first[0]["rows_by_symbol"] == {"MSFT": 5, "NVDA": 5, "TSLA": 5}
    s3 = services.boto3_client("s3")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="market-lake", Prefix="bars/test-idempotence/bars/")["Contents"]]
    data = [k for k in keys if k.endswith(".parquet")]
    assert len(data) == 1 and data[0].startswith(f"bars/test-idempotence/bars/source={SOURCE}/interval=1d/period=2021/")
    assert len([k for k in keys if k.startswith("bars/test-idempotence/bars/_delta_log/") and k.endswith(".json")]) == 2
    assert read_lake(root, SOURCE, "1d", datetime(2021, 7, 1, tzinfo=UTC), datetime(2021, 8, 1, tzinfo=UTC)).num_rows == 15


def test_shared_daily_budget_and_exhaustion_on_postgres(services):
    """Two stores (as two tasks would hold) share one budget; an exhaustion mark stops both for the day."""
    from datetime import date

    from market_ingest.quota import PostgresQuotaStore

    hook = TimescaleHook()
    hook.migrate()
    a, b = PostgresQuotaStore(hook), PostgresQuotaStore(TimescaleHook())
    day = date(2031, 1, 2)
    taken = [a.take("vendor_x", day, 3), b.take("vendor_x", day, 3), a.take("vendor_x", day, 3), b.take("vendor_x", day, 3)]
    assert taken == [True, True, True, False]
    other = date(2031, 1, 3)
    assert a.take("vendor_x", other, 3)
    b.mark_exhausted("vendor_x", other)
    assert not a.take("vendor_x", other, 3)  # spent for the rest of that UTC day, for every task
    assert a.take("vendor_x", date(2031, 1, 4), 3)  # the next day starts afresh


def test_a_task_on_a_warehouse_behind_the_code_fails_at_once_naming_market_setup(services, warehouse, monkeypatch):
    """Tasks no longer migrate: they check the schema version and fail without a retry, naming the
    DAG that applies the migrations; after ``market_setup``'s task ran, the same load succeeds."""
    from airflow.sdk.exceptions import AirflowFailException

    from market_ingest.hooks.timescale import latest_version
    from market_ingest.operators.setup import WarehouseSetupOperator
    from market_ingest.operators.warehouse import TimescaleLoadOperator
    from tests.conftest import built

    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS behind")
        conn.execute("CREATE DATABASE behind")
    fresh = {"conn_type": "postgres", "host": services.pg_socket_dir, "port": 5432, "login": "postgres", "schema": "behind"}
    monkeypatch.setenv("AIRFLOW_CONN_MARKET_BEHIND", json.dumps(fresh))
    from dataclasses import replace

    from market_ingest.config import load_config
    from market_ingest.dag_factory import task_arguments

    series = replace(task_arguments(load_config(), "yahoo", "1d")["load_timescale"]["series"], timescale_conn_id="market_behind")
    load = built(TimescaleLoadOperator, "load_timescale", lake={"staged": []}, series=series)
    with pytest.raises(AirflowFailException) as behind:
        load.execute({})
    assert f"has schema version none, this code needs {latest_version()}: trigger the DAG market_setup once" in str(behind.value)

    from market_ingest.config import load_config
    from market_ingest.dag_factory import setup_arguments

    setup_task = WarehouseSetupOperator(
        task_id="migrate", **{**setup_arguments(load_config()), "timescale_conn_id": "market_behind"}
    )
    setup = setup_task.execute({})
    assert setup["version"] == latest_version() and setup["applied"][-1] == latest_version()
    assert setup["hypertable"] is (warehouse == "timescaledb")
    if warehouse == "timescaledb":  # the columnstore policy of every bar table, from the config (90 days)
        tables = {f"market.bars_{i}" for i in CANONICAL_INTERVALS}
        assert set(setup["policies"]) == tables | {"market.bars_1m_rollup_1h", "market.bars_1m_rollup_1d"}
        assert {setup["policies"][t]["columnstore_after"] for t in tables} == {"90 days, 0:00:00"}
        assert setup["policies"]["market.bars_1m_rollup_1h"] == {
            "refresh_from": "60 days, 1:00:00",  # the restatement window, and one bucket
            "refresh_to": "1:00:00",
            "every": "0:15:00",
        }
    else:
        assert setup["policies"] == {}
    assert load.execute({})["rows"] == 0
    assert setup_task.execute({})["applied"] == []


def test_each_interval_has_its_own_table_and_chunks_of_1440_bars(services, warehouse, recorded_bars):
    """``market.bars`` is a view over one table per interval; a query on one interval reads only
    its table, and on TimescaleDB each table's chunk spans 1,440 bars of its interval."""
    from market_ingest.intervals import INTERVAL_LENGTH

    hook = TimescaleHook()
    hook.migrate()
    hook.load_bars(recorded_bars)
    with psycopg.connect(services.pg_conninfo()) as conn:
        plan = "\n".join(
            r[0]
            for r in conn.execute(
                "EXPLAIN SELECT * FROM market.bars WHERE source = %s AND symbol = 'MSFT' AND interval = '1d'", (SOURCE,)
            )
        )
        assert "bars_1d" in plan and not any(
            f"bars_{i} " in plan or f"bars_{i}_" in plan for i in CANONICAL_INTERVALS if i != "1d"
        )
        stored = conn.execute("SELECT count(*) FROM market.bars_1d WHERE source = %s", (SOURCE,)).fetchone()[0]
        assert stored == recorded_bars.num_rows == 15
        if warehouse == "timescaledb":
            chunks = dict(
                conn.execute(
                    "SELECT hypertable_name, time_interval FROM timescaledb_information.dimensions "
                    "WHERE hypertable_schema = 'market' AND hypertable_name LIKE 'bars%'"
                ).fetchall()
            )
            expected = {f"bars_{i}": 1440 * length for i, length in INTERVAL_LENGTH.items()}
            expected["bars_1mo"] = 1440 * INTERVAL_LENGTH["1d"] * 30
            assert chunks == expected


def test_a_restatement_of_over_100000_bars_into_the_columnstore_applies_whole(services, warehouse):
    """Seen on TimescaleDB with one load: ``tuple decompression limit exceeded by operation`` past
    100,000 rows (``max_tuples_decompressed_per_dml_transaction``). 150,000 daily bars of 100
    series are loaded, their chunks converted to the columnstore, then restated with new closes."""
    hook = TimescaleHook()
    hook.migrate()
    t0 = datetime(2000, 1, 1, tzinfo=UTC)

    def bars(close: float, ingested: datetime) -> pa.Table:
        return _daily_bars("restate-test", 100, 1500, close, ingested, t0)

    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'restate-test'")
    assert hook.load_bars(bars(10.0, datetime(2026, 1, 1, tzinfo=UTC))) == 150_000
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        if warehouse == "timescaledb":
            for (chunk,) in conn.execute("SELECT show_chunks('market.bars_1d')").fetchall():
                conn.execute("CALL convert_to_columnstore(%s::regclass, if_not_columnstore => true)", (chunk,))
            compressed = conn.execute(
                "SELECT count(*) FILTER (WHERE is_compressed), count(*) FROM timescaledb_information.chunks "
                "WHERE hypertable_schema = 'market' AND hypertable_name = 'bars_1d'"
            ).fetchone()
            assert compressed[0] == compressed[1] >= 1
    assert hook.load_bars(bars(11.0, datetime(2026, 2, 1, tzinfo=UTC))) == 150_000
    with psycopg.connect(services.pg_conninfo()) as conn:
        closes = conn.execute(
            "SELECT close, count(*) FROM market.bars WHERE source = 'restate-test' AND interval = '1d' GROUP BY 1"
        ).fetchall()
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'restate-test'")
        conn.commit()
    assert closes == [(11.0, 150_000)]


def test_one_minute_bars_roll_up_to_hours_and_days_on_either_warehouse(services, warehouse):
    """AAPL's recorded 1m bars of 2024-10-02 (389, pre-market excluded) rolled up: first open, max high,
    min low, last close, summed volume and the bar count per UTC hour and day, the same through the
    continuous aggregates (TimescaleDB, once refreshed) and the plain views (PostgreSQL)."""
    from collections import defaultdict

    from market_ingest.hooks.yahoo import YahooFinanceHook

    day = datetime(2024, 10, 2, tzinfo=UTC)
    bars, _ = YahooFinanceHook().fetch_bars(["AAPL"], "1m", Window(day, datetime(2024, 10, 3, tzinfo=UTC)), day)
    bars = bars.set_column(bars.schema.get_field_index("source"), "source", pa.array(["rollup-test"] * bars.num_rows))
    hook = TimescaleHook()
    hook.migrate()
    hook.load_bars(bars)
    assert hook.refresh_rollups(day, datetime(2024, 10, 3, tzinfo=UTC)) is (warehouse == "timescaledb")

    rows = sorted(bars.select(["time", "open", "high", "low", "close", "volume"]).to_pylist(), key=lambda r: r["time"])
    hours = defaultdict(list)
    for r in rows:
        hours[r["time"].replace(minute=0)].append(r)

    def rollup(group):
        return (
            group[0]["open"],
            max(r["high"] for r in group),
            min(r["low"] for r in group),
            group[-1]["close"],
            pytest.approx(sum(r["volume"] for r in group)),
            len(group),
        )

    with psycopg.connect(services.pg_conninfo()) as conn:
        hourly = conn.execute(
            "SELECT time, open, high, low, close, volume, bar_count FROM market.bars_1m_rollup_1h "
            "WHERE source = 'rollup-test' AND symbol = 'AAPL' ORDER BY time"
        ).fetchall()
        daily = conn.execute(
            "SELECT time, open, high, low, close, volume, bar_count FROM market.bars_1m_rollup_1d "
            "WHERE source = 'rollup-test' AND symbol = 'AAPL'"
        ).fetchall()
        conn.execute("DELETE FROM market.bars_1m WHERE source = 'rollup-test'")
        conn.commit()
    assert len(rows) == 390 - 1 and len(hours) == 7  # 13:30 .. 19:59 UTC, the regular session
    assert [(h[0], *h[1:]) for h in hourly] == [(t, *rollup(g)) for t, g in sorted(hours.items())]
    assert daily == [(day, *rollup(rows))]


def test_a_load_that_repeats_a_key_keeps_its_newest_row(services, recorded_bars):
    """Extract gives each key once, so the insert needs no sort; a load that does repeat keys (two
    staged copies of a batch, the later extracted with other closes) still keeps the newest row of each."""
    import pyarrow.compute as pc

    hook = TimescaleHook()
    hook.migrate()
    source = pa.array(["repeat-test"] * recorded_bars.num_rows)
    first = recorded_bars.set_column(recorded_bars.schema.get_field_index("source"), "source", source)
    later = first.set_column(first.schema.get_field_index("close"), "close", pc.multiply(first["close"], 2.0))
    later = later.set_column(
        later.schema.get_field_index("ingested_at"),
        "ingested_at",
        pa.array([datetime(2026, 3, 1, tzinfo=UTC)] * later.num_rows, pa.timestamp("us", tz="UTC")),
    )
    stats = hook.upsert([*later.to_batches(max_chunksize=7), *first.to_batches(max_chunksize=7)], "bars")
    with psycopg.connect(services.pg_conninfo()) as conn:
        stored = conn.execute(
            "SELECT symbol, time, close FROM market.bars WHERE source = 'repeat-test' AND interval = '1d' ORDER BY 1, 2"
        ).fetchall()
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'repeat-test'")
        conn.commit()
    assert stats == {"rows": 30, "applied": 15, "skipped": 15, "copied": 0}
    expected = sorted(zip(later["symbol"].to_pylist(), later["time"].to_pylist(), later["close"].to_pylist()))
    assert stored == expected


def _stored(services, source: str) -> list[tuple]:
    with psycopg.connect(services.pg_conninfo()) as conn:
        return conn.execute(
            "SELECT symbol, time, close, ingested_at FROM market.bars_1d WHERE source = %s ORDER BY 1, 2", (source,)
        ).fetchall()


def test_new_rows_are_copied_straight_in_and_anything_else_is_upserted(services, warehouse):
    """A load whose declared span holds nothing stored is copied straight into its table; a reload
    of it is not (the probe sees the stored rows) and writes nothing. A span that does not tell
    the truth costs a fallback, never a bar: rows outside it, keys stored under a span that claims
    another range, and a key repeated in the load each end with every key once, newest extraction."""
    import pyarrow.compute as pc

    hook = TimescaleHook()
    hook.migrate()
    # 1985: a span no other test loads, so on TimescaleDB none of its chunks is in the columnstore
    # (where no plain insert is trusted: see apply_load).
    bars = _daily_bars("direct-test", 3, 5, [50.0 + i for i in range(15)], datetime(2026, 1, 1, tzinfo=UTC), T1985)
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'direct-test'")
    series = ("source", "symbol", "interval")
    span = LoadSpan.of(bars, series)
    assert len(span.ranges) == 3

    def load(table: pa.Table, span: LoadSpan) -> dict:
        return dict(hook.upsert(lambda: table.to_batches(max_chunksize=4), "bars", span=span))

    assert load(bars, span) == {"rows": 15, "applied": 15, "skipped": 0, "copied": 15}
    first = _stored(services, "direct-test")
    assert [(s, t, c) for s, t, c, _ in first] == sorted(
        zip(bars["symbol"].to_pylist(), bars["time"].to_pylist(), bars["close"].to_pylist())
    )
    assert load(bars, span) == {"rows": 15, "applied": 0, "skipped": 15, "copied": 0}
    assert _stored(services, "direct-test") == first

    # Extracted later with other closes, under a span that claims a range where nothing is stored:
    # the probe finds nothing there, the copy stops at the first row outside it, the upsert
    # replaces the stored rows.
    later = bars.set_column(bars.schema.get_field_index("close"), "close", pc.multiply(bars["close"], 2.0))
    later = later.set_column(
        later.schema.get_field_index("ingested_at"),
        "ingested_at",
        pa.array([datetime(2026, 3, 1, tzinfo=UTC)] * later.num_rows, pa.timestamp("us", tz="UTC")),
    )
    elsewhere = LoadSpan({k: (T1985.replace(year=1986), T1985.replace(year=1987)) for k in span.ranges})
    assert load(later, elsewhere)["copied"] == 0
    assert [(s, t, c) for s, t, c, _ in _stored(services, "direct-test")] == [(s, t, c * 2) for s, t, c, _ in first]

    # A span that leaves out one symbol, into an empty table: the copy stops at its rows, the upsert loads all.
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'direct-test'")
    partial = LoadSpan({k: r for k, r in span.ranges.items() if k[1] != "S002"})
    assert load(bars, partial) == {"rows": 15, "applied": 15, "skipped": 0, "copied": 0}
    assert _stored(services, "direct-test") == first

    # A key given twice, the later extraction second: the copy refuses it, the upsert keeps the newest.
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'direct-test'")
    twice = pa.concat_tables([bars, later.cast(bars.schema)])
    assert load(twice, LoadSpan.of(twice, series)) == {"rows": 30, "applied": 15, "skipped": 15, "copied": 0}
    assert [(s, t, c) for s, t, c, _ in _stored(services, "direct-test")] == [(s, t, c * 2) for s, t, c, _ in first]
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'direct-test'")


def test_a_reload_locks_and_writes_only_the_bars_that_changed(services, warehouse):
    """20,000 daily bars (40 series, 500 days) loaded, the table analysed (as autovacuum does after a
    load that size), then reloaded identical: no row proposed to ``ON CONFLICT``, so none is locked
    (``xmax`` stays 0) or rewritten (``xmin`` unchanged). Then reloaded with every 10th close
    changed and extracted later: exactly those 2,000 rows get a new version, the rest stay untouched."""
    import pyarrow.compute as pc

    hook = TimescaleHook()
    hook.migrate()
    n = 40 * 500
    bars = _daily_bars("reload-test", 40, 500, [50.0 + i % 97 for i in range(n)], datetime(2026, 1, 1, tzinfo=UTC), T1985)

    def versions() -> dict:
        return _versions(services, "reload-test")

    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'reload-test'")
        assert hook.load_bars(bars) == n
        conn.execute("ANALYZE market.bars_1d")
    loaded = versions()
    assert len(loaded) == n and {xmax for _, xmax, _ in loaded.values()} == {"0"}

    assert hook.load_bars(bars) == 0
    assert versions() == loaded  # not rewritten, not even locked

    every_10th = pa.array([i % 10 == 0 for i in range(n)])
    restated = bars.set_column(
        bars.schema.get_field_index("close"), "close", pc.if_else(every_10th, pc.add(bars["close"], 0.5), bars["close"])
    )
    restated = restated.set_column(
        restated.schema.get_field_index("ingested_at"),
        "ingested_at",
        pa.array([datetime(2026, 2, 1, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")),
    )
    # A later extraction of the same bar is new lineage (written); here only the changed closes
    # are given a later extraction time, so only they differ from what is stored.
    restated = restated.set_column(
        restated.schema.get_field_index("ingested_at"),
        "ingested_at",
        pc.if_else(every_10th, restated["ingested_at"], bars["ingested_at"]),
    )
    assert hook.load_bars(restated) == n // 10
    after = versions()
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'reload-test'")
    rewritten = {k for k in after if after[k][0] != loaded[k][0]}
    expected = {
        (s, t) for s, t, changed in zip(bars["symbol"].to_pylist(), bars["time"].to_pylist(), every_10th.to_pylist()) if changed
    }
    assert rewritten == expected
    assert all(after[k] == loaded[k] for k in after.keys() - expected)  # the other 18,000: not locked either
    assert all(after[k][2] == loaded[k][2] + 0.5 for k in expected)


def test_a_changed_rows_join_planned_as_a_loop_over_a_scan_is_not_run(services, monkeypatch):
    """The plan CI once met (stale statistics): a nested loop reading the table once per copied row.
    Here forced on the planner (hash, merge and index joins disabled for the load's session through
    libpq's ``PGOPTIONS``): the load sees it in ``EXPLAIN`` and upserts every copied row instead,
    which locks each conflicting row (``xmax`` set) and changes none."""
    hook = TimescaleHook()
    hook.migrate()
    bars = _daily_bars("rescan-test", 4, 500, 20.0, datetime(2026, 1, 1, tzinfo=UTC), T1985)
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'rescan-test'")
    assert hook.load_bars(bars) == 2000
    loaded = _versions(services, "rescan-test")
    off = (
        "enable_hashjoin",
        "enable_mergejoin",
        "enable_indexscan",
        "enable_indexonlyscan",
        "enable_bitmapscan",
        "enable_memoize",
    )
    monkeypatch.setenv("PGOPTIONS", " ".join(f"-c {name}=off" for name in off))
    assert hook.load_bars(bars) == 0
    monkeypatch.delenv("PGOPTIONS")
    reloaded = _versions(services, "rescan-test")
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DELETE FROM market.bars_1d WHERE source = 'rescan-test'")
    assert reloaded.keys() == loaded.keys()
    assert all(reloaded[k][0] == loaded[k][0] and reloaded[k][2] == loaded[k][2] for k in loaded)  # none rewritten
    assert all(xmax != "0" for _, xmax, _ in reloaded.values())  # every row locked: the per-row upsert ran


def test_compose_init_creates_the_missing_buckets_and_streams_then_nothing(services, capsys, monkeypatch):
    """Docker Compose's init service (``deploy/compose/init.py``), through the Airflow AWS and
    warehouse connections, creates the lake bucket and the bars, quotes and events streams a config
    names when they are absent, two shards each, migrates the warehouse and makes the coverage
    view's login in the read-only role; on the next ``docker compose up`` it creates nothing and
    applies nothing."""
    import psycopg

    from market_ingest.config import load_config
    from tests.unit.test_compose import _init_module

    monkeypatch.setenv("MARKET_READER_PASSWORD", "view-secret-3")  # from .env, as Compose passes it

    cfg = load_config()
    conn = cfg.kinesis.aws_conn_id
    fresh = cfg.model_copy(
        update={
            "lake": cfg.lake.model_copy(
                update={"url": f"s3://{conn}@init-lake/bars", "quotes_url": f"s3://{conn}@init-lake/quotes"}
            ),
            "kinesis": cfg.kinesis.model_copy(update={"stream": "init-bars", "quotes_stream": "init-quotes"}),
            "alerts": cfg.alerts.model_copy(update={"events_stream": "init-events"}),
        }
    )
    init = _init_module()
    init.create_sinks(fresh)
    assert "created: init-lake, init-bars, init-quotes, init-events\n" in capsys.readouterr().out
    assert "init-lake" in {b["Name"] for b in services.boto3_client("s3").list_buckets()["Buckets"]}
    kinesis = services.boto3_client("kinesis")
    for stream in ("init-bars", "init-quotes", "init-events"):
        summary = kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"]
        assert (summary["StreamStatus"], summary["OpenShardCount"]) == ("ACTIVE", 2), stream

    init.create_sinks(fresh)
    out = capsys.readouterr().out
    assert "created: nothing, every bucket and stream exists\n" in out
    assert "warehouse migrations applied: none pending\n" in out
    assert "coverage view login: market_view (role market_reader)\n" in out
    with psycopg.connect(services.pg_conninfo()) as conn:
        login = conn.execute(
            "SELECT rolcanlogin, rolpassword IS NOT NULL, pg_has_role(oid, 'market_reader', 'MEMBER'), rolsuper, rolcreaterole "
            "FROM pg_authid WHERE rolname = 'market_view'"
        ).fetchone()
    assert login == (True, True, True, False, False)
