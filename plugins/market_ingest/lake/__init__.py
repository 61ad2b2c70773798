"""The lake: the bars as a Delta Lake table, staging a run's bars, and Parquet objects for the rest.

A package of one module per job; every public name is importable from here
(``from market_ingest.lake import publish``), as callers do:

* :mod:`~market_ingest.lake.table`: the bars Delta table (``<root>/bars/``): a run merged in one
  commit (newest extraction wins), reads (:func:`read_lake`, :func:`read_table`, time travel),
  the conversion of the Parquet layout (:func:`convert_lake`) and maintenance (:func:`maintain`);
* :mod:`~market_ingest.lake.rejects`: the rejects table (``<root>/rejects/``): each extract
  batch's bars that failed validation, with their reasons (:func:`write_rejects`, :func:`read_rejects`);
* :mod:`~market_ingest.lake.mirror`: the coverage ledger's mirror (``<root>/coverage/``), each
  day once, merged after each load (:func:`mirror_ledger`, :func:`read_mirror`);
* :mod:`~market_ingest.lake.layout`: the root, the folders and objects (the Parquet partitions
  of earlier versions, staging, rejects, the ledger's mirror and parked rows),
  which partition (period) holds a bar;
* :mod:`~market_ingest.lake.objects`: reading and writing one object (whole-object writes,
  decoding errors);
* :mod:`~market_ingest.lake.staging`: a run's staged batches (:func:`stage`, :func:`iter_staged`,
  :func:`remove_staging`);
* :mod:`~market_ingest.lake.quotes`: the quotes table (``<quotes root>/quotes/``): a run's quotes
  merged in one commit, read (:func:`read_quotes`), converted from the objects before it
  (:func:`convert_quotes`);
* :mod:`~market_ingest.lake.merge`: the publish (:func:`publish`: bars or quotes to their table)
  and the conditional read-merge-write of one object (:func:`read_modify_write`);
* :mod:`~market_ingest.lake.partitions`: reading (:func:`read_lake`) and listing the Parquet
  partitions earlier versions wrote;
* :mod:`~market_ingest.lake.actions`: each symbol's corporate actions, refreshed once a day;
* :mod:`~market_ingest.lake.adjusted`: price bases: a series adjusted on read (:func:`read_adjusted`)
  and re-basing rows stored before bar schema 2 in the Parquet objects (:func:`rebase_lake`).

Staging and ``_corporate_actions`` are Parquet objects.
Nothing here creates a bucket: a missing bucket (or local lake folder) fails with
:class:`~market_ingest.errors.SinkNotFoundError` naming it and the connection. An object Arrow
cannot decode (damaged bytes, not Parquet) fails at once with
:class:`~market_ingest.errors.CorruptObjectError` naming it and, when staged, its run.
Imports pyarrow and deltalake inside functions: callable from tasks only.
"""

from __future__ import annotations

from market_ingest.lake.adjusted import read_adjusted, rebase_lake
from market_ingest.lake.layout import (
    PARTITION_BY,
    STAGING,
    TABLE_PARTITION_BY,
    check_lake,
    coverage_object,
    lake_root,
    parked_ledger_folder,
    parked_ledger_object,
    partition_by,
    partition_dir,
    partition_object,
    partition_of,
    partition_values,
    rejects_object,
    run_token,
    split_by_partition,
    staging_path,
    staging_run_dir,
    utc_days,
)
from market_ingest.lake.merge import MERGE_ATTEMPTS, ConcurrentPublishError, newest_per_key, publish, read_modify_write
from market_ingest.lake.mirror import convert_mirror, mirror_ledger, read_mirror
from market_ingest.lake.objects import ROW_GROUP_ROWS, read_parquet, to_parquet_bytes, write_object, write_parquet
from market_ingest.lake.partitions import read_lake
from market_ingest.lake.quotes import convert_quotes, publish_quotes, read_quotes
from market_ingest.lake.rejects import convert_rejects, read_rejects, write_rejects
from market_ingest.lake.staging import iter_staged, remove_staging, stage
from market_ingest.lake.table import (
    TABLES,
    VACUUM_RETENTION_HOURS,
    ConversionError,
    DeltaCommitError,
    convert_lake,
    maintain,
    maintain_all,
    open_table,
    read_table,
    repartition_bars,
    storage_options,
    table_uri,
)

__all__ = [
    "MERGE_ATTEMPTS",
    "PARTITION_BY",
    "ROW_GROUP_ROWS",
    "STAGING",
    "TABLE_PARTITION_BY",
    "TABLES",
    "ConcurrentPublishError",
    "ConversionError",
    "DeltaCommitError",
    "VACUUM_RETENTION_HOURS",
    "check_lake",
    "convert_lake",
    "convert_mirror",
    "convert_quotes",
    "convert_rejects",
    "coverage_object",
    "iter_staged",
    "lake_root",
    "maintain",
    "maintain_all",
    "mirror_ledger",
    "open_table",
    "newest_per_key",
    "parked_ledger_folder",
    "parked_ledger_object",
    "partition_by",
    "partition_dir",
    "partition_object",
    "partition_of",
    "partition_values",
    "publish",
    "publish_quotes",
    "read_adjusted",
    "read_lake",
    "read_mirror",
    "read_modify_write",
    "read_parquet",
    "read_quotes",
    "read_rejects",
    "repartition_bars",
    "read_table",
    "rebase_lake",
    "rejects_object",
    "remove_staging",
    "run_token",
    "split_by_partition",
    "stage",
    "storage_options",
    "table_uri",
    "staging_path",
    "staging_run_dir",
    "to_parquet_bytes",
    "utc_days",
    "write_object",
    "write_parquet",
    "write_rejects",
]
