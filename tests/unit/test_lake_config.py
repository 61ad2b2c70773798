"""The lake's S3 URLs (``s3://<aws conn id>@<bucket>/<prefix>``) name its buckets and AWS connections."""

from __future__ import annotations

from market_ingest.config import LakeConfig


def test_each_bucket_and_connection_once_in_url_order():
    lake = LakeConfig(url="s3://market_aws@market-lake/bars", quotes_url="s3://quotes_aws@market-quotes/quotes")
    assert lake.buckets == ["market-lake", "market-quotes"]
    assert lake.aws_conn_ids == ["market_aws", "quotes_aws"]
    same = LakeConfig(url="s3://market_aws@market-lake/bars", quotes_url="s3://market_aws@market-lake/quotes")
    assert (same.buckets, same.aws_conn_ids) == (["market-lake"], ["market_aws"])


def test_a_url_without_a_connection_adds_a_bucket_only_and_a_local_lake_neither():
    lake = LakeConfig(url="file:///var/lake/bars", quotes_url="s3://market-lake/quotes")
    assert (lake.buckets, lake.aws_conn_ids) == (["market-lake"], [])
