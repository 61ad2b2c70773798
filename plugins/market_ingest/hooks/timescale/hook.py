"""The warehouse's hook, :class:`TimescaleHook`: its connection, the schema check, and the
idempotent COPY-based upsert of bars (:meth:`TimescaleHook.upsert`).

The migrations it applies are :mod:`~market_ingest.hooks.timescale.migrations`, the statements its
upsert chooses from :mod:`~market_ingest.hooks.timescale.statements`, the TimescaleDB policies
it sets :mod:`~market_ingest.hooks.timescale.policies`, and the corporate actions it upserts and
the bars it re-bases :mod:`~market_ingest.hooks.timescale.actions`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from airflow.providers.postgres.hooks.postgres import PostgresHook

from market_ingest.contracts import Dataset
from market_ingest.errors import ConfigurationError, SinkUnavailableError
from market_ingest.hooks.timescale import actions, policies
from market_ingest.hooks.timescale.migrations import MIGRATIONS_DIR, apply_migrations, latest_version, migration_files
from market_ingest.hooks.timescale.statements import LoadSpan, apply_load, copy_new_rows, span_is_new

if TYPE_CHECKING:
    import pyarrow as pa

BARS_TABLE = "market.bars"


class UpsertStats(TypedDict):
    """What :meth:`TimescaleHook.upsert` did.

    ``rows``: rows given; ``applied``: rows inserted or changed; ``skipped``: rows not written
    (identical to the stored row, extracted earlier than it, or a repeated key); ``copied``: of
    ``applied``, rows copied straight into the table (a new span), 0 when the upsert wrote them.
    """

    rows: int
    applied: int
    skipped: int
    copied: int


#: ``(connection id, pid) -> schema version`` of warehouses :meth:`TimescaleHook.check_schema` found current.
_SCHEMA_CHECKED: dict[tuple[str, int], str] = {}

#: Seconds a new warehouse connection may take (``connect_timeout``) unless its extra sets one.
DEFAULT_CONNECT_TIMEOUT = 10


class TimescaleHook(PostgresHook):
    """PostgresHook for the market-data warehouse (connection ``market_timescale``).

    Inherits connection handling, IAM auth and ``copy_expert`` from ``PostgresHook``; adds
    :meth:`migrate` (once per deployment), :meth:`check_schema` (every task, cheap) and the upsert.
    A connection without ``connect_timeout`` in its extra gets :data:`DEFAULT_CONNECT_TIMEOUT`
    seconds (libpq's own default is to wait for the operating system: 130 s measured here against
    a server that takes the TCP connection and never answers).
    """

    conn_name_attr = "timescale_conn_id"
    default_conn_name = "market_timescale"
    hook_name = "TimescaleDB (market data)"

    def __init__(self, *args, timescale_conn_id: str = default_conn_name, **kwargs) -> None:
        super().__init__(*args, postgres_conn_id=timescale_conn_id, **kwargs)
        self.timescale_conn_id = timescale_conn_id

    @classmethod
    def get_connection(cls, conn_id: str):
        """The Airflow connection, with ``connect_timeout`` defaulted in a copy of its extra."""
        import copy
        import json

        conn = super().get_connection(conn_id)
        extra = conn.extra_dejson
        if "connect_timeout" in extra:
            return conn
        conn = copy.copy(conn)
        conn.extra = json.dumps({**extra, "connect_timeout": DEFAULT_CONNECT_TIMEOUT})
        return conn

    def get_conn(self):
        """A new psycopg connection (``PostgresHook.get_conn``).

        :raises SinkUnavailableError: the server cannot be reached, did not answer within the
            connect timeout, or refused the connection (a wrong password, an unknown database or
            role, too many connections); the message names host, port, connection and libpq's
            reason, which says which. All are retried: libpq reports no SQLSTATE for a failed
            connection (psycopg 3.3: ``sqlstate`` is ``None``), so a refused login cannot be told
            from a server still starting but by the server's localised message text.
        """
        import psycopg

        try:
            return super().get_conn()
        except psycopg.OperationalError as exc:
            reason = " ".join(str(exc).split())
            where = f"{self.connection.host or 'localhost'}:{self.connection.port or 5432}"
            raise SinkUnavailableError(
                "timescale", f"cannot connect to {where} (connection {self.timescale_conn_id}): {reason}"
            ) from exc

    @staticmethod
    def migrations(directory: Path = MIGRATIONS_DIR) -> list[tuple[str, Path]]:
        """``[(version, path)]`` of the migration files, in version order (:func:`migration_files`)."""
        return migration_files(directory)

    def migrate(self) -> list[str]:
        """Apply pending migrations (:func:`apply_migrations`) through this hook's connection.

        Run once per deployment by the ``market_setup`` DAG (and by the demo and tests), not by
        every task: tasks call :meth:`check_schema`.

        :return: versions applied by this call (empty when the schema is current).
        """
        with closing(self.get_conn()) as conn:
            return apply_migrations(conn, self.log)

    def schema_version(self) -> str | None:
        """The newest migration version applied to the warehouse, or ``None`` before the first. One query."""
        with closing(self.get_conn()) as conn, conn.cursor() as cur:
            cur.execute("SELECT to_regclass('public.market_ingest_migrations') IS NOT NULL")
            if not cur.fetchone()[0]:
                return None
            cur.execute("SELECT max(version) FROM public.market_ingest_migrations")
            return cur.fetchone()[0]

    def check_schema(self) -> str:
        """Fail at once when the warehouse's schema is behind this code's migrations.

        Cheap (one connection, two catalog queries) and memoised per process and connection, so
        every task may call it before touching a table.

        :return: the schema version (``"005"``).
        :raises ConfigurationError: naming the version found, the one needed, and the ``market_setup``
            DAG that applies them; permanent, so no retry is spent.
        """
        key = (self.timescale_conn_id, os.getpid())
        if key in _SCHEMA_CHECKED:
            return _SCHEMA_CHECKED[key]
        needed = latest_version()
        found = self.schema_version()
        if found is None or found < needed:
            raise ConfigurationError(
                "timescale",
                f"the warehouse behind connection {self.timescale_conn_id} has schema version {found or 'none'}, this code "
                f"needs {needed}: trigger the DAG market_setup once (airflow dags trigger market_setup) to apply the migrations",
            )
        _SCHEMA_CHECKED[key] = found
        return found

    def is_hypertable(self, table: str = BARS_TABLE) -> bool:
        """True when ``table`` is a TimescaleDB hypertable; for ``market.bars`` (a view over one
        table per interval), when every one of those tables is."""
        from market_ingest.schema import DATASETS

        tables = next((d.storage_tables() for d in DATASETS.values() if d.table == table), [table])
        with closing(self.get_conn()) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
            if not cur.fetchone():
                return False
            cur.execute(
                "SELECT count(*) FROM timescaledb_information.hypertables "
                "WHERE format('%%I.%%I', hypertable_schema, hypertable_name) = ANY(%s)",
                (tables,),
            )
            return cur.fetchone()[0] == len(tables)

    def apply_policies(
        self,
        columnstore_after: dict[str, timedelta],
        retention: dict[str, timedelta],
        restatement_window: timedelta = timedelta(days=60),
    ) -> dict[str, dict]:
        """Set each bar table's columnstore and retention policies, and the rollups' refresh
        policies, through a new connection (:func:`~market_ingest.hooks.timescale.policies.apply_policies`
        says what is set; nothing on plain PostgreSQL).

        :param columnstore_after: interval -> age after which chunks convert to the columnstore.
        :param retention: interval -> age after which chunks are dropped.
        :param restatement_window: how far back bars are routinely rewritten.
        :return: ``{table or rollup: {...settings}}`` as set, empty on plain PostgreSQL.
        """
        with closing(self.get_conn()) as conn:
            return policies.apply_policies(conn, columnstore_after, retention, restatement_window, self.log)

    def refresh_rollups(self, start, end) -> bool:
        """Materialize the rollups over ``[start, end)`` now, through a new connection
        (:func:`~market_ingest.hooks.timescale.policies.refresh_rollups`).

        :return: True on TimescaleDB; False on plain PostgreSQL, where the rollups are views and need none.
        """
        with closing(self.get_conn()) as conn:
            return policies.refresh_rollups(conn, start, end)

    def upsert_actions(self, table: pa.Table, checked: Mapping[tuple[str, str], datetime] | None = None) -> int:
        """Upsert corporate actions into ``market.corporate_actions`` in one transaction, through a
        new connection (:func:`~market_ingest.hooks.timescale.actions.upsert_actions`: the earliest
        ``first_seen`` is kept, the other columns come from the later ``extracted_at``; a repeated
        upsert writes nothing).

        :param table: rows of :func:`market_ingest.actions.action_schema`.
        :param checked: ``{(source, symbol): vendor clock}`` of the answers they come from, for
            ``market.corporate_actions_checked``.
        :return: actions inserted or changed.
        """
        with closing(self.get_conn()) as conn:
            return actions.upsert_actions(conn, table, checked)

    def rebase_bars(self, basis_of: Callable[[str, str], actions.LegacyBasis | None]) -> dict[str, dict]:
        """Convert the bars stored before schema 2 (``price_basis`` NULL) to as traded, one series
        per transaction, through a new connection
        (:func:`~market_ingest.hooks.timescale.actions.rebase_bars` says what is converted and what
        stays pending). Idempotent: a second call converts nothing.

        :param basis_of: ``(source, symbol) -> LegacyBasis`` (``None``: the source's basis is
            unknown, its rows stay NULL).
        :return: ``{source: {"rebased", "pending", "pending_series"}}`` (empty when no row was NULL).
        """
        with closing(self.get_conn()) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
            tsdb = cur.fetchone() is not None
            conn.commit()
            return actions.rebase_bars(conn, basis_of, self.log, columnstore=tsdb)

    def load_bars(self, bars: pa.Table) -> int:
        """Upsert canonical bars into ``market.bars``; see :meth:`load`."""
        return self.load(bars, Dataset.BARS)

    def load(self, table: pa.Table, dataset: Dataset = Dataset.BARS) -> int:
        """Upsert rows of ``dataset`` in one transaction; see :meth:`upsert`. The table's own span
        (:meth:`LoadSpan.of`) is declared, so rows new to the warehouse are copied straight in.

        :return: rows inserted or updated (rows whose stored version was extracted later are not).
        """
        from market_ingest.schema import DATASETS

        span = LoadSpan.of(table, DATASETS[dataset].series) if table.num_rows else None
        return self.upsert(lambda: table.to_batches(max_chunksize=65_536), dataset, span=span)["applied"]

    def upsert(
        self,
        batches: Iterable[pa.RecordBatch] | Callable[[], Iterable[pa.RecordBatch]],
        dataset: Dataset = Dataset.BARS,
        then: Callable[[Any], None] | None = None,
        span: LoadSpan | None = None,
    ) -> UpsertStats:
        """Upsert record batches of ``dataset`` into its table in one transaction, newest extraction
        winning, writing only rows that change.

        **New rows** (``span`` declared, ``batches`` a callable, one target table, and the table
        holding no row of the span's series in their ranges: :func:`~market_ingest.hooks.timescale.statements.span_is_new`):
        the batches are copied straight into the table with ``COPY ... (FORMAT binary)``, encoded
        from their Arrow buffers by ``pgpq`` (:func:`~market_ingest.hooks.timescale.statements.copy_new_rows`).
        A row outside the span, or a key stored meanwhile by a concurrent load, rolls that copy back
        and the batches are read again (``batches()``) for the upsert below.

        **Otherwise** the batches are streamed the same way into a temporary table (one batch in
        memory at a time, no Python object per value). Then, into the table of each interval
        present (bars are stored per interval, :meth:`~market_ingest.schema.StoredDataset.storage`)::

            INSERT ... SELECT ... FROM <the copied rows that are new or differ from the stored row>
            ON CONFLICT (<key>) DO UPDATE SET ...
            WHERE stored.ingested_at <= new.ingested_at
              AND (stored.<every other column>) IS DISTINCT FROM (new.<every other column>)

        or, when the table holds none of the load's series within its time span, a plain
        ``INSERT`` (see :func:`~market_ingest.hooks.timescale.statements.apply_load` for the statements,
        when each runs, and their measured costs),
        so a rerun replaces rows with the same key and never duplicates them; a row extracted
        earlier than the stored one (a late retry, an old run's load re-run, a concurrent load that
        commits last) never overwrites it, and under concurrent loads PostgreSQL re-checks the
        condition against the committed row, so the newest extraction wins in either commit order;
        and reloading identical rows (a cleared or retried load) proposes no row to the upsert, so
        it writes, locks and (on TimescaleDB) decompresses nothing. A newer extraction with the same prices is
        still written (its ``ingested_at`` is newer), so the stored lineage is always the newest.
        A key given twice keeps its newest row. Nothing is written unless the whole load commits.

        On TimescaleDB the load's transaction lifts ``timescaledb.max_tuples_decompressed_per_dml_transaction``
        (100,000 by default): a restatement or backfill into columnstore chunks decompresses the
        segments it touches, and a load must apply whole or not at all, so a cap that aborts it
        halfway protects nothing here. What it decompresses is bounded by the load's own series
        and chunks; the columnstore policy compresses them again later.

        :param batches: record batches with the dataset's schema (``bars``: ``BAR_SCHEMA``, key
            ``(source, symbol, interval, time)``; ``quotes``: ``QUOTE_SCHEMA``, key
            ``(source, symbol, time)``), or a callable returning a fresh iterable of them each call
            (needed for the new-rows copy, which may have to read them twice).
        :param then: called with the load's cursor after the rows are written, before the commit
            (also when there were no rows), so what it writes commits with them or not at all: the
            load writes the coverage ledger there (:func:`market_ingest.coverage.record`).
        :param span: where the batches' rows lie (:class:`LoadSpan`), when the caller knows it
            before reading them (the load task knows each symbol's window from the plan).
        :return: :class:`UpsertStats`.
        """
        from psycopg import sql

        from market_ingest.schema import DATASETS

        spec = DATASETS[dataset]
        direct = self._direct_table(spec, span) if callable(batches) else None
        with closing(self.get_conn()) as conn:
            with conn.transaction(), conn.cursor() as cur:
                cur.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'")
                tsdb = cur.fetchone() is not None
                if direct and span and callable(batches) and span_is_new(cur, direct, span, list(spec.series), tsdb):
                    copied = copy_new_rows(conn, cur, spec, direct, batches(), span, self.log)
                    if copied is not None:
                        if then:
                            then(cur)
                        return {"rows": copied, "applied": copied, "skipped": 0, "copied": copied}
                rows = self._copy_to_temp(cur, spec, batches() if callable(batches) else batches)
                if not rows:
                    if then:
                        then(cur)
                    return {"rows": 0, "applied": 0, "skipped": 0, "copied": 0}
                # Statistics for the planner (autovacuum never visits a temporary table): without
                # them it guesses a few thousand rows and joins them by a loop of index probes.
                cur.execute("ANALYZE _load")
                if tsdb:
                    cur.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0")
                if spec.per_interval:
                    cur.execute("SELECT DISTINCT interval FROM _load")
                    parts: list[tuple[str, sql.Composable]] = [
                        (spec.storage(i), sql.SQL("l.interval = {}").format(sql.Literal(i))) for (i,) in cur
                    ]
                else:
                    parts = [(spec.table, sql.SQL("TRUE"))]
                applied = 0
                for table, where in parts:
                    applied += apply_load(conn, cur, spec, table, where, columnstore=tsdb, log=self.log)
                if then:
                    then(cur)
        return {"rows": rows, "applied": applied, "skipped": rows - applied, "copied": 0}

    @staticmethod
    def _direct_table(spec, span: LoadSpan | None) -> str | None:
        """The one table a load with ``span`` writes into, or ``None`` (no span, or rows of several
        intervals, which are stored in several tables)."""
        if span is None or not span.ranges:
            return None
        if not spec.per_interval:
            return spec.table
        intervals = {s[spec.series.index("interval")] for s in span.ranges}
        return spec.storage(intervals.pop()) if len(intervals) == 1 else None

    @staticmethod
    def _copy_to_temp(cur, spec, batches: Iterable[pa.RecordBatch]) -> int:
        """Stream ``batches`` into a new temporary table ``_load`` (dropped at commit) shaped like
        the dataset's table; return the rows copied."""
        from pgpq import ArrowToPostgresBinaryEncoder
        from psycopg import sql

        cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
        wire = spec.wire_schema()
        encoder = ArrowToPostgresBinaryEncoder(wire)
        # The rows stay in this session's memory up to 256 MB (about 1.5 million bars) instead
        # of spilling through the default 8 MB of temp buffers; effective before the
        # session's first temporary table, which this is (one connection per load).
        cur.execute("SET LOCAL temp_buffers = '256MB'")
        cur.execute(
            sql.SQL("CREATE TEMP TABLE _load (LIKE {} INCLUDING DEFAULTS) ON COMMIT DROP").format(
                sql.Identifier(*spec.storage_tables()[0].split("."))
            )
        )
        rows = 0
        with cur.copy(sql.SQL("COPY _load ({}) FROM STDIN (FORMAT binary)").format(cols)) as copy:
            copy.write(encoder.write_header())
            for batch in batches:
                if batch.num_rows == 0:
                    continue
                copy.write(encoder.write_batch(batch.select(list(spec.columns)).cast(wire)))
                rows += batch.num_rows
            copy.write(encoder.finish())
        return rows
