"""Backlog of symbols deferred by a spent daily quota (``market.deferred_symbols``, migration V005).

A deferred symbol is not a failure: the run reports it, and the next run of the same
(source, interval) fetches it over a window widened back to where the deferral began. Rows are
deleted once the symbol was fetched. Only sources whose hook can defer (``kinds.SourceKind.defers``)
touch this table.
"""

from __future__ import annotations

from contextlib import closing
from datetime import datetime


def defer(hook, source: str, interval: str, symbols: list[str], start: datetime, end: datetime, reason: str) -> None:
    """Record ``symbols`` as deferred for ``[start, end)``; repeating a deferral is a no-op."""
    if not symbols:
        return
    with closing(hook.get_conn()) as conn, conn.transaction(), conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO market.deferred_symbols (source, interval, symbol, window_start, window_end, reason) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (source, interval, symbol, window_start) DO NOTHING",
            [(source, interval, s, start, end, reason[:500]) for s in symbols],
        )


def pending(hook, source: str, interval: str) -> dict[str, datetime]:
    """``{symbol: earliest deferred window start}`` for a (source, interval)."""
    with closing(hook.get_conn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT symbol, min(window_start) FROM market.deferred_symbols WHERE source = %s AND interval = %s GROUP BY symbol",
            (source, interval),
        )
        return dict(cur.fetchall())


def settle(hook, source: str, interval: str, symbols: list[str], until: datetime) -> int:
    """Delete deferrals of ``symbols`` whose windows end by ``until``; return rows deleted."""
    if not symbols:
        return 0
    with closing(hook.get_conn()) as conn, conn.transaction(), conn.cursor() as cur:
        cur.execute(
            "DELETE FROM market.deferred_symbols WHERE source = %s AND interval = %s AND symbol = ANY(%s) AND window_end <= %s",
            (source, interval, list(symbols), until),
        )
        return cur.rowcount
