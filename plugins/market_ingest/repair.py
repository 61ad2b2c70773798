"""What the ``market_repair`` DAG asks the vendors again: the coverage ledger's ``partial``,
``missing`` and ``failed`` days (:data:`market_ingest.coverage.REPAIRABLE`), as extract batches,
and when it gives up on one (``unrecoverable``).

Per (source, interval), over the ledger's days of the last ``max_days_back`` days:

* a day ending before the oldest bar the vendor serves (:func:`market_ingest.sources.oldest_servable`:
  Yahoo's 30 days of 1m bars, Kraken's 720 candles) becomes ``unrecoverable``, its reason naming
  the lookback and what the day was (``yahoo serves 1m bars from <time> only; it was partial: ...``);
* a day the runs asked again ``max_attempts`` times without it being served (the ledger's
  ``attempts``, counted by each load: :mod:`market_ingest.coverage`) becomes ``unrecoverable``
  too (``not served after 3 repair attempts (repair.max_attempts); it was missing: ...``). Later
  repairs skip both; a backfill or clear of the day asks the vendor again and rewrites it;
* the rest, one symbol's days merged into one window when no more than :data:`MERGE_GAP` apart (a
  weekend between two missing sessions costs no second request; a complete day inside is asked
  again and rewritten only if it changed), a window reaching past the lookback asked from there;
* windows are taken **fewest attempts first**, newest first among equals, until the next would
  spend more than ``max_requests`` vendor requests (:func:`market_ingest.sources.planned_requests`);
  the rest wait for the next repair run. So the budget is shared: a window asked ``k`` times
  waits only behind windows asked fewer times or as often and newer, never behind one asked more
  often, and no day is asked again more than ``max_attempts`` times; every repairable day is
  asked within a bounded number of runs. With 300 symbols whose 43 recent sessions the vendor
  never serves (one window each) and a budget of 200, an older servable day is asked in the
  second run, and the never-served days are given up after 3 asks each, by the sixth run;
* symbols with the same window share a batch of the source's batch size.

The batches are :class:`~market_ingest.contracts.Batch` es, as an ingestion plan's, so
the rest of the repair is an ordinary ingestion run: the same extract (in the source's pool),
lake, warehouse and Kinesis tasks, and its load rewrites the ledger rows of what it asked (and
counts their attempts).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from market_ingest.contracts import Batch
from market_ingest.intervals import Window

#: Two repairable days of one symbol this close (end to start) are asked in one window.
MERGE_GAP = timedelta(days=4)


@dataclass
class RepairPlan:
    """A repair run's plan for one (source, interval).

    :param batches: extract batches, each over the days it repairs.
    :param days: repairable ledger rows found and still worth asking (symbol-days).
    :param requests: vendor requests the batches plan (at most ``max_requests``).
    :param unrecoverable: ``{symbol: [[start, end], ...]}`` days beyond the vendor's lookback, marked
        ``unrecoverable`` now (merged into windows as the plan merges them).
    :param gave_up: ``{symbol: [[start, end], ...]}`` days asked ``max_attempts`` times, marked
        ``unrecoverable`` now.
    :param left: ``{symbol: [[start, end], ...]}`` windows left for the next run (the request budget was spent).
    """

    batches: list[Batch] = field(default_factory=list)
    days: int = 0
    requests: int = 0
    unrecoverable: dict[str, list[list[str]]] = field(default_factory=dict)
    gave_up: dict[str, list[list[str]]] = field(default_factory=dict)
    left: dict[str, list[list[str]]] = field(default_factory=dict)

    def summary(self) -> dict:
        """JSON-safe counts and windows, for the log and XCom."""
        return {
            "days": self.days,
            "windows": sum(len(b.symbols) for b in self.batches),
            "requests": self.requests,
            "unrecoverable": self.unrecoverable,
            "gave_up": self.gave_up,
            "left": self.left,
        }


def _windows(rows: list[tuple[datetime, datetime, int]]) -> list[list]:
    """Merge one symbol's day ranges with their attempts (sorted by day) into ``[start, end,
    attempts]`` windows, joining those within :data:`MERGE_GAP`; a window's attempts are its
    days' fewest (it holds a day asked that seldom)."""
    merged: list[list] = []
    for start, end, attempts in rows:
        if merged and start - merged[-1][1] <= MERGE_GAP:
            merged[-1][1] = max(merged[-1][1], end)
            merged[-1][2] = min(merged[-1][2], attempts)
        else:
            merged.append([start, end, attempts])
    return merged


def _give_up(cur, condition: str, why: str, **args) -> dict[str, list[list[str]]]:
    """Mark the repairable days of ``args["source"]``, ``args["interval"]`` since ``args["since"]``
    that meet ``condition`` (SQL over ``market.coverage``) ``unrecoverable`` by run ``args["run_id"]``,
    the reason ``why`` (an SQL text expression) then ``; it was <state>: <reason>``.

    :return: ``{symbol: [[start, end], ...]}`` (ISO UTC) of the days marked, merged into windows.
    """
    from psycopg import sql

    from market_ingest.coverage import REPAIRABLE, UNRECOVERABLE

    cur.execute(
        sql.SQL(
            # statement_timestamp(): after plan_repairs took the ledger lock, as a load's rows are
            # stamped (market_ingest.coverage.record), so the ledger's writers are ordered by one clock.
            "UPDATE market.coverage SET state = %(unrecoverable)s, run_id = %(run_id)s, updated_at = statement_timestamp(), "
            "reason = left({why} || '; it was ' || state || ': ' || reason, 1000) "
            "WHERE source = %(source)s AND interval = %(interval)s AND state = ANY(%(repairable)s) AND day >= %(since)s "
            "AND {condition} RETURNING symbol, day, covered_from, covered_until"
        ).format(why=sql.SQL(why), condition=sql.SQL(condition)),
        {**args, "unrecoverable": UNRECOVERABLE, "repairable": sorted(REPAIRABLE)},
    )
    by_symbol: dict[str, list[tuple[datetime, datetime, int]]] = defaultdict(list)
    for symbol, _, start, end in sorted(cur.fetchall()):
        by_symbol[symbol].append((start, end, 0))
    return {s: [[w[0].isoformat(), w[1].isoformat()] for w in _windows(rows)] for s, rows in by_symbol.items()}


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
    max_attempts: int,
) -> RepairPlan:
    """Plan a repair of ``(source, interval)`` from the ledger, marking what is unrecoverable.

    :param cur: a psycopg cursor in a transaction (the days given up are updated on it).
    :param src: the source's ``SourceConfig`` (kind, lookback, request planning).
    :param now: the repair's time (UTC): the lookback and ``max_days_back`` count back from it.
    :param run_id: the repair run, written to the rows it marks unrecoverable.
    :param max_requests: vendor requests the plan may spend.
    :param max_days_back: only days since ``now - max_days_back`` are looked at.
    :param batch_size: symbols per extract batch.
    :param max_attempts: a day the ledger says was asked again this often (``attempts``) is given
        up (``unrecoverable``) instead of asked (``repair.max_attempts``).
    :return: the :class:`RepairPlan`.
    """
    from market_ingest.coverage import REPAIRABLE, lock_series
    from market_ingest.sources import oldest_servable, planned_requests

    lock_series(cur, source, interval)  # a load writing the ledger meanwhile would overwrite what this marks
    plan = RepairPlan()
    since = (now - timedelta(days=max_days_back)).date()
    marking = {"source": source, "interval": interval, "since": since, "run_id": run_id}
    oldest = oldest_servable(src, interval, now)
    if oldest:
        plan.unrecoverable = _give_up(
            cur,
            "covered_until <= %(oldest)s",
            "%(lookback)s::text",
            oldest=oldest,
            lookback=f"{source} serves {interval} bars from {oldest.isoformat()} only",
            **marking,
        )
    plan.gave_up = _give_up(
        cur,
        "attempts >= %(max_attempts)s",
        "'not served after ' || attempts || ' repair attempts (repair.max_attempts)'",
        max_attempts=max_attempts,
        **marking,
    )
    cur.execute(
        "SELECT symbol, covered_from, covered_until, attempts FROM market.coverage WHERE source = %s AND interval = %s "
        "AND state = ANY(%s) AND day >= %s ORDER BY symbol, day",
        (source, interval, sorted(REPAIRABLE), since),
    )
    by_symbol: dict[str, list[tuple[datetime, datetime, int]]] = defaultdict(list)
    for symbol, start, end, attempts in cur.fetchall():
        by_symbol[symbol].append((start, end, attempts))
        plan.days += 1
    candidates = [
        (symbol, max(start, oldest) if oldest else start, end, attempts)
        for symbol, rows in by_symbol.items()
        for start, end, attempts in _windows(rows)
    ]
    candidates.sort(key=lambda c: (c[2], c[0]), reverse=True)  # newest first ...
    candidates.sort(key=lambda c: c[3])  # ... among windows asked as often (a stable sort)
    windows: dict[tuple[datetime, datetime], list[str]] = defaultdict(list)
    for symbol, start, end, _ in candidates:
        cost = planned_requests(src, source, interval, [symbol], Window(start, end), now)
        if plan.requests + cost > max_requests:
            plan.left.setdefault(symbol, []).append([start.isoformat(), end.isoformat()])
            continue
        plan.requests += cost
        windows[start, end].append(symbol)
    for (start, end), symbols in sorted(windows.items(), reverse=True):
        for i in range(0, len(symbols), batch_size):
            plan.batches.append(Batch(len(plan.batches), tuple(sorted(symbols[i : i + batch_size])), Window(start, end)))
    return plan
