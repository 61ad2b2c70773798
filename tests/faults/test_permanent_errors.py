"""Permanent errors fail fast; every error names source, symbol and window; the report names the
task that failed."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException

from market_ingest import outcomes
from market_ingest.contracts import read_plan
from market_ingest.errors import VendorUnavailableError
from market_ingest.operators.extract import MarketExtractOperator
from market_ingest.report import build_report
from tests.conftest import built
from tests.e2e.test_alpha_vantage_run import _recordings, alpha_vantage_serving
from tests.faults.support import context

UTC = timezone.utc


@pytest.mark.integration
def test_a_vendor_outage_is_retried_and_names_source_symbol_and_window(services, tmp_path, monkeypatch):
    """On main: ``alpha_vantage: HTTP 503 for TIME_SERIES_DAILY``, with neither symbol nor window."""
    folder = _recordings(tmp_path, "upstream unavailable", "2023-11-11T00:00:00Z", status=503)  # a vendor outage
    batch = {
        "batch": 0,
        "symbols": ["IBM"],
        "start": "2023-11-06T00:00:00+00:00",
        "end": "2023-11-11T00:00:00+00:00",
        "since": {},
    }
    task = built(MarketExtractOperator, "extract", "alpha_vantage", "1d", batch=batch)
    with alpha_vantage_serving(folder, "FAKEKEY503X", monkeypatch) as url, pytest.raises(VendorUnavailableError) as err:
        task.execute(context("manual__503"))  # retryable: not AirflowFailException
    host = url.split("://", 1)[1]
    assert str(err.value) == (
        "alpha_vantage:IBM [2023-11-06T00:00:00+00:00, 2023-11-11T00:00:00+00:00): HTTP 503 Service Unavailable "
        f"from {host}/www.alphavantage.co/query (application/json) for TIME_SERIES_DAILY IBM"
    )


@pytest.mark.integration
def test_requests_nothing_records_get_the_vendors_answers_not_retries(services):
    """On main (replay): ``ReplayMissError`` was retried like a network fault, three times. Now a window
    the recordings of a symbol do not cover gets Yahoo's "no data" answer and a symbol nothing records
    Yahoo's 404: outcomes of the run, not errors of the task."""
    batch = {
        "batch": 0,
        "symbols": ["MSFT", "ZZZZ"],
        "start": "2023-01-02T00:00:00+00:00",
        "end": "2023-01-07T00:00:00+00:00",
        "since": {},
    }
    task = built(MarketExtractOperator, "extract", "yahoo", "1d", batch=batch)
    result = task.execute(context("manual__uncovered"))
    assert [(o["symbol"], o["status"]) for o in result["outcomes"]] == [
        ("MSFT", outcomes.NO_DATA),
        ("ZZZZ", outcomes.UNKNOWN_SYMBOL),
    ]


@pytest.mark.integration
def test_an_unreachable_vendor_fails_the_extract_in_seconds_naming_host_and_connection(services, monkeypatch):
    """Issue 14 item 5: offline, each symbol spent the clients' own timeouts and retries, and
    ``make demo LIVE=1`` ran for over 10 minutes with no message. A gateway that takes the TCP
    connection and never answers (a firewall, a broken proxy) now fails the try before any symbol."""
    import json
    import socket
    import time

    batch = {
        "batch": 0,
        "symbols": [f"S{i:03d}" for i in range(100)],
        "start": "2021-07-19T00:00:00+00:00",
        "end": "2021-07-20T00:00:00+00:00",
        "since": {},
    }
    task = built(MarketExtractOperator, "extract", "yahoo", "1d", batch=batch)
    with socket.create_server(("127.0.0.1", 0)) as silent:
        port = silent.getsockname()[1]
        monkeypatch.setenv("AIRFLOW_CONN_MARKET_YAHOO", json.dumps({"conn_type": "http", "host": f"http://127.0.0.1:{port}"}))
        began = time.monotonic()
        with pytest.raises(VendorUnavailableError) as err:  # retryable: Airflow tries again after its delay
            task.execute(context("manual__offline"))
        seconds = time.monotonic() - began
    assert (
        f"yahoo [2021-07-19T00:00:00+00:00, 2021-07-20T00:00:00+00:00): cannot reach 127.0.0.1:{port} (connection market_yahoo): TimeoutError"
        in str(err.value)
    )
    assert seconds < 30


def test_the_report_names_the_task_that_failed():
    """On main: every symbol of a failed batch read 'extract task did not succeed', and a failed
    load blamed 'sinks'."""
    window = {"start": "2021-07-22T00:00:00+00:00", "end": "2021-07-23T00:00:00+00:00"}
    plan = [{"batch": 0, "symbols": ["AAPL", "MSFT"], **window}, {"batch": 1, "symbols": ["NVDA"], **window}]
    extracts = [{"batch": 0, "outcomes": [{"symbol": "AAPL", "status": "ok"}, {"symbol": "MSFT", "status": "ok"}]}]
    lake = {"rows_by_symbol": {"AAPL": 1, "MSFT": 1}, "objects": []}
    report = build_report(read_plan(plan), extracts, lake, None, {"bars_by_symbol": {"AAPL": 1, "MSFT": 1}})
    assert report["symbols"]["NVDA"]["status"] == outcomes.FAILED
    assert report["symbols"]["NVDA"]["reason"] == "task extract[1] did not succeed (see its log)"
    assert report["failed_tasks"] == ["extract[1]", "load_timescale"]
    assert build_report(None, [], None, None, None)["failed_tasks"] == ["plan"]


@pytest.mark.integration
def test_a_failed_report_says_which_tasks_failed(services):
    from market_ingest.operators.report import RunReportOperator

    plan = [{"batch": 0, "symbols": ["AAPL"], "start": "2021-07-22T00:00:00+00:00", "end": "2021-07-23T00:00:00+00:00"}]
    extracts = [{"batch": 0, "outcomes": [{"symbol": "AAPL", "status": "ok"}]}]
    lake = {"rows_by_symbol": {"AAPL": 1}, "objects": []}
    task = built(RunReportOperator, "report", plan=plan, extracts=extracts, lake=lake, timescale=lake, kinesis=None)
    with pytest.raises(AirflowFailException, match=r"tasks \['publish_kinesis'\] did not succeed"):
        task.execute(context("manual__report"))


def test_an_out_of_range_date_is_a_named_configuration_error():
    from market_ingest.errors import ConfigurationError
    from market_ingest.run import select

    start, end = datetime(2021, 7, 19, tzinfo=UTC), datetime(2021, 7, 20, tzinfo=UTC)
    with pytest.raises(ConfigurationError, match=r"param end='9999-12-31T23:59:59-01:00' is out of range"):
        select("yahoo", ["MSFT"], start, end, {"end": "9999-12-31T23:59:59-01:00"})


def _staged_msft(root, run_id: str) -> dict:
    """MSFT's recorded daily bars of 2021-07-19..23 staged as batch 0 of ``run_id`` under lake ``root``."""
    from market_ingest.hooks.yahoo import Window, YahooFinanceHook
    from market_ingest.lake import stage

    window = Window(datetime(2021, 7, 19, tzinfo=UTC), datetime(2021, 7, 24, tzinfo=UTC))
    bars, _ = YahooFinanceHook().fetch_bars(["MSFT"], "1d", window, datetime(2026, 1, 1, tzinfo=UTC))
    assert bars.num_rows == 5
    (staged,) = stage(bars, root, "yahoo", "1d", run_id, 0, compression="none")
    return staged


def _damage_a_page(data: bytes) -> bytes:
    """The Parquet file ``data`` with the bytes of its first data pages inverted; footer and magic intact."""
    middle = len(data) // 3
    return data[:4] + bytes(b ^ 0xFF for b in data[4:middle]) + data[middle:]


@pytest.mark.integration
@pytest.mark.parametrize(
    "damage, task_id",
    [
        pytest.param(lambda data: data[: len(data) // 2], "publish_lake", id="cut-in-half-publish"),  # ArrowInvalid
        pytest.param(_damage_a_page, "publish_kinesis", id="damaged-page-kinesis"),  # OSError from the decoder
        pytest.param(_damage_a_page, "load_timescale", id="damaged-page-timescale"),
    ],
)
def test_a_corrupt_staged_object_fails_at_once_naming_the_object_and_the_run(services, damage, task_id):
    """Seen on main: a damaged staged object failed the publish with ``ArrowInvalid: Parquet magic
    bytes not found in footer`` (or ``OSError: Couldn't deserialize thrift``), naming neither the
    object nor the run, and Airflow retried it on the same bytes. It is now a CorruptObjectError
    (permanent: AirflowFailException, no retry) naming both."""
    from market_ingest.config import load_config
    from market_ingest.errors import CorruptObjectError
    from market_ingest.lake import lake_root, run_token, staging_run_dir
    from market_ingest.operators.kinesis import KinesisPublishOperator
    from market_ingest.operators.lake import LakePublishOperator
    from market_ingest.operators.warehouse import TimescaleLoadOperator

    run_id = f"manual__corrupt_{task_id}"
    root = lake_root(load_config().lake.url)
    staged = _staged_msft(root, run_id)
    obj = lake_root(staged["path"])
    obj.write_bytes(damage(obj.read_bytes()))
    lake = {"staged": [staged["path"]], "fingerprint": run_id, "run_dir": str(staging_run_dir(root, "yahoo", "1d", run_id))}
    task = {
        "publish_lake": lambda: built(LakePublishOperator, task_id, extracts=[{"staged": [staged], "ingested_at": None}]),
        "publish_kinesis": lambda: built(KinesisPublishOperator, task_id, lake=lake),
        "load_timescale": lambda: built(TimescaleLoadOperator, task_id, lake=lake),
    }[task_id]()
    with pytest.raises(AirflowFailException) as failed:
        task.execute(context(run_id))
    assert isinstance(failed.value.__cause__, CorruptObjectError)
    message = str(failed.value)
    assert message.startswith(f"lake: staged object {staged['path']} of run {run_token(run_id)} cannot be read as Parquet (")
    assert "clear the run's extract tasks to stage it again" in message


def test_an_error_reading_the_bytes_stays_retryable(tmp_path, monkeypatch):
    """Only Arrow's decoder makes an object corrupt: an OSError of the storage under it (a dropped
    S3 connection, a disk error; raised by the file object's own code) propagates as it is, for a retry."""
    import pyarrow.parquet as pq

    from market_ingest import lake
    from market_ingest.lake import staging

    root = lake.lake_root(f"file://{tmp_path}")
    staged = _staged_msft(root, "manual__flaky")

    class DroppedAfterTheFooter:
        """The staged object's bytes; the connection drops on the first read after the footer's."""

        def __init__(self, path):
            self.fh, self.reads = lake.lake_root(path).open("rb"), 0

        def __getattr__(self, name):
            return getattr(self.fh, name)

        def read(self, *args):
            self.reads += 1
            if self.reads > 1:
                raise ConnectionResetError(104, "Connection reset by peer")
            return self.fh.read(*args)

    monkeypatch.setattr(staging, "_parquet_file", lambda path: pq.ParquetFile(DroppedAfterTheFooter(path), pre_buffer=False))
    with pytest.raises(ConnectionResetError):
        list(lake.iter_staged([staged["path"]]))
    monkeypatch.undo()
    assert sum(b.num_rows for b in lake.iter_staged([staged["path"]])) == 5  # the bytes themselves are sound
