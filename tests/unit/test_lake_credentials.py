"""The lake table's credentials: delta-rs gets what it can refresh itself, never a role session's
keys frozen at the start of a task that may outlive them (MWAA's execution role, IRSA, ECS)."""

from __future__ import annotations

import json

import pytest
from airflow.sdk import ObjectStoragePath

from market_ingest.lake.table import ROLE_SESSION_NAME, storage_options

ROOT = "s3://lake_credentials_test@market-lake/lake"  # its own id: paths cache their filesystem per connection
#: Temporary credentials as the container's chain (ECS, IRSA, MWAA) hands them out: they expire.
CHAIN = {"AWS_ACCESS_KEY_ID": "ASIACHAINKEY", "AWS_SECRET_ACCESS_KEY": "chain-secret", "AWS_SESSION_TOKEN": "chain-token"}


@pytest.fixture
def connection(monkeypatch):
    """Sets the lake connection to the given fields over an environment that holds chain credentials."""
    for name, value in CHAIN.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")

    def define(**fields) -> dict[str, str]:
        monkeypatch.setenv("AIRFLOW_CONN_LAKE_CREDENTIALS_TEST", json.dumps({"conn_type": "aws", **fields}))
        return storage_options(ObjectStoragePath(ROOT))

    return define


def test_no_keys_in_the_connection_leaves_the_environments_chain_to_delta_rs(connection):
    options = connection(extra={"region_name": "us-east-1"})
    # Before: the chain's keys and token, copied once, expired with the role session mid-run.
    assert not {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"} & set(options)
    assert options == {"AWS_REGION": "us-east-1"}


def test_a_role_to_assume_is_assumed_and_renewed_by_delta_rs(connection):
    role = "arn:aws:iam::123456789012:role/market-lake-writer"
    options = connection(extra={"role_arn": role, "endpoint_url": "http://127.0.0.1:5000"})
    assert options == {
        "AWS_IAM_ROLE_ARN": role,
        "AWS_IAM_ROLE_SESSION_NAME": ROLE_SESSION_NAME,
        "AWS_REGION": "eu-west-1",  # the environment's, as boto3 resolves it
        "AWS_ENDPOINT_URL": "http://127.0.0.1:5000",
        "AWS_ALLOW_HTTP": "true",
    }


def test_a_named_profile_is_passed_by_name(connection):
    options = connection(extra={"profile_name": "lake", "region_name": "us-east-1"})
    assert options == {"AWS_PROFILE": "lake", "AWS_REGION": "us-east-1"}


def test_static_keys_are_passed_as_written(connection):
    options = connection(login="AKIASTATIC", password="static-secret", extra={"region_name": "us-east-1"})
    assert options == {"AWS_ACCESS_KEY_ID": "AKIASTATIC", "AWS_SECRET_ACCESS_KEY": "static-secret", "AWS_REGION": "us-east-1"}
