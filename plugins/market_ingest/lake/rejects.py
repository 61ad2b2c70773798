"""Bars that failed validation, kept with their reasons: the ``rejects`` Delta table of the lake.

**Where.** ``<lake root>/rejects/``, beside the bars table (``<lake root>/bars/``), partitioned by
``source`` and ``interval``; opened, created, retried and maintained by the machinery of
:mod:`market_ingest.lake.table`. A row is a bar as the vendor sent it (:func:`market_ingest.schema.as_sent`
of the bar schema: any value may be missing, which may be why it was rejected), with ``reason``
(``invalid: <check>``, :mod:`market_ingest.quality`), the ``run_id``, the extract ``batch`` and
``row``, its position among the batch's rejects.

**Writes.** An extract batch's rejects are merged in one commit (:func:`write_rejects`) on the
natural key ``(source, interval, run_id, batch, row)``, and the batch's stored rows the new set
lacks are deleted: a retried extract task replaces its earlier try's rejects, never adds to
them. Batches of one run write concurrently; a conflicting commit is merged again.

**Before.** Versions before the table wrote one Parquet object per batch,
``_rejects/source=<s>/interval=<i>/run=<token>/batch-<n>.parquet``
(:func:`~market_ingest.lake.layout.rejects_object`); :func:`convert_rejects` (``market_setup``)
copies them in once. Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

NAME = "rejects"
#: The table's partition columns.
PARTITION_COLUMNS = ("source", "interval")
#: A reject's natural key: its batch (a task of one DAG run) and its place among the batch's rejects.
KEY = ("source", "interval", "run_id", "batch", "row")


def schema() -> pa.Schema:
    """The rejects table's schema: the bar schema with every field nullable, then ``reason``,
    ``run_id`` (strings), ``batch`` and ``row`` (int32)."""
    import pyarrow as pa

    from market_ingest.schema import BAR_SCHEMA, as_sent

    return pa.schema(
        [
            *as_sent(BAR_SCHEMA),
            pa.field("reason", pa.string()),
            pa.field("run_id", pa.string(), nullable=False),
            pa.field("batch", pa.int32(), nullable=False),
            pa.field("row", pa.int32(), nullable=False),
        ]
    )


def _batch_rows(rejected: pa.Table, source: str, interval: str, run_id: str, batch: int) -> pa.Table:
    """``rejected`` (bars as sent, with ``reason``) as rows of the table's schema, numbered."""
    import pyarrow as pa

    from market_ingest.schema import conform

    n = rejected.num_rows
    rows = rejected.drop_columns([c for c in ("source", "interval", "run_id", "batch", "row") if c in rejected.column_names])
    rows = rows.append_column("source", pa.array([source] * n, pa.string()))
    rows = rows.append_column("interval", pa.array([interval] * n, pa.string()))
    rows = rows.append_column("run_id", pa.array([run_id] * n, pa.string()))
    rows = rows.append_column("batch", pa.array([batch] * n, pa.int32()))
    rows = rows.append_column("row", pa.array(range(n), pa.int32()))
    return conform(rows, schema())


def write_rejects(
    root: ObjectStoragePath, rejected: pa.Table, source: str, interval: str, run_id: str, batch: int
) -> dict[str, Any]:
    """Replace extract batch ``batch`` of run ``run_id``'s rejects with ``rejected``, in one commit.

    :param rejected: the bars that failed validation, as sent, with ``reason``
        (:func:`market_ingest.quality.split_valid`); zero rows delete the batch's earlier rejects
        (a retry that rejected nothing).
    :return: ``{"path": the table's URI, "rows": the batch's rejects now, "batch", "run_id",
        "version": the table version committed}``.
    :raises DeltaCommitError: other commits kept conflicting (retryable).
    :raises SinkNotFoundError: the lake's bucket or folder does not exist.
    """
    from market_ingest.lake.table import _quoted, merge_rows, table_uri

    rows = _batch_rows(rejected, source, interval, run_id, batch)
    mine = f"t.source = {_quoted([source])} AND t.run_id = {_quoted([run_id])}"
    merged = merge_rows(
        root,
        rows,
        NAME,
        KEY,
        narrow=mine,
        delete_unmatched=f't."interval" = {_quoted([interval])} AND {mine} AND t.batch = {int(batch)}',
    )
    return {"path": table_uri(root, NAME), "rows": rows.num_rows, "batch": batch, "run_id": run_id, "version": merged["version"]}


def read_rejects(root: ObjectStoragePath, source: str, interval: str, run_id: str | None = None) -> pa.Table:
    """The rejects of ``source``/``interval`` (of run ``run_id`` when given), sorted by run,
    batch and row; the table's schema (:func:`schema`); empty when there is no table."""
    import pyarrow.compute as pc

    from market_ingest.lake.table import read_table

    flt = (pc.field("source") == source) & (pc.field("interval") == interval)
    if run_id is not None:
        flt &= pc.field("run_id") == run_id
    rows = read_table(root, flt, dataset=NAME)
    return rows.select(schema().names).sort_by([("run_id", "ascending"), ("batch", "ascending"), ("row", "ascending")])


def convert_rejects(root: ObjectStoragePath) -> dict[str, Any]:
    """Copy the per-batch reject objects earlier versions wrote (``_rejects/...``) into the
    rejects table, and verify: ``market_setup``'s conversion, idempotent.

    A batch the table already holds (converted before, or written since by a retry of its task,
    which is newer) is left as it is; the others are written as :func:`write_rejects` writes a
    batch (one commit each). Then every batch of the objects must be in the table (its
    object's rows, or the newer set a retry wrote). The objects are left where they are.

    :return: ``{"objects": objects read, "rows": their rows, "rows_merged": rows written now,
        "commits": commits made}``.
    :raises ConversionError: a batch of the objects is missing from the table afterwards.
    :raises CorruptObjectError: an object is not Parquet.
    """
    import pyarrow.parquet as pq

    from market_ingest.lake.objects import _decoding
    from market_ingest.lake.table import ConversionError

    base = root / "_rejects"
    stats = {"objects": 0, "rows": 0, "rows_merged": 0, "commits": 0}
    if not base.exists():
        return stats

    present = _batches(root)
    found: list[tuple[str, str, str, int, int]] = []
    for source_dir in sorted(base.iterdir(), key=str):
        source = source_dir.name.partition("=")[2]
        for interval_dir in sorted(source_dir.iterdir(), key=str):
            interval = interval_dir.name.partition("=")[2]
            for obj in sorted((o for run_dir in interval_dir.iterdir() for o in run_dir.iterdir()), key=str):
                m = re.fullmatch(r"batch-(\d+)\.parquet", obj.name)
                if not m:
                    continue
                with obj.open("rb") as fh, _decoding(str(obj)):
                    table = pq.read_table(fh)
                run_ids = table["run_id"].unique().to_pylist() if "run_id" in table.column_names else []
                if len(run_ids) != 1:
                    log.warning("rejects object %s names no single run (%s); not converted", obj, run_ids)
                    continue
                key = (source, interval, run_ids[0], int(m.group(1)))
                stats["objects"] += 1
                stats["rows"] += table.num_rows
                found.append((*key, table.num_rows))
                if key in present:  # converted before, or written since by the batch's retry (newer)
                    continue
                write_rejects(root, table, *key)
                stats["rows_merged"] += table.num_rows
                stats["commits"] += 1
    counts = _batches(root)
    for source, interval, run_id, batch, rows in found:
        if (source, interval, run_id, batch) not in counts:
            raise ConversionError(
                source,
                f"{interval} run {run_id} batch {batch}: its {rows} rejects are not in the rejects table "
                f"after the conversion; the objects are untouched, run it again",
            )
    return stats


def _batches(root: ObjectStoragePath) -> dict[tuple[str, str, str, int], int]:
    """``{(source, interval, run_id, batch): rejects stored}`` of the whole table."""
    from market_ingest.lake.table import read_table

    stored = read_table(root, dataset=NAME).select(["source", "interval", "run_id", "batch"])
    grouped = stored.group_by(["source", "interval", "run_id", "batch"]).aggregate([([], "count_all")])
    return {(r["source"], r["interval"], r["run_id"], r["batch"]): r["count_all"] for r in grouped.to_pylist()}
