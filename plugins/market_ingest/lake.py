"""The Parquet lake: staging and publishing bars through Airflow's ``ObjectStoragePath``.

Layout under the lake URL (``s3://<conn>@bucket/prefix`` and ``file:///path`` use the same code)::

    _staging/source=<s>/interval=<i>/window=<token>/batch-00000.parquet   extract output, per batch
    source=<s>/interval=<i>/date=<YYYY-MM-DD>/<token>.parquet              published objects

``<token>`` is derived from the run's data interval (``20210719T000000Z_20210720T000000Z``), so a
rerun, clear or backfill of the same window overwrites the same keys and never adds files. All
symbols of a run share one object per UTC date (no file per symbol per day). Parquet is zstd.
Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

STAGING = "_staging"


def window_token(start: datetime, end: datetime) -> str:
    """Key fragment for the window ``[start, end)``, both UTC: ``YYYYmmddTHHMMSSZ_YYYYmmddTHHMMSSZ``."""
    return f"{start:%Y%m%dT%H%M%SZ}_{end:%Y%m%dT%H%M%SZ}"


def lake_root(url: str) -> ObjectStoragePath:
    """The lake root as an ``ObjectStoragePath`` (``s3://conn@bucket/prefix`` or ``file:///...``)."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(url)


def staging_path(root: ObjectStoragePath, source: str, interval: str, token: str, batch: int) -> ObjectStoragePath:
    """Where extract batch number ``batch`` of a run stages its bars."""
    return root / STAGING / f"source={source}" / f"interval={interval}" / f"window={token}" / f"batch-{batch:05d}.parquet"


def partition_dir(root: ObjectStoragePath, source: str, interval: str | None, day: str) -> ObjectStoragePath:
    """Hive-style partition folder ``source=<s>/interval=<i>/date=<YYYY-MM-DD>`` (no interval for quotes)."""
    base = root / f"source={source}"
    return (base / f"interval={interval}" if interval else base) / f"date={day}"


def write_parquet(table: pa.Table, path: ObjectStoragePath, compression: str = "zstd") -> None:
    """Write ``table`` to ``path`` (overwriting), creating parent folders where the store needs them."""
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as fh:
        pq.write_table(table, fh, compression=compression)


def read_parquet(path: ObjectStoragePath | str, dataset: str = "bars") -> pa.Table:
    """Read one Parquet object (an ``ObjectStoragePath`` or its string form) of ``dataset``."""
    import pyarrow.parquet as pq

    from market_ingest.schema import DATASETS

    path = lake_root(path) if isinstance(path, str) else path
    with path.open("rb") as fh:
        return pq.read_table(fh, schema=DATASETS[dataset].schema)


def publish(
    staged: list[str],
    root: ObjectStoragePath,
    source: str,
    interval: str | None,
    start: datetime,
    end: datetime,
    compression: str = "zstd",
    dataset: str = "bars",
) -> list[dict]:
    """Merge a run's staged batches into one object per UTC date of the window.

    Duplicate natural keys (a symbol in two batches) keep the last staged row. Objects with this
    window's token in partitions of the window that receive no rows this time are deleted, so a
    rerun leaves exactly the objects of its own result.

    :param staged: staging object URLs (as returned by the extract tasks); empty ones allowed.
    :param root: lake root.
    :param source: source name, e.g. ``yahoo``.
    :param interval: canonical interval (``None`` for quotes).
    :param start: window start, UTC.
    :param end: window end (exclusive), UTC.
    :param dataset: ``bars`` or ``quotes`` (:data:`market_ingest.schema.DATASETS`).
    :return: one ``{"path": url, "date": "YYYY-MM-DD", "rows": n, "rows_by_symbol": {symbol: n}}``
        per object written, sorted by date.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.schema import DATASETS

    spec = DATASETS[dataset]
    tables = [read_parquet(p, dataset) for p in staged]
    bars = pa.concat_tables(tables) if tables else spec.schema.empty_table()
    bars = dedupe_last(bars, spec.key)
    token = window_token(start, end)
    days = pc.strftime(bars["time"], format="%Y-%m-%d").to_pylist() if bars.num_rows else []
    written = []
    for day in sorted(set(days)):
        part = bars.filter(pc.equal(pc.strftime(bars["time"], format="%Y-%m-%d"), day))
        part = part.sort_by([("symbol", "ascending"), ("time", "ascending")])
        path = partition_dir(root, source, interval, day) / f"{token}.parquet"
        write_parquet(part, path, compression)
        symbols = pc.value_counts(part["symbol"])
        counts = dict(zip(symbols.field("values").to_pylist(), symbols.field("counts").to_pylist()))
        written.append({"path": str(path), "date": day, "rows": part.num_rows, "rows_by_symbol": counts})
    _remove_stale(root, source, interval, start, end, token, {w["date"] for w in written})
    return written


def dedupe_last(bars: pa.Table, key: tuple[str, ...] = ("source", "symbol", "interval", "time")) -> pa.Table:
    """Keep the last row of each natural ``key`` (bars: ``source, symbol, interval, time``)."""
    import pyarrow as pa

    if bars.num_rows == 0:
        return bars
    keys = list(key)
    indexed = bars.append_column("__row", pa.array(range(bars.num_rows), pa.int64()))
    last = indexed.group_by(keys, use_threads=False).aggregate([("__row", "max")])
    return bars.take(last["__row_max"].combine_chunks().sort())


def _remove_stale(root, source, interval, start, end, token, kept_days: set[str]) -> None:
    day = start.date()
    while day <= (end - timedelta(microseconds=1)).date():
        name = day.isoformat()
        if name not in kept_days:
            stale = partition_dir(root, source, interval, name) / f"{token}.parquet"
            if stale.exists():
                stale.unlink()
        day += timedelta(days=1)
