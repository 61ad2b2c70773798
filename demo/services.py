"""Embedded services for the demo and the tests: PostgreSQL (pgserver) or TimescaleDB, a moto
server (S3, Kinesis) and the vendor stand-in (``standin/``: Yahoo, Alpha Vantage, crypto exchanges).

No Docker and no root needed: ``pgserver`` ships PostgreSQL binaries in its wheel (when run as
root it creates and uses a ``pgserver`` system user), ``moto[server]`` speaks the real S3 and
Kinesis HTTP APIs on loopback, and the stand-in speaks each vendor's HTTP API on loopback. Airflow
sees all three through ``AIRFLOW_CONN_*`` environment variables.

The warehouse is plain PostgreSQL by default. ``warehouse="timescaledb"`` runs a private cluster
of the machine's PostgreSQL 15 with the ``timescaledb`` extension preloaded instead
(:func:`timescaledb`); ``tools/install_timescaledb.sh <source tarball or URL>`` (root, about 5
minutes) puts TimescaleDB 2.28.3 there, and :func:`timescaledb_missing` says what is missing on a machine without it.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from demo import reaper

AWS_REGION = "us-east-1"
#: The coverage view's login: a member of the read-only role ``market_reader`` (migration V012).
READER_LOGIN = "market_view"
ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = ROOT / "include" / "recordings"


@dataclass(frozen=True)
class Services:
    """Addresses of the running services.

    :param pg_socket_dir: PostgreSQL unix-socket directory (the server listens there, port 5432).
    :param aws_endpoint: moto server URL, ``http://127.0.0.1:<port>``.
    :param vendors_url: vendor stand-in URL, ``http://127.0.0.1:<port>`` (``None``: live vendors).
    :param warehouse: ``postgres`` or ``timescaledb``: what listens on ``pg_socket_dir``.
    :param dbname: the warehouse's database on that server (:meth:`with_database`).
    """

    pg_socket_dir: str
    aws_endpoint: str
    vendors_url: str | None = None
    warehouse: str = "postgres"
    dbname: str = "postgres"

    def pg_conninfo(self) -> str:
        """libpq connection string for psycopg, to the warehouse database."""
        return f"host={self.pg_socket_dir} port=5432 user=postgres dbname={self.dbname}"

    def with_database(self, name: str) -> Services:
        """The same servers with a new, empty warehouse database ``name`` (an existing one is dropped
        first): a second warehouse beside the first, e.g. for a run that must not see another's
        rows. Its migrations are :func:`create_sinks`' to apply."""
        import dataclasses

        import psycopg
        from psycopg import sql

        with psycopg.connect(self.pg_conninfo(), autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return dataclasses.replace(self, dbname=name)

    def metadata_db(self, name: str, *, fresh: bool = True) -> str:
        """A database ``name`` on this PostgreSQL server for Airflow's metadata; its SQLAlchemy URL.

        Airflow's metadata lives beside the warehouse on the same server, in its own database, as a
        deployment's would (MWAA and Astronomer run it on PostgreSQL). ``fresh`` drops and recreates
        it (the demo's and the tests' logical dates must be free); otherwise an existing one is
        kept (``make up`` restarted keeps its runs).

        :return: ``postgresql+psycopg2://postgres@/<name>?host=<socket dir>`` (psycopg2 is the
            driver Airflow 3.3 documents for PostgreSQL).
        """
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.pg_conninfo(), autocommit=True) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists and fresh:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))
            if fresh or not exists:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return f"postgresql+psycopg2://postgres@/{name}?host={self.pg_socket_dir}"

    def airflow_env(
        self,
        timescale_conn_id: str = "market_timescale",
        aws_conn_id: str = "market_aws",
        reader_conn_id: str = "market_timescale_reader",
    ) -> dict[str, str]:
        """``AIRFLOW_CONN_*`` variables defining the warehouse (the loading login), AWS, and the
        coverage view's read-only login (:data:`READER_LOGIN`, made by :func:`create_sinks`)."""
        pg = {"conn_type": "postgres", "host": self.pg_socket_dir, "port": 5432, "login": "postgres", "schema": self.dbname}
        reader = {**pg, "login": READER_LOGIN}  # trust on the unix socket: no password
        aws = {
            "conn_type": "aws",
            "login": "testing",  # moto accepts any key; these are not credentials
            "password": "testing",
            "extra": {"region_name": AWS_REGION, "endpoint_url": self.aws_endpoint},
        }
        return {
            f"AIRFLOW_CONN_{timescale_conn_id.upper()}": json.dumps(pg),
            f"AIRFLOW_CONN_{reader_conn_id.upper()}": json.dumps(reader),
            f"AIRFLOW_CONN_{aws_conn_id.upper()}": json.dumps(aws),
        }

    def vendors(self, method: str, path: str, doc=None):
        """Call a stand-in control endpoint (``/_standin/log``, ``/_standin/faults``, ...); return its JSON."""
        import urllib.request

        data = None if doc is None else json.dumps(doc).encode()
        request = urllib.request.Request(f"{self.vendors_url}{path}", data=data, method=method)
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def boto3_client(self, service: str):
        """A boto3 client for ``service`` against the moto server."""
        import boto3

        return boto3.client(
            service,
            region_name=AWS_REGION,
            endpoint_url=self.aws_endpoint,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


def unwind_on_signals() -> None:
    """Make SIGTERM and SIGHUP raise ``SystemExit(128 + signal)`` in the main thread.

    By default they end Python without unwinding, so a killed demo or benchmark left airflow
    standalone (its own session), moto, the stand-in and PostgreSQL running. As an exception,
    the signal unwinds every ``with`` block that started them, which stops them.
    """
    import signal

    def stop(signum, _frame):
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"no server listened on 127.0.0.1:{port} within {timeout:.0f}s")


@contextmanager
def postgres(pgdata: Path) -> Iterator[str]:
    """Run PostgreSQL on ``pgdata`` (created on first use, kept afterwards); yield its socket dir."""
    import logging

    import pgserver

    # pgserver logs from an atexit hook, after pytest has closed the captured streams.
    logging.getLogger("pgserver").setLevel(logging.WARNING)
    pgdata.mkdir(parents=True, exist_ok=True)
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    watched = watch_postmaster(server.get_postmaster_info().pid)
    try:
        yield str(server.get_postmaster_info().socket_dir)
    finally:
        server.cleanup()
        reaper.forget(**watched)


def watch_postmaster(pid: int) -> dict[str, int]:
    """Hand a PostgreSQL server to :mod:`demo.reaper`: its postmaster ``pid`` and its backends, which
    ``pg_ctl`` starts in a session of their own, stopped (SIGTERM: the server shuts down) if this
    process dies before it stops them itself; the postmaster alone if it shares this process's
    session (never that session). :return: what was watched, as :func:`demo.reaper.forget`'s arguments."""
    session = os.getsid(pid)
    watched = {"pid": pid} if session == os.getsid(0) else {"session": session}
    reaper.watch(**watched)
    return watched


#: PostgreSQL 15 as Debian installs it: TimescaleDB 2.28.3 (the newest supporting 15) builds into it.
PG15_BIN = Path(os.environ.get("MARKET_TIMESCALEDB_PG_BIN", "/usr/lib/postgresql/15/bin"))
TIMESCALEDB_INSTALL = f"{ROOT / 'tools' / 'install_timescaledb.sh'} <timescaledb-2.28.3.tar.gz, path or URL>"
WAREHOUSES = ("postgres", "timescaledb")


def timescaledb_missing() -> str | None:
    """Why :func:`timescaledb` cannot run here, or ``None`` when it can.

    Looks for PostgreSQL 15's server binaries and a ``timescaledb-<version>.so`` with its TSL part
    (compression, continuous aggregates) in that server's library directory; starts nothing.
    """
    pg_config = PG15_BIN / "pg_config"
    if not (PG15_BIN / "postgres").exists() or not pg_config.exists():
        return f"no PostgreSQL 15 server in {PG15_BIN}"
    libdir = Path(subprocess.run([str(pg_config), "--pkglibdir"], capture_output=True, text=True, check=True).stdout.strip())
    if not list(libdir.glob("timescaledb-tsl-*.so")):
        return f"no TimescaleDB (with its TSL part) in {libdir}"
    return None


@contextmanager
def timescaledb(pgdata: Path, *, fsync: bool = False) -> Iterator[str]:
    """Run a private PostgreSQL 15 cluster with ``shared_preload_libraries = 'timescaledb'`` on
    ``pgdata`` (created on first use) and yield its unix-socket directory (port 5432, no TCP).

    Run as root, the cluster belongs to the ``pgserver`` system user (PostgreSQL refuses root),
    as ``pgserver`` itself does. ``fsync`` off suits tests; a benchmark that measures writes turns
    it on. Stopped (fast) on exit.

    :raises RuntimeError: naming what is missing (:func:`timescaledb_missing`), or the server's
        log when it does not start.
    """
    missing = timescaledb_missing()
    if missing:
        raise RuntimeError(f"TimescaleDB cannot run here: {missing}; install it with sudo {TIMESCALEDB_INSTALL}")
    run_as: list[str] = []
    pgdata.mkdir(parents=True, exist_ok=True)
    sockets = pgdata / "sockets"
    sockets.mkdir(exist_ok=True)
    if os.geteuid() == 0:
        import pwd

        from pgserver.utils import ensure_prefix_permissions, ensure_user_exists

        ensure_user_exists("pgserver")
        user = pwd.getpwnam("pgserver")
        ensure_prefix_permissions(pgdata)
        for path in (pgdata, sockets):
            os.chown(path, user.pw_uid, user.pw_gid)
        run_as = ["runuser", "-u", "pgserver", "--"]
    data = pgdata / "data"
    if not (data / "PG_VERSION").exists():
        subprocess.run(
            [*run_as, str(PG15_BIN / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres", "--encoding=UTF8"],
            check=True,
            capture_output=True,
        )
    settings = {
        "shared_preload_libraries": "'timescaledb'",
        "timescaledb.telemetry_level": "off",
        "listen_addresses": "''",
        "unix_socket_directories": f"'{sockets}'",
        "port": "5432",
        "fsync": "on" if fsync else "off",
        "synchronous_commit": "on" if fsync else "off",
        "max_connections": "200",
        "timescaledb.max_background_workers": "8",
        "max_worker_processes": "16",
    }
    (data / "postgresql.auto.conf").write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    if run_as:
        import shutil

        shutil.chown(data / "postgresql.auto.conf", "pgserver", "pgserver")
    log = pgdata / "server.log"
    started = subprocess.run(
        [*run_as, str(PG15_BIN / "pg_ctl"), "-D", str(data), "-l", str(log), "-w", "-t", "60", "start"],
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        raise RuntimeError(
            f"TimescaleDB did not start: {started.stderr.strip()}\n{log.read_text()[-2000:] if log.exists() else ''}"
        )
    watched = watch_postmaster(int((data / "postmaster.pid").read_text().split()[0]))
    try:
        yield str(sockets)
    finally:
        subprocess.run([*run_as, str(PG15_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "-w", "stop"], capture_output=True)
        reaper.forget(**watched)


@contextmanager
def warehouse_server(kind: str, pgdata: Path) -> Iterator[str]:
    """The warehouse ``kind`` (``postgres``: pgserver's PostgreSQL; ``timescaledb``: :func:`timescaledb`)
    on ``pgdata``; yields its unix-socket directory."""
    if kind not in WAREHOUSES:
        raise ValueError(f"warehouse {kind!r}: use one of {', '.join(WAREHOUSES)}")
    with timescaledb(pgdata) if kind == "timescaledb" else postgres(pgdata) as socket_dir:
        yield socket_dir


@contextmanager
def _loopback_server(module_args: list[str], log_path: Path, env: dict[str, str] | None = None) -> Iterator[str]:
    """Run ``python -m <module_args>`` (given ``{port}`` to listen on) in a child process; yield its URL.

    The child's output goes to ``log_path``; it is terminated (killed after 10 s) on exit.
    """
    port = free_port()
    log_path.parent.mkdir(parents=True, exist_ok=True)
    args = [sys.executable, "-m", *(a.format(port=port) for a in module_args)]
    with log_path.open("ab") as log:
        proc = subprocess.Popen(args, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})
    reaper.watch(pid=proc.pid)
    try:
        _wait_for_port(port)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        reaper.forget(pid=proc.pid)


def moto_server(log_path: Path):
    """Run moto's server (:mod:`demo.moto_server`) on a free loopback port in a child process; a context yielding its URL."""
    return _loopback_server(["demo.moto_server", "-H", "127.0.0.1", "-p", "{port}"], log_path, {"AWS_DEFAULT_REGION": AWS_REGION})


def vendor_standin(log_path: Path, recordings: Path | None = RECORDINGS, synthetic: bool = False):
    """Run the vendor stand-in (``python -m standin``) on a free loopback port in a child process; a context yielding its URL.

    :param recordings: recordings folder served (``None``: none).
    :param synthetic: also answer what no recording covers with the synthetic market.
    """
    args = ["standin", "--port", "{port}", "--recordings", str(recordings or "")]
    return _loopback_server(args + (["--synthetic"] if synthetic else []), log_path)


#: Debian's Redis server (``apt-get install redis-server``: 7.0 on bookworm), the Celery broker.
REDIS_SERVER = os.environ.get("MARKET_REDIS_SERVER", "redis-server")


@contextmanager
def redis_server(workdir: Path) -> Iterator[str]:
    """Run Debian's ``redis-server`` on a free loopback port, its data in ``workdir``; yield the
    Celery broker URL ``redis://127.0.0.1:<port>/0``.

    Persistence is on (append-only file, fsync every second), as a broker that is restarted must
    keep the task messages it holds; :func:`restart_redis` restarts it on the same port and folder.
    Stopped (SHUTDOWN, then SIGKILL after 10 s) on exit.

    :raises RuntimeError: no ``redis-server`` here (with how to install it), or it did not listen.
    """
    import shutil

    binary = shutil.which(REDIS_SERVER)
    if binary is None:
        raise RuntimeError(f"{REDIS_SERVER} not found: apt-get install redis-server (the Celery executor's broker)")
    workdir.mkdir(parents=True, exist_ok=True)
    server = _RedisServer(binary, workdir, free_port())
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


@dataclass
class _RedisServer:
    binary: str
    workdir: Path
    port: int
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [
            self.binary,
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.workdir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.workdir / "redis.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        reaper.watch(pid=self.proc.pid)
        _REDIS[self.url] = self
        _wait_for_port(self.port)

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()  # redis-server saves (append-only file) and exits on SIGTERM
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        reaper.forget(pid=self.proc.pid)
        self.proc = None


_REDIS: dict[str, _RedisServer] = {}


def restart_redis(broker_url: str, down_seconds: float = 0.0) -> None:
    """Stop the broker :func:`redis_server` started at ``broker_url`` (SIGTERM: it writes its
    append-only file and exits), wait ``down_seconds``, and start it again on the same port and data.

    :raises KeyError: no broker of this process at that URL.
    """
    server = _REDIS[broker_url]
    server.stop()
    time.sleep(down_seconds)
    server.start()


#: The demo's Alpha Vantage connection: Alpha Vantage's public "demo" key (not a secret) and a daily
#: budget repeated demos cannot spend. :func:`vendor_env` adds the stand-in as its host.
DEMO_ALPHA_VANTAGE_CONN = {"conn_type": "alpha_vantage", "password": "demo", "extra": {"daily_budget": 100000}}
#: The demo's Twelve Data connection: Twelve Data's public "demo" key (not a secret) on the Basic
#: plan's credits per minute and a daily cap repeated demos cannot spend.
DEMO_TWELVEDATA_CONN = {
    "conn_type": "twelvedata",
    "password": "demo",
    "extra": {"credits_per_minute": 8, "daily_credits": 100000},
}


def vendor_env(vendors_url: str, cfg) -> dict[str, str]:
    """``AIRFLOW_CONN_*`` of every vendor connection the pipeline config ``cfg`` uses, pointed at the stand-in.

    The connections carry the stand-in's URL as their base URL (``host``), exactly as they would
    carry a gateway's. Alpha Vantage and Twelve Data get their public ``demo`` keys (not secrets)
    and daily budgets repeated runs cannot spend; Interactive Brokers' connection is a Client
    Portal Gateway's (the stand-in answers as one that is logged in).
    """
    from market_ingest import kinds

    env = {}
    for name, src in cfg.sources.items():
        if src.kind == "alpha_vantage":
            conn = {**DEMO_ALPHA_VANTAGE_CONN, "host": f"{vendors_url}/www.alphavantage.co/query"}
        elif src.kind == "twelvedata":
            conn = {**DEMO_TWELVEDATA_CONN, "host": f"{vendors_url}/api.twelvedata.com"}
        elif src.kind == "ibkr":  # the stand-in as a logged-in Client Portal Gateway (no secret: the gateway holds the session)
            conn = {"conn_type": "ibkr", "host": f"{vendors_url}/localhost:5000/v1/api"}
        else:
            conn = {"conn_type": kinds.kind(src.kind).conn_type, "host": vendors_url}
        env[f"AIRFLOW_CONN_{src.connection_id(name).upper()}"] = json.dumps(conn)
    return env


@contextmanager
def embedded_services(
    workdir: Path, *, vendors: bool = True, synthetic: bool = False, warehouse: str = "postgres"
) -> Iterator[Services]:
    """The warehouse, moto and (``vendors``) the vendor stand-in, all stopped on exit.

    Warehouse data persists in ``workdir/pg`` (``workdir/tsdb`` for TimescaleDB). ``synthetic``
    runs the stand-in in synthetic mode; ``warehouse`` is ``postgres`` or ``timescaledb``
    (:func:`warehouse_server`).
    """
    pgdata = workdir / ("tsdb" if warehouse == "timescaledb" else "pg")
    with warehouse_server(warehouse, pgdata) as socket_dir, moto_server(workdir / "moto.log") as endpoint:
        if not vendors:
            yield Services(socket_dir, endpoint, warehouse=warehouse)
            return
        with vendor_standin(workdir / "standin.log", synthetic=synthetic) as vendors_url:
            yield Services(socket_dir, endpoint, vendors_url, warehouse=warehouse)


def create_sinks(services: Services, cfg, shards: int = 2) -> None:
    """Apply the warehouse migrations (what the ``market_setup`` DAG does in a deployment), make the
    coverage view's login (:func:`create_reader_login`), then :func:`create_buckets_and_streams` on
    the services' moto server."""
    import psycopg

    from market_ingest.hooks.timescale import apply_migrations

    with psycopg.connect(services.pg_conninfo()) as conn:
        apply_migrations(conn)
        create_reader_login(conn)
    create_buckets_and_streams(services.boto3_client("s3"), services.boto3_client("kinesis"), cfg, shards)


def create_reader_login(conn, login: str = READER_LOGIN, password: str | None = None) -> None:
    """Make ``login`` a login role in ``market_reader`` (the read-only role of migration V012) and
    nothing else, with ``password`` when given (``None``: none, for a server that trusts its
    socket). Idempotent: an existing role gets LOGIN and the password again. What a DBA runs by
    hand elsewhere: ``CREATE ROLE market_view LOGIN PASSWORD '...' IN ROLE market_reader``.

    :param conn: a psycopg connection of a role that may create roles (the migrating one); the
        caller commits.
    """
    from psycopg import sql

    exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (login,)).fetchone()
    statement = sql.SQL("ALTER ROLE {} LOGIN" if exists else "CREATE ROLE {} LOGIN").format(sql.Identifier(login))
    if password:
        statement += sql.SQL(" PASSWORD {}").format(sql.Literal(password))
    conn.execute(statement)
    conn.execute(sql.SQL("GRANT market_reader TO {}").format(sql.Identifier(login)))


def create_buckets_and_streams(s3, kinesis, cfg, shards: int = 2) -> list[str]:
    """Create the lake bucket(s) and the Kinesis streams (bars, quotes, events) that the pipeline
    config ``cfg`` names, when absent, and wait until every stream is ACTIVE (up to 2 minutes each).

    Used by :func:`create_sinks` and by Docker Compose's init service (``deploy/compose/init.py``).

    :param s3: a boto3 S3 client.
    :param kinesis: a boto3 Kinesis client.
    :param shards: the shard count of each stream created; an existing stream keeps its own.
    :returns: the buckets and streams created, in that order (empty when all existed).
    :raises botocore.exceptions.WaiterError: a stream is not ACTIVE within the wait.
    """
    created = []
    existing = {b["Name"] for b in s3.list_buckets().get("Buckets", [])}
    for bucket in cfg.lake.buckets:
        if bucket not in existing:
            s3.create_bucket(Bucket=bucket)
            created.append(bucket)
    for stream in (cfg.kinesis.stream, cfg.kinesis.quotes_stream, cfg.alerts.events_stream):
        # Asked by name: ListStreams answers one page (10 names on moto, 100 on AWS), so a stream
        # beyond it looked absent and its CreateStream failed with ResourceInUseException.
        try:
            kinesis.describe_stream_summary(StreamName=stream)
        except kinesis.exceptions.ResourceNotFoundException:
            kinesis.create_stream(StreamName=stream, ShardCount=shards)
            created.append(stream)
        kinesis.get_waiter("stream_exists").wait(StreamName=stream, WaiterConfig={"Delay": 0.5, "MaxAttempts": 240})
    return created


def stream_data(services: Services, stream: str) -> Iterator[bytes]:
    """Every record's ``Data`` in ``stream``, oldest first per shard."""
    kinesis = services.boto3_client("kinesis")
    for shard in kinesis.list_shards(StreamName=stream)["Shards"]:
        it = kinesis.get_shard_iterator(StreamName=stream, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON")[
            "ShardIterator"
        ]
        while it:
            out = kinesis.get_records(ShardIterator=it, Limit=10000)
            yield from (r["Data"] for r in out["Records"])
            if not out["Records"] or out.get("MillisBehindLatest", 0) == 0:
                break
            it = out.get("NextShardIterator")


def read_stream(services: Services, stream: str) -> list[dict]:
    """Every record in ``stream`` from the oldest, decoded from JSON (one bar per record)."""
    return [json.loads(data) for data in stream_data(services, stream)]


def lake_tables(services: Services, bucket: str, prefix: str, columns: list[str] | None = None) -> Iterator[tuple[str, object]]:
    """``(key, pyarrow table)`` of every Parquet object under ``s3://bucket/prefix``, read with boto3
    (no deduplication: what a query engine listing the prefix would see). Under a Delta table
    (a prefix ``<table>/source=...`` whose ``<table>/_delta_log/`` exists, e.g. ``bars/bars/``),
    only the files of the table's current version: what an engine reading the table sees."""
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    s3 = services.boto3_client("s3")
    active = delta_files(services, bucket, prefix.split("/source=")[0]) if "/source=" in prefix else None
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for o in page.get("Contents", []):
            if o["Key"].endswith(".parquet") and (active is None or o["Key"] in active):
                body = s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
                if active is None:
                    yield o["Key"], pq.read_table(io.BytesIO(body), columns=columns)
                    continue
                # A Delta table keeps its partition columns in the path (source=, interval=, period=), not the file.
                table = pq.read_table(io.BytesIO(body))
                for part in o["Key"].split("/"):
                    name, eq, value = part.partition("=")
                    if eq and name not in table.column_names:
                        table = table.append_column(name, pa.array([value] * table.num_rows, pa.string()))
                yield o["Key"], table.select(columns) if columns else table


def delta_storage_options(services: Services) -> dict[str, str]:
    """deltalake's storage options for moto (any key; not credentials)."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_REGION": AWS_REGION,
        "AWS_ENDPOINT_URL": services.aws_endpoint,
        "AWS_ALLOW_HTTP": "true",
    }


def delta_files(services: Services, bucket: str, table: str) -> set[str] | None:
    """Keys of the data files in the current version of the Delta table at ``s3://bucket/table``;
    ``None`` when no table is there."""
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    try:
        dt = DeltaTable(f"s3://{bucket}/{table}", storage_options=delta_storage_options(services))
    except TableNotFoundError:
        return None
    return {uri.removeprefix(f"s3://{bucket}/") for uri in dt.file_uris()}
