"""Writing a load's rows into a table: ``COPY`` straight into it when the load's declared span
holds nothing stored (:func:`copy_new_rows`), otherwise the cheapest statement that is safe for
what the table already holds over the rows copied to a temporary table (:func:`apply_load`), as
:meth:`~market_ingest.hooks.timescale.TimescaleHook.upsert` runs them for each table of its load.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa

#: A series: the dataset's key without ``time`` (bars: ``(source, symbol, interval)``; quotes:
#: ``(source, symbol)``).
Series = tuple[str, ...]


@dataclass(frozen=True)
class LoadSpan:
    """Where every row of a load lies, declared before its rows are read: for each series, a
    ``[start, end)`` UTC range of bar open times.

    A load with a span may ``COPY`` its rows straight into the target table when the table holds
    no row of those series in those ranges (:func:`copy_new_rows`). The span is checked against
    every row as it is copied; a row outside it makes the load fall back to the upsert, so a
    wrong span costs time, never a bar.

    :param ranges: ``{series: (start, end)}``, timezone-aware.
    """

    ranges: Mapping[Series, tuple[datetime, datetime]]

    @classmethod
    def of(cls, table: pa.Table, series: Iterable[str]) -> LoadSpan:
        """The exact span of ``table``'s rows: each series' first ``time`` to just after its last."""
        names = list(series)
        grouped = table.group_by(names).aggregate([("time", "min"), ("time", "max")]).to_pylist()
        tick = timedelta(microseconds=1)
        return cls({tuple(g[n] for n in names): (g["time_min"], g["time_max"] + tick) for g in grouped})

    @property
    def bounds(self) -> tuple[datetime, datetime]:
        """``(earliest start, latest end)`` over every series."""
        return min(lo for lo, _ in self.ranges.values()), max(hi for _, hi in self.ranges.values())

    def holds(self, batch: pa.RecordBatch, series: Iterable[str]) -> bool:
        """True when every row of ``batch`` belongs to a declared series and lies in its range.

        Vectorised without a group-by (whose engine, Acero, costs a task a second or more to import):
        each row's series is looked up among the declared ones (``index_in`` on the key columns
        joined), and its time compared with that series' range.
        """
        import pyarrow.compute as pc

        names = list(series)
        declared = self._arrays
        keys = pc.binary_join_element_wise(*(batch.column(n) for n in names), _SEP) if len(names) > 1 else batch.column(names[0])
        at = pc.index_in(keys, value_set=declared[0])
        if at.null_count:
            return False
        time = batch.column("time")
        inside = pc.and_(
            pc.greater_equal(time, pc.take(declared[1], at).cast(time.type)),
            pc.less(time, pc.take(declared[2], at).cast(time.type)),
        )
        return bool(pc.all(inside).as_py())

    @cached_property
    def _arrays(self) -> tuple[pa.Array, pa.Array, pa.Array]:
        """``(joined series keys, starts, ends)`` as Arrow arrays, in one order."""
        import pyarrow as pa

        keys = list(self.ranges)
        utc = pa.timestamp("us", tz="UTC")
        return (
            pa.array([_SEP.join(k) for k in keys], pa.string()),
            pa.array([self.ranges[k][0] for k in keys], utc),
            pa.array([self.ranges[k][1] for k in keys], utc),
        )


#: Joins a series' key columns into one string for lookups (a unit separator: in no symbol).
_SEP = "\x1f"


class _OutsideSpan(Exception):
    """A copied row lies outside the load's declared span (aborts the direct ``COPY``)."""


def _has_node(plan: dict, node_type: str) -> bool:
    """True when ``plan`` (a node of ``EXPLAIN (FORMAT JSON)``'s output) or any node below it is a ``node_type``."""
    return plan["Node Type"] == node_type or any(_has_node(p, node_type) for p in plan.get("Plans", ()))


def _rescans(plan: dict) -> bool:
    """True when ``plan`` (``EXPLAIN (FORMAT JSON)``) holds a nested loop whose inner side reads a
    relation sequentially, once per outer row: quadratic in the rows joined. A nested loop whose
    inner side is an index scan (one probe per outer row) is not."""
    if plan["Node Type"] == "Nested Loop" and _has_node(plan["Plans"][1], "Seq Scan"):
        return True
    return any(_rescans(p) for p in plan.get("Plans", ()))


def apply_load(conn, cur, spec, table: str, where, columnstore: bool, log) -> int:
    """Write the copied rows of ``_load`` matching ``where`` (SQL on alias ``l``) into ``table``.

    One probe, then the cheapest statement that is safe for what the stored rows hold:

    * no stored row of the load's series within its time span (new bars: the first load of a
      window, a backfill of new history) and, on TimescaleDB, no columnstore chunk in that span:
      a plain ``INSERT``, under a savepoint. Measured on 1,000,000 bars (PostgreSQL 15): 3.8 s
      against 9.2 s for the same rows through ``ON CONFLICT``, which checks and marks every row
      speculatively. If a concurrent load committed some of these keys meanwhile
      (``unique_violation``), it is rolled back and the upsert runs.
    * otherwise ``INSERT ... ON CONFLICT DO UPDATE ... WHERE`` (newer and different), fed only the
      copied rows that are new or differ from the stored row: a left join on the key, restricted
      to the load's span (``_load`` is analysed after the copy, so the planner knows its size).
      An identical reload of 1,000,000 bars proposes nothing: 2.4 s as a hash join, against
      9.5 s for ``ON CONFLICT`` over every row, which locks each conflicting row (a write and
      WAL record per row; on TimescaleDB also decompressing its segment) to find nothing to
      change. A small load into a large table is planned as a loop of index probes, also
      bounded. The join is used unless its plan (``EXPLAIN``, planning only) loops over a
      sequential scan (:func:`_rescans`): with the stored table's statistics stale after a large
      load, PostgreSQL once planned one over 150,000 x 150,000 rows (minutes, in CI, before
      ``_load`` was analysed). Then the upsert takes every copied row, one index probe each.
    * a load repeating a key (PostgreSQL refuses to update a row twice in one statement): rolled
      back to a savepoint and rerun over ``DISTINCT ON (<key>)``, the newest extraction of each.

    :return: rows inserted or updated.
    """
    import psycopg
    from psycopg import sql

    target = sql.Identifier(*table.split("."))
    series = list(spec.series)
    others = [c for c in spec.columns if c not in spec.key]
    ident = sql.Identifier

    def listed(prefix: str, names) -> sql.Composable:
        return sql.SQL(", ").join(sql.SQL(prefix + ".{}").format(ident(c)) for c in names)

    # One pass over the load: each series' span, then whether the table holds any row in it.
    cur.execute(
        sql.SQL(
            "WITH r AS (SELECT {series_l}, min(l.time) AS lo, max(l.time) AS hi FROM _load l WHERE {where} "
            "GROUP BY {series_l}) SELECT min(lo), max(hi), EXISTS (SELECT 1 FROM r WHERE EXISTS "
            "(SELECT 1 FROM {target} s WHERE {series_match} AND s.time BETWEEN r.lo AND r.hi)) FROM r"
        ).format(
            series_l=listed("l", series),
            where=where,
            target=target,
            series_match=sql.SQL(" AND ").join(sql.SQL("s.{c} = r.{c}").format(c=ident(c)) for c in series),
        )
    )
    lo, hi, overlaps = cur.fetchone()
    if lo is None:
        return 0
    if not overlaps and columnstore:
        # A columnstore chunk keeps most rows out of the chunk's unique index, and TimescaleDB
        # 2.28.3 was seen to skip PostgreSQL's checks there (ON CONFLICT updated a row twice in
        # one statement without cardinality_violation): no plain INSERT is trusted into one.
        schema, name = table.split(".")
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.chunks WHERE hypertable_schema = %s "
            "AND hypertable_name = %s AND is_compressed AND range_end > %s AND range_start <= %s)",
            (schema, name, lo, hi),
        )
        overlaps = cur.fetchone()[0]
    cols = sql.SQL(", ").join(map(ident, spec.columns))
    if not overlaps:
        try:
            with conn.transaction():
                cur.execute(
                    sql.SQL("INSERT INTO {target} ({cols}) SELECT {l_cols} FROM _load l WHERE {where}").format(
                        target=target, cols=cols, l_cols=listed("l", spec.columns), where=where
                    )
                )
            return cur.rowcount
        except psycopg.errors.UniqueViolation:  # a concurrent load stored some of these keys first
            log.info("%s: rows appeared under this load's keys meanwhile; upserting", table)
    parts = {
        "target": target,
        "cols": cols,
        "l_cols": listed("l", spec.columns),
        "where": where,
        "key": sql.SQL(", ").join(map(ident, spec.key)),
        "l_key": listed("l", spec.key),
        "join": sql.SQL(" AND ").join(sql.SQL("s.{c} = l.{c}").format(c=ident(c)) for c in spec.key),
        "lo": sql.Literal(lo),
        "hi": sql.Literal(hi),
        "changed": sql.SQL("s.time IS NULL OR (s.ingested_at <= l.ingested_at AND ({}) IS DISTINCT FROM ({}))").format(
            listed("s", others), listed("l", others)
        ),
        "updates": sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=ident(c)) for c in others),
        "stored": listed("stored", others),
        "new": listed("EXCLUDED", others),
    }
    conflict = (
        " ON CONFLICT ({key}) DO UPDATE SET {updates} "
        "WHERE stored.ingested_at <= EXCLUDED.ingested_at AND ({stored}) IS DISTINCT FROM ({new})"
    )

    def upsert(select: str) -> sql.Composed:
        return sql.SQL("INSERT INTO {target} AS stored ({cols}) " + select + conflict).format(**parts)

    every_row = upsert("SELECT {l_cols} FROM _load l WHERE {where}")
    changed_only = upsert(
        "SELECT {l_cols} FROM _load l LEFT JOIN {target} s ON {join} AND s.time BETWEEN {lo} AND {hi} "
        "WHERE ({where}) AND ({changed})"
    )
    cur.execute(sql.SQL("EXPLAIN (FORMAT JSON) ") + changed_only)
    statement = changed_only
    if _rescans(cur.fetchone()[0][0]["Plan"]):
        log.info("%s: upserting every copied row (the changed-rows join plans a loop over a scan)", table)
        statement = every_row
    try:  # a load holds each key once (extract cleans every answer): no sort needed
        with conn.transaction():
            cur.execute(statement)
        return cur.rowcount
    except psycopg.errors.CardinalityViolation:  # a key given twice: keep its newest row
        log.info("%s: the load repeats keys; keeping the newest row of each", table)
        cur.execute(
            upsert("SELECT DISTINCT ON ({l_key}) {l_cols} FROM _load l WHERE {where} ORDER BY {l_key}, l.ingested_at DESC")
        )
        return cur.rowcount


def span_is_new(cur, table: str, span: LoadSpan, series: list[str], columnstore: bool) -> bool:
    """True when ``table`` holds no row of ``span``'s series within their ranges and, on
    TimescaleDB, no columnstore chunk overlaps the span (see :func:`apply_load` for why no plain
    insert is trusted into one). One query of an index probe per series, plus one catalog query."""
    from psycopg import sql

    ident = sql.Identifier
    keys = list(span.ranges)
    columns = [[k[i] for k in keys] for i in range(len(series))]
    starts = [span.ranges[k][0] for k in keys]
    ends = [span.ranges[k][1] for k in keys]
    unnest = sql.SQL(", ").join(sql.SQL("%s::text[]") for _ in series)
    cur.execute(
        sql.SQL(
            "SELECT EXISTS (SELECT 1 FROM unnest({unnest}, %s::timestamptz[], %s::timestamptz[]) AS r({names}, lo, hi) "
            "WHERE EXISTS (SELECT 1 FROM {target} s WHERE {match} AND s.time >= r.lo AND s.time < r.hi))"
        ).format(
            unnest=unnest,
            names=sql.SQL(", ").join(map(ident, series)),
            target=ident(*table.split(".")),
            match=sql.SQL(" AND ").join(sql.SQL("s.{c} = r.{c}").format(c=ident(c)) for c in series),
        ),
        (*columns, starts, ends),
    )
    if cur.fetchone()[0]:
        return False
    if columnstore:
        schema, name = table.split(".")
        lo, hi = span.bounds
        cur.execute(
            "SELECT EXISTS (SELECT 1 FROM timescaledb_information.chunks WHERE hypertable_schema = %s "
            "AND hypertable_name = %s AND is_compressed AND range_end > %s AND range_start < %s)",
            (schema, name, lo, hi),
        )
        return not cur.fetchone()[0]
    return True


def copy_new_rows(conn, cur, spec, table: str, batches: Iterable[pa.RecordBatch], span: LoadSpan, log) -> int | None:
    """``COPY`` a load's rows straight into ``table``, under a savepoint, when the caller found its
    span new (:func:`span_is_new`): no temporary table, no ``ANALYZE``, no ``INSERT ... SELECT``.
    Measured on 1,000,000 one-minute bars (``make bench-load``): see docs/benchmarks.md.

    Nothing stored can be overwritten: the table's primary key refuses a key it holds. The copy
    is rolled back, and ``None`` returned for the caller to upsert the rows instead, when

    * a row lies outside the declared span (:meth:`LoadSpan.holds`, checked per batch before it
      is sent), or
    * a key is already stored (``unique_violation``: a concurrent load committed rows of the span
      after the probe) or repeated within the load.

    :param batches: the load's record batches (the dataset's schema), read once.
    :return: rows copied, or ``None`` when nothing was written and the caller must upsert.
    """
    import psycopg
    from pgpq import ArrowToPostgresBinaryEncoder
    from psycopg import sql

    series = list(spec.series)
    cols = sql.SQL(", ").join(map(sql.Identifier, spec.columns))
    wire = spec.wire_schema()
    encoder = ArrowToPostgresBinaryEncoder(wire)
    rows = 0
    try:
        with conn.transaction():
            with cur.copy(
                sql.SQL("COPY {} ({}) FROM STDIN (FORMAT binary)").format(sql.Identifier(*table.split(".")), cols)
            ) as copy:
                copy.write(encoder.write_header())
                for batch in batches:
                    if batch.num_rows == 0:
                        continue
                    if not span.holds(batch, series):
                        raise _OutsideSpan
                    copy.write(encoder.write_batch(batch.select(list(spec.columns)).cast(wire)))
                    rows += batch.num_rows
                copy.write(encoder.finish())
    except _OutsideSpan:
        log.info("%s: a row lies outside the load's declared span; upserting instead of copying", table)
        return None
    except psycopg.errors.UniqueViolation:
        log.info("%s: a key of this load is stored already or repeated; upserting instead of copying", table)
        return None
    return rows
