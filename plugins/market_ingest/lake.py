"""The Parquet lake: staging a run's bars, and merging them into one object per partition.

Layout under the lake URL (``s3://<conn>@bucket/prefix`` and ``file:///path`` use the same code)::

    source=<s>/interval=<1m|5m|15m|30m|1h>/date=<YYYY-MM-DD>/bars.parquet      intraday: a partition per UTC date
    source=<s>/interval=1d/month=<YYYY-MM>/bars.parquet                          daily: a partition per UTC month
    source=<s>/interval=<1wk|1mo>/year=<YYYY>/bars.parquet                       weekly, monthly: per UTC year
    _staging/source=<s>/interval=<i>/run=<run>/batch-<n>.parquet                a run's extract output

Quotes use ``quotes.parquet``, no ``interval=`` level, and a partition per date. The partition
period (:data:`PARTITION_BY`) keeps objects scan-sized: a date of 1m bars of 100 symbols is
39,000 rows, a month of daily bars of 280 symbols about 5,900, a year of weekly bars 14,600; by
date, 25 years of 280 daily series were about 6,300 objects of 280 rows each. A partition is always
whole UTC dates, so a bar's partition follows from its open time alone.

**Publish protocol.** A partition object holds every bar ever published for its (source,
interval, period), each natural key ``(source, symbol, interval, time)`` once. The publish merges
into it, so the lake needs no separate compaction: a run of one symbol for one day rewrites its
partition's one object rather than adding a small one (:func:`compact` folds lakes written by
earlier layouts into this one). A run merges its
staged bars into each partition it touches (read, merge, write): a bar of the run replaces the
stored bar with the same key unless the stored one was extracted later (``ingested_at``: newest
extraction wins, whatever order runs publish in), and every other stored bar is kept. So a run
never drops a bar another run published: a manual run for one symbol, a rerun in which some
symbols failed or were deferred, and overlapping windows all leave the other bars in place, and a
reader sees each bar once without deduplicating.

**Atomicity.** Each partition object is replaced by one conditional write: on S3 a ``PutObject``
with ``If-Match`` on the ETag that was read (``If-None-Match: *`` for a new object; a concurrent
writer makes it fail with 412 and the merge is redone on the fresh object), locally an exclusive
``flock`` and an atomic rename. A reader sees each partition's old object or its new one, never a
partial object, never a lost update. A run that touches several partitions replaces them one after
another: during its publish, a reader may see some partitions already merged and others not yet,
and every bar present before is present throughout (S3 offers no multi-object transaction; a table
format such as Delta Lake or Iceberg would be needed for that).

**Staging** is keyed by the run (``run=<run id, sanitised>-<hash>``), so two runs of the same
window never share staged objects, and is deleted by the run report once every sink succeeded
(:func:`remove_staging`). A staged object is sorted by time with row groups that never
span two partitions, so publishing reads one partition of the run at a time (memory follows the
largest partition, not the run) and the sinks stream it record batch by record batch.

Nothing here creates a bucket: a missing bucket (or local lake folder) fails with
:class:`~market_ingest.errors.SinkNotFoundError` naming it and the connection. An object Arrow
cannot decode (damaged bytes, not Parquet) fails at once with
:class:`~market_ingest.errors.CorruptObjectError` naming it and, when staged, its run.
Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timezone
from typing import TYPE_CHECKING, Any

from market_ingest.contracts import Dataset, StagedObject
from market_ingest.errors import CorruptObjectError, MarketDataError, SinkNotFoundError

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

STAGING = "_staging"
#: Conditional-write attempts per partition before giving up (each conflict means another writer won).
MERGE_ATTEMPTS = 8
#: Rows per Parquet row group at most (staged and partition objects).
ROW_GROUP_ROWS = 128 * 1024


class ConcurrentPublishError(MarketDataError):
    """Another writer kept replacing a partition object; retryable (the task is retried)."""

    retryable = True


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
#: Characters of an ISO date (``YYYY-MM-DD``) that name a partition of each period.
_PERIOD_WIDTH = {"date": 10, "month": 7, "year": 4}


def partition_by(interval: str | None) -> str:
    """The partition period of ``interval``'s bars: ``date``, ``month`` or ``year`` (the folder's key).

    :raises KeyError: for an interval that is not canonical.
    """
    return PARTITION_BY[interval] if interval else "date"


def partition_of(day: str, interval: str | None) -> str:
    """The partition holding bars that open on UTC date ``day`` (``YYYY-MM-DD``): ``day`` itself,
    its month ``YYYY-MM`` or its year ``YYYY``."""
    return day[: _PERIOD_WIDTH[partition_by(interval)]]


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
    """The lake's mirror of the ledger rows run ``run_id`` wrote:
    ``_coverage/source=<s>/interval=<i>/run=<token>.parquet`` (:mod:`market_ingest.coverage`).

    One object per run, replaced when the run's load runs again; a day's current row is the one
    with the latest ``updated_at`` across the objects. The leading underscore keeps it out of a
    dataset read of the bars under the same root (pyarrow and Spark skip ``_`` folders).
    """
    return _base(root / "_coverage", source, interval) / f"run={run_token(run_id)}.parquet"


def rejects_object(root: ObjectStoragePath, source: str, interval: str, run_id: str, batch: int) -> ObjectStoragePath:
    """Where extract batch ``batch`` of run ``run_id`` writes the bars that failed validation:
    ``_rejects/source=<s>/interval=<i>/run=<token>/batch-<n>.parquet`` (the bars as sent, with
    ``reason`` and ``run_id``). Replaced when the batch runs again; outside any dataset read of the bars."""
    return _base(root / "_rejects", source, interval) / f"run={run_token(run_id)}" / f"batch-{batch:05d}.parquet"


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


def staging_path(root: ObjectStoragePath, source: str, interval: str | None, run_id: str, batch: int) -> ObjectStoragePath:
    """Where extract batch ``batch`` of run ``run_id`` stages its bars."""
    return staging_run_dir(root, source, interval, run_id) / f"batch-{batch:05d}.parquet"


def to_parquet_bytes(table: pa.Table, compression: str = "zstd") -> bytes:
    """``table`` as one Parquet file in memory (row groups of at most :data:`ROW_GROUP_ROWS` rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression=compression, row_group_size=ROW_GROUP_ROWS)
    return sink.getvalue().to_pybytes()


def write_object(path: ObjectStoragePath, data: bytes) -> None:
    """Replace the object at ``path`` with ``data``; a reader (or a task killed mid-write) sees the
    old bytes or the new, never part: one ``PUT`` on S3, a temporary file renamed over it locally
    (:func:`_writing`). Creates local parent folders, never a bucket (a missing one raises
    ``FileNotFoundError``)."""
    with _writing(path) as fh:
        fh.write(data)


def write_parquet(table: pa.Table, path: ObjectStoragePath, compression: str = "zstd") -> None:
    """Write ``table`` to ``path``, replacing it. Creates local parent folders (inside the lake
    root), never a bucket: on S3 a missing bucket raises ``FileNotFoundError``."""
    write_object(path, to_parquet_bytes(table, compression))


def read_parquet(path: ObjectStoragePath | str, dataset: Dataset = Dataset.BARS) -> pa.Table:
    """Read one Parquet object (an ``ObjectStoragePath`` or its string form) of ``dataset``.

    :raises CorruptObjectError: the object's bytes are not Parquet of the dataset (:func:`_decoding`).
    """
    import pyarrow.parquet as pq

    from market_ingest.schema import DATASETS

    path = lake_root(path) if isinstance(path, str) else path
    with path.open("rb") as fh, _decoding(str(path)):
        return pq.read_table(fh, schema=DATASETS[dataset].schema)


@contextmanager
def _decoding(url: str) -> Iterator[None]:
    """Raise what Arrow's Parquet decoder raises inside as :class:`CorruptObjectError` naming the
    object ``url`` and, for a staged object, its run (the ``run=`` folder).

    Seen on main: a damaged staged object failed the publish with ``ArrowInvalid: Parquet magic
    bytes not found in footer`` (or ``OSError: Couldn't deserialize thrift`` for a damaged page),
    naming neither, and Airflow retried it on the same bytes. Decoding errors are Arrow's own:
    ``ArrowInvalid`` (footer, magic bytes, schema), or an ``OSError`` raised from inside pyarrow
    (its innermost frame is pyarrow's ``error.pxi``). An ``OSError`` of reading the bytes (S3, the
    network, the disk) comes from the file object's own code and propagates unchanged: retryable.
    """
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowInvalid, OSError) as exc:
        tb = exc.__traceback__
        while tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
        if not isinstance(exc, pa.ArrowInvalid) and (tb is None or "pyarrow" not in tb.tb_frame.f_code.co_filename):
            raise
        run = re.search(r"/run=([^/]+)/", url)
        what = f"staged object {url} of run {run.group(1)}" if run else f"lake object {url}"
        fix = (
            "clear the run's extract tasks to stage it again"
            if run
            else "restore the object from a version or backup, or delete it and backfill its partition"
        )
        raise CorruptObjectError(
            "lake", f"{what} cannot be read as Parquet ({type(exc).__name__}: {exc}); a retry reads the same bytes: {fix}"
        ) from exc


def utc_days(table: pa.Table) -> pa.Array:
    """The UTC date (``YYYY-MM-DD``) of each row's ``time``, computed once for the whole table."""
    import pyarrow as pa
    import pyarrow.compute as pc

    return pc.cast(pc.cast(table["time"], pa.timestamp("us")), pa.date32()).cast(pa.string())


def partition_values(table: pa.Table, interval: str | None) -> pa.Array:
    """The partition (:func:`partition_of`) of each row of ``table``, from its UTC open time."""
    import pyarrow.compute as pc

    return pc.utf8_slice_codeunits(utc_days(table), 0, _PERIOD_WIDTH[partition_by(interval)])


def split_by_partition(table: pa.Table, interval: str | None) -> Iterator[tuple[str, pa.Table]]:
    """``(partition, its rows)`` for each lake partition ``table`` touches, oldest first.

    Linear in the rows: one sort, one pass (no per-partition scan of the whole table).
    """
    import pyarrow.compute as pc

    if table.num_rows == 0:
        return
    keys = partition_values(table, interval).combine_chunks()
    if len(keys) > 1 and not pc.all(pc.less_equal(keys[:-1], keys[1:])).as_py():
        order = pc.sort_indices(keys)  # stable
        table, keys = table.take(order), keys.take(order)
    runs = pc.run_end_encode(keys)
    start = 0
    for key, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist()):
        yield key, table.slice(start, end - start)
        start = end


def stage(
    table: pa.Table,
    root: ObjectStoragePath,
    source: str,
    interval: str | None,
    run_id: str,
    batch: int,
    compression: str = "zstd",
) -> list[StagedObject]:
    """Stage an extract batch's rows as one object under the run's staging folder.

    The object is sorted by time and holds one or more row groups per lake partition and none
    spanning two, so publishing reads one partition of it at a time. It is written as it is encoded
    (no second copy of the file in memory), and replaced only once complete.

    :param table: canonical rows (bars or quotes) of one extract batch.
    :param run_id: the DAG run's id (keys the staging folder).
    :param batch: the batch number (names the object; a retry of the batch overwrites it).
    :return: ``[]`` for no rows, else ``[{"path": url, "rows": n, "partitions": {partition: [row group, ...]}}]``,
        partitions as :func:`partition_of` names them.
    :raises SerializationError: a required column is null in some row (named with its source,
        symbol and time: :func:`market_ingest.schema.require_values`); nothing is written.
    """
    import pyarrow.parquet as pq

    from market_ingest.schema import DATASETS, require_values

    if table.num_rows == 0:
        return []
    require_values(table, DATASETS[Dataset.BARS if interval else Dataset.QUOTES].schema)  # what publish_lake reads them as
    path = staging_path(root, source, interval, run_id, batch)
    collected: list = []
    with (
        _writing(path) as fh,
        pq.ParquetWriter(fh, table.schema, compression=compression, metadata_collector=collected) as writer,
    ):
        for _, part in split_by_partition(table, interval):
            writer.write_table(part.sort_by([("time", "ascending"), ("symbol", "ascending")]), row_group_size=ROW_GROUP_ROWS)
    (meta,) = collected
    time_col = table.schema.get_field_index("time")
    partitions: dict[str, list[int]] = {}
    for rg in range(meta.num_row_groups):
        first = meta.row_group(rg).column(time_col).statistics.min
        partitions.setdefault(partition_of(first.astimezone(timezone.utc).date().isoformat(), interval), []).append(rg)
    return [{"path": str(path), "rows": table.num_rows, "partitions": partitions}]


@contextmanager
def _writing(path: ObjectStoragePath) -> Iterator[Any]:
    """A binary file handle whose content replaces ``path`` only when the block ends without error.

    Local: a temporary file beside the target, renamed over it. S3: s3fs's buffered upload (one
    ``PutObject``, or a multipart upload for large objects), aborted on error. Never creates a
    bucket: a missing one raises ``FileNotFoundError``.
    """
    if _is_local(path):
        import os
        import tempfile
        from pathlib import Path

        target = Path(path.path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                yield fh
            os.replace(tmp, target)
        except BaseException:
            os.unlink(tmp) if os.path.exists(tmp) else None
            raise
        return
    fh = path.fs.open(path.path, "wb")
    try:
        yield fh
    except BaseException:
        fh.discard()
        raise
    fh.close()


def newest_per_key(table: pa.Table, key: tuple[str, ...]) -> pa.Table:
    """One row per ``key``: the one with the latest ``ingested_at``; on a tie, the row that comes last.

    :param table: rows in precedence order (later rows win ties), e.g. stored rows then a run's rows.
    :return: the surviving rows, sorted by ``symbol`` then ``time``.
    """
    import pyarrow as pa

    if table.num_rows == 0:
        return table
    indexed = table.append_column("__pos", pa.array(range(table.num_rows), pa.int64()))
    ranked = indexed.sort_by([("ingested_at", "ascending"), ("__pos", "ascending")])
    ranked = ranked.append_column("__rank", pa.array(range(ranked.num_rows), pa.int64()))
    winners = ranked.group_by(list(key), use_threads=False).aggregate([("__rank", "max")])
    kept = ranked.take(winners["__rank_max"]).drop_columns(["__pos", "__rank"])
    return kept.sort_by([("symbol", "ascending"), ("time", "ascending")])


def publish(
    staged: list[dict[str, Any]],
    root: ObjectStoragePath,
    source: str,
    interval: str | None,
    compression: str = "zstd",
    dataset: Dataset = Dataset.BARS,
    max_workers: int = 8,
) -> list[dict[str, Any]]:
    """Merge a run's staged objects into the lake, one partition at a time (see the module docstring).

    Each partition's rows are read from the staged objects' row groups of that partition (so
    memory follows the largest partition of the run, plus the merges in flight), and up to
    ``max_workers`` partitions are merged concurrently (each is an independent conditional write).

    :param staged: the extract batches' staged objects (``{"path", "partitions": {partition: [row groups]}}``).
    :param root: lake root.
    :param source: source name, e.g. ``yahoo``.
    :param interval: canonical interval (``None`` for quotes).
    :param dataset: ``bars`` or ``quotes`` (:data:`market_ingest.schema.DATASETS`).
    :return: one ``{"path": url, "partition": "YYYY-MM-DD" | "YYYY-MM" | "YYYY", "rows": rows now in the object, "run_rows": rows
        this run merged, "kept_newer": run rows not applied because the stored bar was extracted later,
        "rows_by_symbol": {symbol: run rows}}`` per partition, oldest first.
    :raises SinkNotFoundError: the bucket (or local lake folder) does not exist.
    :raises ConcurrentPublishError: another writer replaced a partition on every attempt.
    :raises CorruptObjectError: a staged or partition object is not Parquet, naming it (and the run).
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    import pyarrow as pa

    from market_ingest.schema import DATASETS

    spec = DATASETS[dataset]
    check_lake(root)
    by_partition: dict[str, list[tuple[str, list[int]]]] = {}
    for s in staged:
        # "dates": staged by a version before month and year partitions (a publish retried across an upgrade).
        for key, groups in (s.get("partitions") or s.get("dates") or {}).items():
            by_partition.setdefault(partition_of(key, interval), []).append((s["path"], groups))
    files: dict[str, Any] = {}

    def rows_of(partition: str) -> pa.Table:
        parts = []
        for path, groups in sorted(by_partition[partition]):
            with _decoding(path):
                if path not in files:
                    files[path] = _parquet_file(path)
                parts.append(files[path].read_row_groups(groups))
        rows = pa.concat_tables(parts).cast(spec.schema)
        # One staged object holds each key once (clean_bars); several may share keys only by accident.
        return (
            newest_per_key(rows, spec.key) if len(parts) > 1 else rows.sort_by([("symbol", "ascending"), ("time", "ascending")])
        )

    results: dict[str, dict[str, Any]] = {}
    with ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="lake-merge") as pool:
        pending = set()
        for partition in sorted(by_partition):
            pending.add(
                pool.submit(_merge_partition, root, source, interval, partition, rows_of(partition), compression, dataset)
            )
            if len(pending) >= 2 * max_workers:  # bound the partitions held in memory
                done, pending = wait(pending, return_when=FIRST_COMPLETED)
                results.update(f.result() for f in done)
        results.update(f.result() for f in pending)
    return [results[p] for p in sorted(results)]


def _parquet_file(path: str):
    """The Parquet object at ``path`` (a lake URL), read column chunk by column chunk as batches
    are asked for. ``pre_buffer`` off: pyarrow 26's default (on) coalesces and keeps the ranges it
    reads ahead, so streaming a 1,000,000-bar object (39 MB) peaked 36 MB higher than without
    (bench/load.py's child: +97 MB against +61 MB over the interpreter, 100,000 bars +49 / +51)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(lake_root(path).open("rb"), pre_buffer=False)


def _merge_partition(root, source, interval, partition, incoming, compression, dataset) -> tuple[str, dict[str, Any]]:
    """Merge one partition's run rows into its object; ``(partition, publish entry)``."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.schema import DATASETS

    spec = DATASETS[dataset]
    path = partition_object(root, source, interval, partition, dataset)
    stats: dict[str, int] = {}

    def merge(existing: pa.Table | None) -> pa.Table:
        if existing is None or existing.num_rows == 0:
            stats["kept_newer"] = 0
            return incoming
        merged = newest_per_key(pa.concat_tables([existing, incoming]), spec.key)
        applied = merged.join(incoming.select([*spec.key, "ingested_at"]), keys=[*spec.key, "ingested_at"], join_type="inner")
        stats["kept_newer"] = incoming.num_rows - applied.num_rows
        return merged

    merged = read_modify_write(path, merge, compression, dataset)
    symbols = pc.value_counts(incoming["symbol"])
    counts = dict(zip(symbols.field("values").to_pylist(), symbols.field("counts").to_pylist()))
    return partition, {
        "path": str(path),
        "partition": partition,
        "rows": merged.num_rows,
        "run_rows": incoming.num_rows,
        "kept_newer": stats["kept_newer"],
        "rows_by_symbol": counts,
    }


def read_modify_write(
    path: ObjectStoragePath,
    update: Callable[[pa.Table | None], pa.Table],
    compression: str = "zstd",
    dataset: Dataset = Dataset.BARS,
    attempts: int = MERGE_ATTEMPTS,
) -> pa.Table:
    """Replace the object at ``path`` with ``update(current table or None)``, safely under concurrency.

    S3: the object is read with its ETag and written back with ``If-Match`` (``If-None-Match: *``
    when it did not exist); on 412 another writer won, and the read and ``update`` run again (up to
    ``attempts`` times, with jittered backoff); an object replaced between reading its ETag and
    its body (s3fs's ``FileExpired``) is read again the same way. Local: under an exclusive ``flock`` of a lock file
    beside the object, written to a temporary file and renamed over it.

    :return: the table written.
    :raises ConcurrentPublishError: still conflicting after ``attempts``.
    :raises SinkNotFoundError: the bucket does not exist.
    """
    if _is_local(path):
        with _local_lock(path):
            current = read_parquet(path, dataset) if path.exists() else None
            table = update(current)
            write_object(path, to_parquet_bytes(table, compression))
            return table
    import random
    import time

    from s3fs.utils import FileExpired

    for attempt in range(1, attempts + 1):
        try:
            path.fs.invalidate_cache(path.path)  # a listing's cached ETag may be stale
            etag = path.fs.info(path.path)["ETag"]
            current = read_parquet(path, dataset)
        except FileNotFoundError:
            etag, current = None, None
        except OSError as exc:
            # Replaced between the ETag's read and the body's (s3fs reads with If-Match on it: FileExpired,
            # or 412 on a ranged GET): another writer won. Seen in a backfill once daily bars shared a month.
            if not (isinstance(exc, FileExpired) or _precondition_failed(exc)):
                raise
            log.warning("%s changed while it was read (attempt %d of %d); reading it again", path, attempt, attempts)
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))
            continue
        table = update(current)
        data = to_parquet_bytes(table, compression)
        try:
            if etag:
                path.fs.pipe_file(path.path, data, IfMatch=etag)
            else:
                path.fs.pipe_file(path.path, data, mode="create")
            return table
        except FileNotFoundError:
            raise SinkNotFoundError(
                "lake", f"bucket {path.bucket!r} does not exist (connection {path.conn_id or 'default'})"
            ) from None
        except OSError as exc:
            if not _precondition_failed(exc):
                raise
            log.warning("%s changed while merging (attempt %d of %d); merging again", path, attempt, attempts)
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))
    raise ConcurrentPublishError("lake", f"{path} kept changing under {attempts} merge attempts")


def _precondition_failed(exc: OSError) -> bool:
    """True for S3's 412 PreconditionFailed as s3fs raises it (FileExistsError or OSError EINVAL)."""
    if isinstance(exc, FileExistsError):
        return True
    cause = getattr(exc, "__cause__", None)
    code = (getattr(cause, "response", None) or {}).get("Error", {}).get("Code")
    return code == "PreconditionFailed" or "pre-condition" in str(exc)


@contextmanager
def _local_lock(path: ObjectStoragePath) -> Iterator[None]:
    import fcntl
    from pathlib import Path

    target = Path(path.path)
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(f".{target.name}.lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def iter_staged(paths: list[str], dataset: Dataset = Dataset.BARS, max_rows: int = 65_536) -> Iterator[pa.RecordBatch]:
    """Record batches of a run's staged objects, in the given order, streamed (at most ``max_rows``
    rows decoded at a time).

    :param paths: staged object URLs (from the publish result's ``staged``).
    :raises CorruptObjectError: a staged object is not Parquet of the dataset, naming it and its run.
    """
    from market_ingest.schema import DATASETS

    schema = DATASETS[dataset].schema
    for p in paths:
        with _decoding(p):
            for batch in _parquet_file(p).iter_batches(batch_size=max_rows):
                yield batch.cast(schema)


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


def read_lake(
    root: ObjectStoragePath, source: str, interval: str | None, start: datetime, end: datetime, dataset: Dataset = Dataset.BARS
) -> pa.Table:
    """Every bar of ``source``/``interval`` opening in ``[start, end)`` (UTC), each natural key once.

    The reader for consumers and tests. It lists the partition folders once and reads those
    overlapping the range, whatever layout wrote them (``date=`` folders of daily bars from before
    month partitions, several objects per folder from the per-window layout before that), keeps
    the newest extraction of each key, and returns rows sorted by symbol and time. On a lake
    written only by this version, a plain glob (DuckDB, Spark, pyarrow datasets) reads each bar once
    too; the README shows the DuckDB query.

    :return: a table of the dataset's schema (``BAR_SCHEMA``: UTC times, prices in listing
        currency, volume in units).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.intervals import utc_dates
    from market_ingest.schema import DATASETS

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
