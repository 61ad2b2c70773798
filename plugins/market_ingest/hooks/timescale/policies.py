"""TimescaleDB's policies on the warehouse: columnstore and retention per bar table, and the refresh
of the 1-minute rollups (:data:`ROLLUPS`); nothing on plain PostgreSQL, where the rollups are views.

Set by the ``market_setup`` DAG through :meth:`~market_ingest.hooks.timescale.TimescaleHook.apply_policies`.
"""

from __future__ import annotations

from datetime import timedelta

from market_ingest.contracts import Dataset
from market_ingest.intervals import CANONICAL_INTERVALS

#: 1-minute bars rolled up (V008): rollup -> (bucket, refresh schedule), parents before children.
ROLLUPS: dict[str, tuple[timedelta, timedelta]] = {
    "market.bars_1m_rollup_1h": (timedelta(hours=1), timedelta(minutes=15)),
    "market.bars_1m_rollup_1d": (timedelta(days=1), timedelta(hours=1)),
}


def apply_policies(
    conn,
    columnstore_after: dict[str, timedelta],
    retention: dict[str, timedelta],
    restatement_window: timedelta,
    log,
) -> dict[str, dict]:
    """Set each bar table's columnstore and retention policies, and the rollups' refresh
    policies (TimescaleDB; nothing on plain PostgreSQL, where the rollups are plain views).

    Every policy is replaced, so a changed setting takes effect; an interval without a
    retention entry keeps every bar (its retention policy, if any, is removed). The rollups
    (:data:`ROLLUPS`) refresh every ``schedule`` from ``restatement_window`` back (a restated
    1m bar within it is rolled up again) to one bucket before now (closed buckets only).

    :param columnstore_after: interval -> age after which chunks convert to the columnstore.
    :param retention: interval -> age after which chunks are dropped.
    :param restatement_window: how far back bars are routinely rewritten.
    :return: ``{table or rollup: {...settings}}`` as set, empty on plain PostgreSQL.
    """
    from market_ingest.schema import DATASETS

    bars = DATASETS[Dataset.BARS]
    applied: dict[str, dict] = {}
    with conn.transaction(), conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if not cur.fetchone():
            return applied
        for interval, table in zip(CANONICAL_INTERVALS, bars.storage_tables(), strict=True):
            after, keep = columnstore_after[interval], retention.get(interval)
            cur.execute("CALL remove_columnstore_policy(%s::regclass, if_exists => true)", (table,))
            cur.execute("CALL add_columnstore_policy(%s::regclass, after => %s::interval)", (table, after))
            cur.execute("SELECT remove_retention_policy(%s::regclass, if_exists => true)", (table,))
            if keep is not None:
                cur.execute("SELECT add_retention_policy(%s::regclass, drop_after => %s::interval)", (table, keep))
            applied[table] = {"columnstore_after": str(after), "retention": str(keep) if keep else None}
            log.info("%s: columnstore after %s, retention %s", table, after, keep or "none (keep every bar)")
        for rollup, (bucket, schedule) in ROLLUPS.items():
            cur.execute("SELECT remove_continuous_aggregate_policy(%s::regclass, if_exists => true)", (rollup,))
            cur.execute(
                "SELECT add_continuous_aggregate_policy(%s::regclass, start_offset => %s::interval, "
                "end_offset => %s::interval, schedule_interval => %s::interval)",
                (rollup, restatement_window + bucket, bucket, schedule),
            )
            applied[rollup] = {
                "refresh_from": str(restatement_window + bucket),
                "refresh_to": str(bucket),
                "every": str(schedule),
            }
    return applied


def refresh_rollups(conn, start, end) -> bool:
    """Materialize the rollups (:data:`ROLLUPS`) over ``[start, end)`` now, hourly before daily.

    What the refresh policies do on their schedule; for tests, the demo and after a large
    backfill. Runs outside a transaction (TimescaleDB requires it).

    :return: True on TimescaleDB; False on plain PostgreSQL, where the rollups are views and need none.
    """
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
        if not cur.fetchone():
            return False
        for rollup in ROLLUPS:
            cur.execute("CALL refresh_continuous_aggregate(%s::regclass, %s, %s)", (rollup, start, end))
    return True
