"""The real Airflow scheduler for the demo, the tests and the benchmarks, in one of two layouts.

``local``: ``airflow standalone``: the API server (UI and REST API), the scheduler with the
LocalExecutor, the DAG processor and the triggerer.

``celery``: what MWAA, Astronomer, Airflow's docker-compose file and its Helm chart run: each
component started on its own (``airflow api-server``, two ``airflow scheduler`` at once, as
Airflow's HA scheduler runs them, ``airflow dag-processor``, ``airflow triggerer``) and the
CeleryExecutor with two ``airflow celery worker``, a Redis broker (:func:`demo.services.redis_server`)
and the result backend in the metadata database.

Either way against a PostgreSQL metadata database (its own database on the embedded PostgreSQL that
holds the warehouse: :meth:`demo.services.Services.metadata_db`). This module starts each process
in a session of its own, registered with :func:`demo.services.reaper` so that even a harness killed
by SIGKILL leaves none behind, waits until every component reports healthy (and every Celery
worker answers a ping) and the DAGs are parsed, talks to the stack through the public REST API
(``/api/v2``, token from ``/auth/token``) and the ``airflow`` CLI, and stops every session on exit.

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


#: The layouts :func:`prepare` can start: ``airflow standalone`` (LocalExecutor), or the CeleryExecutor
#: with two workers and two schedulers.
EXECUTORS = ("local", "celery")
#: Celery workers and schedulers of the ``celery`` layout, and the task slots of each worker.
CELERY_WORKERS = 2
CELERY_SCHEDULERS = 2
WORKER_CONCURRENCY = 4


def stack_env(
    home: Path,
    api_port: int,
    metadata_db: str,
    extra: dict[str, str] | None = None,
    executor: str = "local",
    broker_url: str | None = None,
) -> dict[str, str]:
    """Environment of every Airflow component: project folders, ports, executor, no scheduled runs.

    :param home: ``AIRFLOW_HOME`` (logs, generated admin password).
    :param api_port: API server port (UI, REST API and the task execution API).
    :param metadata_db: SQLAlchemy URL of the metadata database (PostgreSQL).
    :param extra: added last (connections, config path).
    :param executor: one of :data:`EXECUTORS`.
    :param broker_url: the Celery broker (``redis://127.0.0.1:<port>/0``); required for ``celery``.
    :raises ValueError: an unknown executor, or ``celery`` without a broker.
    """
    if executor not in EXECUTORS:
        raise ValueError(f"executor {executor!r}: use one of {', '.join(EXECUTORS)}")
    if executor == "celery" and not broker_url:
        raise ValueError("the celery layout needs a broker URL (demo.services.redis_server)")
    celery = {
        "AIRFLOW__CELERY__BROKER_URL": broker_url or "",
        # Task states in the metadata database, as the official docker-compose file and Helm chart keep them.
        "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + metadata_db,
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(WORKER_CONCURRENCY),
    }
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": metadata_db,
        "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor" if executor == "celery" else "LocalExecutor",
        # Task processes at once (the Celery workers' slots together); vendor limits are the pools.
        "AIRFLOW__CORE__PARALLELISM": str(CELERY_WORKERS * WORKER_CONCURRENCY) if executor == "celery" else "8",
        **(celery if executor == "celery" else {}),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__API__PORT": str(api_port),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__BASE_URL": f"http://localhost:{api_port}",
        # Log servers of the scheduler, the workers and the triggerer: free ports, so a demo and a
        # test run can coexist (each Celery worker gets one of its own: _start_celery).
        "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(free_port()),
        "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "False",
        # After a scheduler or a worker died: find its tasks soon. A task whose heartbeat stopped
        # 90 s ago fails (and is retried) instead of after 300 s (Airflow's default).
        "AIRFLOW__SCHEDULER__ORPHANED_TASKS_CHECK_INTERVAL": "30",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "90",
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
    """Processes of the session ``sid`` still alive, zombies excluded (Linux ``/proc``)."""
    from demo.reaper import session_members

    return session_members(sid)


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live process below it (children, their children, ...), from ``/proc``."""
    parent: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                parent[int(entry)] = int(Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                pass
    tree = [pid]
    for node in tree:
        tree += [child for child, ppid in parent.items() if ppid == node]
    return tree


@dataclass
class AirflowStack:
    """A running Airflow in one of :data:`EXECUTORS`' layouts.

    :param home: its ``AIRFLOW_HOME``; each process's output is ``<home>/<component>.log``
        (``standalone.log`` for the ``local`` layout).
    :param env: the environment it was started with (use it for ``airflow`` CLI calls).
    :param api_url: ``http://127.0.0.1:<port>``.
    :param executor: ``local`` or ``celery``.
    """

    home: Path
    env: dict[str, str]
    api_url: str
    executor: str = "local"
    #: ``airflow standalone`` (``local``), or the API server (``celery``)
    process: subprocess.Popen | None = None
    #: every process started, by component name (``standalone``; or ``api-server``, ``scheduler-1``,
    #: ``scheduler-2``, ``dag-processor``, ``triggerer``, ``worker-1``, ``worker-2``), each the
    #: leader of a session of its own
    components: dict[str, subprocess.Popen] = field(default_factory=dict)
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
    def _sessions(self) -> list[int]:
        """Session ids of every process this stack started (each its own session's leader)."""
        return [p.pid for p in self.components.values()] + [p.pid for p in self.restarted]

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> subprocess.Popen:
        """Start ``airflow <args>`` as component ``name``, in a session of its own handed to
        :mod:`demo.reaper`, its output appended to ``<home>/<name>.log``."""
        from demo import reaper

        with (self.home / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(AIRFLOW), *args],
                env=env or self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        reaper.watch(session=proc.pid)
        self.components[name] = proc
        return proc

    def log_text(self) -> str:
        """What every process of the stack has written so far (its ``*.log`` files, one after the other)."""
        return "".join(p.read_text(errors="replace") for p in sorted(self.home.glob("*.log")))

    def workers_logging(self, text: str) -> list[str]:
        """The Celery workers (``worker-<n>``, sorted) whose log holds ``text``: a worker logs each
        workload it executes (task instance id, task, run and try), so this says which ran a try."""
        return sorted(p.stem for p in self.home.glob("worker-*.log") if text in p.read_text(errors="replace"))

    def start_worker(self, name: str) -> subprocess.Popen:
        """Start Celery worker ``name`` (``worker-<n>``): ``airflow celery worker`` with
        :data:`WORKER_CONCURRENCY` slots, its own Celery hostname and log server port.

        :raises ValueError: on the ``local`` layout (no Celery workers).
        """
        if self.executor != "celery":
            raise ValueError("Celery workers belong to the celery layout")
        env = {**self.env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
        return self._spawn(name, ["celery", "worker", "--celery-hostname", f"{name}@%h"], env)

    def _start_celery(self) -> None:
        """The ``celery`` layout's processes: API server, schedulers, DAG processor, triggerer, workers."""
        self.process = self._spawn("api-server", ["api-server"])
        for n in range(1, CELERY_SCHEDULERS + 1):
            self._spawn(f"scheduler-{n}", ["scheduler"])
        self._spawn("dag-processor", ["dag-processor"])
        self._spawn("triggerer", ["triggerer"])
        for n in range(1, CELERY_WORKERS + 1):
            self.start_worker(f"worker-{n}")

    def workers(self) -> list[str]:
        """Celery workers alive (``worker-<n>``@host) that answer a ping (``celery inspect ping``)."""
        done = subprocess.run(
            [str(AIRFLOW.with_name("celery")), "--app", "airflow.providers.celery.executors.celery_executor.app"]
            + ["inspect", "ping", "--timeout", "5", "--json"],
            env=self.env,
            capture_output=True,
            text=True,
        )
        try:
            answers = json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout.strip() else {}
        except json.JSONDecodeError:
            return []
        return sorted(answers)

    def _check_alive(self) -> None:
        """Raise if a process the stack cannot run without exited; restart the scheduler if none is left.

        ``standalone`` does not restart a scheduler that died, whatever killed it: the harness
        would then wait for its runs until a timeout. (It was first seen on the SQLite metadata
        DB this harness used before: ``ObjectDeletedError`` in ``_schedule_all_dag_runs`` under
        concurrent writes, about once in a dozen stack runs; not seen on PostgreSQL.) A scheduler
        is stateless: a new one adopts or resets the dead one's task instances. Each restart is
        reported on stderr and counted in :attr:`restarted`. The ``celery`` layout runs two
        schedulers: one left alive runs everything, as Airflow's HA scheduler does; Celery
        workers may be killed by a test, one at least must be alive.
        """
        if self.process is None:
            return
        essential = ["standalone"] if self.executor == "local" else ["api-server", "dag-processor", "triggerer"]
        for name in essential:
            proc = self.components[name]
            if proc.poll() is not None:
                raise RuntimeError(f"airflow {name} exited with {proc.returncode}; see {self.home / f'{name}.log'}")
        if self.executor == "celery" and all(p.poll() is not None for n, p in self.components.items() if n.startswith("worker-")):
            raise RuntimeError(f"every Celery worker exited; see {self.home}/worker-*.log")
        if not self.ready or self._scheduler_running():
            return
        if len(self.restarted) >= 3:
            raise RuntimeError(f"the scheduler died {len(self.restarted) + 1} times; see {self.home}")
        print(
            f"warning: no scheduler of the stack is alive; starting another (log {self.home / 'scheduler-restart.log'})",
            file=sys.stderr,
            flush=True,
        )
        if self.executor == "local":
            self._kill_orphaned_workers()
        from demo import reaper

        with (self.home / "scheduler-restart.log").open("ab") as log:
            proc = subprocess.Popen(
                [str(AIRFLOW), "scheduler"],
                env=self.env,
                cwd=self.home,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        reaper.watch(session=proc.pid)
        self.restarted.append(proc)

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
        live = set(self.scheduler_pids())
        doomed: set[int] = set()
        for pid in (pid for sid in self._sessions() for pid in session_pids(sid)):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
                ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if title.startswith(b"airflow worker -- LocalExecutor") and ppid not in live:
                doomed.update(process_tree(pid))  # and everything below them: task supervisors, task processes
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
        for pid in (pid for sid in self._sessions() for pid in session_pids(sid)):
            try:
                args = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if args[1:3] and args[1].endswith(b"/airflow") and args[2] == b"scheduler":
                found.append(pid)
        return found

    def kill_component(self, name: str) -> list[int]:
        """SIGKILL component ``name`` and every process below it (its task processes among them), as
        the loss of its host would; the session's other processes too. :return: the pids killed."""
        doomed = process_tree(self.components[name].pid)
        doomed += [p for p in session_pids(self.components[name].pid) if p not in doomed]
        for pid in doomed:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.components[name].wait(30)
        return doomed

    def wait_ready(self, dag_ids: list[str], timeout: float = 300) -> None:
        """Wait until every component is healthy, every Celery worker answers (``celery`` layout)
        and every DAG in ``dag_ids`` is parsed.

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
                if not missing and self.executor == "celery":
                    answering = self.workers()
                    if len(answering) < CELERY_WORKERS:
                        missing = [f"Celery workers ({len(answering)} of {CELERY_WORKERS} answer a ping)"]
                if not missing:
                    self.ready = True
                    return
            except requests.RequestException:
                pass
            time.sleep(2)
        raise TimeoutError(
            f"Airflow ({self.executor}) not ready after {timeout:.0f}s: waiting for {missing}; see {self.home}/*.log"
        )

    def stop(self, timeout: float = 60) -> int:
        """SIGTERM every process the stack started, wait up to ``timeout`` seconds, SIGKILL what is left.

        :return: how many processes of the stack are still alive afterwards (0 unless the kernel is slow).
        """
        from demo import reaper

        procs = list(self.components.values()) + self.restarted
        for proc in procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + timeout
        for proc in procs:
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
        # Whatever outlived its leader: task supervisors put themselves in process groups of their
        # own, but stay in the session the leader created, so kill by session.
        sessions = self._sessions()
        for _ in range(20):
            left = [pid for sid in sessions for pid in session_pids(sid)]
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.5)
        else:
            return len([pid for sid in sessions for pid in session_pids(sid)])
        for proc in procs:
            proc.poll()
            reaper.forget(session=proc.pid)
        return 0


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
    executor: str = "local",
    broker_url: str | None = None,
) -> AirflowStack:
    """Migrate the metadata DB and import the pools; return a stack ready to start (not started).

    :param metadata_db: SQLAlchemy URL of the metadata database
        (:meth:`demo.services.Services.metadata_db`).
    :param pools_file: ``airflow pools import`` file; default the one generated from the config.
    :param executor: one of :data:`EXECUTORS`; ``celery`` needs ``broker_url``
        (:func:`demo.services.redis_server`).
    """
    from market_ingest.run_note import CONN_ID as RUN_NOTE_CONN_ID

    home.mkdir(parents=True, exist_ok=True)
    port = api_port or free_port()
    user, password = "admin", admin_password(home)
    # The report task writes each run's note through the REST API (market_ingest.run_note).
    note_conn = {"conn_type": "http", "host": f"http://127.0.0.1:{port}", "login": user, "password": password}
    env = stack_env(
        home,
        port,
        metadata_db,
        {f"AIRFLOW_CONN_{RUN_NOTE_CONN_ID.upper()}": json.dumps(note_conn), **(extra_env or {})},
        executor,
        broker_url,
    )
    migrate_metadata_db(env, pools_file)
    return AirflowStack(home=home, env=env, api_url=f"http://127.0.0.1:{port}", executor=executor)


def start(stack: AirflowStack, dag_ids: list[str], timeout: float = 300) -> AirflowStack:
    """Start the stack's processes (each in a session of its own; output in ``<home>/*.log``) and
    wait until it is ready (:meth:`AirflowStack.wait_ready`); stop them if it is not.

    ``local``: ``airflow standalone``. ``celery``: :meth:`AirflowStack._start_celery`.
    """
    try:
        if stack.executor == "celery":
            stack._start_celery()
        else:
            stack.process = stack._spawn("standalone", ["standalone"])
        stack.wait_ready(dag_ids, timeout)
    except BaseException:
        stack.stop()
        raise
    return stack


@contextmanager
def running_stack(
    home: Path,
    dag_ids: list[str],
    metadata_db: str,
    extra_env: dict[str, str] | None = None,
    api_port: int | None = None,
    executor: str = "local",
    broker_url: str | None = None,
) -> Iterator[AirflowStack]:
    """A started stack, stopped (every process it started) on exit, whatever happened.

    :param metadata_db: SQLAlchemy URL of the metadata database (:func:`prepare`).
    :param executor: one of :data:`EXECUTORS`; ``celery`` needs ``broker_url``.
    """
    stack = start(prepare(home, metadata_db, extra_env, api_port, executor=executor, broker_url=broker_url), dag_ids)
    try:
        yield stack
    finally:
        left = stack.stop()
        if left:
            print(f"warning: {left} processes of the Airflow stack still alive after stopping it", file=sys.stderr)
