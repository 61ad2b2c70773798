"""A retried Kinesis publish sends only what the stream did not acknowledge, and its error names
the stream and the symbols."""

from __future__ import annotations

import json
import signal
from collections import Counter
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from market_ingest.hooks.yahoo import Window, YahooFinanceHook
from market_ingest.kinesis import PartialFailureError
from market_ingest.operators.kinesis import KinesisPublishOperator
from tests.conftest import built
from tests.faults.support import context

pytestmark = pytest.mark.integration
UTC = timezone.utc
SOURCE = "resume-test"


class ThrottledAfter:
    """A real boto3 Kinesis client that, while ``throttled``, accepts only the first ``accept``
    entries in all and answers every later entry ProvisionedThroughputExceededException, as a
    shard does under a throttle that does not clear."""

    def __init__(self, client, accept: int):
        self.client, self.accept, self.throttled = client, accept, True
        self.exceptions = client.exceptions
        self.sent = 0

    def describe_stream_summary(self, **kw):
        return self.client.describe_stream_summary(**kw)

    def put_records(self, StreamName, Records):
        if not self.throttled:
            self.sent += len(Records)
            return self.client.put_records(StreamName=StreamName, Records=Records)
        room = max(0, self.accept - self.sent)
        accepted = self.client.put_records(StreamName=StreamName, Records=Records[:room])["Records"] if room else []
        self.sent += len(accepted)
        refused = {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded for shard"}
        results = accepted + [refused] * (len(Records) - len(accepted))
        return {"FailedRecordCount": len(Records) - len(accepted), "Records": results}


@pytest.fixture(scope="module")
def staged_bars(services):
    """1,200 of TSLA's recorded daily bars staged as one object of a run, and that run's lake result."""
    from market_ingest.config import load_config
    from market_ingest.lake import lake_root, staging_path, staging_run_dir, write_parquet

    hook = YahooFinanceHook()
    table, _ = hook.fetch_bars(
        ["TSLA"],
        "1d",
        Window(datetime(2010, 6, 29, tzinfo=UTC), datetime(2023, 8, 11, tzinfo=UTC)),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    table = table.slice(0, 1200)
    table = table.set_column(table.schema.get_field_index("source"), "source", pa.array([SOURCE] * 1200))
    root = lake_root(load_config().lake.url)
    path = staging_path(root, SOURCE, "1d", "manual__resume", 0)
    write_parquet(table, path)
    return {
        "staged": [str(path)],
        "fingerprint": "resume-test-1",
        "run_dir": str(staging_run_dir(root, SOURCE, "1d", "manual__resume")),
    }


def test_a_throttled_publish_retried_sends_no_accepted_record_twice(services, staged_bars, pipeline_config, monkeypatch):
    """Seen on main: the task retry re-sent every record, 1,000 of 1,200 twice."""
    from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

    from demo.services import read_stream

    pipeline_config(lambda raw: raw["kinesis"].update(max_attempts=2))
    client = ThrottledAfter(services.boto3_client("kinesis"), accept=1000)
    monkeypatch.setattr(KinesisHook, "conn", property(lambda self: client))
    task = built(KinesisPublishOperator, "publish_kinesis", lake=staged_bars)

    with pytest.raises(PartialFailureError) as failed:  # retryable: Airflow retries the task
        task.execute(context("manual__resume"))
    message = str(failed.value)
    assert "stream market-bars: 200 records still failing (ProvisionedThroughputExceededException)" in message
    assert "1000 records were acknowledged and will not be sent again" in message and "symbols ['TSLA']" in message

    client.throttled = False  # the throttle clears; Airflow's retry runs the task again
    stats = task.execute(context("manual__resume"))
    assert (stats["records"], stats["skipped"], stats["sent"]) == (1200, 1000, 200)

    ids = Counter(r["record_id"] for r in read_stream(services, "market-bars") if r["source"] == SOURCE)
    assert len(ids) == 1200 and set(ids.values()) == {1}  # every bar once, none twice

    again = task.execute(context("manual__resume"))  # a clear after success publishes everything again
    assert (again["skipped"], again["sent"]) == (0, 1200)


#: The publish task in a process of its own: ``KinesisPublishOperator`` with the real boto3 client, which
#: SIGKILLs its own process as soon as the stream has acknowledged call ``kill_after`` (before the task
#: can note it: the worst moment), as the OOM killer or a lost worker kills a task.
KILLED_PUBLISH = """
import json, os, signal, sys

from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

from market_ingest.operators.kinesis import KinesisPublishOperator

args = json.loads(sys.argv[1])
real = KinesisHook(aws_conn_id=args["aws_conn_id"]).conn


class KilledAfter:
    exceptions, calls = real.exceptions, 0

    def describe_stream_summary(self, **kw):
        return real.describe_stream_summary(**kw)

    def put_records(self, **kw):
        response = real.put_records(**kw)
        KilledAfter.calls += 1
        if KilledAfter.calls == args["kill_after"]:
            os.kill(os.getpid(), signal.SIGKILL)
        return response


KinesisHook.conn = property(lambda self: KilledAfter())
task = KinesisPublishOperator(
    task_id="publish_kinesis", lake=args["lake"], stream=args["stream"], aws_conn_id=args["aws_conn_id"],
    max_records_per_call=args["per_call"],
)
task.execute({"run_id": "manual__killed"})
"""


def test_a_sigkilled_publish_resumed_re_sends_at_most_one_call_s_records(services, staged_bars):
    """Seen on main: progress was saved every 20 calls, so a task killed (SIGKILL: no handler runs)
    after 15 acknowledged calls of 50 records re-sent all 750 on its retry; up to 10,000 with the
    default 500 per call. Progress is now saved after every acknowledged call: the retry re-sends
    at most the records of the call the kill interrupted."""
    import subprocess
    import sys

    from demo.services import read_stream
    from market_ingest.config import load_config

    stream, per_call = "market-killed", 50
    kinesis = services.boto3_client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    args = {
        "lake": {**staged_bars, "fingerprint": "killed"},
        "stream": stream,
        "aws_conn_id": load_config().kinesis.aws_conn_id,
        "per_call": per_call,
        "kill_after": 15,  # of 24 calls
    }
    child = subprocess.run([sys.executable, "-c", KILLED_PUBLISH, json.dumps(args)], capture_output=True, text=True)
    assert child.returncode == -signal.SIGKILL, child.stderr[-2000:]
    assert len(read_stream(services, stream)) == 15 * per_call  # what the stream took before the kill

    # Airflow's retry of the task: the same operator, in this process, with the real client.
    task = KinesisPublishOperator(
        task_id="publish_kinesis",
        lake=args["lake"],
        stream=stream,
        aws_conn_id=args["aws_conn_id"],
        max_records_per_call=per_call,
    )
    stats = task.execute(context("manual__killed"))
    ids = Counter(r["record_id"] for r in read_stream(services, stream))
    re_sent = sum(ids.values()) - len(ids)
    assert len(ids) == 1200 and stats["records"] == 1200  # every bar arrived
    assert re_sent <= per_call, f"{re_sent} records sent twice"
    assert stats["skipped"] == 1200 - stats["sent"] >= 14 * per_call


def test_packed_records_hold_many_bars_of_one_symbol(services, staged_bars, pipeline_config):
    """``kinesis.bars_per_record: 500``: 1,200 bars travel as 3 JSON Lines records, each bar once."""
    import json

    pipeline_config(lambda raw: raw["kinesis"].update(bars_per_record=500, stream="market-packed"))
    kinesis = services.boto3_client("kinesis")
    kinesis.create_stream(StreamName="market-packed", ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName="market-packed", WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    stats = built(KinesisPublishOperator, "publish_kinesis", lake={**staged_bars, "fingerprint": "packed"}).execute(
        context("manual__packed")
    )
    assert (stats["records"], stats["bars_by_symbol"]) == (3, {"TSLA": 1200})

    shard = kinesis.list_shards(StreamName="market-packed")["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName="market-packed", ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=it, Limit=100)["Records"]
    bars = [json.loads(line) for r in records for line in r["Data"].split(b"\n")]
    assert [len(r["Data"].split(b"\n")) for r in records] == [500, 500, 200]
    assert len({b["record_id"] for b in bars}) == 1200 and {r["PartitionKey"] for r in records} == {f"{SOURCE}:TSLA"}


def test_kpl_records_round_trip_through_the_stream_and_the_reference_deaggregator(services, staged_bars, pipeline_config):
    """``kinesis.record_format: kpl``, ``bars_per_record: 500``: 1,200 bars travel as 3 KPL aggregated
    records; read back with GetRecords and de-aggregated by ``aws_kinesis_agg``, each bar arrives once,
    in order, under its series' partition key."""
    import base64

    from aws_kinesis_agg.deaggregator import iter_deaggregate_records

    stream = "market-kpl"
    pipeline_config(lambda raw: raw["kinesis"].update(record_format="kpl", bars_per_record=500, stream=stream))
    kinesis = services.boto3_client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=1)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    stats = built(KinesisPublishOperator, "publish_kinesis", lake={**staged_bars, "fingerprint": "kpl"}).execute(
        context("manual__kpl")
    )
    assert (stats["records"], stats["bars_by_symbol"]) == (3, {"TSLA": 1200})

    shard = kinesis.list_shards(StreamName=stream)["Shards"][0]["ShardId"]
    it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard, ShardIteratorType="TRIM_HORIZON")["ShardIterator"]
    records = kinesis.get_records(ShardIterator=it, Limit=100)["Records"]
    users = [u["kinesis"] for u in iter_deaggregate_records(records, data_format="Boto3")]
    assert [sum(u["sequenceNumber"] == r["SequenceNumber"] for u in users) for r in records] == [500, 500, 200]
    bars = [json.loads(base64.b64decode(u["data"])) for u in users]  # the deaggregator re-encodes as Lambda does
    times = [b["time"] for b in bars]
    assert len({b["record_id"] for b in bars}) == len(bars) == 1200 and times == sorted(times)
    assert {u["partitionKey"] for u in users} == {r["PartitionKey"] for r in records} == {f"{SOURCE}:TSLA"}


def test_a_hot_series_is_dealt_over_its_partition_keys_and_each_bar_arrives_once(services, staged_bars, pipeline_config):
    """``kinesis.spread_keys``: 1,200 bars packed 100 per record go round robin to keys ``#0``..``#3``,
    one on each of the stream's 4 shards (their explicit hash keys), so one series is no longer
    capped at one shard's 1,000 records and 1 MiB per second."""
    import json

    from market_ingest.kinesis import symbol_of

    stream = "market-spread"
    series = f"{SOURCE}:TSLA"
    pipeline_config(lambda raw: raw["kinesis"].update(bars_per_record=100, stream=stream, spread_keys={series: 4}))
    kinesis = services.boto3_client("kinesis")
    kinesis.create_stream(StreamName=stream, ShardCount=4)
    kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.2, "MaxAttempts": 50})
    stats = built(KinesisPublishOperator, "publish_kinesis", lake={**staged_bars, "fingerprint": "spread"}).execute(
        context("manual__spread")
    )
    assert stats["records"] == 12

    by_shard = {}
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")
        by_shard[shard["ShardId"]] = kinesis.get_records(ShardIterator=it["ShardIterator"], Limit=100)["Records"]
    records = sorted((r for rs in by_shard.values() for r in rs), key=lambda r: json.loads(r["Data"].split(b"\n")[0])["time"])
    assert [r["PartitionKey"] for r in records] == [f"{series}#{k % 4}" for k in range(12)]
    assert sorted(len(rs) for rs in by_shard.values()) == [3, 3, 3, 3]  # one key per shard (ExplicitHashKey)
    times = [json.loads(line)["time"] for r in records for line in r["Data"].split(b"\n")]
    assert len(times) == len(set(times)) == 1200 and times == sorted(times)  # in order when sorted by time
    assert {symbol_of(r["PartitionKey"]) for r in records} == {"TSLA"}  # what failure messages name


def test_record_format_follows_bars_per_record_and_rejects_contradictions():
    """A config without ``record_format`` keeps its meaning (``bars_per_record`` > 1: JSON Lines);
    a format that contradicts the packing fails naming both fields."""
    from pydantic import ValidationError

    from market_ingest.config import KinesisConfig

    base = {"aws_conn_id": "a", "stream": "s", "quotes_stream": "q"}
    assert KinesisConfig(**base).record_format == "json"
    assert KinesisConfig(**base, bars_per_record=500).record_format == "json_lines"
    assert KinesisConfig(**base, bars_per_record=500, record_format="kpl").record_format == "kpl"
    with pytest.raises(ValidationError, match=r"kinesis.record_format: json .* kinesis.bars_per_record is 500"):
        KinesisConfig(**base, bars_per_record=500, record_format="json")
    with pytest.raises(ValidationError, match=r"kinesis.record_format: kpl .* kinesis.bars_per_record"):
        KinesisConfig(**base, record_format="kpl")
    with pytest.raises(ValidationError, match=r"record_format\n.*'json', 'json_lines' or 'kpl'"):
        KinesisConfig(**base, bars_per_record=500, record_format="protobuf")


def test_spread_keys_must_name_a_series():
    from pydantic import ValidationError

    from market_ingest.config import KinesisConfig

    base = {"aws_conn_id": "a", "stream": "s", "quotes_stream": "q"}
    assert KinesisConfig(**base, spread_keys={"binance:BTC/USDT": 4}).spread_keys == {"binance:BTC/USDT": 4}
    with pytest.raises(ValidationError, match=r"'BTC/USDT' is not '<source>:<symbol>'"):
        KinesisConfig(**base, spread_keys={"BTC/USDT": 4})
    with pytest.raises(ValidationError, match=r"binance:BTC/USDT: 0 keys"):
        KinesisConfig(**base, spread_keys={"binance:BTC/USDT": 0})
