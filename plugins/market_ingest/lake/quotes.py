"""Quote snapshots as the ``quotes`` Delta table: a run's quotes merged in one commit, read, converted.

**Where.** ``<quotes lake root>/quotes/`` (``lake.quotes_url``; for
``s3://market_aws@market-lake/quotes``: ``s3://market-lake/quotes/quotes/``), partitioned by
``source`` and ``period``, the quote's UTC date (``YYYY-MM-DD``, the same days as the objects
before); opened, created, retried and maintained by the machinery of
:mod:`market_ingest.lake.table`. The rows are :data:`~market_ingest.schema.QUOTE_SCHEMA` plus
``period`` (a string column, dropped by :func:`read_quotes`).

**Publish.** A run's staged quotes are merged on the natural key ``(source, symbol, time)`` in ONE
commit (:func:`publish_quotes`): a stored quote is replaced only by one extracted later
(``ingested_at``), new keys are inserted; the merge's predicate carries the run's sources and
dates as literals, so only those partitions are read. A rerun or a retried publish adds no row;
concurrent runs both commit (the loser of a race merges again, :func:`~market_ingest.lake.table._committing`).

**Before.** Versions before the table wrote one object per (source, date),
``source=<s>/date=<YYYY-MM-DD>/quotes.parquet`` (several per folder in older layouts),
merged by conditional writes; :func:`convert_quotes` (``market_setup``) copies them in once.
Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from market_ingest.contracts import Dataset

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

NAME = Dataset.QUOTES.value
#: The table's partition columns.
PARTITION_COLUMNS = ("source", "period")
#: A stored quote is replaced by an incoming one with the same key only when extracted later.
NEWER = "s.ingested_at > t.ingested_at"


def schema() -> pa.Schema:
    """The quotes table's schema: ``QUOTE_SCHEMA`` plus ``period`` (string: the UTC date)."""
    import pyarrow as pa

    from market_ingest.schema import QUOTE_SCHEMA

    return QUOTE_SCHEMA.append(pa.field("period", pa.string(), nullable=False))


def _with_period(quotes: pa.Table) -> pa.Table:
    from market_ingest.lake.layout import utc_days
    from market_ingest.schema import QUOTE_SCHEMA

    rows = quotes.select(QUOTE_SCHEMA.names).cast(QUOTE_SCHEMA)
    return rows.append_column("period", utc_days(rows)).cast(schema())


def merge_quotes(root: ObjectStoragePath, quotes: pa.Table) -> dict[str, Any]:
    """Merge ``quotes`` (``QUOTE_SCHEMA``, each key once) into the table in one commit.

    :return: :func:`~market_ingest.lake.table.merge_rows`' counts (``kept``: quotes not applied
        because the stored one was extracted later).
    :raises DeltaCommitError: other commits kept conflicting (retryable).
    """
    import pyarrow.compute as pc

    from market_ingest.lake.table import _quoted, merge_rows
    from market_ingest.schema import QUOTE_KEY

    data = _with_period(quotes)
    narrow = (
        f"t.source IN ({_quoted(pc.unique(data['source']).to_pylist())}) "
        f"AND t.period IN ({_quoted(sorted(pc.unique(data['period']).to_pylist()))})"
    )
    return merge_rows(root, data, NAME, (*QUOTE_KEY, "period"), replace_when=NEWER, narrow=narrow)


def publish_quotes(staged: list[dict[str, Any]], root: ObjectStoragePath, source: str) -> list[dict[str, Any]]:
    """Merge a run's staged quotes into the quotes table in one commit (:func:`merge_quotes`).

    Reads the run's staged objects whole and keeps the newest extraction of a key several share.

    :param staged: the extract batches' staged objects (``{"path", ...}``).
    :return: one ``{"path": the partition's folder URL, "partition": the UTC date, "rows": quotes
        now in it, "run_rows", "kept_newer", "rows_by_symbol", "version": the commit}`` per date
        the run touched, oldest first; ``[]`` for no rows.
    :raises SinkNotFoundError: the lake's bucket or folder does not exist.
    :raises CorruptObjectError: a staged object is not Parquet, naming it and its run.
    :raises DeltaCommitError: conflicting commits on every attempt (retryable).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.lake.layout import check_lake
    from market_ingest.lake.merge import newest_per_key
    from market_ingest.lake.objects import _decoding, _parquet_file
    from market_ingest.lake.table import open_table, read_table, table_uri
    from market_ingest.schema import QUOTE_KEY, QUOTE_SCHEMA

    check_lake(root)
    parts = []
    for s in sorted(staged, key=lambda s: s["path"]):
        with _decoding(s["path"]):
            parts.append(_parquet_file(s["path"]).read().cast(QUOTE_SCHEMA))
    rows = newest_per_key(pa.concat_tables(parts), QUOTE_KEY) if parts else QUOTE_SCHEMA.empty_table()
    if rows.num_rows == 0:
        return []
    merged = merge_quotes(root, rows)
    data = _with_period(rows)
    kept: dict[str, int] = {}
    if merged["kept"]:  # rare: read back which quotes a later extraction kept
        stored = read_table(root, pc.field("period").isin(pc.unique(data["period"])), version=merged["version"], dataset=NAME)
        joined = data.select(["source", "symbol", "time", "ingested_at", "period"]).join(
            stored.select(["source", "symbol", "time", "ingested_at"]).rename_columns(["source", "symbol", "time", "stored_at"]),
            keys=["source", "symbol", "time"],
        )
        counts = pc.value_counts(joined.filter(pc.greater(joined["stored_at"], joined["ingested_at"]))["period"])
        kept = dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist()))
    named = pc.unique(data["source"]).to_pylist()
    source = named[0] if len(named) == 1 else source
    dt = open_table(root, version=merged["version"], dataset=NAME)
    actions = pa.table(dt.get_add_actions(flatten=True)) if dt is not None else None
    stored_rows: dict[str, int] = {}
    if actions is not None and actions.num_rows:
        mine = actions.filter(pc.equal(actions["partition.source"], source))
        sums = mine.group_by("partition.period").aggregate([("num_records", "sum")])
        stored_rows = dict(zip(sums["partition.period"].to_pylist(), sums["num_records_sum"].to_pylist()))
    uri = table_uri(root, NAME)
    out = []
    for period in sorted(pc.unique(data["period"]).to_pylist()):
        part = data.filter(pc.equal(data["period"], period))
        counts = pc.value_counts(part["symbol"])
        out.append(
            {
                "path": f"{uri}/source={source}/period={period}",
                "partition": period,
                "rows": stored_rows.get(period, 0),
                "run_rows": part.num_rows,
                "kept_newer": kept.get(period, 0),
                "rows_by_symbol": dict(zip(counts.field("values").to_pylist(), counts.field("counts").to_pylist())),
                "version": merged["version"],
            }
        )
    return out


def read_quotes(
    root: ObjectStoragePath, source: str, start: datetime, end: datetime, *, version: int | datetime | None = None
) -> pa.Table:
    """Every quote of ``source`` stamped in ``[start, end)`` (UTC), at ``version`` (time travel)
    or the current one, sorted by symbol and time, as ``QUOTE_SCHEMA`` (each key stored once)."""
    import pyarrow.compute as pc

    from market_ingest.intervals import utc_dates
    from market_ingest.lake.table import read_table
    from market_ingest.schema import QUOTE_SCHEMA, utc_timestamp

    flt = (
        (pc.field("source") == source)
        & pc.field("period").isin(utc_dates(start, end))
        & (pc.field("time") >= utc_timestamp(start))
        & (pc.field("time") < utc_timestamp(end))
    )
    rows = read_table(root, flt, version=version, dataset=NAME).select(QUOTE_SCHEMA.names).cast(QUOTE_SCHEMA)
    return rows.sort_by([("symbol", "ascending"), ("time", "ascending")])


def convert_quotes(root: ObjectStoragePath, source: str) -> dict[str, Any]:
    """Copy the quote objects earlier versions wrote for ``source`` (``source=<s>/date=<d>/*.parquet``)
    into the quotes table, and verify: ``market_setup``'s conversion, idempotent.

    The objects' newest extraction of each key is merged where the table lacks the key or holds
    an older extraction (so a quote a run published since, extracted later, is kept), in one
    commit; then every quote of the objects must be in the table, as extracted or newer. A second
    run merges nothing and commits nothing. The objects are left where they are.

    :return: ``{"objects": objects read, "rows": their distinct quotes, "rows_merged": quotes
        written now, "commits": commits made}``.
    :raises ConversionError: quotes of the objects missing from the table afterwards, naming how many.
    :raises CorruptObjectError: an object is not Parquet of the quote schema.
    """
    import pyarrow as pa

    from market_ingest.lake.merge import newest_per_key
    from market_ingest.lake.objects import read_parquet
    from market_ingest.lake.partitions import _objects, _partition_folders
    from market_ingest.lake.table import ConversionError
    from market_ingest.schema import QUOTE_KEY

    parts = [
        read_parquet(obj, Dataset.QUOTES) for _, _, folder in _partition_folders(root, source, None) for obj in _objects(folder)
    ]
    stats = {"objects": len(parts), "rows": 0, "rows_merged": 0, "commits": 0}
    if not parts:
        return stats
    legacy = newest_per_key(pa.concat_tables(parts), QUOTE_KEY)
    stats["rows"] = legacy.num_rows
    todo = _not_in_table(root, legacy)
    if todo.num_rows:
        merge_quotes(root, todo)
        stats["rows_merged"], stats["commits"] = todo.num_rows, 1
    missing = _not_in_table(root, legacy).num_rows
    if missing:
        raise ConversionError(
            source,
            f"quotes: {missing} of the {legacy.num_rows} quotes of the Parquet objects are not in the quotes table "
            "after the conversion; the objects are untouched, run it again",
        )
    return stats


def _not_in_table(root: ObjectStoragePath, quotes: pa.Table) -> pa.Table:
    """The quotes of ``quotes`` (each key once) the table lacks or holds an older extraction of."""
    import pyarrow.compute as pc

    from market_ingest.lake.table import read_table

    data = _with_period(quotes)
    stored = read_table(
        root,
        pc.field("source").isin(pc.unique(data["source"])) & pc.field("period").isin(pc.unique(data["period"])),
        dataset=NAME,
    )
    stored = stored.select(["source", "symbol", "time", "ingested_at"]).rename_columns(["source", "symbol", "time", "stored_at"])
    joined = quotes.join(stored, keys=["source", "symbol", "time"], join_type="left outer")
    stale = pc.or_kleene(pc.is_null(joined["stored_at"]), pc.greater(joined["ingested_at"], joined["stored_at"]))
    return joined.filter(pc.fill_null(stale, False)).select(quotes.schema.names)
