"""End to end: a DAG run through Airflow (``dag.test``) on recordings served by the stand-in into all three sinks."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest

pytestmark = pytest.mark.e2e
UTC = timezone.utc


def report_of(dagrun, task_id: str = "report") -> dict:
    """The run report the ``report`` task (or ``task_id``) returned to XCom, for a DagRun from ``dag.test``."""
    import json

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        value = (
            session.query(XComModel.value)
            .filter_by(dag_id=dagrun.dag_id, run_id=dagrun.run_id, task_id=task_id, key="return_value")
            .scalar()
        )
    value = json.loads(value) if isinstance(value, str) else value
    return value or {}


def _run(dag_id, logical_date, conf):
    from airflow.dag_processing.dagbag import DagBag

    from market_ingest.dag_factory import dag_test
    from tests.conftest import ROOT

    dag = DagBag(dag_folder=str(ROOT / "dags")).dags[dag_id]
    return dag_test(dag, logical_date=logical_date, run_conf=conf)


def _pg_rows(services, day):
    with psycopg.connect(services.pg_conninfo()) as conn:
        return conn.execute(
            "SELECT symbol, time, close, ingested_at IS NOT NULL FROM market.bars WHERE source = 'yahoo' AND interval = '1d' AND time = %s ORDER BY symbol",
            (day,),
        ).fetchall()


def test_daily_dag_run_loads_every_sink_and_a_rerun_changes_nothing(services, airflow_db):
    from demo.services import read_stream

    conf = {"symbols": ["MSFT", "NVDA", "TSLA", "SIX"]}
    trigger = datetime(2021, 7, 21, tzinfo=UTC)  # a manual run ingests the last full day: 2021-07-20
    stored_before = _pg_rows(services, datetime(2021, 7, 20, tzinfo=UTC))
    first = _run("market_yahoo_1d", trigger, conf)
    assert str(first.state).endswith("success")
    report = report_of(first)
    assert {s: v["status"] for s, v in report["symbols"].items()} == {
        "MSFT": "ok",
        "NVDA": "ok",
        "TSLA": "ok",
        "SIX": "unknown_symbol",
    }
    for sym in ("MSFT", "NVDA", "TSLA"):
        got = {k: report["symbols"][sym][k] for k in ("status", "lake", "timescale", "kinesis", "gaps")}
        assert got == {"status": "ok", "lake": 1, "timescale": 1, "kinesis": 1, "gaps": []}
    assert "does not know the symbol or it is delisted" in report["skipped"]["SIX"]
    (lake_object,) = report["lake_objects"]
    assert lake_object.endswith("/bars/source=yahoo/interval=1d/period=2021")  # the partition of the bars table
    # Every sink succeeded, so the run's staging folder is gone (issue 14: it was never deleted).
    from market_ingest.lake import run_token

    staging = services.boto3_client("s3").list_objects_v2(Bucket="market-lake", Prefix="bars/_staging/source=yahoo/interval=1d/")
    assert report["staging_removed"] >= 1
    assert not [o["Key"] for o in staging.get("Contents", []) if f"/run={run_token(first.run_id)}/" in o["Key"]]

    rows = _pg_rows(services, datetime(2021, 7, 20, tzinfo=UTC))
    assert [r[0] for r in rows] == ["MSFT", "NVDA", "TSLA"]
    # New bars are copied straight into the table (the plan's window held none of them); bars
    # stored already go through the upsert.
    load = report_of(first, "load_timescale")
    assert (load["applied"], load["copied"]) == (3, 0 if stored_before else 3)
    second = _run("market_yahoo_1d", trigger, conf)
    assert str(second.state).endswith("success")
    assert report_of(second)["lake_objects"] == report["lake_objects"]
    assert [r[:3] for r in _pg_rows(services, datetime(2021, 7, 20, tzinfo=UTC))] == [r[:3] for r in rows]
    assert report_of(second, "load_timescale")["copied"] == 0

    ids = [r["record_id"] for r in read_stream(services, "market-bars") if r["time"] == "2021-07-20T00:00:00Z"]
    assert len(ids) == 6 and len(set(ids)) == 3  # at-least-once: the rerun re-sent the same 3 ids

    # Each load told the Assets page (and any DAG scheduled on the Asset) what came in.
    events = _asset_events("x-market://bars/yahoo/1d", first.run_id, second.run_id)
    window = {"start": "2021-07-20T00:00:00+00:00", "end": "2021-07-21T00:00:00+00:00"}
    assert [e["window"] for e in events] == [window, window]
    assert [(e["symbols"], e["rows"]) for e in events] == [(["MSFT", "NVDA", "TSLA"], 3)] * 2
    assert [e["applied"] for e in events] == [3, 3]  # the rerun's newer extraction rewrites the lineage


def _asset_events(uri: str, *run_ids: str) -> list[dict]:
    """``extra`` of the Asset events on ``uri`` emitted by the runs ``run_ids``, in that order."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = (
            session.query(AssetEvent.source_run_id, AssetEvent.extra)
            .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
            .filter(AssetModel.uri == uri, AssetEvent.source_run_id.in_(run_ids))
            .all()
        )
    by_run = dict(rows)
    return [by_run[r] for r in run_ids]


def test_malformed_params_are_rejected_by_the_form(services, airflow_db):
    from airflow.sdk.exceptions import ParamValidationError

    with pytest.raises(ParamValidationError, match="start"):
        _run("market_yahoo_1d", datetime(2021, 7, 22, tzinfo=UTC), {"start": "2021-07-23"})  # not a date-time
    with pytest.raises(ParamValidationError, match="symbols"):
        _run("market_yahoo_1d", datetime(2021, 7, 22, tzinfo=UTC), {"symbols": ["MSFT; DROP TABLE"]})


def test_inverted_range_fails_the_run_before_any_request(services, airflow_db):
    dagrun = _run(
        "market_yahoo_1d",
        datetime(2021, 7, 22, tzinfo=UTC),
        {"symbols": ["MSFT"], "start": "2021-07-23T00:00:00Z", "end": "2021-07-22T00:00:00Z"},
    )
    assert str(dagrun.state).endswith("failed")
    states = {ti.task_id: str(ti.state) for ti in dagrun.get_task_instances()}
    assert states["plan"].endswith("failed")
    assert not states.get("extract", "").endswith("success")


def test_airflow_dags_test_works_on_dags_with_deadlines(services, airflow_db):
    """``airflow dags test`` exits 0 although every DAG has ``deadline=`` (apache/airflow#73428 worked around)."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    airflow = Path(sys.executable).with_name("airflow")
    done = subprocess.run(
        [str(airflow), "dags", "test", "market_yahoo_1d", "2021-07-20T00:00:00+00:00", "-c", json.dumps({"symbols": ["MSFT"]})],
        env=os.environ,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert [r[:2] for r in _pg_rows(services, datetime(2021, 7, 19, tzinfo=UTC))][:1] == [
        ("MSFT", datetime(2021, 7, 19, tzinfo=UTC))
    ]
