"""Reading and writing one lake object: Parquet in memory, whole-object writes, and decoding errors.

A write replaces an object whole (:func:`write_object`: one ``PUT`` on S3, a temporary file renamed
over it locally), so a reader never sees part of one. An object Arrow cannot decode (damaged bytes,
not Parquet) fails at once with :class:`~market_ingest.errors.CorruptObjectError` naming it and,
when staged, its run (:func:`_decoding`). Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from market_ingest.contracts import Dataset
from market_ingest.errors import CorruptObjectError
from market_ingest.lake.layout import _is_local, lake_root

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

#: Rows per Parquet row group at most (staged and partition objects).
ROW_GROUP_ROWS = 128 * 1024


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


def staged_run(url: str) -> str | None:
    """The run token (:func:`~market_ingest.lake.layout.run_token`) of a staged object's or staged
    bars file's URL (``.../run=<token>/...``, ``.../part-<token>-b<batch>-<uuid>.zstd.parquet``);
    ``None`` for another lake object."""
    found = re.search(r"/run=([^/]+)/", url) or re.search(r"/part-(.+)-b\d{5}-[0-9a-f]{32}\.zstd\.parquet$", url)
    return found.group(1) if found else None


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
        run = staged_run(url)
        what = f"staged object {url} of run {run}" if run else f"lake object {url}"
        fix = (
            "clear the run's extract tasks to stage it again"
            if run
            else "restore the object from a version or backup, or delete it and backfill its partition"
        )
        raise CorruptObjectError(
            "lake", f"{what} cannot be read as Parquet ({type(exc).__name__}: {exc}); a retry reads the same bytes: {fix}"
        ) from exc


def _parquet_file(path: str):
    """The Parquet object at ``path`` (a lake URL), read column chunk by column chunk as batches
    are asked for. ``pre_buffer`` off: pyarrow 26's default (on) coalesces and keeps the ranges it
    reads ahead, so streaming a 1,000,000-bar object (39 MB) peaked 36 MB higher than without
    (bench/load.py's child: +97 MB against +61 MB over the interpreter, 100,000 bars +49 / +51)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(lake_root(path).open("rb"), pre_buffer=False)
