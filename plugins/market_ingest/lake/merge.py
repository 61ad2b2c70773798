"""Publishing a run's staged rows: bars into the Delta table, quotes into one object per partition.

**Bars** go to the bars Delta table in one commit (:func:`publish` hands them to
:func:`market_ingest.lake.table.publish_bars`: a merge on the natural key, newest extraction
wins, atomic across partitions, retried on a conflicting concurrent commit; see that module).

**Quotes** (and, before the table, bars) use the object protocol below. A partition object holds
every row ever published for its (source, period), each natural key once. A run merges its
staged rows into each partition it touches (read, merge, write): a row of the run replaces the
stored row with the same key unless the stored one was extracted later (``ingested_at``: newest
extraction wins, whatever order runs publish in: :func:`newest_per_key`), and every other stored
row is kept.

**Atomicity (objects).** Each partition object is replaced by one conditional write
(:func:`read_modify_write`): on S3 a ``PutObject`` with ``If-Match`` on the ETag that was read
(``If-None-Match: *`` for a new object; a concurrent writer makes it fail with 412 and the merge
is redone on the fresh object), locally an exclusive ``flock`` and an atomic rename. A reader sees
each partition's old object or its new one, never a partial object, never a lost update; a run
touching several partitions replaces them one after another (what the bars table's single
commit removes). :func:`read_modify_write` also serves the re-basing of the Parquet bar objects
earlier versions wrote (:func:`market_ingest.lake.rebase_lake`).

Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from market_ingest.contracts import Dataset
from market_ingest.errors import MarketDataError, SinkNotFoundError
from market_ingest.lake.layout import _is_local, check_lake, partition_object, partition_of
from market_ingest.lake.objects import _decoding, _parquet_file, read_parquet, to_parquet_bytes, write_object

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

#: Conditional-write attempts per partition before giving up (each conflict means another writer won).
MERGE_ATTEMPTS = 8


class ConcurrentPublishError(MarketDataError):
    """Another writer kept replacing a partition object; retryable (the task is retried)."""

    retryable = True


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
    """Merge a run's staged objects into the lake (see the module docstring): bars into the bars
    Delta table in one commit (:func:`market_ingest.lake.table.publish_bars`, whose entries also
    carry the table ``version`` committed, and whose ``path`` is the partition's folder); quotes
    into their partition objects, one partition at a time.

    For quotes, each partition's rows are read from the staged objects' row groups of that partition (so
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
    :raises ConcurrentPublishError: another writer replaced a quote partition on every attempt.
    :raises DeltaCommitError: bars: conflicting commits on every attempt (retryable).
    :raises CorruptObjectError: a staged or partition object is not Parquet, naming it (and the run).
    """
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    import pyarrow as pa

    from market_ingest.schema import DATASETS

    if dataset == Dataset.BARS and interval:
        from market_ingest.lake.table import publish_bars

        return publish_bars(staged, root, source, interval)
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
