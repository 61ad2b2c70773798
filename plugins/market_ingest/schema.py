"""The canonical bar schema (DESIGN.md, "Data contract"), version 1.

``BAR_SCHEMA`` is the single definition: the lake writes it, the TimescaleDB DDL in
``include/sql/migrations/`` mirrors it (a test checks the columns match), and Kinesis records are
its rows as JSON. Imports pyarrow: import this module inside tasks, never at DAG parse time.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = 1

#: Natural key of a bar in every sink. Reruns replace rows with the same key.
NATURAL_KEY: tuple[str, ...] = ("source", "symbol", "interval", "time")

BAR_SCHEMA = pa.schema(
    [
        pa.field("time", pa.timestamp("us", tz="UTC"), nullable=False),  # bar open time, UTC
        pa.field("source", pa.string(), nullable=False),
        pa.field("symbol", pa.string(), nullable=False),
        pa.field("interval", pa.string(), nullable=False),
        pa.field("open", pa.float64(), nullable=False),  # listing currency
        pa.field("high", pa.float64(), nullable=False),
        pa.field("low", pa.float64(), nullable=False),
        pa.field("close", pa.float64(), nullable=False),
        pa.field("volume", pa.float64(), nullable=False),  # units traded (shares, coins)
        pa.field("adj_close", pa.float64()),
        pa.field("vwap", pa.float64()),
        pa.field("trade_count", pa.int64()),
        pa.field("dividend", pa.float64()),  # cash per share, listing currency, on the ex-date bar
        pa.field("split_ratio", pa.float64()),  # new shares per old share on the split bar (4:1 -> 4.0)
        pa.field("currency", pa.string()),  # as the vendor states it: USD, GBp (pence), EUR
        pa.field("ingested_at", pa.timestamp("us", tz="UTC"), nullable=False),
    ],
    metadata={"schema": "market_ingest.bar", "version": str(SCHEMA_VERSION)},
)

BAR_COLUMNS: tuple[str, ...] = tuple(BAR_SCHEMA.names)


def empty_bars() -> pa.Table:
    """A zero-row table with :data:`BAR_SCHEMA`."""
    return BAR_SCHEMA.empty_table()


def conform(table: pa.Table) -> pa.Table:
    """Return ``table`` with exactly the columns, order and types of :data:`BAR_SCHEMA`.

    Missing nullable columns are added as nulls; extra columns are dropped.

    :raises KeyError: naming the column, when a non-nullable column is missing.
    :raises pyarrow.ArrowInvalid: when a column cannot be cast (e.g. text in a price column).
    """
    columns = []
    for field in BAR_SCHEMA:
        if field.name in table.column_names:
            columns.append(table[field.name].cast(field.type))
        elif field.nullable:
            columns.append(pa.nulls(table.num_rows, field.type))
        else:
            raise KeyError(f"bar table lacks required column {field.name!r}")
    return pa.Table.from_arrays(columns, schema=BAR_SCHEMA)
