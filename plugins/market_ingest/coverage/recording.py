"""Writing the ledger: the rows of the days a run asked for (:func:`record`, :func:`record_run`), on
a cursor in the transaction that loaded its bars (or the run report's, for a run whose bars were
not loaded), under the pair's ledger lock (:func:`lock_series`).
"""

from __future__ import annotations

from bisect import bisect_left
from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING

from market_ingest import outcomes
from market_ingest.contracts import Batch, Dataset, ExtractResult
from market_ingest.coverage.states import COLUMNS, COMPLETE, REPAIRABLE, UNRECOVERABLE, Asked, asked, state_of

if TYPE_CHECKING:
    from market_ingest.config import SourceConfig

UTC = timezone.utc


def _days(start: datetime, end: datetime):
    """``(UTC date, part start, part end)`` for each UTC day ``[start, end)`` touches."""
    day = start.astimezone(UTC).date()
    while True:
        day_start = datetime.combine(day, time(), UTC)
        if day_start >= end:
            return
        yield day, max(day_start, start), min(day_start + timedelta(days=1), end)
        day += timedelta(days=1)


def lock_series(cur, source: str, interval: str) -> None:
    """Serialise the ledger and flag writers of ``(source, interval)`` until the transaction ends
    (a transaction-level advisory lock; taking it again in the same transaction is free).

    Two loads of one window at once (a cleared load beside its retry, a repair beside a forward
    run) each replace the flags of their span and widen the same ledger rows: without the lock
    both deleted the span's flags, then inserted the same keys (``UniqueViolation`` on
    ``bar_flags_pkey``), and both widened a day from the same old row.
    """
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"market.coverage:{source}:{interval}",))


def record(
    cur,
    *,
    source: str,
    interval: str,
    table: str,
    runs: list[Asked],
    run_id: str,
    now: datetime,
    flagged: dict[tuple[str, date], int] | None = None,
    attempted: bool = True,
) -> list[dict]:
    """Write the ledger rows of the days ``runs`` asked for, on a cursor inside the load's transaction.

    Serialised per (source, interval) by a transaction-level advisory lock (:func:`lock_series`), so
    two loads of the same DAG committing at once do not each widen a day's covered part from the
    same old row. Reads the
    stored rows of those days (to widen their covered part), counts the expected bars per market
    (one calendar pass per market over the run's span) and the stored bars per day (one query),
    and upserts the rows.

    :param cur: a psycopg cursor in the transaction that upserted the run's bars.
    :param table: the bars table of ``interval`` (``market.bars_1d``).
    :param runs: what the run asked (:func:`asked`).
    :param now: the load's time: bars not closed by then are not expected.
    :param flagged: ``{(symbol, day): bars flagged}`` by the anomaly checks; absent keys write 0.
    :param attempted: the run's answers were judged (its bars loaded), so a day asked again and
        still repairable counts an attempt (``attempts`` in :mod:`market_ingest.coverage`); ``False``: none counts.
    :return: the rows written, as dicts of :data:`COLUMNS` and ``flagged`` (``day`` a ``date``),
        in key order.
    :raises ValueError: a market without a calendar (:func:`market_ingest.calendars.expected_bars`).
    """
    from psycopg import sql

    from market_ingest.calendars import expected_bars
    from market_ingest.intervals import Window

    parts: dict[tuple[str, date], tuple[datetime, datetime, Asked]] = {}
    for a in runs:
        for day, start, end in _days(a.start, min(a.end, now)):
            parts[a.symbol, day] = (start, end, a)
    if not parts:
        return []
    lock_series(cur, source, interval)
    keys = sorted(parts)
    cur.execute(
        "SELECT c.symbol, c.day, c.covered_from, c.covered_until, c.state, c.reason, c.attempts, c.run_id FROM market.coverage c "
        "JOIN unnest(%s::text[], %s::date[]) AS k(symbol, day) USING (symbol, day) "
        "WHERE c.source = %s AND c.interval = %s",
        ([s for s, _ in keys], [d for _, d in keys], source, interval),
    )
    # A day's earlier hole that this run's part did not re-ask (an hourly run after a failed one):
    # its repairable state and reason stay, or a later closed hour's "vendor_empty" would hide it
    # from the repair (seen in the soak benchmark).
    earlier: dict[tuple[str, date], tuple[str, str]] = {}
    # Attempts so far of the days that were holes, and which of them this run asked again.
    attempts: dict[tuple[str, date], int] = {}
    reasked: set[tuple[str, date]] = set()
    for sym, day, stored_from, stored_until, stored_state, stored_reason, stored_attempts, stored_run in cur.fetchall():
        start, end, a = parts[sym, day]
        if stored_state in REPAIRABLE or stored_state == UNRECOVERABLE:
            attempts[sym, day] = stored_attempts
            if start >= stored_until or end <= stored_from:
                earlier[sym, day] = (stored_state, stored_reason)
            elif a.answered and stored_run != run_id:  # a retried load of the same run is no new attempt
                reasked.add((sym, day))
        parts[sym, day] = (min(start, stored_from), max(end, stored_until), a)

    spans: dict[str, list[datetime]] = defaultdict(lambda: [datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)])
    for start, end, a in parts.values():
        span = spans[a.market]
        span[0], span[1] = min(span[0], start), max(span[1], end)
    times = {m: expected_bars(m, interval, Window(s, e), now=now) for m, (s, e) in spans.items()}

    # Stored bars per key. Each key's [f, u) lies within its UTC day, so the bar's UTC date equals
    # the key's day: stated, it lets the planner join on (symbol, day) (a merge or hash join,
    # linear in keys + bars); without it, it joined on symbol alone and range-filtered every bar
    # of the symbol for every day (a 5-year daily run of 280 symbols: minutes; bench/ledger.py).
    # The constant bounds let a small run read only its symbols' index range (and, on
    # TimescaleDB, only the chunks of its span).
    firsts, untils = [parts[k][0] for k in keys], [parts[k][1] for k in keys]
    cur.execute(
        sql.SQL(
            "SELECT k.symbol, k.day, count(b.time) FROM unnest(%s::text[], %s::date[], %s::timestamptz[], %s::timestamptz[]) "
            "AS k(symbol, day, f, u) LEFT JOIN {} b ON b.source = %s AND b.symbol = k.symbol "
            "AND (b.time AT TIME ZONE 'UTC')::date = k.day AND b.time >= k.f AND b.time < k.u "
            "AND b.symbol = ANY(%s) AND b.time >= %s AND b.time < %s "
            "GROUP BY k.symbol, k.day"
        ).format(sql.Identifier(*table.split("."))),
        (
            [s for s, _ in keys],
            [d for _, d in keys],
            firsts,
            untils,
            source,
            sorted({s for s, _ in keys}),
            min(firsts),
            max(untils),
        ),
    )
    loaded = {(sym, day): n for sym, day, n in cur.fetchall()}

    rows = []
    for key in keys:
        start, end, a = parts[key]
        market_times = times[a.market]
        expected = bisect_left(market_times, end) - bisect_left(market_times, start)
        stored = loaded.get(key, 0)
        if expected == 0 and stored == 0:
            continue
        state, reason = state_of(a, expected, stored)
        tries = attempts.get(key, 0)
        if key in earlier and state not in REPAIRABLE and state != COMPLETE:
            state, reason = earlier[key]
        elif state not in REPAIRABLE:
            tries = 0
        elif attempted and key in reasked:
            tries += 1
        rows.append(
            dict(
                zip(
                    COLUMNS,
                    (source, interval, a.symbol, key[1], start, end, expected, stored, state, reason[:1000], run_id, tries),
                    strict=True,
                ),
                flagged=(flagged or {}).get(key, 0),
            )
        )
    if rows:
        # COPY into a session temp table, then one INSERT ... ON CONFLICT: a long run writes
        # hundreds of thousands of rows, which executemany sent at about 30,000 rows/s
        # (bench/ledger.py; py-spy).
        columns = (*COLUMNS, "flagged")
        cols = sql.SQL(", ").join(map(sql.Identifier, columns))
        updates = sql.SQL(", ").join(sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in columns[4:])
        cur.execute(
            sql.SQL(
                "CREATE TEMP TABLE IF NOT EXISTS coverage_incoming ON COMMIT DELETE ROWS "
                "AS SELECT {} FROM market.coverage WITH NO DATA"
            ).format(cols)
        )
        cur.execute("TRUNCATE coverage_incoming")
        with cur.copy(sql.SQL("COPY coverage_incoming ({}) FROM STDIN").format(cols)) as copy:
            for r in rows:
                copy.write_row(tuple(r[c] for c in columns))
        cur.execute(
            sql.SQL(
                "INSERT INTO market.coverage ({0}) SELECT {0} FROM coverage_incoming "
                "ON CONFLICT (source, interval, symbol, day) DO UPDATE SET {1}, updated_at = now()"
            ).format(cols, updates)
        )
    return rows


def record_run(
    cur,
    *,
    source: str,
    interval: str,
    settings: SourceConfig,
    batches: Sequence[Batch],
    extracts: Sequence[ExtractResult | None],
    run_id: str,
    not_loaded: str | None = None,
) -> tuple[list[dict], list[dict]]:
    """:func:`record` for one run of ``(source, interval)``: its batches and extract results, each
    symbol's market from the source's settings; then, when the bars were loaded, the anomaly
    checks over what the run asked (:func:`market_ingest.anomalies.flag`), their count per day
    written to the ledger's ``flagged``.

    :param settings: the source's settings (its ``market``, kind and anomaly thresholds).
    :param not_loaded: the run's bars were not loaded (a sink task failed); every symbol not already
        ``failed`` is ``failed`` with this reason (``task load_timescale did not succeed ...``),
        no anomaly check runs, and no day counts a repair attempt.
    :return: ``(ledger rows written, flags written)``; each ledger row with its ``flagged`` count.
    :raises ConfigurationError: the source's market has no calendar (naming ``sources.<s>.market``).
    """
    from dataclasses import replace

    from market_ingest.errors import ConfigurationError
    from market_ingest.schema import DATASETS

    src = settings
    runs = asked(batches, extracts, src.market_of)
    if not_loaded:
        runs = [a if a.status == outcomes.FAILED else replace(a, status=outcomes.FAILED, reason=not_loaded) for a in runs]
    table, now = DATASETS[Dataset.BARS].storage(interval), datetime.now(UTC)
    flags: list[dict] = []
    lock_series(cur, source, interval)  # before the flags: they are replaced per span, like the ledger's rows
    if not not_loaded:  # the bars are stored: flag them first, so each ledger row is written once, with its count
        from market_ingest.anomalies import flag

        spans = [(a.symbol, a.start, min(a.end, now)) for a in runs if a.start < min(a.end, now)]
        from market_ingest.calendars import market_timezone

        flags = flag(
            cur,
            source=source,
            interval=interval,
            table=table,
            spans=spans,
            settings=src.anomalies,
            run_id=run_id,
            tz_of=lambda symbol: market_timezone(src.market_of(symbol)),
        )
    per_day: dict[tuple[str, date], set] = defaultdict(set)
    for f in flags:
        per_day[f["symbol"], f["time"].astimezone(UTC).date()].add(f["time"])
    try:
        rows = record(
            cur,
            source=source,
            interval=interval,
            table=table,
            runs=runs,
            run_id=run_id,
            now=now,
            flagged={k: len(v) for k, v in per_day.items()},
            attempted=not not_loaded,
        )
    except ValueError as exc:  # a market without a calendar
        raise ConfigurationError(source, f"{exc} (sources.{source}.market)") from exc
    return rows, flags
