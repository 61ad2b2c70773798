"""End to end under Airflow: Alpha Vantage's daily quota defers symbols without retries, the next
run picks them up, and the API key (echoed by the quota body) reaches no log, XCom value or sink."""

from __future__ import annotations

import json
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import psycopg
import pytest

from tests.conftest import RECORDINGS, recording, serving
from tests.e2e.test_dag_run import _run, report_of

pytestmark = pytest.mark.e2e
UTC = timezone.utc
FAKE_KEY = "FAKEKEYQ1W2E3R4T5Y6"
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "alpha_vantage"


def _recordings(folder: Path, body: str, requested_at: str, status: int = 200) -> Path:
    """A recordings folder answering IBM's daily series with ``body`` (HTTP ``status``), answered at ``requested_at``."""
    recording(
        folder / "alpha_vantage", "ibm", body, vendor="alpha_vantage", endpoint="TIME_SERIES_DAILY", symbol="IBM",
        requested_at=requested_at, status=status,
    )  # fmt: skip
    return folder


@contextmanager
def alpha_vantage_serving(folder: Path, key: str, monkeypatch):
    """A stand-in over ``folder``; connection ``market_alpha_vantage`` reaches it with API key ``key``."""
    from standin.server import StandIn

    def connections(url: str) -> dict:
        return {
            "market_alpha_vantage": {"conn_type": "alpha_vantage", "password": key, "host": f"{url}/www.alphavantage.co/query"}
        }

    with serving(StandIn(folder), monkeypatch, connections) as url:
        yield url


def test_quota_defers_without_retries_next_run_picks_up_and_key_never_leaks(
    services, airflow_db, tmp_path, monkeypatch, capfd, caplog
):
    import logging

    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    from demo.services import read_stream

    caplog.set_level(logging.DEBUG)
    quota = (FIXTURES / "av_ERROR_Information_rate_limit_25_per_day_2025-12.json").read_text()
    day1 = _recordings(
        tmp_path / "day1",
        quota.replace("free API requests", f"free API requests (apikey={FAKE_KEY})"),
        "2023-11-10T23:00:00Z",
    )
    ibm = (RECORDINGS / "alpha_vantage" / "av_TIME_SERIES_DAILY_IBM_compact_2023-11-10.json").read_text()
    day2 = _recordings(tmp_path / "day2", ibm, "2023-11-11T00:00:00Z")

    # Day 1: the quota body answers IBM; MSFT is never requested.
    with alpha_vantage_serving(day1, FAKE_KEY, monkeypatch):
        first = _run("market_alpha_vantage_1d", datetime(2023, 11, 10, tzinfo=UTC), {"symbols": ["IBM", "MSFT"]})
    assert str(first.state).endswith("success")
    report = report_of(first)
    assert {s: v["status"] for s, v in report["symbols"].items()} == {"IBM": "deferred", "MSFT": "deferred"}
    extract = [ti for ti in first.get_task_instances() if ti.task_id == "extract"]
    assert [ti.try_number for ti in extract] == [1]  # no retry spent on a spent quota

    # Day 2 (a new UTC day, fresh budget): IBM's window reaches back to its deferral.
    with alpha_vantage_serving(day2, FAKE_KEY, monkeypatch):
        second = _run("market_alpha_vantage_1d", datetime(2023, 11, 11, tzinfo=UTC), {"symbols": ["IBM"]})
    assert str(second.state).endswith("success")
    assert report_of(second)["symbols"]["IBM"]["timescale"] == 2, report_of(second)  # 2023-11-09 (deferred) and 2023-11-10
    with psycopg.connect(services.pg_conninfo()) as conn:
        days = [
            r[0].day
            for r in conn.execute(
                "SELECT time FROM market.bars WHERE source='alpha_vantage' AND symbol='IBM' AND time >= '2023-11-09' AND time < '2023-11-11' ORDER BY time"
            )
        ]
        backlog = conn.execute(
            "SELECT symbol, reason FROM market.deferred_symbols WHERE source='alpha_vantage' ORDER BY symbol"
        ).fetchall()
    assert days == [9, 10]
    assert [b[0] for b in backlog] == ["MSFT"]  # IBM settled; MSFT waits for a run that selects it

    # The key appears nowhere: task logs and stdout, XCom, the backlog, the lake, Kinesis.
    out, err = capfd.readouterr()
    with create_session() as session:
        xcoms = [str(v) for (v,) in session.query(XComModel.value).filter(XComModel.run_id.in_([first.run_id, second.run_id]))]
    s3 = services.boto3_client("s3")
    # The bars table's files of the source and the table's commit log (bars/ is the lake's root).
    pages = [
        page
        for prefix in ("bars/bars/source=alpha_vantage/", "bars/bars/_delta_log/")
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket="market-lake", Prefix=prefix)
    ]
    keys = [o["Key"] for page in pages for o in page.get("Contents", [])]
    assert any("/source=alpha_vantage/" in k for k in keys) and any("_delta_log/" in k for k in keys)
    lake = [s3.get_object(Bucket="market-lake", Key=k)["Body"].read() for k in keys]
    stream = json.dumps(read_stream(services, "market-bars"))
    assert "25 requests per day" in json.dumps(report)  # the quota reason did travel, redacted
    assert "daily quota spent" in out  # dag.test prints task logs: the check below reads them
    for where, text in {
        "logs": caplog.text,
        "stdout": out,
        "stderr": err,
        "xcom": " ".join(xcoms),
        "backlog": str(backlog),
        "kinesis": stream,
    }.items():
        assert FAKE_KEY not in text, where
    assert not any(FAKE_KEY.encode() in obj for obj in lake)


def test_a_batch_that_fails_names_its_exception_and_try_for_every_symbol(services, airflow_db, tmp_path, monkeypatch):
    """Issue 14: a whole-universe run from the UI showed 280 rows of "extract task did not succeed"
    and no reason. A batch stopped by a permanent error (no API key in the connection) fails at
    once; the report, in the task log and in XCom although the run failed, gives each of its
    symbols the exception's class and message and the try."""
    (tmp_path / "empty").mkdir()
    with alpha_vantage_serving(tmp_path / "empty", "", monkeypatch):
        run = _run("market_alpha_vantage_1d", datetime(2023, 11, 10, tzinfo=UTC), {"symbols": ["IBM", "MSFT"]})
    assert str(run.state).endswith("failed")
    (extract,) = [ti for ti in run.get_task_instances() if ti.task_id == "extract"]
    assert str(extract.state).endswith("failed") and extract.try_number == 1  # permanent: no retry spent
    report = report_of(run)
    reason = (
        "task extract[0] failed on try 1 of 4: ConfigurationError: alpha_vantage [2023-11-09T00:00:00+00:00, "
        "2023-11-10T00:00:00+00:00): connection market_alpha_vantage has no API key (password field) (see its log)"
    )
    assert {s: (v["status"], v["reason"]) for s, v in report["symbols"].items()} == {
        "IBM": ("failed", reason),
        "MSFT": ("failed", reason),
    }
    assert report["failed_tasks"][0] == "extract[0]"
