"""End to end under the real scheduler, in both layouts of :mod:`demo.stack`: ``airflow
standalone`` (LocalExecutor) and the CeleryExecutor with two workers, two schedulers at once and a
Redis broker, on PostgreSQL metadata.

What ``dag.test`` cannot show: a missed Deadline Alert reaching the notifier through the
scheduler and the triggerer, a failure callback from the DAG processor, ``airflow backfill
create`` giving exactly what forward runs of the same dates gave, and what a distributed engine
does to a run when one of its processes dies (a scheduler, a worker during an extract and during a
load, the broker).

One deployment serves the module per layout (``--executors``, default both): a stack, and sinks of
its own (a warehouse database, a lake bucket and Kinesis streams), so that each layout's rows,
objects and records are its own runs' alone. It runs with a copy of the pipeline config in which
``market_coinbase_1h`` allows 1 second of lateness, so any run of it is late on purpose, and task
retries wait 5 s instead of a minute. Tests of what does not depend on the executor (the UI, the
REST API) run in the ``local`` layout only, the fault tests of a distributed engine in ``celery``
only (marker ``executors``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import psycopg
import pytest
import yaml

pytestmark = pytest.mark.e2e

LATE_DAG = "market_coinbase_1h"
DAILY = "market_yahoo_1d"
SYMBOLS = ["MSFT", "NVDA", "TSLA"]
DAYS = ["2021-07-21", "2021-07-22", "2021-07-23"]  # Wed..Fri, recorded by Yahoo
# Manual runs ingest the last complete day before their logical date; 06:00 keeps their logical
# dates apart from the backfill's (midnight), so the backfill creates runs instead of clearing these.
FORWARD_TRIGGERS = ["2021-07-22T06:00:00Z", "2021-07-23T06:00:00Z", "2021-07-24T06:00:00Z"]


def pytest_generate_tests(metafunc):
    """One deployment per layout chosen with ``--executors``; a test marked ``executors(...)`` runs
    in those of them only (none chosen: pytest reports it skipped, "got empty parameter set")."""
    if "deployment" not in metafunc.fixturenames:
        return
    chosen = metafunc.config.getoption("--executors")
    marker = metafunc.definition.get_closest_marker("executors")
    if marker is not None:
        chosen = [e for e in chosen if e in marker.args]
    metafunc.parametrize("deployment", chosen, indirect=True, scope="module")


@dataclass(frozen=True)
class Deployment:
    """A running stack and the sinks its runs write.

    :param services: the session's servers, with this deployment's warehouse database.
    :param bucket: its lake bucket; ``bars_stream``/``events_stream``: its Kinesis streams.
    :param broker: the Celery broker's URL (``celery`` layout), else None.
    """

    stack: object
    services: object
    bucket: str
    bars_stream: str
    events_stream: str
    broker: str | None

    @property
    def executor(self) -> str:
        return self.stack.executor


@pytest.fixture(scope="module")
def deployment(request, services, tmp_path_factory):
    from demo.services import create_sinks, redis_server
    from demo.stack import running_stack
    from market_ingest.config import config_path, load_config

    executor = request.param
    home = tmp_path_factory.mktemp(f"stack-{executor}")
    raw = yaml.safe_load(config_path().read_text())
    raw["sources"]["coinbase"]["intervals"]["1h"]["allowed_lateness"] = "PT1S"
    raw["retry"].update(delay_seconds=5, max_delay_seconds=10)
    sinks = services
    if executor != "local":  # sinks of its own beside the local layout's (the session's)
        sinks = services.with_database(f"market_{executor}")
        raw["lake"] = {
            **raw["lake"],
            **{k: raw["lake"][k].replace("@market-lake/", f"@market-lake-{executor}/") for k in ("url", "quotes_url")},
        }
        for section, key in (("kinesis", "stream"), ("kinesis", "quotes_stream"), ("alerts", "events_stream")):
            raw[section][key] = f"{raw[section][key]}-{executor}"
    config = home / "pipeline.yaml"
    config.write_text(yaml.safe_dump(raw))
    cfg = load_config(config)
    if executor != "local":
        create_sinks(sinks, cfg)
    extra = {k: v for k, v in os.environ.items() if k.startswith(("AIRFLOW_CONN_", "MARKET_INGEST_"))}
    extra.update(sinks.airflow_env(cfg.timescale.conn_id, cfg.kinesis.aws_conn_id, cfg.timescale.reader_conn_id))
    extra["MARKET_INGEST_CONFIG"] = str(config)
    with redis_server(home / "redis") if executor == "celery" else nullcontext() as broker:
        with running_stack(
            home / "airflow",
            [LATE_DAG, DAILY],
            services.metadata_db(f"airflow_e2e_{executor}"),
            extra,
            executor=executor,
            broker_url=broker,
        ) as st:
            for dag_id in (LATE_DAG, DAILY):
                st.unpause(dag_id)
            yield Deployment(st, sinks, cfg.lake.buckets[0], cfg.kinesis.stream, cfg.alerts.events_stream, broker)


@pytest.fixture(scope="module")
def stack(deployment):
    return deployment.stack


def _events(deployment, kind, run_id, timeout=120):
    """Events of ``kind`` for ``run_id`` on the deployment's events stream, waiting until at least one arrives."""
    from demo.services import read_stream

    end = time.monotonic() + timeout
    while True:
        found = [
            e for e in read_stream(deployment.services, deployment.events_stream) if e["event"] == kind and e["run_id"] == run_id
        ]
        if found or time.monotonic() > end:
            return found
        time.sleep(2)


def test_a_late_run_fires_its_deadline_alert_with_the_runs_identity(deployment, stack):
    run_id = stack.trigger(
        LATE_DAG, "2024-04-04T02:00:00Z", {"symbols": ["BTC/USD"], "start": "2024-04-04T00:00:00Z", "end": "2024-04-04T02:00:00Z"}
    )
    (run,) = stack.wait_for_runs(LATE_DAG, [run_id])
    assert run["state"] == "success"  # late is not failed: the bars landed, after the deadline

    (event,) = _events(deployment, "deadline_missed", run_id)
    assert event["dag_id"] == LATE_DAG and event["run_type"] == "manual"
    assert event["data_interval_start"] == run["data_interval_start"]
    assert event["data_interval_end"] == run["data_interval_end"]
    # A manual run's deadline is its queue time plus the configured lateness (1 s here).
    due, queued = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (event["deadline_time"], run["queued_at"]))
    assert due - queued == timedelta(seconds=1)
    assert f"{LATE_DAG} run {run_id} was not done by" in event["message"]
    log = stack.log_text()
    assert "market event:" in log and run_id in log  # the triggerer logged it too


def test_a_failed_run_calls_the_failure_notifier(deployment, stack):
    run_id = stack.trigger(
        DAILY, "2021-07-30T00:00:00Z", {"symbols": ["MSFT"], "start": "2021-07-23T00:00:00Z", "end": "2021-07-22T00:00:00Z"}
    )  # inverted
    (run,) = stack.wait_for_runs(DAILY, [run_id])
    assert run["state"] == "failed"
    states = {t["task_id"]: t["state"] for t in stack.task_instances(DAILY, run_id)}
    assert states["plan"] == "failed" and states.get("extract") != "success"
    (event,) = _events(deployment, "dag_failed", run_id)
    assert event["dag_id"] == DAILY and event["logical_date"] == "2021-07-30T00:00:00Z"
    assert event["deadline_time"] is None
    assert run["note"].splitlines()[-1] == "did not succeed: plan"  # the report's run note says so too


def _sinks(deployment, days=DAYS, symbols=SYMBOLS):
    """Rows, lake objects (with their rows), distinct Kinesis record ids and the count of records of
    Yahoo daily bars of ``days`` (one month's) for ``symbols`` in the deployment's sinks."""
    import pyarrow.parquet as pq

    from demo.services import delta_files, read_stream

    services = deployment.services
    with psycopg.connect(services.pg_conninfo()) as conn:
        rows = conn.execute(
            "SELECT symbol, time, open, high, low, close, adj_close, volume, currency FROM market.bars "
            "WHERE source = 'yahoo' AND interval = '1d' AND time >= %s AND time < %s::date + 1 AND symbol = ANY(%s) "
            "ORDER BY symbol, time",
            (days[0], days[-1], symbols),
        ).fetchall()
    s3 = services.boto3_client("s3")
    objects = {}  # daily bars are partitioned by UTC year: the year's partition of the bars table, its rows of days and symbols
    prefix = f"bars/bars/source=yahoo/interval=1d/period={days[0][:4]}/"
    active = delta_files(services, deployment.bucket, "bars/bars") or set()
    for o in s3.list_objects_v2(Bucket=deployment.bucket, Prefix=prefix).get("Contents", []):
        if o["Key"] not in active:
            continue  # a file an earlier version of the table held
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket=deployment.bucket, Key=o["Key"])["Body"].read()))
        ours = [r for r in table.drop_columns(["ingested_at"]).to_pylist() if r["symbol"] in symbols]
        objects.setdefault(prefix, []).extend(r for r in ours if r["time"].date().isoformat() in days)
    objects = {k: sorted(v, key=lambda r: (r["time"], r["symbol"])) for k, v in objects.items()}
    records = [
        r
        for r in read_stream(services, deployment.bars_stream)
        if r["source"] == "yahoo" and r["interval"] == "1d" and r["time"][:10] in days and r["symbol"] in symbols
    ]
    return rows, objects, {r["record_id"] for r in records}, len(records)


def _successful_publishes(stack) -> int:
    """Successful ``publish_kinesis`` tries over every run of the daily DAG (each sends its day's bars once)."""
    return sum(
        t["state"] == "success"
        for r in stack.runs(DAILY)
        for t in stack.request("GET", f"/dags/{DAILY}/dagRuns/{r['dag_run_id']}/taskInstances/publish_kinesis/tries")[
            "task_instances"
        ]
    )


def _backfill(stack):
    """``airflow backfill create`` over DAYS (completed dates run again); wait; return its runs."""
    runs = stack.backfill(DAILY, DAYS[0], DAYS[-1], {"symbols": SYMBOLS}, reprocess="completed")
    assert [r["state"] for r in runs] == ["success"] * len(DAYS)
    assert [(r["logical_date"][:10], r["data_interval_start"][:10]) for r in runs] == list(zip(DAYS, DAYS))
    return runs


def test_a_backfill_equals_the_forward_runs_and_a_second_backfill_adds_nothing(deployment, stack):
    forward = [stack.trigger(DAILY, t, {"symbols": SYMBOLS}) for t in FORWARD_TRIGGERS]
    runs = stack.wait_for_runs(DAILY, forward)
    assert [r["state"] for r in runs] == ["success"] * 3
    assert [r["data_interval_start"][:10] for r in runs] == DAYS
    # The runs list shows when a run was triggered; its note (written by the report through the
    # REST API, market_ingest.run_note) shows the window it loaded and the bars per sink.
    note = runs[0]["note"].splitlines()
    assert note[0] == "**2021-07-21 00:00 → 2021-07-22 00:00 UTC** · 3 symbols: 3 ok"
    assert {"| S3 lake | 3 |", "| TimescaleDB | 3 |", "| Kinesis | 3 |"} <= set(note)
    rows, objects, ids, n_records = _sinks(deployment)
    assert len(rows) == 9 and len(ids) == 9 and n_records == 9
    assert [len(bars) for bars in objects.values()] == [9]  # one object for the month, each bar once
    forward_keys = [stack.xcom(DAILY, r["dag_run_id"], "report")["lake_objects"] for r in runs]

    first = _backfill(stack)
    assert [stack.xcom(DAILY, r["dag_run_id"], "report")["lake_objects"] for r in first] == forward_keys
    rows1, objects1, ids1, n1 = _sinks(deployment)
    assert (rows1, objects1, ids1) == (rows, objects, ids)
    assert n1 == 18  # at-least-once: the backfill re-sent the same 9 ids

    n_runs = len(stack.runs(DAILY))
    second = _backfill(stack)  # the same dates again: the backfill's runs are cleared and rerun
    assert [r["dag_run_id"] for r in second] == [r["dag_run_id"] for r in first] and len(stack.runs(DAILY)) == n_runs
    rows2, objects2, ids2, n2 = _sinks(deployment)
    assert (rows2, objects2, ids2) == (rows, objects, ids)
    # At least once: every successful publish try re-sends its day's 3 ids: 27 after three rounds.
    assert n2 == 3 * _successful_publishes(stack) and n2 >= 27


@pytest.mark.executors("local")
def test_the_backfill_dialogs_conf_reaches_new_runs_only_when_override_is_ticked(stack):
    """Issue 14 item 4: backfills made in the UI ran the whole universe (``dag_run_conf: null``).
    Airflow 3.3.2's Backfill dialog sends ``dag_run_conf: overrideExistingParams ? conf : null``
    (``ui/dist`` bundle), and ``POST /api/v2/backfills`` with ``null`` creates its new runs
    without conf: the Params shown are dropped unless "Override parameters on existing runs" is
    ticked. Both bodies the dialog can send, on dates no other test uses; the backfills are
    cancelled at once (what their runs load does not matter here)."""
    conf = {"symbols": ["BTC/USD"], "start": "2024-04-05T00:00:00Z", "end": "2024-04-05T01:00:00Z"}
    confs = []
    for day, body_conf in (("2024-05-01", None), ("2024-05-02", conf)):
        backfill = stack.request(
            "POST",
            "/backfills",
            json={
                "dag_id": LATE_DAG,
                "from_date": f"{day}T00:00:00Z",
                "to_date": f"{day}T00:00:00Z",
                "dag_run_conf": body_conf,
                "reprocess_behavior": "none",
                "max_active_runs": 1,
            },
        )
        stack.request("PUT", f"/backfills/{backfill['id']}/cancel")
        confs.append([r["conf"] for r in stack.runs(LATE_DAG) if r["run_type"] == "backfill" and r["logical_date"][:10] == day])
    assert confs[0] in ([{}], [None])  # box not ticked: no conf, so the run would take every configured symbol
    assert confs[1] == [conf]  # ticked: the Params reach the run


def _started(stack, dag_id, run_id, task_id, timeout=300):
    """Wait until a try of ``task_id`` in the run is running; return that task instance (REST dict)."""
    end = time.monotonic() + timeout
    while True:
        running = [t for t in stack.task_instances(dag_id, run_id) if t["task_id"] == task_id and t["state"] == "running"]
        if running:
            return running[0]
        assert time.monotonic() < end, f"{task_id} of {run_id} did not start in {timeout}s"
        time.sleep(0.5)


def _figure(line: str) -> None:
    """Print a fault case's figure (``FIGURE: ...``, captured unless ``-s``); ``bench/faults.py`` collects them."""
    print(f"FIGURE: {line}", flush=True)


def _recorded_days(symbols, start, end):
    """``{symbol: [day, ...]}``: the UTC dates of the Yahoo daily bars recorded for ``symbols`` in ``[start, end)``."""
    from tests.conftest import RECORDINGS

    found = {}
    for symbol in symbols:
        days = set()
        for path in (RECORDINGS / "yahoo").glob(f"yahoo_chart_{symbol}_1d_*.json"):
            result = json.loads(path.read_text())["chart"]["result"][0]
            days |= {datetime.fromtimestamp(t, timezone.utc).date().isoformat() for t in result.get("timestamp") or []}
        found[symbol] = sorted(d for d in days if start <= d < end)
    return found


def _worker_of_try(stack, run_id, task_id, try_number):
    """The Celery worker (``worker-<n>``) whose log shows it executing that try, from the workload it logs."""
    wanted = f"task_id='{task_id}', dag_id='{DAILY}', run_id='{run_id}', try_number={try_number},"
    found = stack.workers_logging(wanted)
    assert len(found) == 1, (wanted, found)
    return found[0]


def _worker_running(stack, ti):
    """The Celery worker whose processes include the task process of task instance ``ti`` (REST dict),
    by its title (``airflow worker -- <ti id>``, set by the task SDK)."""
    from demo.stack import session_pids

    title = f"airflow worker -- {ti['id']}".encode()
    for name, proc in stack.components.items():
        for pid in session_pids(proc.pid):
            try:
                if Path(f"/proc/{pid}/cmdline").read_bytes().startswith(title):
                    return name
            except OSError:
                continue
    raise AssertionError(f"no worker runs {ti['task_id']} ({ti['id']})")


@pytest.mark.executors("celery")
@pytest.mark.parametrize(
    ("task_id", "month"),
    [("extract", ("2021-08-01", "2021-09-01")), ("load_timescale", ("2021-09-01", "2021-10-01"))],
    ids=["during-extract", "during-load"],
)
def test_a_worker_killed_mid_task_leaves_the_other_to_retry_it_and_no_bar_is_lost_or_doubled(
    deployment, stack, vendors, task_id, month
):
    """SIGKILL the Celery worker running ``task_id`` (with its task process, as the loss of its host
    would): its try stops heartbeating, the scheduler fails it after
    ``task_instance_heartbeat_timeout`` (90 s here), and the retry runs on the other worker. The run
    succeeds with every recorded bar of its month once in the warehouse, once in the lake, and
    each Kinesis record id sent as often as publish_kinesis succeeded (once). Stand-in latency
    (2 s a request) keeps the extract running long enough to be killed in the middle of it."""
    import urllib.request

    start, end = month
    conf = {"symbols": SYMBOLS, "start": f"{start}T00:00:00Z", "end": f"{end}T00:00:00Z"}

    def latency(ms):
        body = json.dumps({"latency_ms": ms}).encode()
        urllib.request.urlopen(urllib.request.Request(f"{vendors.url}/_standin/latency", data=body, method="POST"), timeout=10)

    latency(2000 if task_id == "extract" else 0)
    try:
        run_id = stack.trigger(DAILY, f"{end}T08:00:00Z", conf)
        ti = _started(stack, DAILY, run_id, task_id)
        if task_id == "extract":  # in the middle of it: its first vendor request is in flight
            time.sleep(3)
        victim = _worker_running(stack, ti)
        stack.kill_component(victim)
        killed = time.monotonic()
        latency(0)
        (run,) = stack.wait_for_runs(DAILY, [run_id], timeout=900)
        recovered = time.monotonic() - killed
    finally:
        latency(0)
    survivor = next(n for n in ("worker-1", "worker-2") if n != victim)
    stack.start_worker(victim)  # as a deployment replaces a lost worker; later tests have two again
    assert run["state"] == "success"
    path = f"/dags/{DAILY}/dagRuns/{run_id}/taskInstances/{task_id}" + ("/0" if task_id == "extract" else "")
    tries = stack.request("GET", f"{path}/tries")["task_instances"]
    assert [t["state"] for t in tries] == ["failed", "success"]  # the killed try, then the retry
    assert _worker_of_try(stack, run_id, task_id, 1) == victim and _worker_of_try(stack, run_id, task_id, 2) == survivor

    recorded = _recorded_days(SYMBOLS, start, end)
    days = sorted({d for ds in recorded.values() for d in ds})
    expected = sorted((s, d) for s, ds in recorded.items() for d in ds)
    rows, objects, ids, n_records = _sinks(deployment, days)
    assert sorted((r[0], r[1].date().isoformat()) for r in rows) == expected
    (lake,) = objects.values()  # the month's one object, each bar once
    assert sorted((r["symbol"], r["time"].date().isoformat()) for r in lake) == expected
    publishes = stack.request("GET", f"/dags/{DAILY}/dagRuns/{run_id}/taskInstances/publish_kinesis/tries")["task_instances"]
    assert len(ids) == len(expected) and n_records == len(ids) * sum(t["state"] == "success" for t in publishes)
    _figure(
        f"a worker SIGKILLed during {task_id}: run {run['state']} {recovered:.0f} s after the kill; {task_id} tries "
        f"{[t['state'] for t in tries]} on {victim} then {survivor}; {len(expected)} recorded bars: {len(rows)} rows in the "
        f"warehouse, {len(lake)} in the lake, {len(ids)} Kinesis record ids in {n_records} records"
    )


@pytest.mark.executors("celery")
def test_a_broker_restarted_mid_run_loses_no_task(deployment, stack):
    """Redis stopped (SIGTERM: it writes its append-only file) for 5 s while a run's tasks are queued
    or running, then started again on the same port: the workers and the schedulers reconnect and
    the run succeeds with every recorded bar of its month once in the warehouse and the lake."""
    from demo.services import restart_redis

    start, end = "2021-10-01", "2021-11-01"
    run_id = stack.trigger(
        DAILY, f"{end}T08:00:00Z", {"symbols": SYMBOLS, "start": f"{start}T00:00:00Z", "end": f"{end}T00:00:00Z"}
    )
    end_wait = time.monotonic() + 300
    while not any(t["state"] in ("queued", "running") for t in stack.task_instances(DAILY, run_id)):
        assert time.monotonic() < end_wait, "no task of the run was queued"
        time.sleep(0.2)
    restarted = time.monotonic()
    restart_redis(deployment.broker, down_seconds=5)
    (run,) = stack.wait_for_runs(DAILY, [run_id], timeout=900)
    recovered = time.monotonic() - restarted
    assert run["state"] == "success"
    recorded = _recorded_days(SYMBOLS, start, end)
    expected = sorted((s, d) for s, ds in recorded.items() for d in ds)
    rows, objects, ids, _ = _sinks(deployment, sorted({d for _, d in expected}))
    assert sorted((r[0], r[1].date().isoformat()) for r in rows) == expected
    (lake,) = objects.values()
    assert sorted((r["symbol"], r["time"].date().isoformat()) for r in lake) == expected
    assert len(ids) == len(expected)
    _figure(
        f"the broker stopped for 5 s while tasks were queued: run {run['state']} {recovered:.0f} s after the stop; "
        f"{len(expected)} recorded bars: {len(rows)} rows in the warehouse, {len(lake)} in the lake, {len(ids)} Kinesis record ids"
    )


def test_a_scheduler_killed_mid_run_leaves_the_run_to_finish(stack):
    """``local``: standalone does not restart a dead scheduler; the harness's watchdog does.
    ``celery``: the second scheduler (Airflow's HA scheduler) goes on alone; nothing is restarted."""
    import signal

    run_id = stack.trigger(
        LATE_DAG, "2024-04-04T03:00:00Z", {"symbols": ["BTC/USD"], "start": "2024-04-04T00:00:00Z", "end": "2024-04-04T02:00:00Z"}
    )
    end = time.monotonic() + 300
    while not any(t["state"] in ("running", "success") for t in stack.task_instances(LATE_DAG, run_id)):
        assert time.monotonic() < end, "no task started"
        time.sleep(1)
    schedulers = stack.scheduler_pids()
    if stack.executor == "local":
        (scheduler,) = schedulers
        os.kill(scheduler, signal.SIGKILL)
    else:
        assert len(schedulers) == 2
        stack.kill_component("scheduler-1")  # with whatever it started, as the loss of its host would
    killed = time.monotonic()
    (run,) = stack.wait_for_runs(LATE_DAG, [run_id])
    assert run["state"] == "success"
    _figure(
        f"a scheduler SIGKILLed mid-run ({stack.executor}): run {run['state']} {time.monotonic() - killed:.0f} s after the kill"
    )
    if stack.executor == "local":
        assert len(stack.restarted) == 1 and stack.scheduler_pids() == [stack.restarted[0].pid]
    else:
        assert stack.restarted == [] and stack.scheduler_pids() == [stack.components["scheduler-2"].pid]


CHROMIUM = shutil.which("chromium")
#: Flags for Debian's chromium as root on a machine without internet (no sandbox, no background calls).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def browser():
    """Debian's chromium, headless, driven by Playwright. CI installs it (``.ci/run``) and sets
    ``REQUIRE_CHROMIUM=1``, so there a missing browser fails instead of skipping."""
    if not CHROMIUM:
        message = "Debian's chromium is not installed (apt-get install chromium); .ci/run installs it"
        if os.environ.get("REQUIRE_CHROMIUM"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


def logged_in_page(stack, browser, height: int):
    """A new browser page (1400 px wide), logged in to the stack's UI as standalone's admin user,
    returned once the UI shows its navigation (the plugin's "Market coverage" link among it)."""
    user, password = stack.login()
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.goto(f"{stack.api_url}/")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    # The login form then sends the browser on to the UI: wait for the UI's navigation, else a
    # goto issued by the caller races that redirect and Chromium aborts it (net::ERR_ABORTED).
    page.get_by_role("link", name="Market coverage").wait_for(timeout=60_000)
    return page


@pytest.mark.executors("local")
def test_the_coverage_view_shows_the_ledger_and_a_cells_reason(deployment, stack, browser, tmp_path):
    """Log in to the Airflow UI, open "Market coverage" from the navigation, then the Yahoo daily
    grid: every cell is a ledger row of the latest days, with its state; clicking the cell of
    SIX (a delisted symbol, asked through the scheduler) shows its reason. Without a login the app
    answers 401. A screenshot is written (``COVERAGE_SCREENSHOT``, else the test's folder)."""
    import requests

    # SIX beside two symbols Yahoo serves: a run of symbols the vendor does not know alone fails (max_unserved_share)
    run_id = stack.trigger(DAILY, "2021-07-23T07:00:00Z", {"symbols": ["MSFT", "NVDA", "SIX"]})  # 06:00 is a forward run's
    assert [r["state"] for r in stack.wait_for_runs(DAILY, [run_id])] == ["success"]
    assert requests.get(f"{stack.api_url}/market-coverage/", timeout=30).status_code == 401

    with psycopg.connect(deployment.services.pg_conninfo()) as conn:
        ledger = conn.execute(
            "SELECT symbol, day::text, state, expected, loaded, reason, run_id FROM market.coverage "
            "WHERE source = 'yahoo' AND interval = '1d' AND day IN (SELECT DISTINCT day FROM market.coverage "
            "WHERE source = 'yahoo' AND interval = '1d' ORDER BY day DESC LIMIT 31)"
        ).fetchall()
        complete = conn.execute(
            "SELECT count(*) FROM market.coverage WHERE source = 'yahoo' AND interval = '1d' AND state = 'complete'"
        ).fetchone()[0]
    (six,) = [r for r in ledger if r[:2] == ("SIX", "2021-07-22")]  # other tests of the session ask for SIX too
    assert six[2] == "vendor_empty" and six[6] == run_id
    assert six[5] == "Yahoo does not know the symbol or it is delisted (HTTP 404 Not Found)"

    page = logged_in_page(stack, browser, height=1000)
    page.get_by_role("link", name="Market coverage").click()
    page.wait_for_url("**/plugin/market-coverage")
    frame = page.frame_locator("iframe")
    assert frame.locator("h1").inner_text(timeout=60_000) == "Market coverage"

    page.goto(f"{stack.api_url}/market-coverage/?source=yahoo&interval=1d")
    cells = page.locator(".cell")
    shown = {(c.get_attribute("data-symbol"), c.get_attribute("data-day"), c.get_attribute("data-state")) for c in cells.all()}
    assert shown == {(s, d, state) for s, d, state, *_ in ledger}
    totals = page.locator("#totals tr[data-pair='yahoo/1d'] td.n-complete")
    assert int(totals.inner_text()) == complete
    page.locator(".cell[data-symbol='SIX'][data-day='2021-07-22']").click()
    assert page.locator("#detail").inner_text() == (
        f"SIX 2021-07-22: vendor_empty, 0 of 1 bars. Yahoo does not know the symbol or it is delisted "
        f"(HTTP 404 Not Found) [{run_id}]"
    )
    assert run_id in page.locator("#runs").inner_text()
    shot = Path(os.environ.get("COVERAGE_SCREENSHOT") or tmp_path / "coverage.png")
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


@pytest.mark.executors("local")
def test_the_coverage_api_reads_the_ledger_through_the_read_only_login(deployment, stack):
    """The API server's coverage app reads through ``market_timescale_reader`` (login
    ``market_view``, role ``market_reader``), not the loading connection: with that login refused,
    the app answers 503 naming it; with it back, the ledger."""
    import requests

    user, password = stack.login()
    token = requests.post(f"{stack.api_url}/auth/token", json={"username": user, "password": password}, timeout=30)
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    url = f"{stack.api_url}/market-coverage/api/coverage"
    with psycopg.connect(deployment.services.pg_conninfo(), autocommit=True) as conn:
        conn.execute(
            "INSERT INTO market.coverage (source, interval, symbol, day, covered_from, covered_until, expected, loaded, "
            "state, run_id) VALUES ('e2e-readonly', '1d', 'MSFT', '2021-07-19', '2021-07-19', '2021-07-20', 1, 1, "
            "'complete', 'manual__e2e_readonly') ON CONFLICT DO NOTHING"
        )
        conn.execute("ALTER ROLE market_view NOLOGIN")
        try:
            refused = requests.get(url, headers=headers, timeout=60)
        finally:
            conn.execute("ALTER ROLE market_view LOGIN")
        answer = requests.get(url, params={"source": "e2e-readonly", "interval": "1d"}, headers=headers, timeout=60)
        conn.execute("DELETE FROM market.coverage WHERE source = 'e2e-readonly'")
    assert refused.status_code == 503
    assert "connection market_timescale_reader" in refused.json()["error"] and "market_view" in refused.json()["error"]
    cell = {
        "state": "complete",
        "expected": 1,
        "loaded": 1,
        "reason": "",
        "run_id": "manual__e2e_readonly",
        "flagged": 0,
        "attempts": 0,
    }
    assert answer.status_code == 200 and answer.json()["cells"] == {"MSFT": {"2021-07-19": cell}}


#: The Add Connection form of each connection type the provider package registers
#: (market_ingest.get_provider_info): its type as the form lists it, and its field labels in order.
CONNECTION_FORMS = {
    "alpha_vantage": (
        "Alpha Vantage",
        ["Description", "Query endpoint URL (optional)", "API key", "Premium plan", "Requests per second", "Daily budget"],
    ),
    "ccxt": (
        "Crypto exchange (ccxt)",
        [
            "Description",
            "Base URL (optional)",
            "API key (optional)",
            "Secret (optional)",
            "Sandbox",
            "Tries per request",
            "API passphrase",
        ],
    ),
    "ibkr": (
        "Interactive Brokers (Client Portal Web API)",
        [
            "Description",
            "Gateway URL",
            "OAuth access token secret",
            "OAuth 1.0a (no gateway)",
            "Gateway CA certificate",
            "OAuth consumer key",
            "OAuth access token",
            "OAuth private encryption key",
            "OAuth private signature key",
            "OAuth Diffie-Hellman prime",
            "OAuth realm",
            "Requests per second",
        ],
    ),
    "twelvedata": (
        "Twelve Data",
        ["Description", "API base URL (optional)", "API key", "API credits per minute", "API credits per day"],
    ),
    "yahoo_finance": (  # last: the test then saves a connection of this type
        "Yahoo Finance",
        ["Description", "Base URL (optional)", "Requests per second", "Retries per request", "Tries per symbol", "HTTP proxy"],
    ),
}


@pytest.mark.executors("local")
def test_the_add_connection_form_offers_each_vendor_with_its_own_fields(stack, browser):
    """The provider package (``pyproject.toml``, installed by ``make install``) registers its
    connection types: the UI's Add Connection dialog lists "Yahoo Finance", "Alpha Vantage", "Twelve
    Data", "Interactive Brokers (Client Portal Web API)" (its gateway and OAuth fields) and "Crypto
    exchange (ccxt)", each with its own fields and without the standard fields it does not
    use (Yahoo: no login, password, port or schema). A Yahoo connection saved through the form
    stores its fields under the names the hook reads, and an emptied field as null, which the hook
    reads as its default."""
    from types import SimpleNamespace

    from market_ingest.hooks import connection_extra

    page = logged_in_page(stack, browser, height=1200)
    page.goto(f"{stack.api_url}/connections")
    for conn_type, (title, labels) in CONNECTION_FORMS.items():
        page.get_by_role("button", name="Add Connection").click()
        page.get_by_label("Connection Type").fill(title)
        page.get_by_role("option", name=title, exact=True).click()
        page.locator("label", has_text=labels[-1]).wait_for(state="attached", timeout=30_000)
        shown = [label.inner_text().replace("*", "").strip() for label in page.locator("label").all()]
        assert [s for s in shown if s and s not in ("Connection ID", "Connection Type")] == labels, conn_type
        if conn_type != "yahoo_finance":  # close the dialog unsaved
            page.keyboard.press("Escape")
            page.get_by_role("dialog").wait_for(state="detached")

    page.get_by_label("Connection ID").fill("market_yahoo_from_the_form")
    page.get_by_text("Extra Fields", exact=True).click()
    page.get_by_label("Requests per second").fill("4")
    page.get_by_label("Tries per symbol").fill("")
    page.get_by_role("button", name="Save").click()
    page.get_by_role("dialog").wait_for(state="detached")
    saved = {c["connection_id"]: c for c in stack.request("GET", "/connections")["connections"]}["market_yahoo_from_the_form"]
    extra = json.loads(saved["extra"])
    assert saved["conn_type"] == "yahoo_finance" and saved["login"] is None and saved["password"] is None
    assert extra == {"requests_per_second": 4, "retries": 3, "symbol_attempts": None, "proxy": None}
    assert connection_extra(SimpleNamespace(extra_dejson=extra)) == {"requests_per_second": 4, "retries": 3}
