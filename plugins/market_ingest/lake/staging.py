"""A run's staging: what the extract batches write for the publish and the other sinks.

**Bars** are staged as the bars table's own data files, one per period, uncommitted
(:func:`market_ingest.lake.table.stage_bars`): the publish commits them as they are when they
overlap nothing stored, or merges their rows; a new name per attempt, so a retried batch never
overwrites a file a publish committed. **Quotes** are staged as one object per batch under the
run's staging folder (``_staging/...run=<run id, sanitised>-<hash>/``), keyed by the run so two
runs of the same window never share staged objects, sorted by time with row groups that never
span two partitions. The run report deletes the staging folder once every sink succeeded
(:func:`remove_staging`); staged bars files the publish did not commit go with the table's vacuum.
The other sinks stream both record batch by record batch (:func:`iter_staged`). Imports pyarrow
inside functions: callable from tasks only.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timezone
from typing import TYPE_CHECKING

from market_ingest.contracts import Dataset, StagedObject
from market_ingest.lake.layout import STAGING, TABLE_PARTITION_BY, lake_root, partition_of, split_by_partition, staging_path
from market_ingest.lake.objects import ROW_GROUP_ROWS, _decoding, _parquet_file, _writing

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath


def stage(
    table: pa.Table,
    root: ObjectStoragePath,
    source: str,
    interval: str | None,
    run_id: str,
    batch: int,
    compression: str = "zstd",
) -> list[StagedObject]:
    """Stage an extract batch's rows: bars as the bars table's data files
    (:func:`market_ingest.lake.table.stage_bars`, whose entries say more) when they span at most
    :data:`~market_ingest.lake.table.MAX_STAGED_PERIODS` periods of one source; else (a long
    intraday backfill's batch), and quotes, as one object under the run's staging folder.

    The object is sorted by time and holds one or more row groups per lake partition and none
    spanning two, so publishing reads one partition of it at a time. It is written as it is encoded
    (no second copy of the file in memory), and replaced only once complete.

    :param table: canonical rows (bars or quotes) of one extract batch.
    :param run_id: the DAG run's id (keys the staging folder).
    :param batch: the batch number (names the object; a retry of the batch overwrites it).
    :return: ``[]`` for no rows, else ``[{"path": url, "rows": n, "partitions": {partition: [row group, ...]}}]``,
        partitions as :func:`partition_of` names the bars table's (:data:`TABLE_PARTITION_BY`;
        quotes: a date).
    :raises SerializationError: a required column is null in some row (named with its source,
        symbol and time: :func:`market_ingest.schema.require_values`); nothing is written.
    """
    import pyarrow.parquet as pq

    from market_ingest.schema import DATASETS, require_values

    if table.num_rows == 0:
        return []
    require_values(table, DATASETS[Dataset.BARS if interval else Dataset.QUOTES].schema)  # what publish_lake reads them as
    if interval:  # bars: written once, as the bars table's own (uncommitted) data files
        import pyarrow.compute as pc

        from market_ingest.lake.layout import partition_values
        from market_ingest.lake.table import MAX_STAGED_PERIODS, stage_bars

        periods = len(pc.unique(partition_values(table, interval, TABLE_PARTITION_BY)))
        if periods <= MAX_STAGED_PERIODS and len(pc.unique(table["source"])) == 1:
            return stage_bars(table, root, source, interval, run_id, batch)
    path = staging_path(root, source, interval, run_id, batch)
    collected: list = []
    with (
        _writing(path) as fh,
        pq.ParquetWriter(fh, table.schema, compression=compression, metadata_collector=collected) as writer,
    ):
        for _, part in split_by_partition(table, interval, TABLE_PARTITION_BY):
            writer.write_table(part.sort_by([("time", "ascending"), ("symbol", "ascending")]), row_group_size=ROW_GROUP_ROWS)
    (meta,) = collected
    time_col = table.schema.get_field_index("time")
    partitions: dict[str, list[int]] = {}
    for rg in range(meta.num_row_groups):
        first = meta.row_group(rg).column(time_col).statistics.min
        partitions.setdefault(
            partition_of(first.astimezone(timezone.utc).date().isoformat(), interval, TABLE_PARTITION_BY), []
        ).append(rg)
    return [{"path": str(path), "rows": table.num_rows, "partitions": partitions}]


def iter_staged(paths: list[str], dataset: Dataset = Dataset.BARS, max_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """Record batches of a run's staged objects, in the given order, streamed (at most ``max_rows``
    rows decoded at a time).

    :param paths: staged object URLs (from the publish result's ``staged``).
    :raises CorruptObjectError: a staged object is not Parquet of the dataset, naming it and its run.
    """
    from market_ingest.lake.table import with_partition_columns
    from market_ingest.schema import DATASETS

    schema = DATASETS[dataset].schema
    from market_ingest.errors import StagedObjectGoneError
    from market_ingest.lake.objects import staged_run

    for p in paths:
        data_file = dataset == Dataset.BARS and f"/{STAGING}/" not in p  # a bars data file (stage_bars): no source, interval
        with _decoding(p):
            try:
                staged = _parquet_file(p)
            except FileNotFoundError:
                raise StagedObjectGoneError(
                    "lake",
                    f"staged object {p} of run {staged_run(p)} is gone (removed after every sink succeeded, or by the bars "
                    "table's vacuum once older than its retention): clear the run's extract tasks to stage it again",
                ) from None
            for batch in staged.iter_batches(batch_size=max_rows):
                yield with_partition_columns(batch, p) if data_file else batch.cast(schema)


def remove_staging(run_dir: str) -> int:
    """Delete a run's staging folder: its staged batches and the Kinesis publish's progress file.

    The run report calls it once every sink has succeeded: staged objects are the sinks' input
    only, and a staging area that is never emptied grows by every run's bars. A run that did not
    succeed keeps its staging (a retried ``publish_kinesis`` resumes from its progress file).

    :param run_dir: the publish result's ``run_dir`` (a lake URL, ``s3://<conn>@bucket/...`` or
        ``file:///...``).
    :return: objects deleted (0 when the folder is already gone).
    """
    path = lake_root(run_dir)
    if not path.exists():
        return 0
    objects = sum(1 for p in path.rglob("*") if p.is_file())
    path.rmdir(recursive=True)
    return objects
