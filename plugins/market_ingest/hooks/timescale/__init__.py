"""TimescaleDB sink: versioned migrations and an idempotent COPY-based upsert of bars.

Works on plain PostgreSQL too: the migrations create a hypertable only when the ``timescaledb``
extension exists, and the same table, key and indexes otherwise.

A package; every public name is importable from here (``from market_ingest.hooks.timescale import
TimescaleHook``), as callers do:

* :mod:`~market_ingest.hooks.timescale.hook`: :class:`TimescaleHook` (connection, schema check,
  upsert);
* :mod:`~market_ingest.hooks.timescale.statements`: which statement writes a load's rows into a
  table (a ``COPY`` straight into it for a new :class:`LoadSpan`);
* :mod:`~market_ingest.hooks.timescale.migrations`: :func:`apply_migrations`, :func:`latest_version`;
* :mod:`~market_ingest.hooks.timescale.policies`: columnstore, retention and rollup refresh policies;
* :mod:`~market_ingest.hooks.timescale.actions`: corporate actions upserted, bars stored before the
  price basis converted to as traded (:class:`LegacyBasis`).
"""

from __future__ import annotations

from market_ingest.hooks.timescale.actions import LegacyBasis
from market_ingest.hooks.timescale.hook import BARS_TABLE, DEFAULT_CONNECT_TIMEOUT, TimescaleHook, UpsertStats
from market_ingest.hooks.timescale.migrations import MIGRATIONS_DIR, apply_migrations, latest_version, migration_files
from market_ingest.hooks.timescale.policies import ROLLUPS
from market_ingest.hooks.timescale.statements import LoadSpan

__all__ = [
    "BARS_TABLE",
    "DEFAULT_CONNECT_TIMEOUT",
    "LegacyBasis",
    "LoadSpan",
    "MIGRATIONS_DIR",
    "ROLLUPS",
    "TimescaleHook",
    "UpsertStats",
    "apply_migrations",
    "latest_version",
    "migration_files",
]
