"""Alerts reach their channels: the Kinesis events stream and SNS on the moto server, and the log.

The scheduler paths (a deadline through the triggerer, a failure callback through the DAG
processor) are in tests/e2e/test_scheduler.py; these tests cover what the run report sends and
the notifier's triggerer-side call on the triggerer's own context shape.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from market_ingest import outcomes
from tests.conftest import built
from tests.faults.support import TaskInstanceStub

pytestmark = pytest.mark.integration
UTC = timezone.utc


class _Lines(logging.Handler):
    """Collects the formatted messages of the records it receives."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _events(services):
    from demo.services import read_stream

    return read_stream(services, "market-events")


def _context(run_id):
    run = SimpleNamespace(
        dag_id="market_yahoo_1d",
        run_id=run_id,
        run_type="scheduled",
        logical_date=datetime(2021, 7, 20, tzinfo=UTC),
        data_interval_start=datetime(2021, 7, 20, tzinfo=UTC),
        data_interval_end=datetime(2021, 7, 21, tzinfo=UTC),
    )
    return {"dag": SimpleNamespace(dag_id="market_yahoo_1d"), "run_id": run_id, "dag_run": run, "ti": TaskInstanceStub()}


def _report_task(statuses):
    from market_ingest.operators.report import RunReportOperator

    symbols = list(statuses)
    sinks = {"rows_by_symbol": {s: 1 for s, st in statuses.items() if st == outcomes.OK}, "objects": []}
    return built(
        RunReportOperator,
        "report",
        plan=[{"batch": 0, "symbols": symbols, "start": "2021-07-22T00:00:00+00:00", "end": "2021-07-23T00:00:00+00:00"}],
        extracts=[
            {
                "batch": 0,
                "outcomes": [
                    {"symbol": s, "status": st, "reason": "" if st == outcomes.OK else "vendor said no"}
                    for s, st in statuses.items()
                ],
            }
        ],
        lake=sinks,
        timescale=sinks,
        kinesis={"bars_by_symbol": sinks["rows_by_symbol"]},
    )


def test_more_failed_symbols_than_the_threshold_alerts_then_fails_the_run(services):
    from airflow.sdk.exceptions import AirflowFailException

    task = _report_task({"AAPL": "ok", "MSFT": "ok", "NVDA": "ok", "TSLA": "failed", "IBM": "failed"})  # 40% > 20%
    logged = _Lines()
    alerts_log = logging.getLogger("market_ingest.alerts")  # where Airflow's log setup sends it varies; listen at the source
    alerts_log.addHandler(logged)
    try:
        with pytest.raises(AirflowFailException, match="2 of 5 symbols failed"):
            task.execute(_context("scheduled__2021-07-20T00:00:00+00:00"))
    finally:
        alerts_log.removeHandler(logged)
    (event,) = [e for e in _events(services) if e["run_id"] == "scheduled__2021-07-20T00:00:00+00:00"]
    assert event["event"] == "failed_share_exceeded" and event["dag_id"] == "market_yahoo_1d"
    assert event["detail"] == {"failed_symbols": ["IBM", "TSLA"], "symbols_total": 5, "failed_share": 0.4, "threshold": 0.2}
    assert (event["data_interval_start"], event["data_interval_end"]) == ("2021-07-20T00:00:00Z", "2021-07-21T00:00:00Z")
    assert len(logged.lines) == 1 and logged.lines[0].startswith("market event: ")
    assert json.loads(logged.lines[0].removeprefix("market event: ")) == event


def test_a_share_at_the_threshold_neither_alerts_nor_fails(services):
    task = _report_task({"AAPL": "ok", "MSFT": "ok", "NVDA": "ok", "TSLA": "ok", "IBM": "failed"})  # 20%, not above
    report = task.execute(_context("scheduled__2021-07-21T00:00:00+00:00"))
    assert report["failed_symbols"] == ["IBM"]
    assert not [e for e in _events(services) if e["run_id"] == "scheduled__2021-07-21T00:00:00+00:00"]


def test_the_deadline_notifier_awaited_as_the_triggerer_does_sends_the_run_identity(services):
    from market_ingest.alerts import DEADLINE_MISSED, MarketEventNotifier

    # The triggerer's context: the REST API's DAG run JSON plus the deadline (airflow.models.deadline.handle_miss).
    context = {
        "dag_run": {
            "dag_id": "market_binance_1m",
            "dag_run_id": "manual__2026-11-21T10:00:00+00:00",
            "run_type": "manual",
            "logical_date": "2026-11-21T10:00:00Z",
            "data_interval_start": "2026-11-21T09:00:00Z",
            "data_interval_end": "2026-11-21T10:00:00Z",
        },
        "deadline": {"id": "0195", "deadline_time": datetime(2026, 11, 21, 10, 0, 1, tzinfo=UTC)},
    }

    from market_ingest.config import load_config

    channels = load_config().alerts.model_dump(mode="json")  # as the DAG factory hands them over

    async def triggerer():
        await MarketEventNotifier(kind=DEADLINE_MISSED, channels=channels, context=context)

    asyncio.run(triggerer())
    (event,) = [e for e in _events(services) if e["run_id"] == "manual__2026-11-21T10:00:00+00:00"]
    assert event["event"] == "deadline_missed" and event["deadline_time"] == "2026-11-21T10:00:01Z"
    assert event["message"] == (
        "deadline missed: market_binance_1m run manual__2026-11-21T10:00:00+00:00 was not done by 2026-11-21T10:00:01Z"
    )


def test_a_configured_sns_topic_receives_the_event(services, monkeypatch):
    from market_ingest import alerts
    from market_ingest.config import load_config

    sns, sqs = services.boto3_client("sns"), services.boto3_client("sqs")
    topic = sns.create_topic(Name="market-alerts")["TopicArn"]
    queue = sqs.create_queue(QueueName="market-alerts-inbox")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=queue_arn)
    channels = load_config().alerts.model_copy(update={"sns_topic_arn": topic})

    event = alerts.build_event(alerts.DAG_FAILED, _context("manual__sns"), "dag_failed: market_yahoo_1d run manual__sns")
    assert alerts.emit(event, channels)["sns"] is True
    (message,) = sqs.receive_message(QueueUrl=queue, WaitTimeSeconds=5)["Messages"]
    envelope = json.loads(message["Body"])
    assert envelope["Subject"] == "[market-data] dag_failed: market_yahoo_1d"
    assert json.loads(envelope["Message"]) == event


def test_deadline_reference_is_the_interval_end_for_scheduled_runs_and_the_queue_time_otherwise(airflow_db):
    from airflow.models import DagRun
    from airflow.utils.session import create_session

    from market_ingest.deadlines import DataIntervalEndDeadline

    start, end = datetime(2021, 7, 20, tzinfo=UTC), datetime(2021, 7, 21, tzinfo=UTC)
    queued = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)
    ref = DataIntervalEndDeadline()
    with create_session() as session:
        for n, run_type in enumerate(("scheduled", "manual", "backfill")):  # one logical date per run of a DAG
            session.add(
                DagRun(
                    dag_id="deadline_ref_probe",
                    run_id=f"{run_type}__probe",
                    run_type=run_type,
                    logical_date=start + timedelta(minutes=n),
                    data_interval=(start, end),
                    queued_at=queued,
                    state="queued",
                )
            )
        session.flush()
        got = {
            t: ref._evaluate_with(session=session, dag_id="deadline_ref_probe", run_id=f"{t}__probe")
            for t in ("scheduled", "manual", "backfill", "absent")
        }
        session.rollback()
    assert got == {"scheduled": end, "manual": queued, "backfill": queued, "absent": None}
