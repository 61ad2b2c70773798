"""Publishing a run's staged rows into the lake's Delta tables, and the conditional rewrite of one object.

**Publish.** Bars go to the bars table (:func:`market_ingest.lake.table.publish_bars`: their staged
data files committed as they are when they overlap nothing stored, else merged), quotes to the
quotes table (:func:`market_ingest.lake.quotes.publish_quotes`), each in one commit: a merge on
the natural key, newest extraction wins (:func:`newest_per_key` among a run's own staged
objects), atomic across partitions, retried on a conflicting concurrent commit.

**Objects.** :func:`read_modify_write` replaces one Parquet object by a conditional write: on S3
a ``PutObject`` with ``If-Match`` on the ETag that was read (``If-None-Match: *`` for a new
object; a concurrent writer makes it fail with 412 and the update is redone on the fresh
object), locally an exclusive ``flock`` and an atomic rename. It serves the re-basing of the
Parquet bar objects earlier versions wrote (:func:`market_ingest.lake.rebase_lake`), before
:func:`market_ingest.lake.convert_lake` copies them into the table.

Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from market_ingest.contracts import Dataset
from market_ingest.errors import MarketDataError, SinkNotFoundError
from market_ingest.lake.layout import _is_local
from market_ingest.lake.objects import read_parquet, to_parquet_bytes, write_object

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
) -> list[dict[str, Any]]:
    """Merge a run's staged objects into the lake's table of ``dataset``, in one commit: bars into
    the bars table (:func:`market_ingest.lake.table.publish_bars`), quotes into the quotes table
    (:func:`market_ingest.lake.quotes.publish_quotes`).

    :param staged: the extract batches' staged objects (``{"path", "partitions": {partition: [row groups]}}``).
    :param root: lake root.
    :param source: source name, e.g. ``yahoo``.
    :param interval: canonical interval (``None`` for quotes).
    :param compression: unused (the tables' files are zstd); kept for callers.
    :param dataset: ``bars`` or ``quotes`` (:data:`market_ingest.schema.DATASETS`).
    :return: one ``{"path": the partition's folder URL, "partition": "YYYY-MM-DD" | "YYYY-MM" | "YYYY",
        "rows": rows now in the partition, "run_rows": rows this run merged, "kept_newer": run rows
        not applied because the stored row was extracted later, "rows_by_symbol": {symbol: run rows},
        "version": the table version committed}`` per partition, oldest first.
    :raises SinkNotFoundError: the bucket (or local lake folder) does not exist.
    :raises DeltaCommitError: conflicting commits on every attempt (retryable).
    :raises CorruptObjectError: a staged object is not Parquet, naming it and its run.
    """
    if dataset == Dataset.BARS and interval:
        from market_ingest.lake.table import publish_bars

        return publish_bars(staged, root, source, interval)
    from market_ingest.lake.quotes import publish_quotes

    return publish_quotes(staged, root, source)


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
