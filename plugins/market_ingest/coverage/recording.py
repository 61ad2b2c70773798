"""Writing the ledger: the rows of the days a run asked for (:func:`record`, :func:`record_run`), on
a cursor in the transaction that loaded its bars (or the run report's, for a run whose bars were
not loaded), under the pair's ledger lock (:func:`lock_series`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING

from market_ingest import outcomes
from market_ingest.contracts import Batch, Dataset, ExtractResult
from market_ingest.coverage.states import COLUMNS, COMPLETE, REPAIRABLE, UNRECOVERABLE, Asked, asked, state_sql

if TYPE_CHECKING:
    import pyarrow as pa

    from market_ingest.config import SourceConfig

UTC = timezone.utc


#: ``work_mem`` for the rest of a transaction that records a run (:func:`record_run`): the ledger's
#: and the flags' statements sort and hash every bar and day of the run, and the server's default
#: (4 MB) spilled a 5-year daily run of 280 symbols to disk (bench/ledger.py).
WORK_MEM = "64MB"


def _work_mem(cur) -> None:
    """Raise ``work_mem`` to :data:`WORK_MEM` until the transaction ends (``SET LOCAL``), never lower it."""
    cur.execute(
        "SELECT set_config('work_mem', %s, true) WHERE pg_size_bytes(current_setting('work_mem')) < pg_size_bytes(%s)",
        (WORK_MEM, WORK_MEM),
    )


def lock_series(cur, source: str, interval: str) -> None:
    """Serialise the ledger and flag writers of ``(source, interval)`` until the transaction ends
    (a transaction-level advisory lock; taking it again in the same transaction is free).

    Two loads of one window at once (a cleared load beside its retry, a repair beside a forward
    run) each replace the flags of their span and widen the same ledger rows: without the lock
    both deleted the span's flags, then inserted the same keys (``UniqueViolation`` on
    ``bar_flags_pkey``), and both widened a day from the same old row.
    """
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (f"market.coverage:{source}:{interval}",))


#: Stored rows the ledger widens, and whose hole (a repairable or unrecoverable state) it keeps.
_HOLES = (*sorted(REPAIRABLE), UNRECOVERABLE)

#: The ledger rows of one run, computed and upserted in one statement. ``a``: what the run asked
#: per symbol (its window clamped to the load's time); ``p0``: each UTC day a window touches, its
#: part of the day ({distinct}); ``q``: widened by the stored row of the day, with what that row
#: says (``hole``: a repairable or unrecoverable state; ``apart``: this part does not overlap it;
#: ``other_run``: an answered ask of another run); ``n``: stored bars per part; ``e``: expected bars
#: per part, from ``market.sessions``; ``s``: the state by :func:`state_of`'s rules; ``t``: the rules
#: of an earlier hole and of ``attempts`` (:mod:`market_ingest.coverage`); ``w``: the rows, with
#: their flags; ``inserted``, ``updated``: those that differ from the stored rows. Returns every row.
_RECORD_SQL = """
WITH a AS (
    SELECT * FROM unnest(%(symbols)s::text[], %(markets)s::text[], %(starts)s::timestamptz[], %(ends)s::timestamptz[],
                         %(statuses)s::text[], %(reasons)s::text[], %(invalid)s::text[], %(answered)s::boolean[])
        WITH ORDINALITY AS a(symbol, market, f, u, status, reason, invalid, answered, ord)
    WHERE f < u
), m AS (  -- each market's span: the dates of the sessions expected_bars reads
    SELECT * FROM unnest(%(span_markets)s::text[], %(span_firsts)s::date[], %(span_lasts)s::date[]) AS m(market, first_day, last_day)
), p0 AS (
    SELECT {distinct} a.symbol, d.day, a.market, a.status, a.reason, a.invalid, a.answered,
           greatest(a.f, d.day::timestamp AT TIME ZONE 'UTC') AS f, least(a.u, (d.day + 1)::timestamp AT TIME ZONE 'UTC') AS u
    FROM a CROSS JOIN LATERAL (
        SELECT (a.f AT TIME ZONE 'UTC')::date + g AS day
        FROM generate_series(0, ((a.u - interval '1 microsecond') AT TIME ZONE 'UTC')::date - (a.f AT TIME ZONE 'UTC')::date) AS g
    ) d
    {order}
), q AS (
    SELECT p0.*, least(p0.f, c.covered_from) AS wf, greatest(p0.u, c.covered_until) AS wu,
           coalesce(c.state IN ({holes}), false) AS hole, c.state AS stored_state, c.reason AS stored_reason,
           CASE WHEN c.state IN ({holes}) THEN c.attempts ELSE 0 END AS stored_attempts,
           coalesce(p0.f >= c.covered_until OR p0.u <= c.covered_from, false) AS apart,
           p0.answered AND c.run_id IS DISTINCT FROM %(run_id)s AS other_run,
           CASE WHEN c.day IS NOT NULL THEN ({stored}) END AS stored, c.updated_at AS stored_at
    FROM p0 LEFT JOIN market.coverage c
        ON c.source = %(source)s AND c.interval = %(interval)s AND c.symbol = p0.symbol AND c.day = p0.day
), n AS (
    -- Each part lies within its UTC day, so the bar's UTC date equals the part's day: stated, it
    -- lets the planner join on (symbol, day) (a hash or merge join, linear in parts + bars). The
    -- constant bounds let a small run read only its symbols' index range (and, on TimescaleDB,
    -- only the chunks of its span).
    SELECT q.symbol, q.day, count(*) AS loaded
    FROM q JOIN {table} b ON b.source = %(source)s AND b.symbol = q.symbol
        AND (b.time AT TIME ZONE 'UTC')::date = q.day AND b.time >= q.wf AND b.time < q.wu
        AND b.symbol = ANY(%(symbol_set)s::text[]) AND b.time >= %(lo)s AND b.time < %(hi)s
    GROUP BY q.symbol, q.day
), e AS (
    SELECT q.*, coalesce(n.loaded, 0)::integer AS loaded, ({expected})::integer AS expected
    FROM q JOIN m USING (market) LEFT JOIN n USING (symbol, day) {sessions}
), s AS (
    SELECT e.*, {state} AS state0, {reason} AS reason0 FROM e WHERE expected > 0 OR loaded > 0
), t AS (
    SELECT s.*,
           CASE WHEN hole AND apart AND state0 NOT IN ({repairable}, '{complete}') THEN stored_state ELSE state0 END AS state,
           CASE WHEN hole AND apart AND state0 NOT IN ({repairable}, '{complete}') THEN stored_reason ELSE reason0 END AS reason1,
           CASE WHEN hole AND apart AND state0 NOT IN ({repairable}, '{complete}') THEN stored_attempts
                WHEN state0 NOT IN ({repairable}) THEN 0
                WHEN hole AND NOT apart AND other_run AND %(attempted)s THEN stored_attempts + 1
                ELSE stored_attempts END AS tries
    FROM s
), w AS (
    SELECT t.symbol, t.day, wf, wu, expected, loaded, state, left(reason1, 1000) AS reason, tries,
           coalesce(fl.n, 0) AS flagged, stored, stored_at
    FROM t LEFT JOIN unnest(%(flag_symbols)s::text[], %(flag_days)s::date[], %(flag_counts)s::int[]) AS fl(symbol, day, n)
        USING (symbol, day)
), inserted AS (
    -- Days without a row: inserted, no conflict to arbitrate (the ledger lock keeps out every
    -- other writer of the pair's new rows; ON CONFLICT doubled the cost of a long run's insert).
    INSERT INTO market.coverage ({columns}, updated_at)
    SELECT %(source)s, %(interval)s, symbol, day, wf, wu, expected, loaded, state, reason, %(run_id)s, tries, flagged, %(written_at)s
    FROM w WHERE stored IS NULL
), updated AS (
    -- Days with a row: updated where the new row differs. One equal in every column (a retried
    -- load of the same run) is left as it is, as the bars' upsert leaves unchanged bars: its
    -- updated_at is when it last changed: the database's clock when this writer held the ledger
    -- lock (written_at), so writers of a pair are ordered by one clock, the order they wrote in.
    UPDATE market.coverage c SET ({updated}, updated_at) = ({new}, %(written_at)s)
    FROM w
    WHERE c.source = %(source)s AND c.interval = %(interval)s AND c.symbol = w.symbol AND c.day = w.day
      AND w.stored IS NOT NULL AND w.stored IS DISTINCT FROM ({new})
)
-- Times as epoch microseconds and days as days since 1970-01-01: Arrow's own encodings, which a
-- client turns into columns without a Python object per value (record()).
-- Each row's updated_at as stored now: the unchanged row's own, else written_at.
SELECT symbol, day - DATE '1970-01-01', (extract(epoch FROM wf) * 1000000)::bigint, (extract(epoch FROM wu) * 1000000)::bigint,
       expected, loaded, state, reason, tries, flagged,
       (extract(epoch FROM CASE WHEN stored IS NOT NULL AND stored IS NOT DISTINCT FROM ({new}) THEN stored_at
                                ELSE %(written_at)s END) * 1000000)::bigint
FROM w ORDER BY symbol, day
"""

#: Expected bars of an intraday part: each session of its market overlapping it (dated within a
#: day of its market's span, as :func:`~market_ingest.calendars.expected_bars` reads them) counts
#: the bars ``open + k * step`` in ``[wf, wu)``, before its close, and closed by ``now``.
_INTRADAY = """(
    SELECT coalesce(sum(greatest(0, ceil(extract(epoch FROM least(q.wu, x.close, %(last_open)s) - x.open) / %(step)s)
                                   - ceil(extract(epoch FROM greatest(q.wf, x.open) - x.open) / %(step)s))), 0)
    FROM market.sessions x
    WHERE x.market = q.market AND x.open < q.wu AND x.close > q.wf
      AND x.day >= m.first_day - 1 AND x.day <= m.last_day + 1
)"""
#: Expected bars of a part of a daily, weekly or monthly series: its day's 00:00 UTC opens a bar
#: (a session's date; the Monday or the 1st of a week or month holding a session dated within the
#: market's span), the bar lies in ``[wf, wu)`` and closed by ``now``.
_DAILY = """CASE WHEN q.day::timestamp AT TIME ZONE 'UTC' >= q.wf AND q.day::timestamp AT TIME ZONE 'UTC' < q.wu
          AND (q.day + interval {length})::timestamp AT TIME ZONE 'UTC' <= %(now)s AND {opened} THEN 1 ELSE 0 END"""
_DAILY_OPENED = "x.day IS NOT NULL"
_LONGER_OPENED = """date_trunc({unit}, q.day) = q.day AND EXISTS (
    SELECT 1 FROM market.sessions x WHERE x.market = q.market AND x.day >= q.day AND x.day < q.day + interval {length}
      AND x.day >= m.first_day AND x.day <= m.last_day
)"""


def _statement(interval: str, table: str, *, distinct: bool):
    """:data:`_RECORD_SQL` for ``interval`` and its bars ``table``, a composed ``psycopg.sql`` statement.

    :param distinct: a symbol was asked more than once: of the parts of one day, the last ask's
        counts (as it did when the parts were a dict); otherwise the statement skips that sort.
    """
    from psycopg import sql

    from market_ingest.intervals import INTRADAY_INTERVALS

    if interval in INTRADAY_INTERVALS:
        expected, sessions = _INTRADAY, ""
    elif interval == "1d":
        expected = _DAILY.format(length="'1 day'", opened=_DAILY_OPENED)
        sessions = "LEFT JOIN market.sessions x ON x.market = q.market AND x.day = q.day"
    else:
        unit, length = {"1wk": ("'week'", "'7 days'"), "1mo": ("'month'", "'1 month'")}[interval]
        expected, sessions = _DAILY.format(length=length, opened=_LONGER_OPENED.format(unit=unit, length=length)), ""
    state, reason = state_sql()
    columns = (*COLUMNS, "flagged")
    return sql.SQL(
        _RECORD_SQL.format(
            expected=expected,
            sessions=sessions,
            state=state,
            reason=reason,
            holes=", ".join(f"'{h}'" for h in _HOLES),
            repairable=", ".join(f"'{h}'" for h in sorted(REPAIRABLE)),
            complete=COMPLETE,
            columns=", ".join(columns),
            updated=", ".join(columns[4:]),
            new="w.wf, w.wu, w.expected, w.loaded, w.state, w.reason, %(run_id)s::text, w.tries, w.flagged",
            stored=", ".join(f"c.{c}" for c in columns[4:]),
            distinct="DISTINCT ON (a.symbol, d.day)" if distinct else "",
            order="ORDER BY a.symbol, d.day, a.ord DESC" if distinct else "",
            table="{table}",
        )
    ).format(table=sql.Identifier(*table.split(".")))


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
) -> pa.Table:
    """Write the ledger rows of the days ``runs`` asked for, on a cursor inside the load's transaction.

    Serialised per (source, interval) by a transaction-level advisory lock (:func:`lock_series`), so
    two loads of the same DAG committing at once do not each widen a day's covered part from the
    same old row. Makes ``market.sessions`` hold the sessions of the run's markets over its span
    (:func:`market_ingest.calendars.store_sessions`: filled once per market and year), then computes
    and upserts every row in one statement: the parts of the UTC days asked (widened by the stored
    rows), the bars each part should have from those sessions, the bars stored in it, and the state.

    :param cur: a psycopg cursor in the transaction that upserted the run's bars.
    :param table: the bars table of ``interval`` (``market.bars_1d``).
    :param runs: what the run asked (:func:`asked`).
    :param now: the load's time: bars not closed by then are not expected.
    :param flagged: ``{(symbol, day): bars flagged}`` by the anomaly checks; absent keys write 0.
    :param attempted: the run's answers were judged (its bars loaded), so a day asked again and
        still repairable counts an attempt (``attempts`` in :mod:`market_ingest.coverage`); ``False``: none counts.
    :return: the rows written, one per (symbol, UTC day), in key order, as stored: a table of
        :func:`~market_ingest.lake.mirror.schema` (:data:`COLUMNS`, ``flagged`` and ``updated_at``:
        the stored row's when this run left it unchanged, else the database's clock when this
        writer took the ledger lock; ``day`` a date, times UTC). A table, not an object per row: the 351,400 rows of a 5-year daily
        backfill of 280 symbols took 513 MB of Python memory as dicts and 1.3 s more to hand to
        the lake's mirror; as a table 50 MB and nothing (bench/ledger.py).
    :raises ValueError: a market without a calendar (:func:`market_ingest.calendars.session_rows`).
    """
    from market_ingest.calendars import store_sessions
    from market_ingest.intervals import INTERVAL_LENGTH, validate_interval

    validate_interval(interval)
    from market_ingest.lake.mirror import schema

    runs = [a for a in runs if a.start < min(a.end, now)]
    if not runs:
        return schema().empty_table()
    lock_series(cur, source, interval)
    (written_at,) = cur.execute("SELECT clock_timestamp()").fetchone()  # under the lock: writers in order
    first, last = min(a.start for a in runs), max(min(a.end, now) for a in runs)
    store_sessions(cur, {a.market for a in runs}, first, last)
    step = INTERVAL_LENGTH.get(interval)
    flagged = flagged or {}
    spans: dict[str, tuple[datetime, datetime]] = {}
    for a in runs:
        f, u = spans.get(a.market, (a.start, min(a.end, now)))
        spans[a.market] = (min(f, a.start), max(u, min(a.end, now)))
    cur.execute(
        _statement(interval, table, distinct=len({a.symbol for a in runs}) < len(runs)),
        {
            "span_markets": list(spans),
            "span_firsts": [f.astimezone(UTC).date() for f, _ in spans.values()],
            "span_lasts": [(u - timedelta(microseconds=1)).astimezone(UTC).date() for _, u in spans.values()],
            "symbols": [a.symbol for a in runs],
            "markets": [a.market for a in runs],
            "starts": [a.start for a in runs],
            "ends": [min(a.end, now) for a in runs],
            "statuses": [a.status for a in runs],
            "reasons": [a.reason for a in runs],
            "invalid": [str(a.invalid) if a.invalid else None for a in runs],
            "answered": [a.answered for a in runs],
            "source": source,
            "interval": interval,
            "run_id": run_id,
            "written_at": written_at,
            "attempted": attempted,
            "symbol_set": sorted({a.symbol for a in runs}),
            "lo": datetime.combine(first.astimezone(UTC).date(), time(), UTC),
            "hi": datetime.combine(last.astimezone(UTC).date(), time(), UTC) + timedelta(days=1),
            "now": now,
            "step": step.total_seconds() if step else None,
            "last_open": now - step + timedelta(microseconds=1) if step else None,
            "flag_symbols": [s for s, _ in flagged],
            "flag_days": [d for _, d in flagged],
            "flag_counts": list(flagged.values()),
        },
        binary=True,  # a long run's rows come back about twice as fast as in text
    )
    return _fetch_rows(cur, source, interval, run_id)


#: Rows fetched at a time by :func:`_fetch_rows`: Python holds at most this many tuples at once.
FETCH_ROWS = 65_536


def _fetch_rows(cur, source: str, interval: str, run_id: str) -> pa.Table:
    """The rows :data:`_RECORD_SQL` returns on ``cur``, as a table of
    :func:`~market_ingest.lake.mirror.schema`, built a chunk of :data:`FETCH_ROWS` at a time."""
    import pyarrow as pa

    from market_ingest.lake import mirror

    schema = mirror.schema()
    batches = []
    while chunk := cur.fetchmany(FETCH_ROWS):
        symbol, day, wf, wu, expected, loaded, state, reason, tries, flagged, updated_at = zip(*chunk, strict=True)
        n = len(chunk)
        columns = {
            "source": pa.repeat(pa.scalar(source), n),
            "interval": pa.repeat(pa.scalar(interval), n),
            "symbol": pa.array(symbol, pa.string()),
            "day": pa.array(day, pa.int32()).cast(pa.date32()),
            "covered_from": pa.array(wf, pa.int64()).cast(schema.field("covered_from").type),
            "covered_until": pa.array(wu, pa.int64()).cast(schema.field("covered_until").type),
            "expected": pa.array(expected, pa.int64()),
            "loaded": pa.array(loaded, pa.int64()),
            "state": pa.array(state, pa.string()),
            "reason": pa.array(reason, pa.string()),
            "run_id": pa.repeat(pa.scalar(run_id), n),
            "attempts": pa.array(tries, pa.int64()),
            "flagged": pa.array(flagged, pa.int64()),
            "updated_at": pa.array(updated_at, pa.int64()).cast(schema.field("updated_at").type),
        }
        batches.append(pa.record_batch([columns[f.name] for f in schema], schema=schema))
    return pa.Table.from_batches(batches, schema=schema)


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
) -> tuple[pa.Table, list[dict]]:
    """:func:`record` for one run of ``(source, interval)``: its batches and extract results, each
    symbol's market from the source's settings; then, when the bars were loaded, the anomaly
    checks over what the run asked (:func:`market_ingest.anomalies.flag`), their count per day
    written to the ledger's ``flagged``.

    :param settings: the source's settings (its ``market``, kind and anomaly thresholds).
    :param not_loaded: the run's bars were not loaded (a sink task failed); every symbol not already
        ``failed`` is ``failed`` with this reason (``task load_timescale did not succeed ...``),
        no anomaly check runs, and no day counts a repair attempt.
    :return: ``(ledger rows written, flags written)``: the rows as :func:`record` returns them
        (each with its ``flagged`` count), the flags as :func:`market_ingest.anomalies.flag` does.
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
    _work_mem(cur)
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
