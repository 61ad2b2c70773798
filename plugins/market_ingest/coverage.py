"""The coverage ledger: what the warehouse holds per (source, symbol, interval, UTC day), against
what the symbol's market should have had (``market.coverage``, migration V009).

Each load writes the rows of the days its run asked for, in the same transaction as its bars
(:meth:`~market_ingest.hooks.timescale.TimescaleHook.upsert`'s ``then``), so the ledger never says
more or less than the bars committed with it. A row holds:

* ``covered_from`` / ``covered_until``: the part of the day the runs so far asked for (a ``@hourly``
  run of 1m bars covers one hour of it; the next widens it). A day never asked for has no row.
* ``expected``: bars the market's calendar has in that part, closed by the load's time
  (:func:`market_ingest.calendars.expected_bars`: sessions, holidays, early closes; 24/7 for crypto).
* ``loaded``: bars stored in ``market.bars_<interval>`` in that part, by this run or any before it.
* ``state``, by the first rule that holds:

  ``complete``      ``loaded >= expected`` (extended-hours bars may make it more);
  ``deferred``      the vendor's daily quota was spent before the symbol was asked;
  ``failed``        the symbol's extract failed (the reason says how), or its batch's task did not succeed;
  ``vendor_empty``  the vendor answered with no bar for the window, or does not know the symbol;
  ``rejected``      bars came but some failed validation (:mod:`market_ingest.quality`) and were dropped;
  ``missing``       bars came for the symbol's window, none for this day;
  ``partial``       bars came for this day, fewer than expected;

  and one state only the repair writes (:mod:`market_ingest.repair`):

  ``unrecoverable`` the repair gave up on the day: the vendor no longer serves it (beyond its
                    lookback), or did not in ``repair.max_attempts`` attempts; the reason says
                    which, and what the day was.

* ``attempts``: how often a run asked a ``partial``, ``missing``, ``failed`` (or ``unrecoverable``)
  day again (the same part: a repair, a clear, a backfill) and left it ``partial``, ``missing`` or
  ``failed``; 0 again once a run leaves it in any other state. The first ask of a day is no
  attempt, and these count none, the vendor's answer never judged: a run whose bars were not
  loaded (``record_run(not_loaded=...)``), a symbol whose batch's task did not succeed (a vendor
  outage or a rate limit outlasting the retries), and a run writing the day again (its retried
  load). The repair gives up on a day at ``repair.max_attempts``.

Which are worth asking again (:data:`REPAIRABLE`) is the repair's business; a day of a market with
no session and no stored bar has no row at all. A day left repairable (or unrecoverable) by an
earlier run stays so, with that run's reason and attempts, when a later run widens it with a part
of its own that is not repairable (the closed evening hours after a failed hourly run); a run
asking the same part again decides.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from typing import TYPE_CHECKING, Any

from market_ingest import outcomes
from market_ingest.contracts import Batch, Dataset, ExtractResult, read_plan

if TYPE_CHECKING:
    from market_ingest.config import SourceConfig

log = logging.getLogger(__name__)
UTC = timezone.utc

COMPLETE = "complete"
PARTIAL = "partial"
MISSING = "missing"
VENDOR_EMPTY = "vendor_empty"
DEFERRED = "deferred"
FAILED = "failed"
REJECTED = "rejected"
UNRECOVERABLE = "unrecoverable"
#: Every state, in the order the coverage report shows them.
STATES = (COMPLETE, PARTIAL, MISSING, VENDOR_EMPTY, DEFERRED, FAILED, REJECTED, UNRECOVERABLE)
#: SQL select-list of rows per state, one column named after each state (over ``market.coverage`` rows).
STATE_COUNTS = ", ".join(f"count(*) FILTER (WHERE state = '{s}') AS {s}" for s in STATES)
#: States another request to the vendor may fix.
REPAIRABLE = frozenset({PARTIAL, MISSING, FAILED})

#: The extract's skip statuses and the state each leaves a day in (unless the day is complete anyway).
_SKIPPED_STATE = {
    outcomes.NO_DATA: VENDOR_EMPTY,
    outcomes.UNKNOWN_SYMBOL: VENDOR_EMPTY,
    outcomes.DEFERRED: DEFERRED,
    outcomes.FAILED: FAILED,
}

COLUMNS = (
    "source",
    "interval",
    "symbol",
    "day",
    "covered_from",
    "covered_until",
    "expected",
    "loaded",
    "state",
    "reason",
    "run_id",
    "attempts",
)
#: Columns of the lake's mirror (:data:`COLUMNS` and the day's anomaly flags).
MIRRORED = (*COLUMNS, "flagged")


@dataclass(frozen=True)
class Asked:
    """What one run asked the vendor for one symbol, and what came of it.

    :param symbol: canonical symbol.
    :param market: its calendar (:func:`market_ingest.calendars.market_of`).
    :param start: window start, UTC (a deferred symbol's reaches back to its deferral).
    :param end: window end, UTC, exclusive.
    :param status: the extract outcome's status (:mod:`market_ingest.outcomes`).
    :param reason: the outcome's reason.
    :param invalid: bars the vendor returned that failed validation, by check (``{"invalid: high < low": 2}``).
    :param answered: the symbol's extract ran and judged an answer of the vendor (its outcome
        exists). False when its batch's task did not succeed (a vendor outage, a rate limit that
        outlasted the retries): such a run is no attempt at the day (see ``attempts``).
    """

    symbol: str
    market: str
    start: datetime
    end: datetime
    status: str
    reason: str = ""
    invalid: dict[str, int] | None = None
    answered: bool = True


def asked(batches: Sequence[Batch], extracts: Sequence[ExtractResult | None], market_of: Callable[[str], str]) -> list[Asked]:
    """The symbols of a run, each with its window and outcome.

    :param batches: the plan's batches.
    :param extracts: the extract tasks' results (``None`` for a batch whose task did not succeed:
        its symbols are ``failed``, naming the task).
    :param market_of: ``symbol -> market``.
    :return: one :class:`Asked` per planned symbol, in plan order.
    """
    found: dict[str, Any] = {o["symbol"]: o for e in extracts if e for o in e.get("outcomes", [])}
    result = []
    for batch in batches:
        for sym in batch.symbols:
            o = found.get(sym) or {
                "status": outcomes.FAILED,
                "reason": f"task extract[{batch.index}] did not succeed (see its log)",
            }
            invalid = {k: v for k, v in (o.get("dropped") or {}).items() if k.startswith("invalid")}
            result.append(
                Asked(
                    sym,
                    market_of(sym),
                    batch.start_of(sym),
                    batch.window.end,
                    o["status"],
                    o.get("reason", ""),
                    invalid or None,
                    sym in found,
                )
            )
    return result


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


def state_of(a: Asked, expected: int, loaded: int) -> tuple[str, str]:
    """The ledger state of one day of one symbol, and its reason (see the module's rules)."""
    if loaded >= expected:
        return COMPLETE, ""
    if a.status in _SKIPPED_STATE:
        return _SKIPPED_STATE[a.status], a.reason
    if a.invalid:
        return REJECTED, f"{loaded} of {expected} bars stored; dropped as invalid by the run: {a.invalid}"
    if loaded == 0:
        return MISSING, f"the vendor returned bars for the window but none of the {expected} expected this day"
    return PARTIAL, f"{loaded} of {expected} expected bars stored; the vendor returned no bar for the others"


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
        still repairable counts an attempt (see the module's ``attempts``); ``False``: none counts.
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
        flags = flag(cur, source=source, interval=interval, table=table, spans=spans, settings=src.anomalies, run_id=run_id)
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


def not_loaded_reason(report: dict[str, Any]) -> str:
    """The ledger reason of a run whose bars did not reach the warehouse, naming the sinks that
    did hold them (``report``: :func:`market_ingest.report.build_report`'s dict), e.g.
    ``not in the warehouse: task load_timescale did not succeed (see its log); the run's bars are in
    the lake and Kinesis``."""
    ok = report["totals"]["sinks_ok"]
    tasks = [t for t in report["failed_tasks"] if t in ("publish_lake", "load_timescale")] or ["load_timescale"]
    held = [name for sink, name in (("lake", "the lake"), ("kinesis", "Kinesis")) if ok.get(sink)]
    return f"not in the warehouse: task {', '.join(tasks)} did not succeed (see its log)" + (
        f"; the run's bars are in {' and '.join(held)}" if held else "; nor in any other sink"
    )


def park(
    root,
    *,
    source: str,
    interval: str,
    batches: Sequence[Batch],
    extracts: Sequence[ExtractResult | None],
    run_id: str,
    reason: str,
) -> str:
    """Keep in the lake what :func:`record_run` would have written for a run whose bars were not
    loaded, when the warehouse cannot take it now (it is what failed): the ledger then records the
    gap once the warehouse is back, when the pair's next load or repair calls :func:`drain`.

    :param root: the lake root (``ObjectStoragePath``).
    :param extracts: the extract results; only each symbol's outcome is kept.
    :return: the parked object's URL (:func:`market_ingest.lake.parked_ledger_object`).
    """
    import json

    from market_ingest.lake import parked_ledger_object, write_object

    path = parked_ledger_object(root, source, interval, run_id)
    kept = [{"batch": e["batch"], "outcomes": e.get("outcomes", [])} if e else None for e in extracts]
    plan = [b.to_xcom() for b in batches]
    body = {"source": source, "interval": interval, "run_id": run_id, "reason": reason, "plan": plan, "extracts": kept}
    write_object(path, json.dumps(body).encode())
    return str(path)


def drain(cur, root, *, source: str, interval: str, settings: SourceConfig) -> list[tuple[Any, dict[str, int]]]:
    """Write the ledger rows of the runs :func:`park` left for ``(source, interval)``, on the
    cursor of a transaction that has the warehouse (a load's, a repair plan's): every planned day
    not holding its bars becomes ``failed`` with the parked reason, and a day loaded since is
    ``complete`` (the state follows the stored bars). Delete the returned objects once that
    transaction has committed (:func:`forget`).

    Under the pair's ledger lock (:func:`lock_series`), so two loads drain one after the other; an
    object another load drained and deleted meanwhile is skipped. Each object is written in its own
    savepoint: one that cannot be read or written (cut, from another version, a source's settings
    changed since) is logged at ERROR, naming it, and left in place; the load goes on.

    :return: ``[(parked object, {state: days written})]``, oldest run first.
    """
    import json

    from market_ingest.lake import parked_ledger_folder

    lock_series(cur, source, interval)
    folder = parked_ledger_folder(root, source, interval)
    if not folder.exists():
        return []
    drained = []
    for path in sorted(folder.iterdir(), key=str):
        if not str(path).endswith(".json"):
            continue
        try:
            parked = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue  # drained and deleted by a load that held the lock before this one
        except (OSError, ValueError) as exc:
            log.error("%s %s: parked ledger rows %s cannot be read (%s); left in place", source, interval, path, exc)
            continue
        try:
            with cur.connection.transaction():  # a savepoint: one bad object costs only itself
                rows, _ = record_run(
                    cur,
                    source=source,
                    interval=interval,
                    settings=settings,
                    batches=read_plan(parked["plan"]),
                    extracts=parked["extracts"],
                    run_id=parked["run_id"],
                    not_loaded=parked["reason"],
                )
        except Exception as exc:
            log.error("%s %s: parked ledger rows %s could not be written (%s); left in place", source, interval, path, exc)
            continue
        drained.append((path, counts(rows)))
    return drained


def forget(paths) -> None:
    """Delete parked objects :func:`drain` wrote into the ledger, once its transaction has
    committed. One that cannot be deleted is logged and left: a later drain writes it again, to the
    same rows."""
    try:
        for path in paths:
            path.unlink(missing_ok=True)
    except Exception as exc:
        log.warning(
            "Could not delete parked ledger objects %s (their rows are written; a later drain rewrites them): %s", paths, exc
        )


def drain_parked(cur, lake_url: str, *, source: str, interval: str, settings: SourceConfig) -> list:
    """:func:`drain` of the lake at ``lake_url``, logging each object written; return the objects,
    to :func:`forget` once the transaction commits."""
    from market_ingest.lake import lake_root

    drained = drain(cur, lake_root(lake_url), source=source, interval=interval, settings=settings)
    for path, states in drained:
        log.warning("Wrote the ledger rows of a run whose load had failed, parked in %s: %s", path, states)
    return [path for path, _ in drained]


class LoadLedger:
    """The coverage ledger and anomaly flags of one load of bars, written by the load inside its
    own transaction (:meth:`write` is the upsert's ``then``), then mirrored to the lake.

    :param source: configured source name. :param interval: canonical interval.
    :param settings: the source's settings.
    :param batches: the run's plan. :param extracts: the extract results (``None`` for a batch whose
        task did not succeed).
    :param run_id: the DAG run. :param lake_url: the lake's root: ledger rows earlier runs of the
        pair parked there are written first (:func:`drain`), and the run's rows are mirrored there
        (:func:`market_ingest.lake.coverage_object`); ``None``: neither.

    After :meth:`write`: ``rows`` (ledger rows written), ``flags`` (anomaly flags written) and
    ``parked`` (parked objects drained, deleted by :meth:`committed`).
    """

    def __init__(
        self,
        *,
        source: str,
        interval: str,
        settings: SourceConfig,
        batches: Sequence[Batch],
        extracts: Sequence[ExtractResult | None],
        run_id: str,
        lake_url: str | None,
    ) -> None:
        self.source, self.interval, self.settings = source, interval, settings
        self.batches, self.extracts, self.run_id, self.lake_url = batches, extracts, run_id, lake_url
        self.rows: list[dict] = []
        self.flags: list[dict] = []
        self.parked: list = []

    def write(self, cur) -> None:
        """Write the ledger rows and flags on ``cur`` (the load's transaction): earlier runs'
        parked rows first, so this run's rows, written after, win where they overlap."""
        source, interval, settings = self.source, self.interval, self.settings
        if self.lake_url:
            self.parked = drain_parked(cur, self.lake_url, source=source, interval=interval, settings=settings)
        self.rows, self.flags = record_run(
            cur,
            source=source,
            interval=interval,
            settings=settings,
            batches=self.batches,
            extracts=self.extracts,
            run_id=self.run_id,
        )

    def committed(self) -> str | None:
        """After the commit: delete the drained parked objects and write the run's ledger rows to
        the lake (replacing the run's earlier mirror); return the mirror's URL (``None``: no lake
        or no rows).

        :raises market_ingest.errors.MarketDataError: the lake refused the mirror.
        """
        forget(self.parked)
        if not self.lake_url or not self.rows:
            return None
        import pyarrow as pa

        from market_ingest.lake import coverage_object, lake_root, write_parquet

        now = datetime.now(UTC)
        table = pa.Table.from_pylist([{**r, "updated_at": now} for r in self.rows])
        path = coverage_object(lake_root(self.lake_url), self.source, self.interval, self.run_id)
        write_parquet(table.select([*MIRRORED, "updated_at"]), path)
        return str(path)


def counts(rows: list[dict]) -> dict[str, int]:
    """Ledger rows per state, every state present (zeros included), in :data:`STATES` order."""
    tally = dict.fromkeys(STATES, 0)
    for r in rows:
        tally[r["state"]] += 1
    return tally


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
