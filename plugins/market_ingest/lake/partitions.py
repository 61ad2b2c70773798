"""Reading a time range of the lake (:func:`read_lake`), and listing the Parquet partitions earlier versions wrote.

Bars and quotes are read from their Delta tables. The Parquet partitions hold the bars and
quotes of versions before the tables until :func:`market_ingest.lake.convert_lake` and
:func:`market_ingest.lake.convert_quotes` copy them in; :func:`_partition_folders` lists them
once, whatever layout wrote them (``date=`` folders of daily bars from before month partitions,
several objects per folder from the per-window layout before that). Imports pyarrow inside
functions: callable from tasks only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from market_ingest.contracts import Dataset
from market_ingest.lake.layout import _PERIOD_WIDTH, _base

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)


def read_lake(
    root: ObjectStoragePath, source: str, interval: str | None, start: datetime, end: datetime, dataset: Dataset = Dataset.BARS
) -> pa.Table:
    """Every row of ``source``/``interval`` opening (quotes: stamped) in ``[start, end)`` (UTC), each natural key once.

    The reader for consumers and tests: bars from the bars table
    (:func:`market_ingest.lake.table.read_bars`), quotes from the quotes table
    (:func:`market_ingest.lake.quotes.read_quotes`); partition and time filters prune what is
    read. Sorted by symbol and time.

    :return: a table of the dataset's schema (``BAR_SCHEMA``: UTC times, prices in listing
        currency, volume in units; ``QUOTE_SCHEMA`` for quotes).
    """
    if dataset == Dataset.BARS and interval:
        from market_ingest.lake.table import read_bars

        return read_bars(root, source, interval, start, end)
    from market_ingest.lake.quotes import read_quotes

    return read_quotes(root, source, start, end)


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
