"""Anomaly checks: loaded bars that look wrong against the symbol's own recent history, flagged in
``market.bar_flags`` (migration V010), never dropped.

Run by each load in its transaction, after the bars are written, over the span each symbol's run
asked for, against the ``trailing_bars`` stored bars before each bar (:class:`~market_ingest.config.AnomalyConfig`):

* ``return_outlier``: the log return ``ln(close / previous close)`` is more than ``return_z``
  standard deviations from the trailing returns' mean (at least ``min_bars`` of them);
* ``unit_100x``: the close is at least ``unit_ratio`` times, or at most ``1 / unit_ratio`` of, the
  previous close (a price in pence among prices in pounds, or the other way);
* ``stale_close``: the bar ends a run of at least ``stale_closes`` identical closes while volume
  traded (a price the vendor stopped updating);
* ``volume_spike``: the volume is more than ``volume_z`` standard deviations above the trailing mean.

Bars are stored as traded, so a split moves the close by its ratio: returns, the unit check and
volumes are computed across a split on one basis, by the symbol's splits in
``market.corporate_actions`` (the load upserts its run's actions before its bars). A bar is
dated by its UTC date when daily or longer, else in its exchange's timezone (``tzs``).

The bar a unit error hits, and the bar after it, are both flagged (each differs 100x from its
previous close). One SQL statement computes them, its windows over one ordering of each symbol's
bars (the trailing figures from running sums, one step per bar); a rerun replaces the flags of its
span, so a corrected bar loses its flag.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

#: Every flag, in the order the report shows them.
FLAGS = ("return_outlier", "unit_100x", "stale_close", "volume_spike")

#: Calendar time per bar, to reach ``trailing_bars`` bars back (doubled below for closed days).
_BAR_SPAN = {"1d": timedelta(days=1), "1wk": timedelta(days=7), "1mo": timedelta(days=31)}

_SQL = """
WITH k AS (
    SELECT * FROM unnest(%(symbols)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[], %(tzs)s::text[])
        AS k(symbol, f, u, tz)
), b0 AS (
    SELECT b.symbol, b.time, b.close, b.volume, k.f, k.u, (b.time AT TIME ZONE k.tz)::date AS d
    FROM k JOIN {table} b ON b.source = %(source)s AND b.symbol = k.symbol
        AND b.time >= k.f - %(reach)s::interval AND b.time < k.u
{basis}), s AS (
    -- One ordering for every window (w, p): the bars are sorted once. Each bar's return and step
    -- from the bar before, and the return and volume of the bar `trailing` bars back, the one
    -- that leaves the trailing window at this bar.
    SELECT symbol, time, close, volume / m AS volume, m, time >= f AND time < u AS in_span,
           lag(close) OVER w AS prev_close,
           ln(close * m / NULLIF(lag(close * m) OVER w, 0)) AS r,
           close * m / NULLIF(lag(close * m) OVER w, 0) AS step,
           ln(lag(close * m, %(trailing)s) OVER w / NULLIF(lag(close * m, %(trailing)s + 1) OVER w, 0)) AS r_out,
           lag(volume / m, %(trailing)s) OVER w AS v_out,
           close = lag(close) OVER w AS same_close, close = lead(close) OVER w AS next_same,
           volume / m IS NOT DISTINCT FROM lag(volume / m) OVER w AS same_volume,
           row_number() OVER w AS i
    FROM a WHERE bar = 1
    WINDOW w AS (PARTITION BY symbol ORDER BY time)
), g AS (
    -- The trailing returns' and volumes' count, sum and sum of squares: running sums over the bars
    -- before each bar (p, one step per bar) of the values minus those that left the window, which
    -- are the same sums `trailing` bars back. A window of zero returns or volumes sums to exactly 0;
    -- one of equal volumes is found by its last change (v_constant), its spread is exactly 0 too.
    SELECT symbol, time, close, prev_close, m, volume, r, step, in_span, i, same_close, next_same,
           count(r) OVER p - count(r_out) OVER p AS n,
           sum(r) OVER p - coalesce(sum(r_out) OVER p, 0) AS sr,
           sum(r * r) OVER p - coalesce(sum(r_out * r_out) OVER p, 0) AS qr,
           count(volume) OVER p - count(v_out) OVER p AS nv,
           sum(volume) OVER p - coalesce(sum(v_out) OVER p, 0) AS sv,
           sum(volume * volume) OVER p - coalesce(sum(v_out * v_out) OVER p, 0) AS qv,
           max(CASE WHEN same_close THEN NULL ELSE i END) OVER p AS run_before,
           max(CASE WHEN same_volume THEN NULL ELSE i END) OVER p <= greatest(i - %(trailing)s, 1) AS v_constant
    FROM s
    WINDOW p AS (PARTITION BY symbol ORDER BY time ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)
), x AS (
    -- The checks, on the trailing mean and variance (avg and var_samp: NULL below 1 and 2 values;
    -- OFFSET 0: computed once per bar, not once per use): |r - mean| / sd > z as (r - mean)^2 > z^2 var.
    SELECT *,
           n >= %(min_bars)s AND r_var > 0 AND (r - r_mean) * (r - r_mean) > %(return_z)s * %(return_z)s * r_var AS is_outlier,
           step > 0 AND (step >= %(unit_ratio)s OR step <= 1 / %(unit_ratio)s) AS is_unit,
           n >= %(min_bars)s AND v_var > 0 AND volume > v_mean AND (volume - v_mean) * (volume - v_mean) > %(volume_z)s * %(volume_z)s * v_var AS is_spike
    FROM (
        SELECT symbol, time, close, prev_close, m, volume, r, step, in_span, n, i, same_close, next_same, run_before,
               CASE WHEN n > 0 THEN sr / n END AS r_mean, CASE WHEN n > 1 THEN (qr - sr * sr / n) / (n - 1) END AS r_var,
               CASE WHEN nv > 0 THEN sv / nv END AS v_mean,
               CASE WHEN nv > 1 THEN CASE WHEN v_constant THEN 0 ELSE (qv - sv * sv / nv) / (nv - 1) END END AS v_var
        FROM g OFFSET 0
    ) AS t
), c AS (
    -- Few bars are left: those a check flags and those of a run of two or more equal closes
    -- (from before the span too). Over them each run's length and volume, summed in time order
    -- from its first bar; then the span's bars.
    SELECT *, same_closes >= %(stale_closes)s AND run_volume > 0 AS is_stale, sqrt(greatest(r_var, 0)) AS r_sd,
           sqrt(greatest(v_var, 0)) AS v_sd
    FROM (
        SELECT *, row_number() OVER r AS same_closes, sum(volume) OVER r AS run_volume
        FROM (SELECT *, CASE WHEN same_close THEN run_before ELSE i END AS run_start FROM x
              WHERE same_close OR next_same OR (in_span AND (is_outlier OR is_unit OR is_spike))) AS few
        WINDOW r AS (PARTITION BY symbol, run_start ORDER BY time)
    ) AS y
    WHERE in_span
)
SELECT symbol, time, flag, detail FROM c CROSS JOIN LATERAL (VALUES
    ('return_outlier', CASE WHEN is_outlier THEN
        format('log return %%s is %%s standard deviations from the mean of the %%s bars before (close %%s, previous %%s)',
               round(r::numeric, 4), round((abs(r - r_mean) / r_sd)::numeric, 1), n, close, prev_close) END),
    ('unit_100x', CASE WHEN is_unit THEN
        format('close %%s is %%s times the previous close %%s', close, round(step::numeric, 4), prev_close) END),
    ('stale_close', CASE WHEN is_stale THEN
        format('%%s bars in a row closed at %%s with %%s volume traded', same_closes, close, run_volume) END),
    ('volume_spike', CASE WHEN is_spike THEN
        format('volume %%s is %%s standard deviations above the mean of the %%s bars before (%%s)',
               round((volume * m)::numeric), round(((volume - v_mean) / v_sd)::numeric, 1), n, round(v_mean::numeric)) END)
) AS f(flag, detail)
WHERE (is_outlier OR is_unit OR is_stale OR is_spike) AND detail IS NOT NULL
"""


#: The bars on one basis across the symbols' splits (``a``: each bar's ``m``, its ``close * m``
#: and ``volume / m`` comparable across a split; rows with ``bar = 0`` are the splits themselves).
_SPLIT_BASIS = """), e AS (
    -- The symbols' splits (market.corporate_actions) as rows among the bars: a running sum of
    -- ln(ratio) over both, ordered by date with a split before the bars of its ex-date, gives each
    -- bar m, the product of the ratios up to its date. close * m and volume / m are then on one
    -- basis across a split (bars are stored as traded: otherwise a split is a jump by its ratio).
    SELECT symbol, time, close, volume, f, u, d, 1 AS bar, 0.0::float8 AS lr FROM b0
    UNION ALL
    SELECT c.symbol, NULL, NULL, NULL, NULL, NULL, c.ex_date, 0, ln(c.ratio)
    FROM market.corporate_actions c
    WHERE c.source = %(source)s AND c.kind = 'split' AND c.ratio > 0 AND c.symbol = ANY(%(symbols)s::text[])
), a AS (
    SELECT symbol, time, close, volume, f, u,
           exp(sum(lr) OVER (PARTITION BY symbol ORDER BY d, bar, time ROWS UNBOUNDED PRECEDING)) AS m, bar
    FROM e
"""
#: ``a`` when none of the symbols has a split: every ``m`` is 1, what :data:`_SPLIT_BASIS` computes
#: then (``exp`` of a sum of zeros), without the sort and the window over every bar it costs.
_NO_SPLITS = """), a AS (
    SELECT symbol, time, close, volume, f, u, 1.0::float8 AS m, 1 AS bar FROM b0
"""
#: Whether any symbol of the run has a split, which decides between the two.
_HAS_SPLITS = """SELECT EXISTS (
    SELECT FROM market.corporate_actions
    WHERE source = %s AND kind = 'split' AND ratio > 0 AND symbol = ANY(%s::text[])
)"""


def flag(
    cur,
    *,
    source: str,
    interval: str,
    table: str,
    spans: list[tuple[str, Any, Any]],
    settings,
    run_id: str,
    tz_of: Callable[[str], str] | None = None,
) -> list[dict]:
    """Flag the bars of ``spans`` in ``table``, replacing their earlier flags, on the load's cursor.

    :param cur: a psycopg cursor in the transaction that wrote the bars.
    :param table: the bars table of ``interval`` (``market.bars_1d``).
    :param spans: ``[(symbol, start, end)]`` (UTC, end exclusive): what the run asked for.
    :param settings: the source's :class:`~market_ingest.config.AnomalyConfig`.
    :param run_id: the run, written with each flag.
    :param tz_of: ``symbol -> its exchange's IANA timezone``, dating intraday bars against split
        ex-dates; ``None``: UTC. Daily and longer bars are dated by their UTC date whatever it says.
    :return: the flags written: ``[{"symbol", "time", "flag", "detail"}]`` by symbol and time.
    """
    from psycopg import sql

    from market_ingest.intervals import INTERVAL_LENGTH, INTRADAY_INTERVALS

    if not spans or not settings.enabled:
        return []
    symbols, starts, ends = (list(x) for x in zip(*spans, strict=True))
    intraday = interval in INTRADAY_INTERVALS
    tzs = [tz_of(s) if tz_of and intraday else "UTC" for s in symbols]
    cur.execute(
        "DELETE FROM market.bar_flags f USING unnest(%s::text[], %s::timestamptz[], %s::timestamptz[]) AS k(symbol, s, e) "
        "WHERE f.source = %s AND f.interval = %s AND f.symbol = k.symbol AND f.time >= k.s AND f.time < k.e",
        (symbols, starts, ends, source, interval),
    )
    bar = INTERVAL_LENGTH.get(interval) or _BAR_SPAN[interval]
    reach = bar * settings.trailing_bars * 2 + timedelta(days=7)  # closed days and holidays hold no bar
    (has_splits,) = cur.execute(_HAS_SPLITS, (source, symbols)).fetchone()
    basis = _SPLIT_BASIS if has_splits else _NO_SPLITS
    cur.execute(
        sql.SQL(_SQL.format(basis=basis, table="{table}")).format(table=sql.Identifier(*table.split("."))),
        {
            "symbols": symbols,
            "starts": starts,
            "ends": ends,
            "tzs": tzs,
            "source": source,
            "reach": reach,
            "trailing": settings.trailing_bars,
            "min_bars": settings.min_bars,
            "return_z": settings.return_z,
            "volume_z": settings.volume_z,
            "unit_ratio": settings.unit_ratio,
            "stale_closes": settings.stale_closes,
        },
    )
    rows = [dict(zip(("symbol", "time", "flag", "detail"), r, strict=True)) for r in cur.fetchall()]
    rows.sort(key=lambda r: (r["symbol"], r["time"], FLAGS.index(r["flag"])))
    if rows:
        cur.executemany(
            "INSERT INTO market.bar_flags (source, interval, symbol, time, flag, detail, run_id) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [(source, interval, r["symbol"], r["time"], r["flag"], r["detail"], run_id) for r in rows],
        )
    return rows
