"""The coverage ledger: what the warehouse holds per (source, symbol, interval, UTC day), against
what the symbol's market should have had (``market.coverage``, migration V009).

Each load writes the rows of the days its run asked for, in the same transaction as its bars
(:meth:`~market_ingest.hooks.timescale.TimescaleHook.upsert`'s ``then``), so the ledger never says
more or less than the bars committed with it. A row holds:

* ``covered_from`` / ``covered_until``: the part of the day the runs so far asked for (a ``@hourly``
  run of 1m bars covers one hour of it; the next widens it). A day never asked for has no row.
* ``expected``: bars the market's calendar has in that part, closed by the load's time: the bars
  :func:`market_ingest.calendars.expected_bars` gives (sessions, holidays, early closes; 24/7 for
  crypto), counted in SQL against ``market.sessions`` (migration V014), which the load fills
  from the calendars a market and year at a time (:func:`market_ingest.calendars.store_sessions`).
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

A package of one module per job; every public name is importable from here
(``from market_ingest.coverage import LoadLedger``), as callers do:

* :mod:`~market_ingest.coverage.states`: the states and columns, what a run asked
  (:func:`asked`), a day's state (:func:`state_of`), rows per state (:func:`counts`);
* :mod:`~market_ingest.coverage.recording`: writing the rows in the load's transaction
  (:func:`record`, :func:`record_run`, :func:`lock_series`);
* :mod:`~market_ingest.coverage.parked`: the rows of a run whose bars were not loaded (:func:`park`,
  :func:`drain`, :func:`forget`), and :class:`LoadLedger`, the load's ledger writer;
* :mod:`~market_ingest.coverage.reading`: :func:`summary`, :func:`incomplete`, :func:`format_summary`.
"""

from __future__ import annotations

from market_ingest.coverage.parked import LoadLedger, drain, drain_parked, forget, not_loaded_reason, park
from market_ingest.coverage.reading import format_summary, incomplete, summary
from market_ingest.coverage.recording import lock_series, record, record_run
from market_ingest.coverage.states import (
    COLUMNS,
    COMPLETE,
    DEFERRED,
    FAILED,
    MIRRORED,
    MISSING,
    PARTIAL,
    REJECTED,
    REPAIRABLE,
    STATE_COUNTS,
    STATES,
    UNRECOVERABLE,
    VENDOR_EMPTY,
    Asked,
    asked,
    counts,
    state_of,
)

__all__ = [
    "Asked",
    "COLUMNS",
    "COMPLETE",
    "DEFERRED",
    "FAILED",
    "LoadLedger",
    "MIRRORED",
    "MISSING",
    "PARTIAL",
    "REJECTED",
    "REPAIRABLE",
    "STATES",
    "STATE_COUNTS",
    "UNRECOVERABLE",
    "VENDOR_EMPTY",
    "asked",
    "counts",
    "drain",
    "drain_parked",
    "forget",
    "format_summary",
    "incomplete",
    "lock_series",
    "not_loaded_reason",
    "park",
    "record",
    "record_run",
    "state_of",
    "summary",
]
