"""Nothing creates infrastructure by accident: a mistyped bucket or stream fails at once, without
retries, naming it and the connection, and nothing is created."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException

from market_ingest.operators.extract import MarketExtractOperator
from market_ingest.operators.kinesis import KinesisPublishOperator
from market_ingest.operators.lake import LakePublishOperator
from standin.server import StandIn
from tests.conftest import built, serving
from tests.faults.support import context

pytestmark = pytest.mark.integration
UTC = timezone.utc
BATCH = {"batch": 0, "symbols": ["MSFT"], "start": "2021-08-09T00:00:00+00:00", "end": "2021-08-14T00:00:00+00:00", "since": {}}


def test_a_mistyped_bucket_fails_the_extract_before_any_request_and_creates_nothing(
    services, pipeline_config, tmp_path, monkeypatch
):
    """Seen on main: ``mkdir(parents=True)`` created bucket ``market-lakee`` and the run succeeded."""
    pipeline_config(lambda raw: raw["lake"].update(url="s3://market_aws@market-lakee/bars"))
    s3 = services.boto3_client("s3")
    before = {b["Name"] for b in s3.list_buckets()["Buckets"]}

    task = built(MarketExtractOperator, "extract", "yahoo", "1d", batch=BATCH)
    vendor = StandIn(None)  # logs every request it gets
    with serving(vendor, monkeypatch), pytest.raises(AirflowFailException) as failed:  # no retry is spent
        task.execute(context("manual__typo"))
    assert vendor.log == []  # no vendor request spent on a run that cannot land
    assert "bucket 'market-lakee' does not exist" in str(failed.value)
    assert "connection market_aws" in str(failed.value) and "s3://market_aws@market-lakee/bars" in str(failed.value)
    assert {b["Name"] for b in s3.list_buckets()["Buckets"]} == before


def test_a_mistyped_bucket_fails_the_lake_publish_at_once(services, pipeline_config):
    pipeline_config(lambda raw: raw["lake"].update(url="s3://market_aws@market-lakee/bars"))
    staged = [
        {
            "batch": 0,
            "staged": [
                {"path": "s3://market_aws@market-lakee/bars/_staging/x.parquet", "rows": 1, "partitions": {"2021-08": [0]}}
            ],
            "outcomes": [],
            "ingested_at": "2026-01-01T00:00:00+00:00",
        }
    ]
    task = built(LakePublishOperator, "publish_lake", "yahoo", "1d", extracts=staged)
    with pytest.raises(AirflowFailException, match="bucket 'market-lakee' does not exist"):
        task.execute(context("manual__typo"))
    assert "market-lakee" not in {b["Name"] for b in services.boto3_client("s3").list_buckets()["Buckets"]}


def test_a_missing_stream_fails_the_publish_at_once_naming_it_and_the_connection(services, pipeline_config):
    """Seen on main: ``ResourceNotFoundException`` was retried like a network fault."""
    pipeline_config(lambda raw: raw["kinesis"].update(stream="market-barz"))
    task = built(KinesisPublishOperator, "publish_kinesis", lake={"staged": [], "fingerprint": "f", "run_dir": None})
    with pytest.raises(AirflowFailException) as failed:
        task.execute(context("manual__typo"))
    assert "stream 'market-barz' does not exist (connection market_aws)" in str(failed.value)
    assert "market-barz" not in services.boto3_client("kinesis").list_streams()["StreamNames"]


def test_the_retry_policy_fails_permanent_errors_at_once_and_retries_the_rest():
    from market_ingest import errors
    from market_ingest.config import load_config
    from market_ingest.dag_factory import retry_policy
    from market_ingest.kinesis import PartialFailureError

    policy = retry_policy(load_config())
    window = (datetime(2021, 8, 9, tzinfo=UTC), datetime(2021, 8, 14, tzinfo=UTC))
    permanent = [
        errors.SinkNotFoundError("kinesis", "stream 'market-barz' does not exist"),
        errors.SerializationError("kinesis", "row over 1 MiB"),
        errors.ConfigurationError("yahoo", "bad symbol"),
        errors.WindowNotServableError("yahoo", "beyond the lookback", window=window),
        OverflowError("date value out of range"),
    ]
    retryable = [
        errors.VendorUnavailableError("alpha_vantage", "HTTP 503 for TIME_SERIES_DAILY IBM", "IBM"),
        PartialFailureError("market-bars", [{"PartitionKey": "yahoo:MSFT"}], {"ProvisionedThroughputExceededException"}),
    ]
    assert [policy.evaluate(exc, 1, 3).action.value for exc in permanent] == ["fail"] * len(permanent)
    assert [policy.evaluate(exc, 1, 3).action.value for exc in retryable] == ["default"] * len(retryable)
