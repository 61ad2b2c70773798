"""Reading the ledger: days per state per (source, interval) (:func:`summary`), the rows that are
not complete (:func:`incomplete`), and both as text (:func:`format_summary`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from market_ingest.coverage.states import STATE_COUNTS, STATES, VENDOR_EMPTY


def _filters(source: str | None, interval: str | None, *conditions: str) -> tuple[list[str], list[str]]:
    """SQL conditions (ANDed) and their arguments for an optional source and interval."""
    where, args = list(conditions), []
    for column, value in (("source", source), ("interval", interval)):
        if value:
            where.append(f"{column} = %s")
            args.append(value)
    return where, args


def summary(conn, source: str | None = None, interval: str | None = None) -> list[dict[str, Any]]:
    """The ledger per (source, interval): days per state, expected and loaded bars, the span and the last run.

    :param conn: an open psycopg connection to the warehouse.
    :return: ``[{"source", "interval", "symbols", "first_day", "last_day", "expected", "loaded",
        "last_run", "flagged" (bars with an anomaly flag), <state>: days, ...}]`` ordered by source and interval.
    """
    where, args = _filters(source, interval)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT source, interval, count(DISTINCT symbol) AS symbols, min(day) AS first_day, max(day) AS last_day, "
            f"sum(expected)::bigint AS expected, sum(loaded)::bigint AS loaded, {STATE_COUNTS}, sum(flagged)::bigint AS flagged, "
            "(array_agg(run_id ORDER BY updated_at DESC))[1] AS last_run "
            "FROM market.coverage "
            + ("WHERE " + " AND ".join(where) if where else "")
            + " GROUP BY source, interval ORDER BY source, interval",
            args,
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def incomplete(conn, source: str | None = None, interval: str | None = None, limit: int = 50) -> list[dict[str, Any]]:
    """The ledger's rows that are not ``complete``, newest day first (at most ``limit``).

    :return: ``[{"source", "interval", "symbol", "day", "state", "expected", "loaded", "reason", "run_id"}]``.
    """
    where, args = _filters(source, interval, "state <> 'complete'")
    with conn.cursor() as cur:
        cur.execute(
            "SELECT source, interval, symbol, day, state, expected, loaded, reason, run_id FROM market.coverage "
            f"WHERE {' AND '.join(where)} ORDER BY day DESC, source, interval, symbol LIMIT %s",
            [*args, limit],
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def format_summary(rows: list[dict[str, Any]], gaps: Sequence[dict[str, Any]] = ()) -> list[str]:
    """:func:`summary` (and :func:`incomplete`) as aligned text lines for a terminal or a log."""
    short = {VENDOR_EMPTY: "empty"}
    labels = {s: short.get(s, s) for s in STATES}
    width = {s: max(8, len(label)) for s, label in labels.items()}
    head = f"{'source':<16} {'interval':<8} {'symbols':>7} {'days from':<10} {'to':<10} {'cal-expected':>12} {'loaded':>9}"
    lines = [head + "".join(f" {labels[s]:>{width[s]}}" for s in STATES) + f" {'flagged':>8}"]
    for r in rows:
        lines.append(
            f"{r['source']:<16} {r['interval']:<8} {r['symbols']:>7} {r['first_day']!s:<10} {r['last_day']!s:<10} "
            f"{r['expected']:>12} {r['loaded']:>9}" + "".join(f" {r[s]:>{width[s]}}" for s in STATES) + f" {r['flagged']:>8}"
        )
    if not rows:
        lines.append("(the ledger is empty: no load has run yet)")
    for g in gaps:
        lines.append(
            f"  {g['source']}/{g['interval']}/{g['symbol']} {g['day']}: {g['state']} "
            f"({g['loaded']} of {g['expected']} calendar-expected bars) {g['reason']}  [{g['run_id']}]"
        )
    return lines
