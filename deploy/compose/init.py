"""Docker Compose's ``airflow-init`` service: everything the stack needs before Airflow starts.

In order, each step idempotent (the service runs on every ``docker compose up``):

0. the password of the UI's user ``admin`` (``AIRFLOW_ADMIN_PASSWORD``), written into the simple
   auth manager's passwords file (``[core] simple_auth_manager_passwords_file``, in the config
   volume the API server shares), mode 600: the API server then keeps it instead of generating one;
1. ``airflow db migrate``: the metadata database (the ``postgres`` service);
2. ``airflow pools import include/pools.json``: one pool per vendor, its slots the vendor's limit;
3. ``airflow connections import --overwrite``: the warehouse (``timescaledb``; the loading login
   and the coverage view's read-only one), S3 and Kinesis
   (``moto``) and every vendor connection the pipeline config names, pointed at the vendor stand-in
   (``standin``) as ``make demo`` points them (:func:`demo.services.vendor_env`), and the API
   server (``airflow-apiserver``, as ``admin``) for the run notes (:mod:`market_ingest.run_note`). Edit them in the
   UI (Admin > Connections) to reach the live vendors; a later ``up`` overwrites them again unless
   ``MARKET_COMPOSE_KEEP_CONNECTIONS=1``;
4. the lake bucket and the Kinesis streams the config names, when absent, through those connections;
5. the warehouse migrations (what the ``market_setup`` DAG applies), through ``market_timescale``,
   then the coverage view's login ``market_view`` in the read-only role ``market_reader``
   (:func:`demo.services.create_reader_login`), with ``MARKET_READER_PASSWORD``.

The passwords come from the environment, which docker-compose.yaml fills from ``.env``:
``AIRFLOW_ADMIN_PASSWORD``, ``TIMESCALE_PASSWORD`` (the warehouse's ``postgres`` user) and
``MARKET_READER_PASSWORD``; none has a default. The other credentials it writes are the local emulators' (moto accepts any key) and
Alpha Vantage's public ``demo`` key, which the stand-in accepts. Exits non-zero, with the failing
step's error, if a step fails or a password is not set.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile

from market_ingest.config import INCLUDE_DIR, load_config

STANDIN_URL = os.environ.get("MARKET_STANDIN_URL", "http://standin:8790")
MOTO_URL = os.environ.get("MARKET_MOTO_URL", "http://moto:5000")
API_SERVER_URL = os.environ.get("MARKET_API_SERVER_URL", "http://airflow-apiserver:8080")
#: the UI's user (``[core] simple_auth_manager_users`` in docker-compose.yaml), role admin
ADMIN_USER = "admin"


def secret(name: str) -> str:
    """The value of environment variable ``name``.

    :raises SystemExit: naming it when it is unset or empty (set it in ``.env``, see ``.env.example``).
    """
    value = os.environ.get(name)
    if not value:
        raise SystemExit(f"{name} is not set: copy .env.example to .env beside docker-compose.yaml and set it")
    return value


def connections(cfg) -> dict[str, dict]:
    """Connection id -> ``airflow connections import`` entry (``conn_type``, ``host``, ...) for the stack.

    :param cfg: the pipeline config (:func:`market_ingest.config.load_config`); its warehouse, AWS
        and vendor connection ids are the keys.
    """
    from demo.services import READER_LOGIN, vendor_env

    aws_ids = {cfg.kinesis.aws_conn_id, cfg.alerts.aws_conn_id, *cfg.lake.aws_conn_ids}
    aws = {
        "conn_type": "aws",
        "login": "test",
        "password": "test",
        "extra": json.dumps({"region_name": "us-east-1", "endpoint_url": MOTO_URL, "config_kwargs": {"connect_timeout": 10}}),
    }
    conns = {conn_id: dict(aws) for conn_id in aws_ids}
    warehouse = {"conn_type": "postgres", "host": "timescaledb", "port": 5432, "schema": "market"}
    conns[cfg.timescale.conn_id] = {**warehouse, "login": "postgres", "password": secret("TIMESCALE_PASSWORD")}
    conns[cfg.timescale.reader_conn_id] = {**warehouse, "login": READER_LOGIN, "password": secret("MARKET_READER_PASSWORD")}
    if cfg.report.run_note_conn_id:  # a JWT from /auth/token for admin, then PATCH the run's note
        conns[cfg.report.run_note_conn_id] = {
            "conn_type": "http",
            "host": API_SERVER_URL,
            "login": ADMIN_USER,
            "password": secret("AIRFLOW_ADMIN_PASSWORD"),
        }
    for key, value in vendor_env(STANDIN_URL, cfg).items():
        conn = json.loads(value)
        if isinstance(conn.get("extra"), dict):
            conn["extra"] = json.dumps(conn["extra"])
        conns[key.removeprefix("AIRFLOW_CONN_").lower()] = conn
    return conns


def write_admin_password() -> str:
    """Set ``admin``'s password to ``AIRFLOW_ADMIN_PASSWORD`` in the simple auth manager's passwords
    file (``{"user": "password"}`` JSON, mode 600), keeping any other user in it.

    The API server generates a password only for a user missing from that file, so it logs in
    ``admin`` with this one. Run before the API server starts (docker-compose.yaml's start order).

    :return: the file's path.
    :raises SystemExit: when ``AIRFLOW_ADMIN_PASSWORD`` is not set.
    """
    from pathlib import Path

    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    from demo.stack import write_private

    path = Path(SimpleAuthManager.get_generated_password_file())
    users = json.loads(path.read_text().strip() or "{}") if path.exists() else {}
    users[ADMIN_USER] = secret("AIRFLOW_ADMIN_PASSWORD")
    write_private(path, json.dumps(users) + "\n")
    return str(path)


def _airflow(*args: str) -> None:
    print("+ airflow", *args, flush=True)
    subprocess.run(["airflow", *args], check=True)


def create_sinks(cfg) -> None:
    """The lake bucket(s) and the bars, quotes and events streams, when absent
    (:func:`demo.services.create_buckets_and_streams`, through ``cfg.kinesis.aws_conn_id``); the
    warehouse migrations, and the coverage view's login (password ``MARKET_READER_PASSWORD``)."""
    from contextlib import closing

    from airflow.providers.amazon.aws.hooks.base_aws import AwsBaseHook

    from demo.services import READER_LOGIN, create_buckets_and_streams, create_reader_login
    from market_ingest.hooks.timescale import TimescaleHook

    s3, kinesis = (AwsBaseHook(aws_conn_id=cfg.kinesis.aws_conn_id, client_type=t).get_conn() for t in ("s3", "kinesis"))
    created = create_buckets_and_streams(s3, kinesis, cfg)
    print(f"created: {', '.join(created) or 'nothing, every bucket and stream exists'}", flush=True)
    warehouse = TimescaleHook(timescale_conn_id=cfg.timescale.conn_id)
    applied = warehouse.migrate()
    print(f"warehouse migrations applied: {applied or 'none pending'}", flush=True)
    with closing(warehouse.get_conn()) as conn:
        create_reader_login(conn, READER_LOGIN, secret("MARKET_READER_PASSWORD"))
        conn.commit()
    print(f"coverage view login: {READER_LOGIN} (role market_reader)", flush=True)


def main() -> None:
    cfg = load_config()
    print(f"admin's password: set in {write_admin_password()}", flush=True)
    _airflow("db", "migrate")
    _airflow("pools", "import", str(INCLUDE_DIR / "pools.json"))
    if os.environ.get("MARKET_COMPOSE_KEEP_CONNECTIONS") != "1":
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            json.dump(connections(cfg), f)
            f.flush()
            _airflow("connections", "import", "--overwrite", f.name)
    create_sinks(cfg)


if __name__ == "__main__":
    main()
