"""Where everything lives in the lake, and which partition holds a bar.

Layout under the lake URL (``s3://<conn>@bucket/prefix`` and ``file:///path`` use the same code)::

    bars/_delta_log/, bars/source=<s>/interval=<i>/period=<date|year>/*.parquet   the bars Delta table (lake.table)
    source=<s>/interval=<1m|5m|15m|30m|1h>/date=<YYYY-MM-DD>/bars.parquet      before the table: intraday, a partition per UTC date
    source=<s>/interval=1d/month=<YYYY-MM>/bars.parquet                          daily: a partition per UTC month
    source=<s>/interval=<1wk|1mo>/year=<YYYY>/bars.parquet                       weekly, monthly: per UTC year
    _staging/source=<s>/interval=<i>/run=<run>/batch-<n>.parquet                a run's extract output
    rejects/_delta_log/, rejects/source=<s>/interval=<i>/*.parquet              bars that failed validation (lake.rejects)
    _rejects/source=<s>/interval=<i>/run=<run>/batch-<n>.parquet                before the rejects table: one object per batch
    coverage/_delta_log/, coverage/source=<s>/interval=<i>/*.parquet            the ledger's mirror (lake.mirror)
    _coverage/source=<s>/interval=<i>/run=<run>.parquet                         before the coverage table: one object per run
    _ledger_parked/source=<s>/interval=<i>/run=<run>.json                        parked ledger rows

The bars table's ``period`` column is the bar's period of :data:`TABLE_PARTITION_BY`
(:func:`partition_of` with ``by=TABLE_PARTITION_BY``; :mod:`market_ingest.lake.table`): the UTC
date of an intraday bar, the UTC year of a daily, weekly or monthly one. The ``date=``/``month=``/
``year=`` objects (:data:`PARTITION_BY`) are what versions before it wrote, read by the conversion
(:func:`market_ingest.lake.convert_lake`). Quotes are a table of their own under the quotes root,
``quotes/source=<s>/period=<YYYY-MM-DD>/`` (:mod:`market_ingest.lake.quotes`); before it they were
``source=<s>/date=<d>/quotes.parquet``, no ``interval=`` level, a partition per date. The object periods kept objects scan-sized: a date of 1m bars of 100
symbols is 39,000 rows, a month of daily bars of 280 symbols about 5,900, a year of weekly bars
14,600; by date, 25 years of 280 daily series were about 6,300 objects of 280 rows each. The
table's files carry ``symbol`` and ``time`` statistics that prune inside a partition, so its daily
bars go by year (280 symbols: about 70,000 rows): a 1,000-day backfill of 100 symbols writes 3
files instead of 33 month files, and a one-symbol, one-month read still opens a few. A partition is always
whole UTC dates, so a bar's partition follows from its open time alone (:func:`partition_of` for a
date, :func:`split_by_partition` for a table's rows).

Also the lake's root (:func:`lake_root`) and the check that its bucket or folder exists
(:func:`check_lake`). Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING

from market_ingest.contracts import Dataset
from market_ingest.errors import SinkNotFoundError

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath


STAGING = "_staging"


def lake_root(url: str) -> ObjectStoragePath:
    """The lake root as an ``ObjectStoragePath`` (``s3://conn@bucket/prefix`` or ``file:///...``)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def _is_local(path: ObjectStoragePath) -> bool:
    return path.protocol in ("file", "local", "")


def check_lake(root: ObjectStoragePath) -> None:
    """Fail when the lake's bucket (S3) or root folder (local) does not exist; never create it.

    :raises SinkNotFoundError: naming the bucket or folder, the lake URL and the connection.
    :raises ConfigurationError: for a URL scheme other than ``s3`` or ``file``.
    Other errors (network, access denied) propagate: a retry may heal them.
    """
    from pathlib import Path

    from market_ingest.errors import ConfigurationError

    if _is_local(root):
        if not Path(root.path).is_dir():
            raise SinkNotFoundError(
                "lake", f"lake folder {root.path} does not exist (lake url {root}); create it or fix lake.url"
            )
        return
    if root.protocol not in ("s3", "s3a"):
        raise ConfigurationError("lake", f"lake url {root}: only s3:// and file:// lakes are supported")
    try:
        root.fs.info(root.bucket)
    except FileNotFoundError:
        raise SinkNotFoundError(
            "lake",
            f"bucket {root.bucket!r} does not exist (lake url {root}, connection {root.conn_id or 'default'}); "
            "nothing creates it: create the bucket or fix lake.url in the pipeline config",
        ) from None


def run_token(run_id: str) -> str:
    """A key-safe, unique folder name for a DAG run: ``run_id`` with unsafe characters replaced,
    plus 8 hex characters of its SHA-256 (so two run ids differing only in unsafe characters differ).
    """
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", run_id).strip("_")[:80]
    return f"{safe}-{hashlib.sha256(run_id.encode()).hexdigest()[:8]}"


def _base(root: ObjectStoragePath, source: str, interval: str | None) -> ObjectStoragePath:
    base = root / f"source={source}"
    return base / f"interval={interval}" if interval else base


#: The period of a lake partition per canonical interval (quotes, without an interval: ``date``).
PARTITION_BY = {
    "1m": "date",
    "5m": "date",
    "15m": "date",
    "30m": "date",
    "1h": "date",
    "1d": "month",
    "1wk": "year",
    "1mo": "year",
}
#: The period of the bars Delta table's ``period`` partition per interval
#: (:mod:`market_ingest.lake.table`): the objects' periods, except daily bars by UTC year (see the
#: module docstring: the files' statistics prune inside a year; a month made a backfill write a
#: file per month). Staging groups a batch's row groups by these periods.
TABLE_PARTITION_BY = {**PARTITION_BY, "1d": "year"}
#: Characters of an ISO date (``YYYY-MM-DD``) that name a partition of each period.
_PERIOD_WIDTH = {"date": 10, "month": 7, "year": 4}


def partition_by(interval: str | None, by: dict[str, str] = PARTITION_BY) -> str:
    """The partition period of ``interval``'s bars: ``date``, ``month`` or ``year`` (the folder's key).

    :param by: :data:`PARTITION_BY` (the Parquet objects) or :data:`TABLE_PARTITION_BY` (the bars table).
    :raises KeyError: for an interval that is not canonical.
    """
    return by[interval] if interval else "date"


def partition_of(day: str, interval: str | None, by: dict[str, str] = PARTITION_BY) -> str:
    """The partition holding bars that open on UTC date ``day`` (``YYYY-MM-DD``): ``day`` itself,
    its month ``YYYY-MM`` or its year ``YYYY``, per ``by`` (:func:`partition_by`)."""
    return day[: _PERIOD_WIDTH[partition_by(interval, by)]]


def partition_dir(root: ObjectStoragePath, source: str, interval: str | None, partition: str) -> ObjectStoragePath:
    """Hive-style partition folder: ``source=<s>/interval=<i>/<period>=<partition>``, the period
    being ``date``, ``month`` or ``year`` (:data:`PARTITION_BY`; quotes have no interval level).

    :param partition: ``YYYY-MM-DD``, ``YYYY-MM`` or ``YYYY``, as :func:`partition_of` gives it.
    :raises ValueError: when ``partition`` is not of the interval's period (a date for daily bars).
    """
    period = partition_by(interval)
    if len(partition) != _PERIOD_WIDTH[period]:
        raise ValueError(f"{source} {interval or 'quotes'}: partition {partition!r} is not a {period} (partitioned by {period})")
    return _base(root, source, interval) / f"{period}={partition}"


def partition_object(
    root: ObjectStoragePath, source: str, interval: str | None, partition: str, dataset: Dataset = Dataset.BARS
) -> ObjectStoragePath:
    """The one object of a partition: ``.../<period>=<partition>/<dataset>.parquet``."""
    return partition_dir(root, source, interval, partition) / f"{dataset}.parquet"


def staging_run_dir(root: ObjectStoragePath, source: str, interval: str | None, run_id: str) -> ObjectStoragePath:
    """The staging folder of run ``run_id``: ``_staging/source=<s>/interval=<i>/run=<token>``."""
    return _base(root / STAGING, source, interval) / f"run={run_token(run_id)}"


def staging_path(root: ObjectStoragePath, source: str, interval: str | None, run_id: str, batch: int) -> ObjectStoragePath:
    """Where extract batch ``batch`` of run ``run_id`` stages its bars."""
    return staging_run_dir(root, source, interval, run_id) / f"batch-{batch:05d}.parquet"


def parked_ledger_folder(root: ObjectStoragePath, source: str, interval: str) -> ObjectStoragePath:
    """``_ledger_parked/source=<s>/interval=<i>``: the ledger rows of runs whose bars were not
    loaded, left while the warehouse could not take them (:func:`parked_ledger_object`)."""
    return _base(root / "_ledger_parked", source, interval)


def parked_ledger_object(root: ObjectStoragePath, source: str, interval: str, run_id: str) -> ObjectStoragePath:
    """Where a run whose bars were not loaded leaves its ledger rows when the warehouse could not
    take them either: ``_ledger_parked/source=<s>/interval=<i>/run=<token>.json``
    (:func:`market_ingest.coverage.park`); the next load or repair of the pair writes and deletes it."""
    return parked_ledger_folder(root, source, interval) / f"run={run_token(run_id)}.json"


def coverage_object(root: ObjectStoragePath, source: str, interval: str, run_id: str) -> ObjectStoragePath:
    """Where versions before the coverage table (:mod:`market_ingest.lake.mirror`) mirrored the
    ledger rows run ``run_id`` wrote: ``_coverage/source=<s>/interval=<i>/run=<token>.parquet``,
    one object per run; read by :func:`~market_ingest.lake.mirror.convert_mirror`.
    """
    return _base(root / "_coverage", source, interval) / f"run={run_token(run_id)}.parquet"


def rejects_object(root: ObjectStoragePath, source: str, interval: str, run_id: str, batch: int) -> ObjectStoragePath:
    """Where versions before the rejects table (:mod:`market_ingest.lake.rejects`) wrote extract
    batch ``batch`` of run ``run_id``'s bars that failed validation:
    ``_rejects/source=<s>/interval=<i>/run=<token>/batch-<n>.parquet`` (the bars as sent, with
    ``reason`` and ``run_id``), read by :func:`~market_ingest.lake.rejects.convert_rejects`."""
    return _base(root / "_rejects", source, interval) / f"run={run_token(run_id)}" / f"batch-{batch:05d}.parquet"


def utc_days(table: pa.Table) -> pa.Array:
    """The UTC date (``YYYY-MM-DD``) of each row's ``time``, computed once for the whole table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pc.cast(table["time"], pa.timestamp("us")), pa.date32()).cast(pa.string())


def partition_values(table: pa.Table, interval: str | None, by: dict[str, str] = PARTITION_BY) -> pa.Array:
    """The partition (:func:`partition_of`, per ``by``) of each row of ``table``, from its UTC open time."""
    import pyarrow.compute as pc

    return pc.utf8_slice_codeunits(utc_days(table), 0, _PERIOD_WIDTH[partition_by(interval, by)])


def split_by_partition(
    table: pa.Table, interval: str | None, by: dict[str, str] = PARTITION_BY
) -> Iterator[tuple[str, pa.Table]]:
    """``(partition, its rows)`` for each lake partition ``table`` touches (periods per ``by``,
    :func:`partition_by`), oldest first.

    Linear in the rows: one sort, one pass (no per-partition scan of the whole table).
    """
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return
    keys = partition_values(table, interval, by).combine_chunks()
    if len(keys) > 1 and not pc.all(pc.less_equal(keys[:-1], keys[1:])).as_py():
        order = pc.sort_indices(keys)  # stable
        table, keys = table.take(order), keys.take(order)
    runs = pc.run_end_encode(keys)
    start = 0
    for key, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist()):
        yield key, table.slice(start, end - start)
        start = end
