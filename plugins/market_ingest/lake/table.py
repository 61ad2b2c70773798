"""The bars as one Delta Lake table: merging a run in one commit, reading, converting, maintaining.

**Where.** ``<lake root>/bars/`` holds the table (``_delta_log/`` and the data files), written and
read with the ``deltalake`` package (delta-rs): no catalog service, the log in the bucket is the
table. The other datasets are tables beside it (:data:`TABLES`: ``rejects/``,
:mod:`~market_ingest.lake.rejects`; ``coverage/``, the ledger's mirror, :mod:`~market_ingest.lake.mirror`;
``quotes/`` under the quotes root, :mod:`~market_ingest.lake.quotes`), opened, created,
committed and maintained by the same functions here (:func:`table_spec`, :func:`open_table`,
:func:`merge_rows`, :func:`maintain_all`). Staging and corporate actions stay Parquet objects
beside them (``_staging/``, ``_corporate_actions/``).

**Partitions.** ``source``, ``interval`` and ``period``: the UTC date of an intraday bar, the UTC
year (``YYYY``) of a daily, weekly or monthly one
(:data:`~market_ingest.lake.layout.TABLE_PARTITION_BY`; the objects before kept daily bars by
month). A one-symbol, one-month read of daily bars prunes to one year partition (280 symbols:
about 70,000 rows, a few files after compaction), a day of 1m bars of 5,000 series to one date;
inside it, the files' ``symbol`` and ``time`` statistics skip the rest. By month, a 1,000-day
backfill wrote 33 files of 3,000 rows and cost 8x one Parquet write of its rows; by year, 3. ``period`` is a column of the
table (a string), not of the bar schema: :func:`read_lake` drops it.

**Staging.** An extract batch writes its bars once, as data files of this table, one per
``period``, not yet committed (:func:`stage_bars`; a new name per attempt). No reader sees them
until a publish commits them; the warehouse and Kinesis tasks read them from the run's result.

**Publish.** A run whose staged files overlap nothing stored (by the log's file statistics: no
file read) and each other is published by committing those files as they are, in ONE commit
(``create_write_transaction``): nothing is read or encoded again, so a backfill costs its
extract's write and a commit. Otherwise its staged bars are read and merged on the natural key
``(source, symbol, interval, time)`` in ONE commit (:func:`publish_bars`, ``DeltaTable.merge``): a stored bar is replaced
only when the run's was extracted later (``ingested_at``), every other stored bar is kept, and
keys the table lacks are inserted. The commit spans every partition the run touches, so a reader
sees the whole run or none of it. The merge predicate carries the run's partitions and its time
span as literals, so the files whose statistics lie outside the span are never read. Every
writer of a (source, interval)'s bars commits with that pair's Delta application transaction
(:func:`pair_commit`): two that race conflict, so two runs appending the same new bars at once
store them once (the loser finds the winner's files and merges), where two blind appends would
both land. Staged files a run merged instead of appending stay uncommitted: the maintenance
vacuum removes them after the retention.

**Concurrency.** Each commit is a new ``_delta_log/<version>.json`` created only if absent: on S3
a ``PutObject`` with ``If-None-Match: *`` (delta-rs 1.x's default for S3; no DynamoDB lock),
locally an atomic create. Two writers of the same (source, interval) at once (a backfill beside
the scheduled run, a clear beside a retry): one commits; the other's commit carries the same
application transaction (:func:`pair_commit`), so it raises ``CommitFailedError`` whatever
periods each touched, and is redone on the new version (up to
:data:`~market_ingest.lake.merge.MERGE_ATTEMPTS` times): an append then finds the winner's files
and merges. Writers of different pairs are rebased by delta-rs when their files do not touch what
the other read. Both runs' bars land. (One application id per pair, not per period: ids are kept
in every checkpoint, and one per day of 1m bars would grow the log without end.)

**Maintenance.** Every merge adds files; :func:`maintain` (``market_setup``'s ``compact_lake``,
over every table: :func:`maintain_all`) compacts small files (``optimize.compact``) and vacuums files no version younger than
:data:`VACUUM_RETENTION_HOURS` references, and older staged files no version ever referenced. **Time travel**: ``DeltaTable(uri, version=n)`` or
``dt.load_as_version(datetime)`` reads the table as it was (within the retention); docs/operations.md, "The lake".

**Credentials.** The S3 connection of the lake URL (``s3://<conn>@bucket/prefix``) gives
delta-rs its credentials, region and endpoint (:func:`storage_options`); they are never logged.
Credentials that expire (a role, the environment's chain) are left to delta-rs to resolve and
renew (:func:`credential_options`), never copied once into a long task.
Imports pyarrow and deltalake inside functions: callable from tasks only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from market_ingest.contracts import Dataset, StagedObject
from market_ingest.errors import CorruptObjectError, MarketDataError, PermanentError

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath
    from deltalake import DeltaTable

log = logging.getLogger(__name__)

#: The table's partition columns, outermost first.
PARTITION_COLUMNS = ("source", "interval", "period")
#: Hours a file no longer in the table is kept before :func:`maintain` deletes it: a week, so
#: time travel reaches a week back and a reader that opened a version up to a week ago finishes.
VACUUM_RETENTION_HOURS = 7 * 24
#: Table properties set at creation: a checkpoint every 10 commits, so opening the table replays
#: at most 10 log entries after the last checkpoint (delta-rs's default is 100; on S3 each is a GET).
TABLE_PROPERTIES = {"delta.checkpointInterval": "10"}
#: At most this many staged data files are committed as they are by one publish (one HEAD each,
#: one add action each); a run that staged more is merged (:func:`publish_bars`).
MAX_APPENDED_FILES = 1_000
#: At most this many periods staged as one data file each by an extract batch; a batch spanning
#: more (a year of 1m bars: 365 dates) is staged as one object, merged at the publish
#: (:func:`~market_ingest.lake.staging.stage`): files per batch, XCom and the log stay small.
MAX_STAGED_PERIODS = 16
#: Files smaller than this are compacted together (bytes; delta-rs's target file size).
TARGET_FILE_SIZE = 128 * 1024 * 1024


class DeltaCommitError(MarketDataError):
    """Other writers kept committing conflicting changes to a lake table (bars or another of
    :data:`TABLES`); retryable."""

    retryable = True


class ConversionError(PermanentError):
    """The Delta table lacks bars the Parquet layout holds after a conversion: a bug or a
    concurrent delete; permanent (a retry would convert again and check again)."""


def table_schema() -> pa.Schema:
    """The bars table's Arrow schema: ``BAR_SCHEMA`` plus ``period`` (string, the partition's period)."""
    import pyarrow as pa

    from market_ingest.schema import BAR_SCHEMA

    return BAR_SCHEMA.append(pa.field("period", pa.string(), nullable=False))


def table_uri(root: ObjectStoragePath, dataset: str = Dataset.BARS) -> str:
    """The ``dataset`` table's URI as delta-rs takes it: ``s3://bucket/prefix/<dataset>`` or a local path."""
    from market_ingest.lake.layout import _is_local

    if _is_local(root):
        return str(root.path).rstrip("/") + f"/{dataset}"
    return f"s3://{root.bucket}/{root.key.strip('/') + '/' if root.key.strip('/') else ''}{dataset}"


def storage_options(root: ObjectStoragePath) -> dict[str, str]:
    """delta-rs storage options for the lake at ``root``: ``{}`` locally; on S3 the credentials
    (:func:`credential_options`), region and endpoint of the root's Airflow AWS connection
    (``AWS_ALLOW_HTTP`` for an ``http://`` endpoint such as moto's). May hold secrets: never log it."""
    from market_ingest.lake.layout import _is_local

    if _is_local(root):
        return {}
    import boto3  # type: ignore[import-untyped]
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=root.conn_id or "aws_default")
    config = hook.conn_config  # the connection as written: no AWS client is built for it (0.17 s)
    options = credential_options(hook)
    # The environment's region as boto3 resolves it (AWS_DEFAULT_REGION, the profile): no role is assumed for it.
    region = config.region_name or boto3.session.Session(profile_name=config.profile_name).region_name
    if region:
        options["AWS_REGION"] = region
    endpoint = config.get_service_endpoint_url(service_name="s3")
    if endpoint:
        options["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            options["AWS_ALLOW_HTTP"] = "true"
    return options


#: The session name delta-rs gives the role it assumes for the lake (CloudTrail shows it).
ROLE_SESSION_NAME = "market-ingest-lake"


def credential_options(hook: Any) -> dict[str, str]:
    """The credentials part of delta-rs's storage options for an S3 hook's connection, chosen so
    that a long task never holds credentials that expire under it.

    - **Static keys** in the connection (no role): the keys (and session token, if written).
    - **No keys, no role** (MWAA's execution role, EKS's IRSA, ECS task roles, an instance
      profile): no key at all (``AWS_PROFILE`` if the connection names a profile), so delta-rs
      resolves the environment's credential chain itself and refreshes it before expiry. Copying
      the chain's current temporary keys instead would fail the table's commits with
      ``ExpiredToken`` once the role session ends (an hour on MWAA) mid-backfill.
    - **A role to assume, no keys** (``role_arn`` with the default ``assume_role`` method and no
      extra arguments): ``AWS_IAM_ROLE_ARN`` and a session name; delta-rs assumes the role from
      the environment's credentials and assumes it again before the session expires
      (delta-rs ``crates/aws/src/credentials.rs``, ``resolve_credentials``).
    - **Anything else** (keys plus a role, SAML or web-identity methods, ``assume_role_kwargs``
      such as an external id): delta-rs cannot reproduce how Airflow assumes that role, so the
      role session's current keys are passed and a warning says they last only as long as it.

    :param hook: an ``S3Hook`` (its ``conn_config`` is read; only the last case calls AWS).
    :returns: ``{option: value}``; holds secrets: never log it.
    """
    config = hook.conn_config
    if config.aws_access_key_id and not config.role_arn:
        options = {"AWS_ACCESS_KEY_ID": config.aws_access_key_id, "AWS_SECRET_ACCESS_KEY": config.aws_secret_access_key}
        if config.aws_session_token:
            options["AWS_SESSION_TOKEN"] = config.aws_session_token
        return options
    if not config.role_arn:
        return {"AWS_PROFILE": config.profile_name} if config.profile_name else {}
    if not config.aws_access_key_id and config.assume_role_method in (None, "assume_role") and not config.assume_role_kwargs:
        options = {"AWS_IAM_ROLE_ARN": config.role_arn, "AWS_IAM_ROLE_SESSION_NAME": ROLE_SESSION_NAME}
        if config.profile_name:
            options["AWS_PROFILE"] = config.profile_name
        return options
    log.warning(
        "lake connection %s assumes role %s in a way delta-rs cannot repeat (method %s%s): the lake "
        "table gets the role session's current credentials, which expire with that session",
        config.conn_id,
        config.role_arn,
        config.assume_role_method,
        ", with static keys" if config.aws_access_key_id else "",
    )
    creds = hook.get_credentials()
    options = {"AWS_ACCESS_KEY_ID": creds.access_key, "AWS_SECRET_ACCESS_KEY": creds.secret_key}
    if creds.token:
        options["AWS_SESSION_TOKEN"] = creds.token
    return options


@dataclass(frozen=True)
class TableSpec:
    """What opening, creating and maintaining one of the lake's Delta tables needs.

    :param name: the table's folder under the lake root (one of :data:`TABLES`).
    :param schema: the table's Arrow schema (partition columns included).
    :param partition_by: its partition columns, outermost first.
    """

    name: str
    schema: pa.Schema
    partition_by: tuple[str, ...]


#: The lake's tables, each beside the others under the lake root (``<root>/<name>/``).
TABLES = ("bars", "rejects", "coverage", "quotes")


def table_spec(dataset: str = Dataset.BARS) -> TableSpec:
    """The :class:`TableSpec` of ``dataset`` (one of :data:`TABLES`); the per-dataset modules own
    the schemas (:mod:`~market_ingest.lake.rejects`, :mod:`~market_ingest.lake.mirror`,
    :mod:`~market_ingest.lake.quotes`).

    :raises KeyError: for a name that is not one of :data:`TABLES`.
    """
    if dataset == Dataset.BARS:
        return TableSpec("bars", table_schema(), PARTITION_COLUMNS)
    if dataset == "rejects":
        from market_ingest.lake import rejects

        return TableSpec("rejects", rejects.schema(), rejects.PARTITION_COLUMNS)
    if dataset == "coverage":
        from market_ingest.lake import mirror

        return TableSpec("coverage", mirror.schema(), mirror.PARTITION_COLUMNS)
    if dataset == Dataset.QUOTES:
        from market_ingest.lake import quotes

        return TableSpec("quotes", quotes.schema(), quotes.PARTITION_COLUMNS)
    raise KeyError(f"no lake table {dataset!r}: the lake's tables are {', '.join(TABLES)}")


def open_table(
    root: ObjectStoragePath, *, create: bool = False, version: int | datetime | None = None, dataset: str = Dataset.BARS
) -> DeltaTable | None:
    """The ``dataset`` table at ``root`` (bars by default); ``None`` when it does not exist and ``create`` is false.

    :param create: create the (empty, partitioned) table when missing, with the dataset's schema
        and partition columns (:func:`table_spec`); a concurrent creation is taken as done.
    :param version: a version number or a point in time (aware ``datetime``): time travel.
    :raises SinkNotFoundError: the lake's bucket or folder does not exist.
    """
    from deltalake import DeltaTable
    from deltalake.exceptions import TableNotFoundError

    from market_ingest.lake.layout import check_lake

    uri, options = table_uri(root, dataset), storage_options(root)
    try:
        dt = DeltaTable(uri, storage_options=options)
    except TableNotFoundError:
        if not create:
            return None
        check_lake(root)
        spec = table_spec(dataset)
        try:
            DeltaTable.create(
                uri,
                schema=spec.schema,
                partition_by=list(spec.partition_by),
                mode="ignore",
                storage_options=options,
                configuration=TABLE_PROPERTIES,
            )
        except Exception as exc:  # another task created version 0 first, or the create failed
            log.info("%s table %s: not created here (%s); opening it", dataset, uri, type(exc).__name__)
            try:
                dt = DeltaTable(uri, storage_options=options)
            except TableNotFoundError:
                raise exc from None  # nobody created it: the create's own error says why
        else:
            dt = DeltaTable(uri, storage_options=options)
    if version is not None:
        dt.load_as_version(version)
    return dt


def with_period(table: pa.Table, interval: str) -> pa.Table:
    """``table`` (bars of one interval) with the ``period`` column, cast to :func:`table_schema`."""
    from market_ingest.lake.layout import TABLE_PARTITION_BY, partition_values
    from market_ingest.schema import BAR_SCHEMA

    bars = table.select(BAR_SCHEMA.names).cast(BAR_SCHEMA)
    return bars.append_column("period", partition_values(bars, interval, TABLE_PARTITION_BY)).cast(table_schema())


def _writer_properties():
    """Parquet settings of the data files: zstd, as the staged objects and the objects before."""
    from deltalake import WriterProperties

    return WriterProperties(compression="ZSTD")


def _quoted(values) -> str:
    """``values`` as a comma-separated list of SQL string literals (quotes doubled), for delta-rs predicates."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values)


#: When a stored bar is replaced by a run's row with the same key: the run's was extracted later.
NEWER = "s.ingested_at > t.ingested_at"
#: The conversion's rule (:func:`convert_lake`): also a row of the same extraction that a re-basing
#: of the Parquet objects labelled (``price_basis`` set) replaces the copy converted before it.
NEWER_OR_REBASED = f"{NEWER} OR (s.ingested_at = t.ingested_at AND t.price_basis IS NULL AND s.price_basis IS NOT NULL)"


def merge_bars(
    root: ObjectStoragePath, rows: pa.Table, interval: str, attempts: int | None = None, replace_when: str = NEWER
) -> dict[str, Any]:
    """Merge ``rows`` (bars of one interval, each key once; with or without ``period``) into the table, one commit.

    A stored bar is replaced only by a row extracted later (``ingested_at``; ``replace_when``, an
    SQL condition on the stored ``t`` and the run's ``s``); new keys are inserted. See the module docstring for the predicate that keeps a forward run as cheap as an
    append, and for the retries on a conflicting concurrent commit.

    :return: ``{"version": the table version committed (the one read, when nothing changed),
        "inserted", "updated", "kept_newer": rows not applied because the stored bar was
        extracted later, "files_scanned": target files the merge read}``.
    :raises DeltaCommitError: still conflicting after ``attempts`` merges.
    """
    return _merge(root, rows, interval, attempts, replace_when)[0]


def _merge(
    root: ObjectStoragePath, rows: pa.Table, interval: str, attempts: int | None = None, replace_when: str = NEWER
) -> tuple[dict[str, Any], DeltaTable]:
    """:func:`merge_bars`, and the table object at the version it committed (to read its log without reopening it)."""
    return _committing(root, _merging(rows, interval, replace_when), "merges", attempts)


def _merging(rows: pa.Table, interval: str, replace_when: str = NEWER) -> Callable[[DeltaTable], dict[str, Any]]:
    """The commit of :func:`merge_bars` for ``rows``: run on a version of the table, it merges them
    (or, when nothing stored overlaps their span, writes them as an overwrite of that span) and
    returns its figures; for :func:`_committing`."""
    import pyarrow.compute as pc

    data = rows if "period" in rows.column_names else with_period(rows, interval)
    sources = pc.unique(data["source"]).to_pylist()
    periods = sorted(pc.unique(data["period"]).to_pylist())
    lo, hi = pc.min(data["time"]).as_py(), pc.max(data["time"]).as_py()
    # No literal on ``interval``: delta-rs 1.6.6 writes the predicate into the commit and a
    # concurrent writer's conflict check parses it back, where a bare ``interval = '1m'`` is read
    # as an SQL INTERVAL and fails ("Expected: an expression, found: ="). The join keeps it.
    predicate = (
        f"t.source IN ({_quoted(sources)}) AND t.period IN ({_quoted(periods)}) "
        f"AND t.time >= '{lo.isoformat()}' AND t.time <= '{hi.isoformat()}' "
        'AND t.source = s.source AND t."interval" = s."interval" AND t.period = s.period '
        "AND t.symbol = s.symbol AND t.time = s.time"
    )
    # The append: rows whose span no stored file of these sources and periods overlaps (any
    # interval) are written as an overwrite of exactly that span, which deletes nothing and, unlike
    # a blind append, conflicts with a concurrent commit that added files in the span.
    span = f"source IN ({_quoted(sources)}) AND period IN ({_quoted(periods)}) AND time >= '{lo.isoformat()}' AND time <= '{hi.isoformat()}'"

    def commit(dt: DeltaTable) -> dict[str, Any]:
        if not _overlaps(dt, sources, periods, lo, hi):
            from deltalake import write_deltalake

            write_deltalake(
                dt,
                data,
                mode="overwrite",
                predicate=span,
                writer_properties=_writer_properties(),
                commit_properties=pair_commit(sources, interval),
            )
            return {"version": dt.version(), "inserted": data.num_rows, "updated": 0, "kept_newer": 0, "files_scanned": 0}
        metrics = (
            dt.merge(
                data,
                predicate,
                source_alias="s",
                target_alias="t",
                writer_properties=_writer_properties(),
                commit_properties=pair_commit(sources, interval),
            )
            .when_matched_update_all(predicate=replace_when)
            .when_not_matched_insert_all()
            .execute()
        )
        inserted, updated = metrics["num_target_rows_inserted"], metrics["num_target_rows_updated"]
        return {
            "version": dt.version(),
            "inserted": inserted,
            "updated": updated,
            "kept_newer": data.num_rows - inserted - updated,
            "files_scanned": metrics["num_target_files_scanned"],
        }

    return commit


def _committing(
    root: ObjectStoragePath,
    commit: Callable[[DeltaTable], dict[str, Any]],
    what: str,
    attempts: int | None = None,
    dataset: str = Dataset.BARS,
) -> tuple[dict[str, Any], DeltaTable]:
    """Run ``commit`` on the ``dataset`` table's latest version (created when missing) until it commits: a
    concurrent commit that conflicts (``CommitFailedError``) makes it run again on the new
    version, after a jittered backoff, up to :data:`~market_ingest.lake.merge.MERGE_ATTEMPTS` times.

    :return: what ``commit`` returned, and the table object at the version it committed.
    :raises DeltaCommitError: still conflicting after the last attempt (retryable: a task retry
        tries again).
    """
    import random
    import time

    from deltalake.exceptions import CommitFailedError

    from market_ingest.lake.merge import MERGE_ATTEMPTS

    attempts = attempts or MERGE_ATTEMPTS
    for attempt in range(1, attempts + 1):
        dt = cast("DeltaTable", open_table(root, create=True, dataset=dataset))  # never None when creating
        try:
            return commit(dt), dt
        except CommitFailedError as exc:
            log.warning(
                "%s table: a concurrent commit conflicts (attempt %d of %d): %s; trying again", dataset, attempt, attempts, exc
            )
            time.sleep(min(2.0, 0.05 * 2**attempt) * random.uniform(0.5, 1.0))
    raise DeltaCommitError(
        "lake", f"{dataset} table {table_uri(root, dataset)}: other commits kept conflicting under {attempts} {what}"
    )


def _overlaps(dt: DeltaTable, sources: list[str], periods: list[str], lo: datetime, hi: datetime) -> bool:
    """Whether a file of the table's current version, of ``sources`` and ``periods`` (any interval),
    may hold a bar opening in ``[lo, hi]``, from the log's file statistics alone (a file without
    statistics may)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.schema import utc_timestamp

    files = pa.table(dt.get_add_actions(flatten=True))
    if files.num_rows == 0:
        return False
    mine = files.filter(
        pc.and_(pc.is_in(files["partition.source"], pa.array(sources)), pc.is_in(files["partition.period"], pa.array(periods)))
    )
    if mine.num_rows == 0:
        return False
    if "min.time" not in mine.column_names or "max.time" not in mine.column_names:
        return True
    starts_before = pc.fill_null(pc.less_equal(mine["min.time"], utc_timestamp(hi)), True)
    ends_after = pc.fill_null(pc.greater_equal(mine["max.time"], utc_timestamp(lo)), True)
    return pc.any(pc.and_(starts_before, ends_after)).as_py()


def publish_bars(staged: list[dict[str, Any]], root: ObjectStoragePath, source: str, interval: str) -> list[dict[str, Any]]:
    """Commit a run's staged bars into the bars table, in one commit.

    When the run's staged data files (:func:`stage_bars`) overlap nothing stored and each other,
    they are appended as they are: the commit adds them, no byte is read or written again
    (:func:`_appending`). Otherwise the run's rows are read (whole: memory follows the run, not the
    table), the newest extraction of a key several batches share kept, and merged
    (:func:`merge_bars`). Both are decided on the version the commit is made on, again after a
    conflicting concurrent commit (:func:`_committing`, :func:`pair_commit`). Staged objects of
    the earlier layout (``_staging/``, a run staged before an upgrade) are read and merged.

    :param staged: the extract batches' staged files or objects (:func:`stage_bars`,
        :func:`~market_ingest.lake.staging.stage`).
    :return: one ``{"path": the partition's folder URL, "partition", "rows": rows now in the
        partition, "run_rows", "kept_newer", "rows_by_symbol", "version": the commit}`` per
        partition the run touched, oldest first; ``[]`` for no rows.
    :raises SinkNotFoundError: the lake's bucket or folder does not exist.
    :raises CorruptObjectError: a staged file or object is not Parquet, naming it and its run.
    :raises DeltaCommitError: conflicting commits on every attempt.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.lake.layout import check_lake
    from market_ingest.lake.merge import newest_per_key
    from market_ingest.lake.objects import _decoding, _parquet_file
    from market_ingest.schema import BAR_SCHEMA, NATURAL_KEY

    if not staged:
        return []
    files = all(is_data_file(s) for s in staged)
    if not files:
        check_lake(root)  # before reading staged objects (a missing bucket: opening the table says so)
    # Staged files are committed unread only when each is whole and young (else read and merged),
    # and only a few: a run staged as many files (a long intraday backfill) is merged into one
    # file per partition instead of committing thousands of small ones.
    unread = files and len(staged) <= MAX_APPENDED_FILES and check_staged_files(staged)
    append = _appending(staged, interval) if unread else None
    merging: dict[str, Any] = {}  # the run's rows and their merge, made once when first needed

    def rows() -> pa.Table:
        parts = []
        for s in sorted(staged, key=lambda s: s["path"]):
            if is_data_file(s):
                parts.append(read_staged_file(s["path"]))
                continue
            with _decoding(s["path"]):
                parts.append(_parquet_file(s["path"]).read().cast(BAR_SCHEMA))
        read = pa.concat_tables(parts)
        return newest_per_key(read, NATURAL_KEY) if len(parts) > 1 else read

    def commit(dt: DeltaTable) -> dict[str, Any]:
        if append is not None and (appended := append(dt)) is not None:
            return {**appended, "appended": True}
        if "data" not in merging:
            merging["data"] = with_period(rows(), interval)
            merging["commit"] = _merging(merging["data"], interval)
        if merging["data"].num_rows == 0:
            return {"empty": True}
        return {**merging["commit"](dt), "appended": False}

    merged, dt = _committing(root, commit, "merges")
    if merged.pop("empty", False):
        return []
    by_symbol: dict[str, dict[str, int]] = {}
    if merged.pop("appended"):
        source = staged[0]["source"]  # the rows' own source named their partition
        for f in staged:
            for symbol, n in f["rows_by_symbol"].items():
                in_period = by_symbol.setdefault(f["period"], {})
                in_period[symbol] = in_period.get(symbol, 0) + n
        return _published(root, dt, merged, by_symbol, {}, source, interval)
    data = merging["data"]
    kept = _kept_newer_by_period(root, data, merged) if merged["kept_newer"] else {}
    named = pc.unique(data["source"]).to_pylist()  # the rows' own source decides their partition
    source = named[0] if len(named) == 1 else source
    counts = data.group_by(["period", "symbol"], use_threads=False).aggregate([([], "count_all")])  # one pass, not one per period
    for period, symbol, n in zip(*(counts[c].to_pylist() for c in ("period", "symbol", "count_all"))):
        by_symbol.setdefault(period, {})[symbol] = n
    return _published(root, dt, merged, by_symbol, kept, source, interval)


def _published(
    root: ObjectStoragePath,
    dt: DeltaTable,
    merged: dict[str, Any],
    by_symbol: dict[str, dict[str, int]],
    kept: dict[str, int],
    source: str,
    interval: str,
) -> list[dict[str, Any]]:
    """:func:`publish_bars`'s result from the commit (``dt`` at its version, ``merged`` its
    figures), the run's rows per period and symbol and, per period, the rows a newer stored bar kept out."""
    stored = _rows_by_period(dt, source, interval)
    stale = _stale_periods(dt).get((source, interval))
    if stale:
        log.warning(
            "bars table %s holds %d %s/%s bars under periods it no longer uses (%s ...: daily bars by month, as it "
            "was first written): readers do not see them until market_setup's compact_lake moves them "
            "(lake.repartition_bars)",
            table_uri(root),
            sum(stale.values()),
            source,
            interval,
            min(stale),
        )
    uri = table_uri(root)
    return [
        {
            "path": f"{uri}/source={source}/interval={interval}/period={period}",
            "partition": period,
            "rows": stored.get(period, 0),
            "run_rows": sum(by_symbol[period].values()),
            "kept_newer": kept.get(period, 0),
            "rows_by_symbol": by_symbol[period],
            "version": merged["version"],
        }
        for period in sorted(by_symbol)
    ]


def _rows_by_period(dt: DeltaTable, source: str, interval: str) -> dict[str, int]:
    """Rows per ``period`` of ``source``/``interval`` in ``dt``'s version, from its log."""
    import pyarrow as pa
    import pyarrow.compute as pc

    actions = pa.table(dt.get_add_actions(flatten=True))
    mine = actions.filter(
        pc.and_(pc.equal(actions["partition.source"], source), pc.equal(actions["partition.interval"], interval))
    )
    sums = mine.group_by("partition.period").aggregate([("num_records", "sum")])
    return dict(zip(sums["partition.period"].to_pylist(), sums["num_records_sum"].to_pylist()))


def _kept_newer_by_period(root: ObjectStoragePath, data: pa.Table, merged: dict[str, Any]) -> dict[str, int]:
    """Per period, the run's rows the merge did not apply (the stored bar was extracted later):
    read back only when the merge kept some (rare), from the version it committed."""
    import pyarrow.compute as pc

    stored = read_table(root, pc.field("source").isin(pc.unique(data["source"])) & _span_filter(data), version=merged["version"])
    joined = data.select(["source", "symbol", "time", "ingested_at", "period"]).join(
        stored.select(["source", "symbol", "time", "ingested_at"]).rename_columns(["source", "symbol", "time", "stored_at"]),
        keys=["source", "symbol", "time"],
    )
    newer = joined.filter(pc.greater(joined["stored_at"], joined["ingested_at"]))
    counts = pc.value_counts(newer["period"])
    return dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))


def _span_filter(data: pa.Table):
    import pyarrow.compute as pc

    return (
        pc.field("interval").isin(pc.unique(data["interval"]))
        & pc.field("period").isin(pc.unique(data["period"]))
        & (pc.field("time") >= pc.min(data["time"]))
        & (pc.field("time") <= pc.max(data["time"]))
    )


def read_table(
    root: ObjectStoragePath, filter=None, *, version: int | datetime | None = None, dataset: str = Dataset.BARS
) -> pa.Table:
    """Rows of the ``dataset`` table (bars by default; all columns, ``period`` included) matching
    ``filter`` (a ``pyarrow.dataset`` expression; partitions and file statistics prune what is
    read), at ``version`` (time travel) or the current one; empty when the table does not exist.

    :raises CorruptObjectError: a data file of the table cannot be read, naming the table.
    """
    dt = open_table(root, version=version, dataset=dataset)
    if dt is None:
        return table_spec(dataset).schema.empty_table()
    try:
        return dt.to_pyarrow_dataset().to_table(filter=filter)
    except OSError as exc:
        raise CorruptObjectError(
            "lake", f"{dataset} table {table_uri(root, dataset)}: a data file cannot be read ({exc})"
        ) from exc


def merge_rows(
    root: ObjectStoragePath,
    rows: pa.Table,
    dataset: str,
    key: tuple[str, ...],
    *,
    replace_when: str | None = None,
    narrow: str = "",
    delete_unmatched: str | None = None,
    attempts: int | None = None,
) -> dict[str, Any]:
    """Merge ``rows`` (each ``key`` once, of the dataset's schema) into the ``dataset`` table in one
    commit, retried on a conflicting concurrent commit (:func:`_committing`): the merge of the
    tables other than bars (:mod:`~market_ingest.lake.rejects`, :mod:`~market_ingest.lake.mirror`,
    :mod:`~market_ingest.lake.quotes`).

    :param key: the dataset's natural key: a stored row with the same key is updated, a new key inserted.
    :param replace_when: SQL condition on the stored ``t`` and the incoming ``s`` under which a
        matched row is replaced (e.g. ``s.ingested_at > t.ingested_at``); ``None``: always.
    :param narrow: SQL literals on the target ``t`` (``t.source = 'yahoo'``) that prune the files
        the merge reads; never a literal on ``interval`` (delta-rs 1.6.6's conflict check parses
        the predicate back and reads ``interval`` as SQL's INTERVAL).
    :param delete_unmatched: SQL condition on ``t``: stored rows it holds that ``rows`` lack are
        deleted (a batch's rows replaced as a set); ``None``: none is deleted.
    :return: ``{"version", "inserted", "updated", "deleted", "kept": matched rows not replaced}``.
    :raises DeltaCommitError: still conflicting after ``attempts`` merges (retryable).
    """
    join = " AND ".join(f't."{c}" = s."{c}"' for c in key)
    predicate = f"{narrow} AND {join}" if narrow else join

    def commit(dt: DeltaTable) -> dict[str, Any]:
        merger = dt.merge(rows, predicate, source_alias="s", target_alias="t", writer_properties=_writer_properties())
        merger = merger.when_matched_update_all(predicate=replace_when).when_not_matched_insert_all()
        if delete_unmatched:
            merger = merger.when_not_matched_by_source_delete(predicate=delete_unmatched)
        metrics = merger.execute()
        inserted, updated = metrics["num_target_rows_inserted"], metrics["num_target_rows_updated"]
        return {
            "version": dt.version(),
            "inserted": inserted,
            "updated": updated,
            "deleted": metrics["num_target_rows_deleted"],
            "kept": rows.num_rows - inserted - updated,
        }

    return _committing(root, commit, "merges", attempts, dataset)[0]


def read_bars(
    root: ObjectStoragePath, source: str, interval: str, start: datetime, end: datetime, *, version: int | datetime | None = None
) -> pa.Table:
    """Every bar of ``source``/``interval`` opening in ``[start, end)`` (UTC) from the table,
    sorted by symbol and time, as ``BAR_SCHEMA`` (each key is stored once: no deduplication)."""
    import pyarrow.compute as pc

    from market_ingest.intervals import utc_dates
    from market_ingest.lake.layout import TABLE_PARTITION_BY, partition_of
    from market_ingest.schema import BAR_SCHEMA, utc_timestamp

    periods = sorted({partition_of(day, interval, TABLE_PARTITION_BY) for day in utc_dates(start, end)})
    flt = (
        (pc.field("source") == source)
        & (pc.field("interval") == interval)
        & pc.field("period").isin(periods)
        & (pc.field("time") >= utc_timestamp(start))
        & (pc.field("time") < utc_timestamp(end))
    )
    bars = read_table(root, flt, version=version).select(BAR_SCHEMA.names).cast(BAR_SCHEMA)
    return bars.sort_by([("symbol", "ascending"), ("time", "ascending")])


def maintain(
    root: ObjectStoragePath, retention_hours: int = VACUUM_RETENTION_HOURS, dataset: str = Dataset.BARS
) -> dict[str, Any]:
    """Compact the ``dataset`` table's small files and vacuum the files older versions alone reference.

    ``optimize.compact`` rewrites each partition's small files into files of up to
    :data:`TARGET_FILE_SIZE` (a commit that changes no row; safe while runs merge: whichever of
    the compaction and a run's merge conflicts is redone, :func:`_committing`); ``vacuum`` deletes
    the files no version within ``retention_hours`` references, and the files older than that no
    version ever referenced (staged data files of runs that merged or never published: :func:`stage_bars`).

    :return: ``{"version", "files_added", "files_removed", "files_vacuumed"}``; zeros when the
        table does not exist.
    """
    dt = open_table(root, dataset=dataset)
    if dt is None:
        return {"version": None, "files_added": 0, "files_removed": 0, "files_vacuumed": 0}
    compacted, dt = _committing(
        root,
        lambda t: t.optimize.compact(target_size=TARGET_FILE_SIZE, writer_properties=_writer_properties()),
        "compactions",
        dataset=dataset,
    )
    # full: also the files no version ever referenced, a run's staged data files that were merged
    # rather than appended, or whose run never published (stage_bars); the default (lite) vacuum
    # removes only files a commit removed, and those would stay in the bucket for good.
    vacuumed = dt.vacuum(retention_hours=retention_hours, dry_run=False, full=True)
    return {
        "version": dt.version(),
        "files_added": compacted.get("numFilesAdded", 0),
        "files_removed": compacted.get("numFilesRemoved", 0),
        "files_vacuumed": len(vacuumed),
    }


def maintain_all(root: ObjectStoragePath, retention_hours: int = VACUUM_RETENTION_HOURS) -> dict[str, dict[str, Any]]:
    """:func:`maintain` every table of :data:`TABLES` that exists under ``root``.

    :return: ``{table name: maintain's counts}`` for each existing table.
    """
    return {name: maintain(root, retention_hours, name) for name in TABLES if open_table(root, dataset=name) is not None}


def repartition_bars(root: ObjectStoragePath, batch_rows: int = 1_000_000) -> dict[str, Any]:
    """Move the bars stored under a period the table no longer uses into their period:
    ``market_setup``'s step before the conversion, idempotent.

    The bars table first kept daily bars by UTC month (``period=2021-08``); it keeps them by UTC
    year now (:data:`~market_ingest.lake.layout.TABLE_PARTITION_BY`), and readers look only there,
    so a table written before would hide those bars and a rerun would store them again. Every
    partition whose period has a width no interval uses any more is read, its rows merged into
    their period with the newer-extraction guard (a bar a run published there since is kept), the
    keys checked (as :func:`convert_lake` checks them), and the partition deleted by ``source`` and ``period`` (a period of that width
    belongs to no current interval, so nothing else matches). A crash between merge and delete
    leaves both; the next run merges nothing and deletes. Up to ``batch_rows`` rows are moved at a
    time (memory follows that, not the table); the deletes are retried on a conflicting commit.

    :return: ``{"partitions": stale partitions moved, "rows": their rows, "version": the table's
        version}`` (zeros and the current version when there is nothing to move).
    :raises ConversionError: a moved bar is missing from its period after the merge.
    """
    from functools import partial

    from market_ingest.schema import BAR_SCHEMA

    dt = open_table(root)
    if dt is None:
        return {"partitions": 0, "rows": 0, "version": None}
    moved = {"partitions": 0, "rows": 0, "version": dt.version()}
    for (source, interval), sizes in sorted(_stale_periods(dt).items()):
        chunks: list[list[str]] = [[]]
        held = 0
        for period, n in sorted(sizes.items()):  # merge, check and delete up to batch_rows rows at a time
            if chunks[-1] and held + n > batch_rows:
                chunks.append([])
                held = 0
            chunks[-1].append(period)
            held += n
        for periods in chunks:
            rows = dt.to_pyarrow_table(
                partitions=[("source", "=", source), ("interval", "=", interval), ("period", "in", periods)]
            )
            rows = rows.select(BAR_SCHEMA.names).cast(BAR_SCHEMA)
            if rows.num_rows:
                merge_bars(root, rows, interval, replace_when=NEWER_OR_REBASED)
                # Keys the table lacks, or holds older, in their new period (a later extraction there is kept).
                missing = _not_in_table(root, rows, interval)
                if missing.num_rows:
                    raise ConversionError(
                        source,
                        f"{interval} periods {', '.join(periods)}: {missing.num_rows} bars are not in their new period "
                        f"after the move (first: {missing['symbol'][0]} {missing['time'][0]}); nothing was deleted, "
                        "run it again",
                        str(missing["symbol"][0]),
                    )
            _, dt = _committing(
                root, partial(_delete, predicate=f"source = {_quoted([source])} AND period IN ({_quoted(periods)})"), "deletes"
            )
            log.info("bars table: %d %s/%s bars moved out of periods %s", rows.num_rows, source, interval, ", ".join(periods))
            moved["partitions"] += len(periods)
            moved["rows"] += rows.num_rows
            moved["version"] = dt.version()
    return moved


def _delete(dt: DeltaTable, predicate: str) -> dict[str, Any]:
    """Delete the rows of ``dt`` matching ``predicate`` (SQL) in one commit; delta-rs's metrics."""
    return dt.delete(predicate)


def _stale_periods(dt: DeltaTable) -> dict[tuple[str, str], dict[str, int]]:
    """``{(source, interval): {period: rows}}`` of the partitions of ``dt``'s version whose period
    has a width no interval uses any more (:data:`~market_ingest.lake.layout.TABLE_PARTITION_BY`),
    from the log alone."""
    import pyarrow as pa

    from market_ingest.lake.layout import TABLE_PARTITION_BY, partition_of

    widths = {len(partition_of("2000-01-01", interval, TABLE_PARTITION_BY)) for interval in TABLE_PARTITION_BY}
    files = pa.table(dt.get_add_actions(flatten=True))
    stale: dict[tuple[str, str], dict[str, int]] = {}
    if files.num_rows == 0:
        return stale
    columns = ("partition.source", "partition.interval", "partition.period", "num_records")
    for source, interval, period, n in zip(*(files[c].to_pylist() for c in columns)):
        if len(period) not in widths:
            sizes = stale.setdefault((source, interval), {})
            sizes[period] = sizes.get(period, 0) + (n or 0)
    return stale


def convert_lake(root: ObjectStoragePath, source: str, interval: str, batch_rows: int = 1_000_000) -> dict[str, Any]:
    """Copy the bars the Parquet layout holds for ``source``/``interval`` into the bars table, and
    verify every one arrived: ``market_setup``'s conversion, idempotent.

    Reads every partition object the earlier layouts left (``date=``, ``month=`` or ``year=``
    folders, one or several objects each: :func:`~market_ingest.lake.partitions._partition_folders`;
    memory follows the series' rows there) and compares them with the table one period at a
    time, keeping the newest extraction of each key. A row is merged only
    when the table lacks its key, holds an older extraction, or holds the same extraction without
    a price basis while the object's row has one (re-based since: :data:`NEWER_OR_REBASED`); so a
    bar a run published since, extracted later, is never replaced. The merges (one commit per
    ``batch_rows`` rows) are then checked: each period's rows in the objects are all in the table,
    the same extraction or a newer one. The objects are left where they are (nothing reads them
    any more; delete them once satisfied). A second run merges nothing and commits nothing.

    :return: ``{"objects": objects read, "rows": their distinct keys, "rows_merged": rows
        written to the table now, "commits": commits made, "version": the table's version}``.
    :raises ConversionError: a period's keys are missing from the table after the merges,
        naming the series, the period and how many.
    :raises CorruptObjectError: an object is not Parquet of the bar schema.
    """
    import pyarrow as pa

    from market_ingest.lake.layout import TABLE_PARTITION_BY, split_by_partition
    from market_ingest.lake.merge import newest_per_key
    from market_ingest.lake.objects import read_parquet
    from market_ingest.lake.partitions import _objects, _partition_folders
    from market_ingest.schema import BAR_SCHEMA, NATURAL_KEY

    by_period: dict[str, list[pa.Table]] = {}
    objects = 0
    for _, _, folder in _partition_folders(root, source, interval):
        for obj in _objects(folder):
            objects += 1
            # An object's rows may lie outside its folder's period (the per-window layout): split them.
            for period, rows in split_by_partition(read_parquet(obj).cast(BAR_SCHEMA), interval, TABLE_PARTITION_BY):
                by_period.setdefault(period, []).append(rows)
    stats = {"objects": objects, "rows": 0, "rows_merged": 0, "commits": 0}
    pending: list[pa.Table] = []

    def flush() -> None:
        if pending:
            rows = pa.concat_tables(pending)
            merge_bars(root, rows, interval, replace_when=NEWER_OR_REBASED)
            stats["rows_merged"] += rows.num_rows
            stats["commits"] += 1
            pending.clear()

    legacy_by_period: dict[str, pa.Table] = {}
    for period in sorted(by_period):
        legacy = newest_per_key(pa.concat_tables(by_period.pop(period)), NATURAL_KEY)
        legacy_by_period[period] = legacy
        todo = _not_in_table(root, legacy, interval)
        if todo.num_rows:
            pending.append(todo)
        if sum(t.num_rows for t in pending) >= batch_rows:
            flush()
    flush()
    for period, legacy in legacy_by_period.items():
        stats["rows"] += legacy.num_rows
        missing = _not_in_table(root, legacy, interval).num_rows
        if missing:
            raise ConversionError(
                source,
                f"{interval} period {period}: {missing} of the {legacy.num_rows} bars of the Parquet objects are not in "
                f"the bars table {table_uri(root)} after the conversion; the objects are untouched, run it again",
            )
    dt = open_table(root)
    return {**stats, "version": dt.version() if dt is not None else None}


def _not_in_table(root: ObjectStoragePath, rows: pa.Table, interval: str) -> pa.Table:
    """The rows of ``rows`` (one period, each key once) the table lacks or holds in an older state
    (:data:`NEWER_OR_REBASED`)."""
    import pyarrow.compute as pc

    stored = read_table(root, _span_filter(with_period(rows, interval)) & pc.field("source").isin(pc.unique(rows["source"])))
    stored = stored.select(["source", "symbol", "interval", "time", "ingested_at", "price_basis"]).rename_columns(
        ["source", "symbol", "interval", "time", "stored_at", "stored_basis"]
    )
    joined = rows.join(stored, keys=["source", "symbol", "interval", "time"], join_type="left outer")
    stale = pc.or_kleene(
        pc.is_null(joined["stored_at"]),
        pc.or_kleene(
            pc.greater(joined["ingested_at"], joined["stored_at"]),
            pc.and_kleene(
                pc.equal(joined["ingested_at"], joined["stored_at"]),
                pc.and_kleene(pc.is_null(joined["stored_basis"]), pc.is_valid(joined["price_basis"])),
            ),
        ),
    )
    return joined.filter(pc.fill_null(stale, False)).select(rows.schema.names)


def data_schema() -> pa.Schema:
    """The Arrow schema of a bars data file: :data:`~market_ingest.schema.BAR_SCHEMA` without
    ``source`` and ``interval`` (partition values, in the log)."""
    from market_ingest.schema import BAR_SCHEMA

    schema = BAR_SCHEMA
    for name in ("source", "interval"):
        schema = schema.remove(schema.get_field_index(name))
    return schema


def file_stats(data: pa.Table, meta: Any = None) -> str:
    """The statistics of a data file holding ``data``, as a Delta add action carries them (JSON):
    ``numRecords``, ``minValues`` and ``maxValues`` of each column that has a non-null value
    (timestamps as ISO 8601 UTC with microseconds), ``nullCount`` of every column. delta-rs prunes
    files by them, and the publish decides from them whether a run overlaps what is stored
    (:func:`_overlaps`). (Delta protocol, "Per-file Statistics".)

    :param meta: the file's Parquet metadata (``pyarrow.parquet.FileMetaData``), whose row groups'
        statistics are used when every row group has them (no second pass over the data).
    """
    import json
    import math

    import pyarrow as pa
    import pyarrow.compute as pc

    def value(v: Any) -> Any:
        return v.isoformat(timespec="microseconds").replace("+00:00", "Z") if hasattr(v, "isoformat") else v

    mins: dict[str, Any] = {}
    maxes: dict[str, Any] = {}
    nulls: dict[str, int] = {}
    for i, name in enumerate(data.column_names):
        column = data[name]
        nulls[name] = column.null_count
        if column.null_count == len(column) or not (pa.types.is_primitive(column.type) or pa.types.is_string(column.type)):
            continue
        groups = [meta.row_group(g).column(i).statistics for g in range(meta.num_row_groups)] if meta is not None else []
        if groups and all(st is not None and st.has_min_max for st in groups):
            lo, hi = min(st.min for st in groups), max(st.max for st in groups)
        else:
            lo_hi = pc.min_max(column)
            lo, hi = lo_hi["min"].as_py(), lo_hi["max"].as_py()
        if isinstance(lo, float) and not (math.isfinite(lo) and math.isfinite(hi)):
            continue  # JSON has no NaN or infinity: no bounds rather than a log no reader parses
        mins[name], maxes[name] = value(lo), value(hi)
    return json.dumps({"numRecords": data.num_rows, "minValues": mins, "maxValues": maxes, "nullCount": nulls}, allow_nan=False)


def stage_bars(
    table: pa.Table, root: ObjectStoragePath, source: str, interval: str, run_id: str, batch: int
) -> list[StagedObject]:
    """Write an extract batch's bars as data files of the bars table, one per ``period``, NOT committed.

    The publish commits them as they are when they overlap nothing stored (an append: the run's
    bars are encoded once, here), or merges their rows (:func:`publish_bars`). Until committed
    no reader sees them; one never committed (a merged run's, a failed run's) is removed by the
    table's vacuum once older than :data:`VACUUM_RETENTION_HOURS` (:func:`maintain`).

    Each file is ``<table>/source=<s>/interval=<i>/period=<p>/part-<run token>-b<batch>-<uuid>.zstd.parquet``:
    a new name per attempt, so a retried extract never overwrites a file a publish committed.
    Rows sorted by time then symbol, zstd, row groups of at most
    :data:`~market_ingest.lake.objects.ROW_GROUP_ROWS`.

    :param table: canonical bars (:data:`~market_ingest.schema.BAR_SCHEMA`) of one source and interval.
    :return: one ``{"path": the file's URL, "rows", "partitions": {period: [row groups]}, "source"
        (the rows' own), "period",
        "table_path": its path inside the table, "size": bytes, "stats": the Delta add action's
        statistics (JSON), "first", "last": its first and last bar's open (ISO, UTC),
        "rows_by_symbol": {symbol: bars}}`` per period, oldest first.
    :raises ValueError: the rows hold more than one source.
    """
    import uuid

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from market_ingest.lake.layout import TABLE_PARTITION_BY, run_token, split_by_partition
    from market_ingest.lake.objects import ROW_GROUP_ROWS, _writing

    staged: list[StagedObject] = []
    table_dir = root / table_spec(Dataset.BARS).name
    (source,) = pc.unique(table["source"]).to_pylist() or [source]  # the rows' own source names the partition
    ordered = table.sort_by([("time", "ascending"), ("symbol", "ascending")])  # also orders the periods: split takes no copy
    for period, rows in split_by_partition(ordered, interval, TABLE_PARTITION_BY):
        data = rows.select(data_schema().names).cast(data_schema())
        relative = (
            f"source={source}/interval={interval}/period={period}/"
            f"part-{run_token(run_id)}-b{batch:05d}-{uuid.uuid4().hex}.zstd.parquet"
        )
        path = table_dir / relative
        collected: list = []
        with _writing(path) as fh:
            with pq.ParquetWriter(fh, data.schema, compression="zstd", metadata_collector=collected) as writer:
                writer.write_table(data, row_group_size=ROW_GROUP_ROWS)
            size = fh.tell()  # the file's bytes, without asking the store
        staged.append(
            {
                "path": str(path),
                "rows": rows.num_rows,
                "partitions": {period: list(range(collected[0].num_row_groups))},
                "source": source,
                "period": period,
                "table_path": relative,
                "size": size,
                "stats": file_stats(data, collected[0]),
                "first": pc.min(rows["time"]).as_py().isoformat(),
                "last": pc.max(rows["time"]).as_py().isoformat(),
                "rows_by_symbol": dict(_symbol_counts(rows)),
            }
        )
    return staged


def _symbol_counts(rows: pa.Table) -> list[tuple[str, int]]:
    """``[(symbol, rows)]`` of ``rows``."""
    import pyarrow.compute as pc

    counts = pc.value_counts(rows["symbol"])
    return list(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist(), strict=True))


def is_data_file(staged: dict[str, Any]) -> bool:
    """Whether a staged entry is a bars data file written by :func:`stage_bars` (else a staged object)."""
    return "table_path" in staged


#: The Delta application transaction every writer of one (source, interval)'s bars commits with
#: (``txn`` action; :func:`pair_commit`).
def pair_commit(sources: list[str], interval: str):
    """Commit properties carrying the application transaction ``market_ingest/bars/<source>/<interval>``
    of each of ``sources``.

    Two commits that carry the same application id conflict when they race: the second raises
    ``CommitFailedError`` ("Concurrent transaction failed", delta-rs's conflict check of ``txn``
    actions) and is redone on the table as the first left it. Every writer of a pair's bars (an
    append of staged files, a merge, a conversion) carries it, so a blind append can never land
    beside a concurrent write of the same bars: its retry sees them and merges.
    """
    import time

    from deltalake import CommitProperties
    from deltalake.transaction import Transaction

    version = int(time.time() * 1000)
    return CommitProperties(app_transactions=[Transaction(f"market_ingest/bars/{s}/{interval}", version) for s in sources])


def _files_overlap(files: list[dict[str, Any]]) -> bool:
    """Whether two of a run's staged data files may hold the same bar: the same period, a symbol
    in both and overlapping time spans (one symbol in two extract batches)."""
    seen: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for f in files:
        for symbol in f["rows_by_symbol"]:
            spans = seen.setdefault((f["period"], symbol), [])
            if any(f["first"] <= last and first <= f["last"] for first, last in spans):
                return True
            spans.append((f["first"], f["last"]))
    return False


def _appending(files: list[dict[str, Any]], interval: str) -> Callable[[DeltaTable], dict[str, Any] | None]:
    """The commit of a run's staged data files as they are (no byte rewritten): run on a version of
    the table, it appends them in one commit when no stored file overlaps their span, returning the
    figures of :func:`merge_bars`; ``None`` when one does (or when they overlap each other): merge them."""
    import time
    from datetime import datetime

    from deltalake.transaction import AddAction, RemoveAction

    overlapping = _files_overlap(files) or len({f["source"] for f in files}) > 1
    source = files[0]["source"]  # the rows' own, which named the files' folders
    periods = sorted({f["period"] for f in files})
    lo = min(datetime.fromisoformat(f["first"]) for f in files)
    hi = max(datetime.fromisoformat(f["last"]) for f in files)

    def commit(dt: DeltaTable) -> dict[str, Any] | None:
        if overlapping or _overlaps(dt, [source], periods, lo, hi):
            return None
        now = int(time.time() * 1000)
        actions: list[AddAction | RemoveAction] = [
            AddAction(
                f["table_path"], f["size"], {"source": source, "interval": interval, "period": f["period"]}, now, True, f["stats"]
            )
            for f in files
        ]
        dt.create_write_transaction(
            actions,
            mode="append",
            schema=table_schema(),
            partition_by=list(PARTITION_COLUMNS),
            commit_properties=pair_commit([source], interval),
        )
        # The object still shows the version it read (a merge moves it; this does not). The version
        # loaded is this commit's or, when another landed right after it, a later one: either holds
        # the run's bars.
        dt.update_incremental()
        rows = sum(f["rows"] for f in files)
        return {"version": dt.version(), "inserted": rows, "updated": 0, "kept_newer": 0, "files_scanned": 0}

    return commit


def read_staged_file(path: str) -> pa.Table:
    """A staged data file (:func:`stage_bars`) as bars: its columns, and ``source`` and
    ``interval`` from its folders (``source=<s>/interval=<i>/``), in :data:`~market_ingest.schema.BAR_SCHEMA`.

    :raises CorruptObjectError: it is not Parquet, naming it and its run.
    """
    from market_ingest.lake.objects import _decoding, _parquet_file

    with _decoding(path):
        return with_partition_columns(_parquet_file(path).read(), path)


def with_partition_columns(data: pa.Table | pa.RecordBatch, path: str):
    """``data`` read from the bars data file at ``path`` with ``source`` and ``interval`` (from its
    folders), in :data:`~market_ingest.schema.BAR_SCHEMA`'s order and types."""
    import re

    import pyarrow as pa

    from market_ingest.schema import BAR_SCHEMA

    matches = list(re.finditer(r"/source=([^/]+)/interval=([^/]+)/period=", path))
    found = matches[-1] if matches else None  # the last: the lake's own prefix may hold such folders
    if found is None:
        raise ValueError(f"{path}: not a bars data file (no source=/interval= folders)")
    n = data.num_rows
    columns = {name: data.column(name) for name in data.schema.names}
    columns["source"] = pa.repeat(pa.scalar(found.group(1)), n)
    columns["interval"] = pa.repeat(pa.scalar(found.group(2)), n)
    arrays = [columns[f.name].cast(f.type) if columns[f.name].type != f.type else columns[f.name] for f in BAR_SCHEMA]
    if isinstance(data, pa.RecordBatch):
        return pa.RecordBatch.from_arrays(arrays, schema=BAR_SCHEMA)
    return pa.Table.from_arrays(arrays, schema=BAR_SCHEMA)


def check_staged_files(files: list[dict[str, Any]]) -> bool:
    """Check that each staged bars file is still what its extract wrote (its size: one ``HEAD``
    each, in parallel) before a publish commits it unread: a truncated or replaced file would
    otherwise enter the table and fail its readers.

    :return: whether every file is young enough to be committed unread: written less than half
        :data:`VACUUM_RETENTION_HOURS` ago. An older one could be removed by a vacuum between this
        check and the commit (the vacuum takes an unreferenced file for debris once past the
        retention), and the table would point at a missing file: the publish merges those runs
        (reads the files now and writes their bars anew).
    :raises StagedObjectGoneError: a file is gone (vacuumed, deleted), naming it and its run.
    :raises CorruptObjectError: a file is of another size than written, naming it and its run
        (permanent: clear the run's extract tasks).
    """
    import time
    from concurrent.futures import ThreadPoolExecutor

    from market_ingest.errors import StagedObjectGoneError
    from market_ingest.lake.layout import lake_root
    from market_ingest.lake.objects import staged_run

    def info(f: dict[str, Any]) -> dict[str, Any] | None:
        path = lake_root(f["path"])
        try:
            return path.fs.info(path.path)
        except FileNotFoundError:
            return None

    with ThreadPoolExecutor(max_workers=min(8, len(files))) as pool:
        found = list(pool.map(info, files))
    fresh = True
    for f, meta in zip(files, found, strict=True):
        run = staged_run(f["path"])
        if meta is None:
            raise StagedObjectGoneError(
                "lake",
                f"staged object {f['path']} of run {run} is gone (the bars table's vacuum removes staged files no version "
                f"references once older than {VACUUM_RETENTION_HOURS} hours): clear the run's extract tasks to stage it again",
            )
        if int(meta["size"]) != f["size"]:
            raise CorruptObjectError(
                "lake",
                f"staged object {f['path']} of run {run} cannot be read as Parquet (it is {meta['size']} bytes, its extract "
                f"wrote {f['size']}); a retry reads the same bytes: clear the run's extract tasks to stage it again",
            )
        modified: Any = meta.get("LastModified") or meta.get("mtime") or time.time()  # S3: a datetime; local: seconds
        written = modified.timestamp() if hasattr(modified, "timestamp") else float(modified)
        fresh = fresh and time.time() - written < VACUUM_RETENTION_HOURS * 3600 / 2
    return fresh
