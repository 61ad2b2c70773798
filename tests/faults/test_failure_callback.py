"""The DAG's failure callback reaches the events stream under ``dag.test`` too (the scheduler's
path is covered by tests/e2e/test_scheduler.py)."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.e2e.test_dag_run import _run

pytestmark = pytest.mark.e2e
UTC = timezone.utc


def test_a_failed_run_under_dag_test_puts_a_dag_failed_event_on_the_stream(services, airflow_db):
    """On main: ``'SerializedDAG' object has no attribute 'get_template_env'`` and no event."""
    from demo.services import read_stream

    run = _run(
        "market_yahoo_1d",
        datetime(2021, 7, 30, 6, tzinfo=UTC),
        {"symbols": ["MSFT"], "start": "2021-07-23T00:00:00Z", "end": "2021-07-22T00:00:00Z"},
    )  # inverted: plan fails
    assert str(run.state).endswith("failed")
    (event,) = [e for e in read_stream(services, "market-events") if e["event"] == "dag_failed" and e["run_id"] == run.run_id]
    assert event["dag_id"] == "market_yahoo_1d" and event["logical_date"] == "2021-07-30T06:00:00Z"
