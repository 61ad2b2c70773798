"""What the ``market_repair`` DAG asks the vendors again: the coverage ledger's ``partial``,
``missing`` and ``failed`` days (:data:`market_ingest.coverage.REPAIRABLE`), as extract batches.

Per (source, interval), newest first:

* the ledger's repairable rows of the last ``max_days_back`` days, one symbol's days merged into
  one window when no more than :data:`MERGE_GAP` apart (a weekend between two missing sessions
  costs no second request; a complete day inside is asked again and rewritten only if it changed);
* a window ending before the oldest bar the vendor serves (:func:`market_ingest.sources.oldest_servable`:
  Yahoo's 30 days of 1m bars, Kraken's 720 candles) is **unrecoverable**: its rows' reason says so
  (``unrecoverable: ...``) and later repairs skip them; one reaching past it is asked from there;
* windows are taken until the next would spend more than ``max_requests`` vendor requests
  (:func:`market_ingest.sources.planned_requests`); the rest wait for the next repair run;
* symbols with the same window share a batch of the source's batch size.

The batches have the shape of :class:`~market_ingest.operators.market.MarketPlanOperator`'s, so
the rest of the repair is an ordinary ingestion run: the same extract (in the source's pool),
lake, warehouse and Kinesis tasks, and its load rewrites the ledger rows of what it asked.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from market_ingest.coverage import REPAIRABLE

#: Two repairable days of one symbol this close (end to start) are asked in one window.
MERGE_GAP = timedelta(days=4)
#: Prefix of the reason of a ledger row the vendor can no longer serve.
UNRECOVERABLE = "unrecoverable: "


@dataclass
class RepairPlan:
    """A repair run's plan for one (source, interval).

    :param batches: extract batches ``{"batch", "symbols", "start", "end", "since": {}}`` (ISO UTC).
    :param days: repairable ledger rows found (symbol-days).
    :param requests: vendor requests the batches plan (at most ``max_requests``).
    :param unrecoverable: ``{symbol: [[start, end], ...]}`` windows beyond the vendor's lookback, marked now.
    :param left: ``{symbol: [[start, end], ...]}`` windows left for the next run (the request budget was spent).
    """

    batches: list[dict] = field(default_factory=list)
    days: int = 0
    requests: int = 0
    unrecoverable: dict[str, list[list[str]]] = field(default_factory=dict)
    left: dict[str, list[list[str]]] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-safe counts and windows, for the log and XCom."""
        return {
            "days": self.days,
            "windows": sum(len(b["symbols"]) for b in self.batches),
            "requests": self.requests,
            "unrecoverable": self.unrecoverable,
            "left": self.left,
        }


def _windows(rows: list[tuple[datetime, datetime]]) -> list[list[datetime]]:
    """Merge one symbol's day ranges (sorted) into windows, joining those within :data:`MERGE_GAP`."""
    merged: list[list[datetime]] = []
    for start, end in rows:
        if merged and start - merged[-1][1] <= MERGE_GAP:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def plan_repairs(
    cur,
    *,
    source: str,
    interval: str,
    src,
    now: datetime,
    run_id: str,
    max_requests: int,
    max_days_back: int,
    batch_size: int,
) -> RepairPlan:
    """Plan a repair of ``(source, interval)`` from the ledger, marking what is unrecoverable.

    :param cur: a psycopg cursor in a transaction (the unrecoverable rows are updated on it).
    :param src: the source's ``SourceConfig`` (kind, lookback, request planning).
    :param now: the repair's time (UTC): the lookback and ``max_days_back`` count back from it.
    :param run_id: the repair run, written to the rows it marks unrecoverable.
    :param max_requests: vendor requests the plan may spend.
    :param max_days_back: only days since ``now - max_days_back`` are looked at.
    :param batch_size: symbols per extract batch.
    :return: the :class:`RepairPlan`.
    """
    from market_ingest.intervals import Window
    from market_ingest.sources import oldest_servable, planned_requests

    cur.execute(
        "SELECT symbol, covered_from, covered_until FROM market.coverage WHERE source = %s AND interval = %s "
        "AND state = ANY(%s) AND day >= %s AND reason NOT LIKE %s ORDER BY symbol, day",
        (source, interval, sorted(REPAIRABLE), (now - timedelta(days=max_days_back)).date(), UNRECOVERABLE + "%"),
    )
    by_symbol: dict[str, list[tuple[datetime, datetime]]] = defaultdict(list)
    plan = RepairPlan()
    for symbol, start, end in cur.fetchall():
        by_symbol[symbol].append((start, end))
        plan.days += 1
    oldest = oldest_servable(src, interval, now)
    candidates: list[tuple[str, datetime, datetime]] = []
    for symbol, rows in by_symbol.items():
        for start, end in _windows(rows):
            if oldest and end <= oldest:
                plan.unrecoverable.setdefault(symbol, []).append([start.isoformat(), end.isoformat()])
                cur.execute(
                    "UPDATE market.coverage SET reason = %s || reason, run_id = %s, updated_at = now() "
                    "WHERE source = %s AND interval = %s AND symbol = %s AND covered_from >= %s AND covered_until <= %s "
                    "AND state = ANY(%s)",
                    (
                        f"{UNRECOVERABLE}{source} serves {interval} bars from {oldest.isoformat()} only; ",
                        run_id,
                        source,
                        interval,
                        symbol,
                        start,
                        end,
                        sorted(REPAIRABLE),
                    ),
                )
                continue
            candidates.append((symbol, max(start, oldest) if oldest else start, end))
    windows: dict[tuple[datetime, datetime], list[str]] = defaultdict(list)
    for symbol, start, end in sorted(candidates, key=lambda c: (c[2], c[0]), reverse=True):  # newest first
        cost = planned_requests(src, source, interval, [symbol], Window(start, end), now)
        if plan.requests + cost > max_requests:
            plan.left.setdefault(symbol, []).append([start.isoformat(), end.isoformat()])
            continue
        plan.requests += cost
        windows[start, end].append(symbol)
    for (start, end), symbols in sorted(windows.items(), reverse=True):
        for i in range(0, len(symbols), batch_size):
            plan.batches.append(
                {
                    "batch": len(plan.batches),
                    "symbols": sorted(symbols[i : i + batch_size]),
                    "start": start.isoformat(),
                    "end": end.isoformat(),
                    "since": {},
                }
            )
    return plan
