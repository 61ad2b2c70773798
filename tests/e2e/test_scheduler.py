"""End to end under the real scheduler: ``airflow standalone`` (LocalExecutor, PostgreSQL metadata).

What ``dag.test`` cannot show: a missed Deadline Alert reaching the notifier through the
scheduler and the triggerer, a failure callback from the DAG processor, and ``airflow backfill
create`` giving exactly what forward runs of the same dates gave.

One stack serves the module; it runs with a copy of the pipeline config in which
``market_coinbase_1h`` allows 1 second of lateness, so any run of it is late on purpose.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from datetime import datetime, timedelta
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


@pytest.fixture(scope="module")
def stack(services, tmp_path_factory):
    from demo.stack import running_stack
    from market_ingest.config import config_path

    home = tmp_path_factory.mktemp("standalone")
    raw = yaml.safe_load(config_path().read_text())
    raw["sources"]["coinbase"]["intervals"]["1h"]["allowed_lateness"] = "PT1S"
    late_config = home / "pipeline-late.yaml"
    late_config.write_text(yaml.safe_dump(raw))
    extra = {k: v for k, v in os.environ.items() if k.startswith(("AIRFLOW_CONN_", "MARKET_INGEST_"))}
    extra["MARKET_INGEST_CONFIG"] = str(late_config)
    with running_stack(home / "airflow", [LATE_DAG, DAILY], services.metadata_db("airflow_e2e"), extra) as st:
        for dag_id in (LATE_DAG, DAILY):
            st.unpause(dag_id)
        yield st


def _events(services, kind, run_id, timeout=120):
    """Events of ``kind`` for ``run_id`` on the events stream, waiting until at least one arrives."""
    from demo.services import read_stream

    end = time.monotonic() + timeout
    while True:
        found = [e for e in read_stream(services, "market-events") if e["event"] == kind and e["run_id"] == run_id]
        if found or time.monotonic() > end:
            return found
        time.sleep(2)


def test_a_late_run_fires_its_deadline_alert_with_the_runs_identity(services, stack):
    run_id = stack.trigger(
        LATE_DAG, "2024-04-04T02:00:00Z", {"symbols": ["BTC/USD"], "start": "2024-04-04T00:00:00Z", "end": "2024-04-04T02:00:00Z"}
    )
    (run,) = stack.wait_for_runs(LATE_DAG, [run_id])
    assert run["state"] == "success"  # late is not failed: the bars landed, after the deadline

    (event,) = _events(services, "deadline_missed", run_id)
    assert event["dag_id"] == LATE_DAG and event["run_type"] == "manual"
    assert event["data_interval_start"] == run["data_interval_start"]
    assert event["data_interval_end"] == run["data_interval_end"]
    # A manual run's deadline is its queue time plus the configured lateness (1 s here).
    due, queued = (datetime.fromisoformat(t.replace("Z", "+00:00")) for t in (event["deadline_time"], run["queued_at"]))
    assert due - queued == timedelta(seconds=1)
    assert f"{LATE_DAG} run {run_id} was not done by" in event["message"]
    log = (stack.home / "standalone.log").read_text(errors="replace")
    assert "market event:" in log and run_id in log  # the triggerer logged it too


def test_a_failed_run_calls_the_failure_notifier(services, stack):
    run_id = stack.trigger(
        DAILY, "2021-07-30T00:00:00Z", {"symbols": ["MSFT"], "start": "2021-07-23T00:00:00Z", "end": "2021-07-22T00:00:00Z"}
    )  # inverted
    (run,) = stack.wait_for_runs(DAILY, [run_id])
    assert run["state"] == "failed"
    states = {t["task_id"]: t["state"] for t in stack.task_instances(DAILY, run_id)}
    assert states["plan"] == "failed" and states.get("extract") != "success"
    (event,) = _events(services, "dag_failed", run_id)
    assert event["dag_id"] == DAILY and event["logical_date"] == "2021-07-30T00:00:00Z"
    assert event["deadline_time"] is None
    assert run["note"].splitlines()[-1] == "did not succeed: plan"  # the report's run note says so too


def _sinks(services, stack):
    """Rows, lake objects (with their rows) and distinct Kinesis record ids of DAYS for SYMBOLS."""
    import pyarrow.parquet as pq

    from demo.services import read_stream

    with psycopg.connect(services.pg_conninfo()) as conn:
        rows = conn.execute(
            "SELECT symbol, time, open, high, low, close, adj_close, volume, currency FROM market.bars "
            "WHERE source = 'yahoo' AND interval = '1d' AND time >= %s AND time < %s::date + 1 AND symbol = ANY(%s) "
            "ORDER BY symbol, time",
            (DAYS[0], DAYS[-1], SYMBOLS),
        ).fetchall()
    s3 = services.boto3_client("s3")
    objects = {}  # daily bars are partitioned by month: July 2021's one object, its rows of DAYS and SYMBOLS
    for o in s3.list_objects_v2(Bucket="market-lake", Prefix="bars/source=yahoo/interval=1d/month=2021-07/").get("Contents", []):
        table = pq.read_table(io.BytesIO(s3.get_object(Bucket="market-lake", Key=o["Key"])["Body"].read()))
        ours = [r for r in table.drop_columns(["ingested_at"]).to_pylist() if r["symbol"] in SYMBOLS]
        objects[o["Key"]] = sorted(
            (r for r in ours if r["time"].date().isoformat() in DAYS), key=lambda r: (r["time"], r["symbol"])
        )
    records = [
        r
        for r in read_stream(services, "market-bars")
        if r["source"] == "yahoo" and r["interval"] == "1d" and r["time"][:10] in DAYS
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


def test_a_backfill_equals_the_forward_runs_and_a_second_backfill_adds_nothing(services, stack):
    forward = [stack.trigger(DAILY, t, {"symbols": SYMBOLS}) for t in FORWARD_TRIGGERS]
    runs = stack.wait_for_runs(DAILY, forward)
    assert [r["state"] for r in runs] == ["success"] * 3
    assert [r["data_interval_start"][:10] for r in runs] == DAYS
    # The runs list shows when a run was triggered; its note (written by the report through the
    # REST API, market_ingest.run_note) shows the window it loaded and the bars per sink.
    note = runs[0]["note"].splitlines()
    assert note[0] == "**2021-07-21 00:00 → 2021-07-22 00:00 UTC** · 3 symbols: 3 ok"
    assert {"| S3 lake | 3 |", "| TimescaleDB | 3 |", "| Kinesis | 3 |"} <= set(note)
    rows, objects, ids, n_records = _sinks(services, stack)
    assert len(rows) == 9 and len(ids) == 9 and n_records == 9
    assert [len(bars) for bars in objects.values()] == [9]  # one object for the month, each bar once
    forward_keys = [stack.xcom(DAILY, r["dag_run_id"], "report")["lake_objects"] for r in runs]

    first = _backfill(stack)
    assert [stack.xcom(DAILY, r["dag_run_id"], "report")["lake_objects"] for r in first] == forward_keys
    rows1, objects1, ids1, n1 = _sinks(services, stack)
    assert (rows1, objects1, ids1) == (rows, objects, ids)
    assert n1 == 18  # at-least-once: the backfill re-sent the same 9 ids

    n_runs = len(stack.runs(DAILY))
    second = _backfill(stack)  # the same dates again: the backfill's runs are cleared and rerun
    assert [r["dag_run_id"] for r in second] == [r["dag_run_id"] for r in first] and len(stack.runs(DAILY)) == n_runs
    rows2, objects2, ids2, n2 = _sinks(services, stack)
    assert (rows2, objects2, ids2) == (rows, objects, ids)
    # At least once: every successful publish try re-sends its day's 3 ids: 27 after three rounds.
    assert n2 == 3 * _successful_publishes(stack) and n2 >= 27


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


def test_a_scheduler_that_dies_mid_run_is_replaced_and_the_run_finishes(stack):
    """The harness's watchdog: standalone does not restart a dead scheduler, it does."""
    import signal

    run_id = stack.trigger(
        LATE_DAG, "2024-04-04T03:00:00Z", {"symbols": ["BTC/USD"], "start": "2024-04-04T00:00:00Z", "end": "2024-04-04T02:00:00Z"}
    )
    end = time.monotonic() + 300
    while not any(t["state"] in ("running", "success") for t in stack.task_instances(LATE_DAG, run_id)):
        assert time.monotonic() < end, "no task started"
        time.sleep(1)
    (scheduler,) = stack.scheduler_pids()
    os.kill(scheduler, signal.SIGKILL)
    (run,) = stack.wait_for_runs(LATE_DAG, [run_id])
    assert run["state"] == "success"
    assert len(stack.restarted) == 1 and stack.scheduler_pids() == [stack.restarted[0].pid]


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


def test_the_coverage_view_shows_the_ledger_and_a_cells_reason(services, stack, browser, tmp_path):
    """Log in to the Airflow UI, open "Market coverage" from the navigation, then the Yahoo daily
    grid: every cell is a ledger row of the latest days, with its state; clicking the cell of
    SIX (a delisted symbol, asked through the scheduler) shows its reason. Without a login the app
    answers 401. A screenshot is written (``COVERAGE_SCREENSHOT``, else the test's folder)."""
    import requests

    # SIX beside two symbols Yahoo serves: a run of symbols the vendor does not know alone fails (max_unserved_share)
    run_id = stack.trigger(DAILY, "2021-07-23T07:00:00Z", {"symbols": ["MSFT", "NVDA", "SIX"]})  # 06:00 is a forward run's
    assert [r["state"] for r in stack.wait_for_runs(DAILY, [run_id])] == ["success"]
    assert requests.get(f"{stack.api_url}/market-coverage/", timeout=30).status_code == 401

    with psycopg.connect(services.pg_conninfo()) as conn:
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


def test_the_coverage_api_reads_the_ledger_through_the_read_only_login(services, stack):
    """The API server's coverage app reads through ``market_timescale_reader`` (login
    ``market_view``, role ``market_reader``), not the loading connection: with that login refused,
    the app answers 503 naming it; with it back, the ledger."""
    import requests

    user, password = stack.login()
    token = requests.post(f"{stack.api_url}/auth/token", json={"username": user, "password": password}, timeout=30)
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}
    url = f"{stack.api_url}/market-coverage/api/coverage"
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
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
    "yahoo_finance": (  # last: the test then saves a connection of this type
        "Yahoo Finance",
        ["Description", "Base URL (optional)", "Requests per second", "Retries per request", "Tries per symbol", "HTTP proxy"],
    ),
}


def test_the_add_connection_form_offers_each_vendor_with_its_own_fields(stack, browser):
    """The provider package (``pyproject.toml``, installed by ``make install``) registers its
    connection types: the UI's Add Connection dialog lists "Yahoo Finance", "Alpha Vantage" and
    "Crypto exchange (ccxt)", each with its own fields and without the standard fields it does not
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
