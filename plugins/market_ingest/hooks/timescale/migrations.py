"""The warehouse's versioned migrations: ``include/sql/migrations/V<nnn>__<name>.sql``, applied in
version order, each once, under an advisory lock (:func:`apply_migrations`).

Works on plain PostgreSQL too: the migrations create a hypertable only when the ``timescaledb``
extension exists, and the same table, key and indexes otherwise. :func:`apply_migrations` takes any
psycopg connection (the hook's, the demo's, a test's).
"""

from __future__ import annotations

import re
from pathlib import Path

from market_ingest.config import INCLUDE_DIR

MIGRATIONS_DIR = INCLUDE_DIR / "sql" / "migrations"
_MIGRATION = re.compile(r"^V(\d{3,})__[a-z0-9_]+\.sql$")
_LOCK_KEY = 0x6D61726B  # advisory lock shared by every migrating task ("mark")


def migration_files(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, Path]]:
    """``[(version, path)]`` of the migration files, in version order.

    :raises ValueError: when a ``.sql`` file does not follow ``V<nnn>__<name>.sql``.
    """
    found = []
    for path in sorted(directory.glob("*.sql")):
        m = _MIGRATION.match(path.name)
        if not m:
            raise ValueError(f"{path}: migration files are named V<nnn>__<snake_name>.sql")
        found.append((m.group(1), path))
    return found


def latest_version(directory: Path = MIGRATIONS_DIR) -> str:
    """The newest migration version this code ships (``"005"``)."""
    return migration_files(directory)[-1][0]


def apply_migrations(conn, log=None, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations on a psycopg connection, each in its own transaction, under an
    advisory lock, recording each in ``public.market_ingest_migrations``.

    Creates the ``timescaledb`` extension first when the server offers it and the role may; on
    plain PostgreSQL the migrations build the same tables without hypertables.

    :param conn: an open psycopg connection, idle (left open, its ``autocommit`` as given).
    :return: versions applied by this call (empty when the schema is current).
    """
    import logging

    log = log or logging.getLogger(__name__)
    applied_now: list[str] = []
    caller_autocommit = conn.autocommit
    try:
        _apply_pending(conn, log, directory, applied_now)
    finally:
        conn.autocommit = caller_autocommit
    return applied_now


def _apply_pending(conn, log, directory: Path, applied_now: list[str]) -> None:
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'")
        if cur.fetchone():
            try:
                cur.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
            except Exception as exc:  # not preloaded, or not superuser: stay on plain tables
                log.warning("timescaledb is available but could not be enabled: %s", exc)
    conn.autocommit = False
    for version, path in migration_files(directory):
        with conn.transaction(), conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            cur.execute(
                "CREATE TABLE IF NOT EXISTS public.market_ingest_migrations "
                "(version text PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            cur.execute("SELECT 1 FROM public.market_ingest_migrations WHERE version = %s", (version,))
            if cur.fetchone():
                continue
            cur.execute(path.read_text())
            cur.execute("INSERT INTO public.market_ingest_migrations (version, name) VALUES (%s, %s)", (version, path.name))
            applied_now.append(version)
            log.info("Applied migration %s", path.name)
