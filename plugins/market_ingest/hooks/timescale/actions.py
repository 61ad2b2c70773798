"""Corporate actions in the warehouse (migration V013): the upsert of an action table into
``market.corporate_actions`` (:func:`upsert_actions`), and the conversion of bars stored before
the price basis existed to as traded (:func:`rebase_bars`).

What each action means is :mod:`market_ingest.actions`; adjusted series are read with the SQL
function ``market.bars_adjusted``. :class:`~market_ingest.hooks.timescale.TimescaleHook` runs
these through its connection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    import pyarrow as pa


class LegacyBasis(NamedTuple):
    """What a series' rows stored before schema 2 (``price_basis`` NULL) are.

    :param split_adjusted: the vendor had adjusted them for every split up to their
        ``ingested_at`` (Yahoo's equities); else they are as traded.
    :param tz: the exchange's timezone (IANA), dating intraday bars and ``ingested_at``.
    """

    split_adjusted: bool
    tz: str = "America/New_York"


_UPSERT_ACTION = """
INSERT INTO market.corporate_actions AS stored (source, symbol, ex_date, kind, ratio, amount, currency, first_seen, extracted_at)
VALUES (%(source)s, %(symbol)s, %(ex_date)s, %(kind)s, %(ratio)s, %(amount)s, %(currency)s, %(first_seen)s, %(extracted_at)s)
ON CONFLICT (source, symbol, ex_date, kind) DO UPDATE SET
    first_seen = least(stored.first_seen, EXCLUDED.first_seen),
    ratio = CASE WHEN EXCLUDED.extracted_at > stored.extracted_at THEN EXCLUDED.ratio ELSE stored.ratio END,
    amount = CASE WHEN EXCLUDED.extracted_at > stored.extracted_at THEN EXCLUDED.amount ELSE stored.amount END,
    currency = CASE WHEN EXCLUDED.extracted_at > stored.extracted_at THEN EXCLUDED.currency ELSE stored.currency END,
    extracted_at = greatest(stored.extracted_at, EXCLUDED.extracted_at)
WHERE EXCLUDED.first_seen < stored.first_seen OR EXCLUDED.extracted_at > stored.extracted_at
"""

_UPSERT_CHECKED = """
INSERT INTO market.corporate_actions_checked AS stored (source, symbol, checked_at) VALUES (%s, %s, %s)
ON CONFLICT (source, symbol) DO UPDATE SET checked_at = EXCLUDED.checked_at WHERE EXCLUDED.checked_at > stored.checked_at
"""


def upsert_actions(conn, table: pa.Table, checked: Mapping[tuple[str, str], datetime] | None = None) -> int:
    """Upsert corporate actions into ``market.corporate_actions``, in one transaction.

    An action already stored keeps the earlier ``first_seen`` of the two (when this product first
    saw it) and takes ``ratio``, ``amount``, ``currency`` and ``extracted_at`` from the answer
    extracted later (a vendor correcting an amount restates it). Nothing is written for a row
    neither earlier-seen nor later-extracted than the stored one, so a repeated upsert writes
    nothing. A key given twice is applied in order, with the same rule.

    :param conn: an open psycopg connection (committed here; left open).
    :param table: rows of :func:`market_ingest.actions.action_schema`.
    :param checked: ``{(source, symbol): the vendor's clock}`` of the answers the rows come from
        (the lake object's ``checked_at``): stored in ``market.corporate_actions_checked``, the
        later clock kept. A symbol checked with no action has an entry here and no row in ``table``.
    :return: actions inserted or changed.
    """
    changed = 0
    with conn.transaction(), conn.cursor() as cur:
        if table.num_rows:  # one statement per row, pipelined; rowcount sums them
            cur.executemany(_UPSERT_ACTION, table.to_pylist())
            changed = cur.rowcount
        if checked:
            cur.executemany(_UPSERT_CHECKED, [(source, symbol, at) for (source, symbol), at in checked.items()])
    return changed


def rebase_bars(
    conn, basis_of: Callable[[str, str], LegacyBasis | None], log, *, columnstore: bool = False
) -> dict[str, dict[str, int]]:
    """Convert every bar stored before schema 2 (``price_basis`` NULL) to as traded, series by series.

    For each bar table, one query lists the series holding such rows (a scan of the table:
    measured in docs/operations.md); then each series is converted by ``market.rebase_bars`` in a
    transaction of its own (on TimescaleDB lifting the cap on tuples decompressed, as the load
    does: a series' rows in columnstore chunks are rewritten whole or not at all). A series whose
    vendor sent split-adjusted prices is converted only for rows whose symbol's actions were asked
    since their ingestion (``market.corporate_actions_checked``); the rest stay NULL, *pending*.
    A second call converts nothing and returns zeros.

    :param conn: an open psycopg connection (left open; each series committed on its own).
    :param basis_of: ``(source, symbol) -> LegacyBasis``, or ``None`` for a source this
        deployment does not configure (its rows stay NULL, pending: their basis is unknown).
    :return: ``{source: {"rebased": rows converted now, "pending": rows left NULL,
        "pending_series": {"<symbol> <interval>": rows left NULL}}}`` for each source that had
        rows stored before schema 2 (empty when none had).
    """
    from psycopg import sql

    from market_ingest.intervals import CANONICAL_INTERVALS

    found: dict[str, dict] = {}
    for interval in CANONICAL_INTERVALS:
        table = sql.Identifier("market", f"bars_{interval}")
        with conn.transaction(), conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT source, symbol, count(*) FROM {} WHERE price_basis IS NULL GROUP BY 1, 2 ORDER BY 1, 2").format(
                    table
                )
            )
            series = cur.fetchall()
        for source, symbol, rows in series:
            counts = found.setdefault(source, {"rebased": 0, "pending": 0, "pending_series": {}})
            basis = basis_of(source, symbol)
            done = 0
            if basis is not None:
                with conn.transaction(), conn.cursor() as cur:
                    if columnstore:
                        cur.execute("SET LOCAL timescaledb.max_tuples_decompressed_per_dml_transaction = 0")
                    cur.execute(
                        "SELECT market.rebase_bars(%s, %s, %s, %s, %s)",
                        (interval, source, symbol, basis.split_adjusted, basis.tz),
                    )
                    done = cur.fetchone()[0]
                log.info(
                    "%s:%s %s: %d of %d rows stored before schema 2 converted to as traded", source, symbol, interval, done, rows
                )
            counts["rebased"] += done
            if rows > done:
                counts["pending"] += rows - done
                counts["pending_series"][f"{symbol} {interval}"] = rows - done
    return found
