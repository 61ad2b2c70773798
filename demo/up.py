"""``make up`` / ``make down``: leave the whole stack running for the UI on http://localhost:8080.

``up`` starts a supervisor process in the background and returns once Airflow is ready, printing
the URL and the admin login. The supervisor holds PostgreSQL, moto (S3, Kinesis) and Airflow in
one of demo/stack.py's layouts (``--executor local``: ``airflow standalone``; ``--executor celery``:
two schedulers, two Celery workers and a Redis broker) and tears all of them down when it receives SIGTERM,
which is what ``down`` sends. State lives in ``.stack/`` (``state.json``, ``supervisor.log``,
the metadata DB and logs under ``.stack/airflow``). ``state.json`` holds the admin password, as
does ``.stack/airflow/simple_auth_manager_passwords.json.generated``: both are mode 600.

By default the hooks reach the vendor stand-in serving the recordings (``include/recordings``) and, for
every symbol and window no recording covers, its synthetic market (as the Compose stack's does), so
manual runs from the UI work offline: over the recorded dates (e.g. market_yahoo_1d with logical date
2021-07-20) they load the recorded bars, and a trigger with the defaults loads synthetic ones;
``--live`` calls the vendors. Scheduled runs are off (``[scheduler] use_job_schedule``): trigger
runs or backfills by hand.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORK = ROOT / ".stack"
STATE = WORK / "state.json"
PORT = 8080


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False


def serve(live: bool, executor: str = "local") -> None:
    """Run the services and the stack until SIGTERM; write STATE once ready."""
    sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
    from contextlib import nullcontext

    from demo.services import DEMO_ALPHA_VANTAGE_CONN, create_sinks, embedded_services, redis_server, vendor_env
    from demo.stack import running_stack
    from market_ingest.config import load_config
    from market_ingest.dag_factory import build_dags

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cfg = load_config()
    celery = executor == "celery"
    with (
        embedded_services(WORK, vendors=not live, synthetic=True) as svc,
        redis_server(WORK / "redis") if celery else nullcontext() as broker,
    ):
        env = svc.airflow_env(cfg.timescale.conn_id, cfg.kinesis.aws_conn_id, cfg.timescale.reader_conn_id)
        if svc.vendors_url:
            env.update(vendor_env(svc.vendors_url, cfg))  # every vendor connection through the stand-in
        elif "AIRFLOW_CONN_MARKET_ALPHA_VANTAGE" not in os.environ:
            env["AIRFLOW_CONN_MARKET_ALPHA_VANTAGE"] = json.dumps(DEMO_ALPHA_VANTAGE_CONN)
        create_sinks(svc, cfg)
        metadata = svc.metadata_db("airflow_up", fresh=False)  # a restarted `make up` keeps its runs
        with running_stack(
            WORK / "airflow", sorted(build_dags()), metadata, env, api_port=PORT, executor=executor, broker_url=broker
        ) as stack:
            user, password = stack.login()
            write_state(
                {
                    "pid": os.getpid(),
                    "executor": executor,
                    "url": f"http://localhost:{PORT}",
                    "user": user,
                    "password": password,
                    "postgres": svc.pg_conninfo(),
                    "aws_endpoint": svc.aws_endpoint,
                    "vendors_url": svc.vendors_url,
                }
            )
            while not stop.wait(2):
                stack._check_alive()
    STATE.unlink(missing_ok=True)


def write_state(state: dict, path: Path = STATE) -> None:
    """Write the running stack's ``state`` (its admin password among it) to ``path``, mode 600."""
    from demo.stack import write_private

    write_private(path, json.dumps(state))


def up(live: bool, executor: str = "local", timeout: float = 420) -> int:
    """Start the supervisor unless one runs; wait until ready; print URL and login."""
    WORK.mkdir(exist_ok=True)
    if STATE.exists() and _alive(json.loads(STATE.read_text())["pid"]):
        return _print_login()
    STATE.unlink(missing_ok=True)
    with (WORK / "supervisor.log").open("ab") as log:
        proc = subprocess.Popen(
            [sys.executable, __file__, "serve", "--executor", executor, *(["--live"] if live else [])],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    print(f"starting PostgreSQL, moto and Airflow ({executor} layout; log {WORK / 'supervisor.log'}) ...", flush=True)
    deadline = time.monotonic() + timeout
    while not STATE.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            print(f"the stack did not come up; see {WORK / 'supervisor.log'}", file=sys.stderr)
            if proc.poll() is None:
                proc.terminate()
            return 1
        time.sleep(2)
    return _print_login()


def _print_login() -> int:
    s = json.loads(STATE.read_text())
    print(
        f"Airflow UI: {s['url']}  (log in as {s['user']} / {s['password']})\n"
        f'PostgreSQL: psql "{s["postgres"]}"   S3 and Kinesis (moto): {s["aws_endpoint"]}\n'
        "Stop everything with: make down"
    )
    return 0


def down(timeout: float = 120) -> int:
    """SIGTERM the supervisor and wait until it has stopped everything."""
    if not STATE.exists():
        print("nothing running")
        return 0
    state = json.loads(STATE.read_text())
    pid = state["pid"]
    if _alive(pid):
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(1)
        if _alive(pid):  # stuck: SIGKILL it; its reaper (demo.reaper) then stops what it started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    STATE.unlink(missing_ok=True)
    print("stopped")
    return 0


def _running() -> dict | None:
    if not STATE.exists():
        print("nothing running: start it with `make up`", file=sys.stderr)
        return None
    return json.loads(STATE.read_text())


def psql(args: list[str]) -> int:
    """Open pgserver's ``psql`` on the running stack's warehouse (``args`` passed on, e.g. ``-c "..."``)."""
    state = _running()
    if state is None:
        return 1
    import pgserver

    binary = Path(pgserver.__file__).parent / "pginstall" / "bin" / "psql"
    os.execv(binary, [str(binary), state["postgres"], *args])


def lake(prefix: str) -> int:
    """List the running stack's lake objects under ``prefix`` (the bars bucket): key, rows, bytes."""
    state = _running()
    if state is None:
        return 1
    sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
    import pyarrow.parquet as pq

    from demo.services import Services, delta_files
    from market_ingest.config import load_config

    bucket, _, root = load_config().lake.url.split("@", 1)[1].partition("/")
    services = Services(pg_socket_dir="", aws_endpoint=state["aws_endpoint"])
    s3 = services.boto3_client("s3")
    active = delta_files(services, bucket, f"{root}/bars") or set()  # the bars table's current files
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=f"{root}/{prefix}".rstrip("/")):
        for o in page.get("Contents", []):
            rows = (
                ""
                if not o["Key"].endswith(".parquet")
                else pq.ParquetFile(io.BytesIO(s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read())).metadata.num_rows
            )
            stale = (
                "  (an earlier version's file)" if o["Key"].startswith(f"{root}/bars/source=") and o["Key"] not in active else ""
            )
            print(f"s3://{bucket}/{o['Key']}  {rows} rows  {o['Size']} bytes{stale}")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Leave the stack running (up), stop it (down), look into it (psql, lake).")
    parser.add_argument("command", choices=["up", "down", "serve", "psql", "lake"])
    parser.add_argument("--live", action="store_true", help="call the live vendor APIs instead of the stand-in")
    parser.add_argument("--executor", choices=("local", "celery"), default="local", help="the Airflow layout (demo/stack.py)")
    parser.add_argument(
        "--prefix", default="", help="lake: only keys under this prefix (bars/source=yahoo/interval=1d: the bars table)"
    )
    a, rest = parser.parse_known_args()
    if a.command == "serve":
        serve(a.live, a.executor)
        sys.exit(0)
    if a.command == "psql":
        sys.exit(psql(rest))
    if a.command == "lake":
        sys.exit(lake(a.prefix))
    sys.exit(up(a.live, a.executor) if a.command == "up" else down())
