"""The Parquet partitions as stored: reading a time range of them, and folding earlier layouts in.

Bars are read from the bars Delta table (:func:`read_lake` hands them to
:func:`market_ingest.lake.table.read_bars`); the Parquet partitions hold quotes, and the bars of
versions before the table until :func:`market_ingest.lake.convert_lake` copies them in.

Both list the partition folders of a (source, interval) once and take whatever layout wrote them:
``date=`` folders of daily bars from before month partitions, and several objects per folder from
the per-window layout before that (:func:`_partition_folders`). Imports pyarrow inside functions:
callable from tasks only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from market_ingest.contracts import Dataset
from market_ingest.lake.layout import _PERIOD_WIDTH, _base, partition_by, partition_object, split_by_partition
from market_ingest.lake.merge import newest_per_key, read_modify_write
from market_ingest.lake.objects import read_parquet

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)


def read_lake(
    root: ObjectStoragePath, source: str, interval: str | None, start: datetime, end: datetime, dataset: Dataset = Dataset.BARS
) -> pa.Table:
    """Every bar of ``source``/``interval`` opening in ``[start, end)`` (UTC), each natural key once.

    The reader for consumers and tests. Bars come from the bars Delta table (partition and time
    filters prune what is read: :func:`market_ingest.lake.table.read_bars`). For quotes it lists the partition folders once and reads those
    overlapping the range, whatever layout wrote them (``date=`` folders of daily bars from before
    month partitions, several objects per folder from the per-window layout before that), keeps
    the newest extraction of each key, and returns rows sorted by symbol and time.

    :return: a table of the dataset's schema (``BAR_SCHEMA``: UTC times, prices in listing
        currency, volume in units).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.intervals import utc_dates
    from market_ingest.schema import DATASETS

    if dataset == Dataset.BARS and interval:
        from market_ingest.lake.table import read_bars

        return read_bars(root, source, interval, start, end)
    spec = DATASETS[dataset]
    days = utc_dates(start, end)
    wanted = {period: {day[:width] for day in days} for period, width in _PERIOD_WIDTH.items()}
    tables = [
        read_parquet(obj, dataset)
        for period, partition, folder in _partition_folders(root, source, interval)
        if partition in wanted[period]
        for obj in _objects(folder)
    ]
    if not tables:
        return spec.schema.empty_table()
    bars = pa.concat_tables(tables)
    bars = bars.filter(pc.and_(pc.greater_equal(bars["time"], start), pc.less(bars["time"], end)))
    return newest_per_key(bars, spec.key)


def compact(
    root: ObjectStoragePath, source: str, interval: str | None, dataset: Dataset = Dataset.BARS, compression: str = "zstd"
) -> dict[str, int]:
    """Fold what earlier layouts left under ``source``/``interval`` into this layout's partition objects.

    Publishing merges into one object per partition, so a lake written by this version never needs
    compacting. Lakes written before it hold daily and coarser bars in ``date=`` folders, and, from
    the per-window layout before that, several objects per folder. Each such object is merged into
    the partition objects its bars belong to (the same newest-extraction-wins merge as a publish,
    each by a conditional write), and only then deleted: a crash in between leaves a bar in both
    places, which :func:`read_lake` reads once and the next ``compact`` folds. Safe while runs publish.

    :return: ``{"objects_folded": legacy objects merged and deleted, "rows_folded": their rows,
        "partitions_written": partition objects rewritten}``.
    :raises ConcurrentPublishError: a partition kept changing under the merge (run it again).
    """
    import pyarrow as pa

    from market_ingest.schema import DATASETS

    spec = DATASETS[dataset]
    period, current = partition_by(interval), f"{dataset}.parquet"
    folded = rows = 0
    written: set[str] = set()
    for folder_period, _, folder in _partition_folders(root, source, interval):
        legacy = [o for o in _objects(folder) if folder_period != period or o.name != current]
        for obj in legacy:
            table = read_parquet(obj, dataset)
            for partition, part in split_by_partition(table, interval):
                target = partition_object(root, source, interval, partition, dataset)

                def merge(existing: pa.Table | None, part: pa.Table = part) -> pa.Table:
                    # The legacy rows go first: on equal ``ingested_at`` the partition's own row wins.
                    both = [part] if existing is None else [part, existing]
                    return newest_per_key(pa.concat_tables(both).cast(spec.schema), spec.key)

                read_modify_write(target, merge, compression, dataset)
                written.add(str(target))
            obj.unlink()
            folded, rows = folded + 1, rows + table.num_rows
            log.info("compact: folded %s (%d rows) into the %s partitions", obj, table.num_rows, period)
    return {"objects_folded": folded, "rows_folded": rows, "partitions_written": len(written)}


def _partition_folders(
    root: ObjectStoragePath, source: str, interval: str | None
) -> Iterator[tuple[str, str, ObjectStoragePath]]:
    """``(period, partition, folder)`` for every partition folder under the (source, interval)
    prefix, whatever layout wrote it (``date=``, ``month=`` or ``year=``), from one listing."""
    base = _base(root, source, interval)
    if not base.exists():
        return
    for folder in sorted(base.iterdir(), key=str):
        period, _, partition = folder.name.partition("=")
        if period in _PERIOD_WIDTH and len(partition) == _PERIOD_WIDTH[period] and folder.is_dir():
            yield period, partition, folder


def _objects(folder: ObjectStoragePath) -> list[ObjectStoragePath]:
    return [o for o in sorted(folder.iterdir(), key=str) if o.name.endswith(".parquet") and not o.name.startswith(".")]
