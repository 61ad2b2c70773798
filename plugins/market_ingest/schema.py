"""The canonical bar schema (DESIGN.md, "Data contract"), version 1.

``BAR_SCHEMA`` is the single definition: the lake writes it, the TimescaleDB DDL in
``include/sql/migrations/`` mirrors it (a test checks the columns match), and Kinesis records are
its rows as JSON. Imports pyarrow: import this module inside tasks, never at DAG parse time.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pyarrow as pa

from market_ingest.contracts import Dataset
from market_ingest.intervals import CANONICAL_INTERVALS

#: 2: ``price_basis`` (rows of version 1 have it null: Yahoo's were split-adjusted as of their
#: ``ingested_at``, the other sources' as traded; ``market_setup``'s re-basing converts them).
SCHEMA_VERSION = 2

#: Natural key of a bar in every sink. Reruns replace rows with the same key.
NATURAL_KEY: tuple[str, ...] = ("source", "symbol", "interval", "time")

BAR_SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),  # bar open time, UTC
        pa.field("source", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("interval", pa.string(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),  # listing currency, as traded (price_basis)
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),  # units traded (shares, coins)
        pa.field("adj_close", pa.float64()),  # the vendor's split- and dividend-adjusted close as of ingested_at
        pa.field("vwap", pa.float64()),
        pa.field("trade_count", pa.int64()),
        pa.field("dividend", pa.float64()),  # cash per share, listing currency, on the ex-date bar
        pa.field("split_ratio", pa.float64()),  # new shares per old share on the split bar (4:1 -> 4.0)
        pa.field("currency", pa.string()),  # as the vendor states it: USD, GBp (pence), EUR
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("price_basis", pa.string()),  # as_traded (market_ingest.actions); null: stored before schema 2
    ],
    metadata={"schema": "market_ingest.bar", "version": str(SCHEMA_VERSION)},
)

BAR_COLUMNS: tuple[str, ...] = tuple(BAR_SCHEMA.names)
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def utc_timestamp(value: datetime) -> pa.TimestampScalar:
    """``value`` (aware) as an Arrow ``timestamp[us, UTC]`` scalar, for comparisons with columns.

    Built from integer microseconds: pyarrow imports pandas (about 1 s and 50 MB per task) to
    convert a timezone-aware Python datetime.
    """
    micros = (value - _EPOCH) // timedelta(microseconds=1)
    return pa.scalar(micros, pa.int64()).cast(pa.timestamp("us", tz="UTC"))


def utc_timestamps(value: datetime, n: int) -> pa.Array:
    """``n`` copies of ``value`` (aware) as a ``timestamp[us, UTC]`` array (see :func:`utc_timestamp`)."""
    return pa.repeat(utc_timestamp(value), n)


def empty_bars() -> pa.Table:
    """A zero-row table with :data:`BAR_SCHEMA`."""
    return BAR_SCHEMA.empty_table()


def as_sent(schema: pa.Schema = BAR_SCHEMA) -> pa.Schema:
    """``schema`` with every field nullable: the shape of rows kept as the vendor sent them (the
    lake's rejects table), where a required value may be the very thing that is missing."""
    return pa.schema([f.with_nullable(True) for f in schema], metadata=schema.metadata)


def require_values(table: pa.Table, schema: pa.Schema = BAR_SCHEMA) -> None:
    """Check that every non-nullable column of ``schema`` holds a value in every row of ``table``.

    Parquet refuses such a table with ``ArrowInvalid: Column 'close' is declared non-nullable but
    contains nulls``, which names no row; this names the first offending one. O(columns) when the
    table is valid (Arrow keeps null counts).

    :raises SerializationError: naming the row's source, symbol, open time and the column, e.g.
        ``yahoo:MSFT: bar 2021-08-11T00:00:00+00:00: column close is null ...``. Permanent: the
        same rows fail the same way on every try.
    """
    import pyarrow.compute as pc

    from market_ingest.errors import SerializationError

    for field in schema:
        if field.nullable or field.name not in table.column_names or not table[field.name].null_count:
            continue
        row = table.slice(pc.index(pc.is_null(table[field.name]), True).as_py(), 1).to_pylist()[0]
        when = row["time"].isoformat() if row.get("time") else "with no time"
        raise SerializationError(
            row.get("source") or "lake",
            f"bar {when}: column {field.name} is null, and {(schema.metadata or {}).get(b'schema', b'the schema').decode()} "
            "requires a value "
            "(rows are validated before they are staged: market_ingest.quality)",
            row.get("symbol"),
        )


def conform(table: pa.Table, schema: pa.Schema = BAR_SCHEMA) -> pa.Table:
    """Return ``table`` with exactly the columns, order and types of ``schema`` (default bars).

    Missing nullable columns are added as nulls; extra columns are dropped.

    :raises KeyError: naming the column, when a non-nullable column is missing.
    :raises pyarrow.ArrowInvalid: when a column cannot be cast (e.g. text in a price column).
    """
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise KeyError(f"{schema.metadata[b'schema'].decode()} table lacks required column {field.name!r}")
    return pa.Table.from_arrays(columns, schema=schema)


#: Quote snapshots (``GLOBAL_QUOTE``, exchange tickers), version 1. ``time`` is the vendor's quote
#: time when it gives one, else the end of the run's data interval (so a rerun replaces the row).
QUOTE_SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("price", pa.float64(), nullable=False),  # last price, listing currency
        pa.field("open", pa.float64()),
        pa.field("high", pa.float64()),
        pa.field("low", pa.float64()),
        pa.field("previous_close", pa.float64()),
        pa.field("change", pa.float64()),  # price - previous_close
        pa.field("volume", pa.float64()),  # units traded in the latest trading day
        pa.field("latest_trading_day", pa.date32()),
        pa.field("currency", pa.string()),
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ],
    metadata={"schema": "market_ingest.quote", "version": "1"},
)
QUOTE_KEY: tuple[str, ...] = ("source", "symbol", "time")


@dataclass(frozen=True)
class StoredDataset:
    """What the sinks need to know about a dataset: its schema, natural key and warehouse table.

    :param table: the name to query (``market.bars`` is a view over one table per interval).
    :param per_interval: rows are stored in one table per canonical interval, ``<table>_<interval>``
        (``market.bars_1m``): each TimescaleDB hypertable then has chunks sized for its interval.
    """

    name: str
    schema: pa.Schema
    key: tuple[str, ...]
    table: str
    per_interval: bool = False

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.schema.names)

    def storage(self, interval: str | None = None) -> str:
        """The table rows of ``interval`` are stored in: ``market.bars_1d`` for bars, ``market.quotes`` for quotes.

        :raises ValueError: a per-interval dataset asked without a canonical interval.
        """
        if not self.per_interval:
            return self.table
        if interval not in CANONICAL_INTERVALS:
            raise ValueError(f"{self.name} are stored per interval; {interval!r} is not one of {' '.join(CANONICAL_INTERVALS)}")
        return f"{self.table}_{interval}"

    def storage_tables(self) -> list[str]:
        """Every table the dataset is stored in."""
        return [self.storage(i) for i in CANONICAL_INTERVALS] if self.per_interval else [self.table]

    @property
    def series(self) -> tuple[str, ...]:
        """The key without ``time``: what names one series (bars: ``(source, symbol, interval)``)."""
        return tuple(c for c in self.key if c != "time")

    def wire_schema(self) -> pa.Schema:
        """The schema rows are encoded with for a binary ``COPY``: every field nullable on the
        wire, so the table's ``NOT NULL`` constraints judge a missing value and the load fails
        there, whole, as on any other constraint violation."""
        return pa.schema([f.with_nullable(True) for f in self.schema])


DATASETS: dict[Dataset, StoredDataset] = {
    Dataset.BARS: StoredDataset("bars", BAR_SCHEMA, NATURAL_KEY, "market.bars", per_interval=True),
    Dataset.QUOTES: StoredDataset("quotes", QUOTE_SCHEMA, QUOTE_KEY, "market.quotes"),
}
