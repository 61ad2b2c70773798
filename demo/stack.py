"""The real Airflow scheduler for the demo, the tests and the benchmark: ``airflow standalone``.

``airflow standalone`` runs the API server (UI and REST API), the scheduler with the
LocalExecutor, the DAG processor and the triggerer against a PostgreSQL metadata database (its
own database on the embedded PostgreSQL that holds the warehouse:
:meth:`demo.services.Services.metadata_db`). This module
starts it in its own process group, waits until every component reports healthy and the DAGs are
parsed, talks to it through the public REST API (``/api/v2``, token from ``/auth/token``) and the
``airflow`` CLI, and stops the whole group on exit.

Scheduled runs are switched off (``[scheduler] use_job_schedule = False``): the demo and the tests
serve recordings of past dates, so only the runs they trigger (manual runs and backfills) may
exist. Pools come from ``include/pools.json`` (``airflow pools import``); connections from
``AIRFLOW_CONN_*`` variables in the environment every component inherits.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from demo.services import free_port

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW = Path(sys.executable).with_name("airflow")
TERMINAL_STATES = {"success", "failed"}


def stack_env(home: Path, api_port: int, metadata_db: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment of every Airflow component: project folders, ports, no scheduled runs.

    :param home: ``AIRFLOW_HOME`` (logs, generated admin password).
    :param api_port: API server port (UI, REST API and the task execution API).
    :param metadata_db: SQLAlchemy URL of the metadata database (PostgreSQL).
    :param extra: added last (connections, config path).
    """
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "8",  # task processes at once; vendor limits are the pools
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        # Log servers of the scheduler and the triggerer: free ports, so a demo and a test run can coexist.
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        # After a scheduler restart (see AirflowStack._check_alive): find the dead one's tasks soon.
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "180",
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
        "PATH": f"{AIRFLOW.parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)]),
        **(extra or {}),
    }


def parse_utc(iso: str) -> datetime:
    """A REST API time (ISO 8601, ``Z`` or an offset) as an aware UTC datetime."""
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).astimezone(timezone.utc)


def run_seconds(run: dict, now: datetime | None = None) -> float | None:
    """A DAG run's run time in seconds: its ``start_date`` (when the scheduler set it running) to its
    ``end_date``, both from the metadata (REST ``DAGRunResponse``); to ``now`` while it runs.

    A run waiting in the queue (``max_active_runs``, a busy scheduler) has not started: its wait is
    not run time. :return: None when the run has not started, or has not ended and ``now`` is None.
    """
    if not run.get("start_date"):
        return None
    end = parse_utc(run["end_date"]) if run.get("end_date") else now
    return None if end is None else (end - parse_utc(run["start_date"])).total_seconds()


def run_window(run: dict, conf: dict | None = None) -> tuple[datetime, datetime]:
    """The window ``[start, end)`` a run ingests: the Params form's ``start`` and ``end`` when its
    conf has them, else its data interval.

    :param run: a REST ``DAGRunResponse`` dict.
    :param conf: the conf the run was given; default: the run's own (``run["conf"]``).
    """
    conf = (run.get("conf") or {}) if conf is None else conf
    return parse_utc(conf.get("start") or run["data_interval_start"]), parse_utc(conf.get("end") or run["data_interval_end"])


def describe_run(run: dict) -> str:
    """``<dag id> <run type> <window start>..<window end>`` (UTC, to the minute), or the run id when
    the run has no window (a REST ``DAGRunResponse`` dict)."""
    try:
        start, end = run_window(run)
    except (KeyError, AttributeError):  # no data interval
        return f"{run['dag_id']} {run['dag_run_id']}"
    return f"{run['dag_id']} {run['run_type']} {start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}"


def progress_line(runs: list[dict], now: datetime) -> str:
    """One line on runs being waited for: how many finished of the total, and the slowest still
    running (:func:`describe_run`, state, seconds since its ``start_date``), else the one queued longest.

    :param runs: REST ``DAGRunResponse`` dicts, finished or not.
    :param now: the current time (aware), against the metadata's times.
    """
    done = [r for r in runs if r["state"] in TERMINAL_STATES]
    failed = sum(r["state"] == "failed" for r in done)
    line = f"{len(done)} of {len(runs)} runs finished" + (f" ({failed} failed)" if failed else "")
    running = [r for r in runs if r["state"] not in TERMINAL_STATES and r.get("start_date")]
    queued = [r for r in runs if r["state"] not in TERMINAL_STATES and not r.get("start_date")]
    if running:
        slowest = max(running, key=lambda r: run_seconds(r, now) or 0.0)
        line += f"; slowest still running: {describe_run(slowest)} ({slowest['state']} for {run_seconds(slowest, now):.0f}s)"
    elif queued:
        oldest = min(queued, key=lambda r: r.get("queued_at") or "")
        waited = f" for {(now - parse_utc(oldest['queued_at'])).total_seconds():.0f}s" if oldest.get("queued_at") else ""
        line += f"; none started yet, longest queued: {describe_run(oldest)} ({oldest['state']}{waited})"
    if running and queued:
        line += f"; {len(queued)} queued, not started"
    return line


def session_pids(sid: int) -> list[int]:
    """Processes of the session ``sid`` still alive (Linux ``/proc``)."""
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid:
                    pids.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return pids


@dataclass
class AirflowStack:
    """A running ``airflow standalone``.

    :param home: its ``AIRFLOW_HOME``.
    :param env: the environment it was started with (use it for ``airflow`` CLI calls).
    :param api_url: ``http://127.0.0.1:<port>``.
    """

    home: Path
    env: dict[str, str]
    api_url: str
    process: subprocess.Popen | None = None
    #: replacement schedulers started by the watchdog (:meth:`_check_alive`), each in its own session
    restarted: list[subprocess.Popen] = field(default_factory=list)
    ready: bool = False
    _token: str | None = field(default=None, repr=False)

    # -- CLI and REST ------------------------------------------------------------------------
    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        """Run ``airflow <args>`` with the stack's environment; stdout and stderr captured as text.

        :raises RuntimeError: when ``check`` and the command fails, with the end of its stderr.
        """
        done = subprocess.run([str(AIRFLOW), *args], env=self.env, capture_output=True, text=True)
        if check and done.returncode:
            raise RuntimeError(f"airflow {' '.join(args)} exited {done.returncode}:\n{done.stderr[-3000:]}")
        return done

    def login(self) -> tuple[str, str]:
        """``(user, password)`` of the admin user ``airflow standalone`` generated."""
        path = self.home / "simple_auth_manager_passwords.json.generated"
        users = json.loads(path.read_text())
        user = "admin" if "admin" in users else next(iter(users))
        return user, users[user]

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        """Call the REST API (``path`` under ``/api/v2``); return the decoded JSON.

        :raises requests.HTTPError: on a 4xx/5xx answer, with the server's detail in the message.
        """
        import requests

        if self._token is None:
            user, password = self.login()
            r = requests.post(f"{self.api_url}/auth/token", json={"username": user, "password": password}, timeout=30)
            r.raise_for_status()
            self._token = r.json()["access_token"]
        r = requests.request(
            method, f"{self.api_url}/api/v2{path}", timeout=60, headers={"Authorization": f"Bearer {self._token}"}, **kwargs
        )
        if r.status_code >= 400:
            raise requests.HTTPError(f"{method} {path}: {r.status_code} {r.text[:500]}", response=r)
        return r.json() if r.content else None

    def unpause(self, dag_id: str) -> None:
        """Unpause a DAG (runs of a paused DAG stay queued)."""
        self.request("PATCH", f"/dags/{dag_id}", json={"is_paused": False})

    def trigger(self, dag_id: str, logical_date: str, conf: dict | None = None, run_id: str | None = None) -> str:
        """Trigger a manual run; return its run id.

        :param logical_date: ISO 8601 UTC; a manual run ingests the last complete interval before it.
        """
        body: dict[str, Any] = {"logical_date": logical_date, "conf": conf or {}}
        if run_id:
            body["dag_run_id"] = run_id
        return self.request("POST", f"/dags/{dag_id}/dagRuns", json=body)["dag_run_id"]

    def runs(self, dag_id: str) -> list[dict]:
        """Every run of ``dag_id`` (REST ``DAGRunResponse`` dicts), oldest logical date first."""
        return self.request("GET", f"/dags/{dag_id}/dagRuns", params={"limit": 1000, "order_by": "logical_date"})["dag_runs"]

    def wait_for_runs(self, dag_id: str, run_ids: list[str], timeout: float = 900) -> list[dict]:
        """Wait until the given runs are finished (success or failed); return them, oldest logical date first.

        :raises TimeoutError: naming the runs still unfinished and their states.
        """
        return self.wait_for_all({dag_id: run_ids}, timeout)

    def wait_for_all(
        self,
        run_ids: dict[str, list[str]],
        timeout: float = 900,
        report: Callable[[str], None] | None = None,
        every: float = 20.0,
    ) -> list[dict]:
        """Wait until the given runs of several DAGs are finished (success or failed).

        :param run_ids: ``{dag id: [run id, ...]}``.
        :param report: called every ``every`` seconds while some are unfinished, with a
            :func:`progress_line` (runs finished of the total, the slowest still running).
        :return: the runs (REST ``DAGRunResponse`` dicts), per DAG in ``run_ids``' order, oldest
            logical date first.
        :raises TimeoutError: naming the DAGs and the runs still unfinished and their states.
        """
        deadline = time.monotonic() + timeout
        next_report = time.monotonic() + every
        wanted = sum(len(ids) for ids in run_ids.values())
        while True:
            runs = [r for dag_id, ids in run_ids.items() for r in self.runs(dag_id) if r["dag_run_id"] in ids]
            if len(runs) == wanted and all(r["state"] in TERMINAL_STATES for r in runs):
                return runs
            if time.monotonic() > deadline:
                pending = {r["dag_run_id"]: r["state"] for r in runs if r["state"] not in TERMINAL_STATES}
                raise TimeoutError(f"{', '.join(run_ids)}: runs not finished after {timeout:.0f}s: {pending}")
            if report and time.monotonic() >= next_report:
                report(progress_line(runs, datetime.now(timezone.utc)))
                next_report = time.monotonic() + every
            self._check_alive()
            time.sleep(2)

    def backfill(
        self, dag_id: str, from_date: str, to_date: str, conf: dict | None = None, reprocess: str = "none"
    ) -> list[dict]:
        """``airflow backfill create`` over ``[from_date, to_date]`` (logical dates), then wait for it.

        :param reprocess: ``none``, ``failed`` or ``completed``: which dates that already have a
            run are run again (their runs are cleared and rerun as backfill runs).
        :return: :meth:`wait_for_backfill`'s runs.
        :raises RuntimeError: when the command fails.
        """
        self.create_backfill(dag_id, from_date, to_date, conf, reprocess)
        return self.wait_for_backfill(dag_id, from_date, to_date)

    def create_backfill(
        self, dag_id: str, from_date: str, to_date: str, conf: dict | None = None, reprocess: str = "none"
    ) -> list[dict]:
        """``airflow backfill create`` over ``[from_date, to_date]`` (logical dates), without waiting.

        The command creates every run of the backfill, queued, before it returns.

        :param reprocess: as in :meth:`backfill`.
        :return: the DAG's backfill runs with a logical date in ``[from_date, to_date]``, oldest first.
        :raises RuntimeError: when the command fails.
        """
        args = [
            "backfill",
            "create",
            "--dag-id",
            dag_id,
            "--from-date",
            from_date,
            "--to-date",
            to_date,
            "--reprocess-behavior",
            reprocess,
        ]
        if conf:
            args += ["--dag-run-conf", json.dumps(conf)]
        self.cli(*args)
        return self.backfill_runs(dag_id, from_date, to_date)

    def wait_for_backfill(self, dag_id: str, from_date: str, to_date: str, timeout: float = 1800) -> list[dict]:
        """Wait until the scheduler marks the DAG's backfills completed (a DAG has one running backfill at most).

        :return: the DAG's backfill runs with a logical date in ``[from_date, to_date]``, oldest first.
        :raises TimeoutError: when it does not complete in ``timeout`` seconds.
        """
        deadline = time.monotonic() + timeout
        while any(b["completed_at"] is None for b in self.request("GET", "/backfills", params={"dag_id": dag_id})["backfills"]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{dag_id}: backfill {from_date}..{to_date} not completed after {timeout:.0f}s")
            self._check_alive()
            time.sleep(2)
        return self.backfill_runs(dag_id, from_date, to_date)

    def backfill_runs(self, dag_id: str, from_date: str, to_date: str) -> list[dict]:
        """The DAG's backfill runs with a logical date in ``[from_date, to_date]`` (days), oldest first."""
        return [
            r for r in self.runs(dag_id) if r["run_type"] == "backfill" and from_date <= r["logical_date"][:10] <= to_date[:10]
        ]

    def task_instances(self, dag_id: str, run_id: str) -> list[dict]:
        """Task instances of one run (REST ``TaskInstanceResponse`` dicts)."""
        return self.request("GET", f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances", params={"limit": 1000})["task_instances"]

    def xcom(self, dag_id: str, run_id: str, task_id: str, key: str = "return_value") -> Any:
        """A task's XCom value, deserialised."""
        entry = self.request(
            "GET",
            f"/dags/{dag_id}/dagRuns/{run_id}/taskInstances/{task_id}/xcomEntries/{key}",
            params={"deserialize": True, "stringify": False},
        )
        return entry["value"]

    # -- lifecycle ---------------------------------------------------------------------------
    def _check_alive(self) -> None:
        """Raise if ``airflow standalone`` exited; restart its scheduler if that alone died.

        ``standalone`` does not restart a scheduler that died, whatever killed it: the harness
        would then wait for its runs until a timeout. (It was first seen on the SQLite metadata
        DB this harness used before: ``ObjectDeletedError`` in ``_schedule_all_dag_runs`` under
        concurrent writes, about once in a dozen stack runs; not seen on PostgreSQL.) A scheduler
        is stateless: a new one adopts or resets the dead one's task instances. Each restart is
        reported on stderr and counted in :attr:`restarted`.
        """
        if self.process is None:
            return
        if self.process.poll() is not None:
            raise RuntimeError(f"airflow standalone exited with {self.process.returncode}; see {self.home / 'standalone.log'}")
        if not self.ready or self._scheduler_running():
            return
        if len(self.restarted) >= 3:
            raise RuntimeError(f"the scheduler died {len(self.restarted) + 1} times; see {self.home / 'standalone.log'}")
        print(
            f"warning: the scheduler of airflow standalone died; starting another (log {self.home / 'scheduler-restart.log'})",
            file=sys.stderr,
            flush=True,
        )
        self._kill_orphaned_workers()
        with (self.home / "scheduler-restart.log").open("ab") as log:
            self.restarted.append(
                subprocess.Popen(
                    [str(AIRFLOW), "scheduler"],
                    env=self.env,
                    cwd=self.home,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def _kill_orphaned_workers(self) -> None:
        """Kill the LocalExecutor workers a dead scheduler left, with their task processes, as the
        death of its host would.

        The workers are forked from the scheduler and keep its database connections open (Airflow
        disposes of the pool in a fork without closing the sockets), so PostgreSQL never sees the
        dead scheduler's transaction end: its row locks stay, and the replacement's scheduling,
        which skips locked rows, never schedules those runs again (seen in CI: a run ``running``
        for 900 s after the scheduler was killed, and every later run of its DAG too). Once the
        workers are gone, the connection closes, the locks go, and the replacement resets the
        dead scheduler's task instances.
        """
        import signal

        sessions = [self.process.pid] + [p.pid for p in self.restarted] if self.process else []
        live = set(self.scheduler_pids())
        parent: dict[int, int] = {}
        title: dict[int, bytes] = {}
        for pid in (pid for sid in sessions for pid in session_pids(sid)):
            try:
                title[pid] = Path(f"/proc/{pid}/cmdline").read_bytes()
                parent[pid] = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
        doomed = {pid for pid, t in title.items() if t.startswith(b"airflow worker -- LocalExecutor") and parent[pid] not in live}
        grew = True
        while grew:  # and everything below them: task supervisors, task processes
            below = {pid for pid, ppid in parent.items() if ppid in doomed} - doomed
            doomed |= below
            grew = bool(below)
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if doomed:
            print(f"warning: killed {len(doomed)} processes the dead scheduler left (its executor workers)", file=sys.stderr)

    def _scheduler_running(self) -> bool:
        return bool(self.scheduler_pids())

    def scheduler_pids(self) -> list[int]:
        """``airflow scheduler`` processes of this stack that are alive (zombies excluded)."""
        found = []
        sessions = [self.process.pid] + [p.pid for p in self.restarted] if self.process else []
        for pid in (pid for sid in sessions for pid in session_pids(sid)):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
                state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            except OSError:
                continue
            if state != "Z" and args[1:3] and args[1].endswith(b"/airflow") and args[2] == b"scheduler":
                found.append(pid)
        return found

    def wait_ready(self, dag_ids: list[str], timeout: float = 300) -> None:
        """Wait until every component is healthy and every DAG in ``dag_ids`` is parsed.

        :raises TimeoutError: naming what is not ready.
        """
        import requests

        deadline = time.monotonic() + timeout
        missing: Any = "API server"
        while time.monotonic() < deadline:
            self._check_alive()
            try:
                health = requests.get(f"{self.api_url}/api/v2/monitor/health", timeout=10).json()
                missing = [
                    c
                    for c in ("metadatabase", "scheduler", "triggerer", "dag_processor")
                    if (health.get(c) or {}).get("status") != "healthy"
                ]
                if not missing:
                    known = {d["dag_id"] for d in self.request("GET", "/dags", params={"limit": 1000})["dags"]}
                    missing = sorted(set(dag_ids) - known)
                    if not missing:
                        self.ready = True
                        return
            except requests.RequestException:
                pass
            time.sleep(2)
        raise TimeoutError(
            f"airflow standalone not ready after {timeout:.0f}s: waiting for {missing}; see {self.home / 'standalone.log'}"
        )

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM the whole process group, SIGKILL what is left after ``timeout`` seconds.

        :return: how many processes of the stack are still alive afterwards (0 unless the kernel is slow).
        """
        if self.process is None:
            return 0
        if self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
            except ProcessLookupError:
                pass
        for extra in self.restarted:
            if extra.poll() is None:
                extra.terminate()
                try:
                    extra.wait(timeout)
                except subprocess.TimeoutExpired:
                    pass
        # Whatever outlived the leader: task supervisors put themselves in process groups of their
        # own, but stay in the session start() created, so kill by session.
        sessions = [self.process.pid] + [p.pid for p in self.restarted]
        for _ in range(20):
            left = [pid for sid in sessions for pid in session_pids(sid)]
            if not left:
                return 0
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        return len([pid for sid in sessions for pid in session_pids(sid)])


def migrate_metadata_db(env: dict[str, str], pools_file: Path = ROOT / "include" / "pools.json") -> None:
    """``airflow db migrate`` then ``airflow pools import <pools_file>`` (both idempotent), in child processes.

    :param env: added to this process's environment for both commands (``AIRFLOW_HOME`` decides the DB).
    """
    for command in (["db", "migrate"], ["pools", "import", str(pools_file)]):
        subprocess.run([str(AIRFLOW), *command], env={**os.environ, **env}, check=True, stdout=subprocess.DEVNULL)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` to ``path``, readable and writable by its owner only (mode 600) from the
    moment it exists: for files holding a password. An existing file is truncated and set to 600."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    os.fchmod(fd, 0o600)  # O_CREAT's mode applies to a new file only
    with os.fdopen(fd, "w") as fh:
        fh.write(text)


def admin_password(home: Path) -> str:
    """The password of ``airflow standalone``'s ``admin`` user, chosen here before it starts.

    The simple auth manager keeps the passwords of ``[core] simple_auth_manager_users`` in
    ``<AIRFLOW_HOME>/simple_auth_manager_passwords.json.generated`` and generates one only for a
    user missing from that file, so writing it first makes the password known to the run-note
    connection. An existing file (a ``make up`` restarted on the same home) is kept.
    """
    import secrets

    path = home / "simple_auth_manager_passwords.json.generated"
    users = json.loads(path.read_text()) if path.exists() and path.read_text().strip() else {}
    if "admin" not in users:
        users["admin"] = secrets.token_urlsafe(12)
        write_private(path, json.dumps(users) + "\n")
    return users["admin"]


def prepare(
    home: Path,
    metadata_db: str,
    extra_env: dict[str, str] | None = None,
    api_port: int | None = None,
    pools_file: Path = ROOT / "include" / "pools.json",
) -> AirflowStack:
    """Migrate the metadata DB and import the pools; return a stack ready to start (not started).

    :param metadata_db: SQLAlchemy URL of the metadata database
        (:meth:`demo.services.Services.metadata_db`).
    :param pools_file: ``airflow pools import`` file; default the one generated from the config.
    """
    from market_ingest.run_note import CONN_ID as RUN_NOTE_CONN_ID

    home.mkdir(parents=True, exist_ok=True)
    port = api_port or free_port()
    user, password = "admin", admin_password(home)
    # The report task writes each run's note through the REST API (market_ingest.run_note).
    note_conn = {"conn_type": "http", "host": f"http://127.0.0.1:{port}", "login": user, "password": password}
    env = stack_env(
        home, port, metadata_db, {f"AIRFLOW_CONN_{RUN_NOTE_CONN_ID.upper()}": json.dumps(note_conn), **(extra_env or {})}
    )
    migrate_metadata_db(env, pools_file)
    return AirflowStack(home=home, env=env, api_url=f"http://127.0.0.1:{port}")


def start(stack: AirflowStack, dag_ids: list[str], timeout: float = 300) -> AirflowStack:
    """Start ``airflow standalone`` in a new process group (output in ``<home>/standalone.log``)."""
    log = (stack.home / "standalone.log").open("ab")
    stack.process = subprocess.Popen(
        [str(AIRFLOW), "standalone"], env=stack.env, cwd=stack.home, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    try:
        stack.wait_ready(dag_ids, timeout)
    except BaseException:
        stack.stop()
        raise
    return stack


@contextmanager
def running_stack(
    home: Path, dag_ids: list[str], metadata_db: str, extra_env: dict[str, str] | None = None, api_port: int | None = None
) -> Iterator[AirflowStack]:
    """A started stack, stopped (every process of its group) on exit, whatever happened.

    :param metadata_db: SQLAlchemy URL of the metadata database (:func:`prepare`).
    """
    stack = start(prepare(home, metadata_db, extra_env, api_port), dag_ids)
    try:
        yield stack
    finally:
        left = stack.stop()
        if left:
            print(f"warning: {left} processes of airflow standalone still alive after stopping it", file=sys.stderr)
