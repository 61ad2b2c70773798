"""The coverage ledger's mirror in the lake: the ``coverage`` Delta table.

**Where.** ``<lake root>/coverage/``, beside the bars table, partitioned by ``source`` and
``interval``; opened, created, retried and maintained by the machinery of
:mod:`market_ingest.lake.table`. A row is a ledger row of ``market.coverage``
(:data:`~market_ingest.coverage.states.MIRRORED`: the day's state, counts, reason, run and
attempts, and its anomaly flags) with its ``updated_at`` in the warehouse (when it last changed).

**Writes.** After a load of bars commits its ledger rows (:class:`~market_ingest.coverage.parked.LoadLedger`),
they are merged here in one commit (:func:`mirror_ledger`) on the ledger's own key
``(source, interval, symbol, day)``: a stored row is replaced only by a later ``updated_at``, so
the table holds each day once, as the warehouse's ledger does, and a retried load neither adds
rows nor, when it changed none, replaces any. ``updated_at`` is the warehouse's, taken from the
database's clock under the pair's ledger lock (:func:`market_ingest.coverage.record`), so two
loads' mirrors are ordered as they wrote the warehouse, whatever their workers' clocks say. Loads of several pairs commit at once; a conflicting
commit is merged again. Earlier states of a day are the table's history (time travel).

**Before.** Versions before the table wrote one object per run,
``_coverage/source=<s>/interval=<i>/run=<token>.parquet``
(:func:`~market_ingest.lake.layout.coverage_object`); :func:`convert_mirror` (``market_setup``)
copies them in once, the latest ``updated_at`` of each day winning. Imports pyarrow inside
functions: callable from tasks only.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

NAME = "coverage"
#: The table's partition columns.
PARTITION_COLUMNS = ("source", "interval")
#: The ledger's natural key (``market.coverage``'s primary key).
KEY = ("source", "interval", "symbol", "day")
#: When a stored row is replaced by an incoming one with the same key.
NEWER = "s.updated_at > t.updated_at"


def schema() -> pa.Schema:
    """A ledger row's schema, in the warehouse and here: ``market.coverage``'s columns
    (:data:`~market_ingest.coverage.states.COLUMNS`; times UTC, ``day`` a date, counts int64),
    ``flagged`` (bars flagged that day) and ``updated_at`` (when the row last changed, by the
    database's clock). What :func:`market_ingest.coverage.record` returns and :func:`mirror_ledger` takes."""
    import pyarrow as pa

    utc = pa.timestamp("us", tz="UTC")
    return pa.schema(
        [
            pa.field("source", pa.string(), nullable=False),
            pa.field("interval", pa.string(), nullable=False),
            pa.field("symbol", pa.string(), nullable=False),
            pa.field("day", pa.date32(), nullable=False),
            pa.field("covered_from", utc),
            pa.field("covered_until", utc),
            pa.field("expected", pa.int64()),
            pa.field("loaded", pa.int64()),
            pa.field("state", pa.string()),
            pa.field("reason", pa.string()),
            pa.field("run_id", pa.string()),
            pa.field("attempts", pa.int64()),
            pa.field("flagged", pa.int64()),
            pa.field("updated_at", utc, nullable=False),
        ]
    )


def mirror_ledger(root: ObjectStoragePath, rows: pa.Table) -> dict[str, Any]:
    """Merge ledger rows (:func:`schema`, as :func:`market_ingest.coverage.record` returns them,
    each with the ``updated_at`` the warehouse stored) into the mirror in one commit.

    :return: ``{"path": the table's URI, "rows": rows given, "version": the table version}``.
    :raises DeltaCommitError: other commits kept conflicting (retryable).
    :raises SinkNotFoundError: the lake's bucket or folder does not exist.
    """
    from market_ingest.lake.table import table_uri

    table = rows.select(schema().names).cast(schema())
    merged = _merge(root, table)
    return {"path": table_uri(root, NAME), "rows": table.num_rows, "version": merged["version"]}


def _merge(root: ObjectStoragePath, table: pa.Table) -> dict[str, Any]:
    """:func:`~market_ingest.lake.table.merge_rows` of ``table`` (newest row per key first) on :data:`KEY`."""
    import pyarrow.compute as pc

    from market_ingest.lake.table import _quoted, merge_rows

    table = _newest(table) if table.num_rows > 1 else table
    sources = _quoted(pc.unique(table["source"]).to_pylist())
    return merge_rows(root, table, NAME, KEY, replace_when=NEWER, narrow=f"t.source IN ({sources})")


def _newest(table: pa.Table) -> pa.Table:
    """One row per key: the latest ``updated_at`` (the last row given on a tie)."""
    import pyarrow as pa

    indexed = table.append_column("__pos", pa.array(range(table.num_rows), pa.int64()))
    ranked = indexed.sort_by([("updated_at", "ascending"), ("__pos", "ascending")])
    ranked = ranked.append_column("__rank", pa.array(range(ranked.num_rows), pa.int64()))
    winners = ranked.group_by(list(KEY), use_threads=False).aggregate([("__rank", "max")])
    return ranked.take(winners["__rank_max"]).drop_columns(["__pos", "__rank"])


def read_mirror(root: ObjectStoragePath, source: str, interval: str, *, version: int | datetime | None = None) -> pa.Table:
    """The mirrored ledger of ``source``/``interval`` (at ``version``: time travel), sorted by
    symbol and day; :func:`schema`; empty when there is no table."""
    import pyarrow.compute as pc

    from market_ingest.lake.table import read_table

    flt = (pc.field("source") == source) & (pc.field("interval") == interval)
    rows = read_table(root, flt, version=version, dataset=NAME).select(schema().names)
    return rows.sort_by([("symbol", "ascending"), ("day", "ascending")])


def convert_mirror(root: ObjectStoragePath) -> dict[str, Any]:
    """Copy the per-run mirror objects earlier versions wrote (``_coverage/...``) into the
    coverage table and verify: ``market_setup``'s conversion, idempotent.

    The objects' rows are reduced to the latest ``updated_at`` of each day; those the table lacks
    or holds an earlier ``updated_at`` of are merged in one commit (the same rule as a load's
    mirror, so a day a load mirrored since is kept). Then every day of the objects must be in
    the table, as updated then or later. A second run merges nothing and commits nothing. The
    objects are left where they are (nothing reads them any more).

    :return: ``{"objects": objects read, "rows": their distinct days, "rows_merged": rows
        written now, "commits": commits made}``.
    :raises ConversionError: days of the objects missing from the table afterwards, naming how many.
    :raises CorruptObjectError: an object is not Parquet.
    """
    import pyarrow as pa
    import pyarrow.parquet as pq

    from market_ingest.lake.objects import _decoding
    from market_ingest.lake.table import ConversionError

    base = root / "_coverage"
    stats = {"objects": 0, "rows": 0, "rows_merged": 0, "commits": 0}
    if not base.exists():
        return stats
    parts = []
    objects = [o for s in base.iterdir() for i in s.iterdir() for o in i.iterdir() if o.name.endswith(".parquet")]
    for obj in sorted(objects, key=str):
        with obj.open("rb") as fh, _decoding(str(obj)):
            table = pq.read_table(fh)
        parts.append(pa.Table.from_pylist(table.to_pylist(), schema=schema()))
        stats["objects"] += 1
    if not parts:
        return stats
    legacy = _newest(pa.concat_tables(parts))
    stats["rows"] = legacy.num_rows
    todo = _not_in_table(root, legacy)
    if todo.num_rows:
        _merge(root, todo)
        stats["rows_merged"], stats["commits"] = todo.num_rows, 1
    missing = _not_in_table(root, legacy).num_rows
    if missing:
        raise ConversionError(
            "lake",
            f"{missing} of the {legacy.num_rows} ledger days of the _coverage/ objects are not in the coverage table "
            f"after the conversion; the objects are untouched, run it again",
        )
    return stats


def _not_in_table(root: ObjectStoragePath, rows: pa.Table) -> pa.Table:
    """The rows of ``rows`` (each key once) the table lacks or holds with an earlier ``updated_at``."""
    import pyarrow.compute as pc

    from market_ingest.lake.table import read_table

    stored = read_table(root, pc.field("source").isin(pc.unique(rows["source"])), dataset=NAME)
    stored = stored.select([*KEY, "updated_at"]).rename_columns([*KEY, "stored_at"])
    joined = rows.join(stored, keys=list(KEY), join_type="left outer")
    stale = pc.or_kleene(pc.is_null(joined["stored_at"]), pc.greater(joined["updated_at"], joined["stored_at"]))
    return joined.filter(pc.fill_null(stale, False)).select(rows.schema.names)
