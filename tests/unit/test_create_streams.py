"""``create_buckets_and_streams`` (``make demo``, the tests, Docker Compose's init service) finds an
existing stream however many the account holds: ListStreams answers one page (10 names on moto,
100 on AWS), and a stream beyond it looked absent, so creating it again failed with
``ResourceInUseException`` (seen in CI once the session's moto held more than 10 streams)."""

from __future__ import annotations

from types import SimpleNamespace

import boto3
from moto import mock_aws

from demo.services import create_buckets_and_streams


def test_streams_beyond_the_first_page_of_list_streams_are_found_not_created_again():
    cfg = SimpleNamespace(
        lake=SimpleNamespace(buckets=["lake"]),
        kinesis=SimpleNamespace(stream="zz-bars", quotes_stream="zz-quotes"),
        alerts=SimpleNamespace(events_stream="zz-events"),
    )
    with mock_aws():
        s3, kinesis = (boto3.client(s, region_name="us-east-1") for s in ("s3", "kinesis"))
        for n in range(12):
            kinesis.create_stream(StreamName=f"other-{n:02d}", ShardCount=1)
        assert create_buckets_and_streams(s3, kinesis, cfg, shards=1) == ["lake", "zz-bars", "zz-quotes", "zz-events"]
        assert create_buckets_and_streams(s3, kinesis, cfg, shards=1) == []  # all there: nothing created, nothing fails
