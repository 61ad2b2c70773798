"""Row-level checks on canonical bars, applied to each symbol's answer before anything is staged.

Every hook ends a symbol the same way, :func:`clean_bars`:

1. **duplicates** in the vendor's answer (same natural key twice) keep the last row; each extra
   row is counted as ``duplicate``, and keys whose rows *differ* are reported as ``conflicts``
   (how many, and their open times; the run report shows them);
2. **window and closed bars**: bars opening outside the window are dropped (``out_of_window``),
   and so is a bar still open at the vendor's clock (``open_bar``);
3. **validation** (:data:`CHECKS`): a bar failing a check is dropped and counted under
   ``invalid: <check>``; the other bars of the symbol are kept. Finite values beyond the source's
   plausible magnitudes (:class:`Bounds`: a vendor's ``1e308``) fail a check too;
4. **optional columns** (``adj_close, vwap, dividend, split_ratio``) that are NaN or infinite
   become null and are counted per column in ``nulled``: JSON and SQL consumers cannot hold them.

After this, every float in a staged bar is finite, so no sink can fail on one row's value.
Imports pyarrow inside functions: call from tasks only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from market_ingest import outcomes

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa

    from market_ingest.intervals import Window

#: check name -> description, in the order they are applied. A row failing several is counted under the first.
CHECKS = {
    "missing_value": "open, high, low, close and volume must be present (not null)",
    "non_finite_value": "open, high, low, close and volume must be finite (not NaN or infinite)",
    "non_positive_price": "open, high, low and close must be > 0",
    "implausible_price": "open, high, low and close must lie within the source's plausible range (bounds.min_price .. max_price)",
    "implausible_volume": "volume must not exceed the source's plausible maximum (bounds.max_volume)",
    "high_below_range": "high must be >= open, close and low",
    "low_above_range": "low must be <= open and close",
    "negative_volume": "volume must be >= 0",
}

#: Required float columns (checked) and optional ones (non-finite values become null).
REQUIRED_FLOATS = ("open", "high", "low", "close", "volume")
OPTIONAL_FLOATS = ("adj_close", "vwap", "dividend", "split_ratio")


@dataclass(frozen=True)
class Bounds:
    """The plausible magnitudes of one source's bars: a finite value outside them is a vendor
    error (``1e308``), not a price, and its bar is rejected by name (``invalid: implausible_price``).

    The defaults admit every real listing we know of: Berkshire Hathaway A (about 7e5 USD), bitcoin
    quoted in Indonesian rupiah or Vietnamese dong (about 2e9), meme tokens quoted in bitcoin (PEPE
    about 1e-10 BTC) and their daily volumes in units (SHIB about 1e13). A source trading something
    else sets its own (``sources.<name>.bounds`` in the pipeline config).

    :param min_price: lowest plausible open, high, low or close (listing currency); > 0.
    :param max_price: highest plausible open, high, low or close (listing currency).
    :param max_volume: highest plausible volume of one bar (units of the asset).
    """

    min_price: float = 1e-12
    max_price: float = 1e12
    max_volume: float = 1e18


#: At most this many conflicting keys are listed per symbol (all are counted).
MAX_LISTED_CONFLICTS = 20


def validate_bars(table: pa.Table, bounds: Bounds | None = None) -> tuple[pa.Table, dict[str, int]]:
    """Split ``table`` (canonical bars) into valid rows and counts of invalid ones.

    :param table: bars with :data:`market_ingest.schema.BAR_SCHEMA` columns.
    :param bounds: the source's plausible magnitudes; default :class:`Bounds`.
    :return: ``(valid_rows, {"invalid: <check>": count})``; a row failing several checks is
        counted under the first one only (order of :data:`CHECKS`); zero counts are omitted.
    """
    valid, _, counts = split_valid(table, bounds)
    return valid, counts


def split_valid(table: pa.Table, bounds: Bounds | None = None) -> tuple[pa.Table, pa.Table | None, dict[str, int]]:
    """:func:`validate_bars`, keeping the invalid rows too.

    :return: ``(valid_rows, rejected_rows or None, counts)``; the rejected rows are the bars as the
        vendor sent them (NaN, infinity or null included: every column nullable,
        :func:`market_ingest.schema.as_sent`), with a ``reason`` column (``invalid: <check>``, the
        first check each failed).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    o, h, l, c, v = (table[n] for n in REQUIRED_FLOATS)

    bounds = bounds or Bounds()

    def any_of(predicate, columns=(h, l, c, v)):
        out = predicate(o)
        for col in columns:
            out = pc.or_kleene(out, predicate(col))
        return out

    def any_price(predicate):
        return any_of(predicate, (h, l, c))

    fails = {
        "missing_value": any_of(pc.is_null),
        # is_finite is false for NaN and +-inf; nulls were counted above.
        "non_finite_value": any_of(lambda col: pc.invert(pc.fill_null(pc.is_finite(col), True))),
        "non_positive_price": pc.or_(
            pc.or_(pc.less_equal(o, 0), pc.less_equal(h, 0)), pc.or_(pc.less_equal(l, 0), pc.less_equal(c, 0))
        ),
        "implausible_price": any_price(lambda col: pc.or_(pc.less(col, bounds.min_price), pc.greater(col, bounds.max_price))),
        "implausible_volume": pc.greater(v, bounds.max_volume),
        "high_below_range": pc.or_(pc.or_(pc.less(h, o), pc.less(h, c)), pc.less(h, l)),
        "low_above_range": pc.or_(pc.greater(l, o), pc.greater(l, c)),
        "negative_volume": pc.less(v, 0),
    }
    bad = pa.array([False] * table.num_rows, pa.bool_())
    reason = pa.nulls(table.num_rows, pa.string())
    counts: dict[str, int] = {}
    for name in CHECKS:
        this = pc.and_(pc.fill_null(fails[name], False), pc.invert(bad))
        n = pc.sum(this).as_py() or 0
        if n:
            counts[f"invalid: {name}"] = n
            reason = pc.if_else(this, f"invalid: {name}", reason)
        bad = pc.or_(bad, this)
    if not counts:
        return table, None, counts
    from market_ingest.schema import as_sent

    rejected = table.filter(bad).cast(as_sent(table.schema)).append_column("reason", reason.filter(bad))
    return table.filter(pc.invert(bad)), rejected, counts


def null_non_finite(table: pa.Table, columns: tuple[str, ...] = OPTIONAL_FLOATS) -> tuple[pa.Table, dict[str, int]]:
    """Replace NaN and infinite values of optional float ``columns`` with null.

    :return: ``(table, {column: values nulled})``; zero counts omitted.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    nulled: dict[str, int] = {}
    for name in columns:
        if name not in table.column_names:
            continue
        col = table[name]
        finite = pc.fill_null(pc.is_finite(col), True)  # nulls stay null, and are not counted
        n = table.num_rows - (pc.sum(finite).as_py() or 0)
        if n:
            nulled[name] = n
            col = pc.if_else(finite, col, pa.scalar(None, col.type))
            table = table.set_column(table.schema.get_field_index(name), table.schema.field(name), col)
    return table, nulled


def dedupe_answer(
    table: pa.Table, key: tuple[str, ...] = ("source", "symbol", "interval", "time"), ignore: tuple[str, ...] = ("ingested_at",)
) -> tuple[pa.Table, dict[str, int], dict]:
    """Keep the last row of each ``key`` in one vendor answer, and say what was dropped.

    :param table: rows of one symbol's answer, in the vendor's order.
    :param key: natural key (bars: ``source, symbol, interval, time``).
    :param ignore: columns not compared when deciding whether duplicates conflict.
    :return: ``(rows, {"duplicate": extra rows dropped}, conflicts)``: ``conflicts`` is ``{}``
        or ``{"keys": n, "times": [ISO open times, at most MAX_LISTED_CONFLICTS]}`` for keys
        whose rows differ in a value. Rows keep their original order.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if table.num_rows < 2:
        return table, {}, {}
    keys = list(key)
    if _one_series_without_repeats(table, keys):  # the usual answer: checked without building a hash table of rows
        return table, {}, {}
    indexed = table.append_column("__row", pa.array(range(table.num_rows), pa.int64()))
    groups = indexed.group_by(keys, use_threads=False).aggregate([("__row", "max")])
    extra = table.num_rows - groups.num_rows
    if not extra:
        return table, {}, {}
    values = [c for c in table.column_names if c not in keys and c not in ignore]
    distinct = indexed.group_by(keys + values, use_threads=False).aggregate([("__row", "count")])
    per_key = distinct.group_by(keys, use_threads=False).aggregate([("__row_count", "count")])
    conflicting = per_key.filter(pc.greater(per_key["__row_count_count"], 1))
    conflicts: dict = {}
    if conflicting.num_rows:
        times = sorted(conflicting["time"].to_pylist()) if "time" in keys else []
        conflicts = {"keys": conflicting.num_rows, "times": [t.isoformat() for t in times[:MAX_LISTED_CONFLICTS]]}
    kept = table.take(groups["__row_max"].combine_chunks().sort())
    return kept, {"duplicate": extra}, conflicts


def _one_series_without_repeats(table: pa.Table, keys: list[str]) -> bool:
    """True when every key column but ``time`` is constant and ``time`` strictly increases: the
    usual answer, recognised with element-wise comparisons instead of a hash table of the rows."""
    import pyarrow.compute as pc

    if "time" not in keys:
        return False
    for name in keys:
        if name != "time" and not pc.all(pc.equal(table[name], table[name][0])).as_py():
            return False
    times = table["time"]
    return bool(pc.all(pc.less(times[:-1], times[1:])).as_py())


def keep_closed_in_window(table: pa.Table, interval: str, window: Window, now: datetime) -> tuple[pa.Table, dict[str, int]]:
    """Keep bars that open inside ``window`` and have closed by ``now`` (the vendor's clock).

    A bar opening at ``t`` is closed once ``bar_end(t, interval) <= now``; the last bar of a
    running session or the current exchange minute is still open and would change on a rerun.

    :return: ``(kept, {"out_of_window": n, "open_bar": m})`` (zero counts omitted).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.intervals import INTERVAL_LENGTH, bar_end
    from market_ingest.schema import utc_timestamp

    times = table["time"]
    kept = _keep(table, pc.and_(pc.greater_equal(times, utc_timestamp(window.start)), pc.less(times, utc_timestamp(window.end))))
    dropped = {"out_of_window": table.num_rows - kept.num_rows}
    if interval in INTERVAL_LENGTH:  # fixed length: closed <=> open time <= now - length
        closed = pc.less_equal(kept["time"], utc_timestamp(now - INTERVAL_LENGTH[interval]))
    else:
        closed = pa.array([bar_end(t, interval) <= now for t in kept["time"].to_pylist()], pa.bool_())
    final = _keep(kept, closed) if kept.num_rows else kept
    dropped["open_bar"] = kept.num_rows - final.num_rows
    return final, {k: v for k, v in dropped.items() if v}


def keep_in_sessions(table: pa.Table, sessions: list[tuple[datetime, datetime]]) -> tuple[pa.Table, dict[str, int]]:
    """Keep bars that open inside one of ``sessions`` (regular trading hours, ``[open, close)`` UTC).

    :param sessions: the vendor's regular sessions over the window (Yahoo's ``tradingPeriods``),
        or a market's documented hours; any order.
    :return: ``(kept, {"outside_session": n})`` (zero count omitted): pre- and post-market bars
        counted under their own reason, not dropped silently.
    """
    import numpy as np
    import pyarrow as pa

    if not table.num_rows:
        return table, {}
    spans = sorted(sessions)
    starts = np.array([int(a.timestamp() * 1_000_000) for a, _ in spans], dtype="int64")
    ends = np.array([int(b.timestamp() * 1_000_000) for _, b in spans], dtype="int64")
    times = table["time"].cast(pa.int64()).to_numpy()
    at = np.searchsorted(starts, times, side="right") - 1
    inside = (at >= 0) & (times < ends[np.clip(at, 0, None)]) if len(spans) else np.zeros(len(times), dtype=bool)
    kept = _keep(table, pa.array(inside))
    return kept, ({"outside_session": table.num_rows - kept.num_rows} if kept.num_rows < table.num_rows else {})


def _keep(table: pa.Table, mask) -> pa.Table:
    """``table.filter(mask)``, without copying the table when every row is kept."""
    import pyarrow.compute as pc

    return table if pc.all(mask).as_py() else table.filter(mask)


@dataclass
class CleanBars:
    """One symbol's bars after :func:`clean_bars`, with what was dropped or changed and why.

    :param table: the bars kept (canonical schema), in the vendor's order.
    :param dropped: rows not kept, by reason (``duplicate``, ``out_of_window``, ``open_bar``,
        ``outside_session``, ``invalid: <check>``).
    :param nulled: optional values set to null because they were NaN or infinite, by column.
    :param conflicts: ``{"keys": n, "times": [...]}`` when the vendor answered a key with differing rows.
    :param rejected: the rows dropped as ``invalid: <check>``, as sent, with a ``reason`` column; ``None`` if none.
    """

    table: pa.Table
    dropped: dict[str, int] = field(default_factory=dict)
    nulled: dict[str, int] = field(default_factory=dict)
    conflicts: dict = field(default_factory=dict)
    rejected: pa.Table | None = None

    def outcome(
        self, symbol: str, gaps: list[list[str]] | None = None, no_data_reason: str = "no bars in the window"
    ) -> outcomes.SymbolOutcome:
        """The symbol's outcome: ``ok`` with its rows, or ``no_data`` when nothing was kept."""
        if self.table.num_rows == 0:
            reason = no_data_reason + (f" ({self.dropped})" if self.dropped else "")
            return outcomes.SymbolOutcome(
                symbol, outcomes.NO_DATA, reason=reason, dropped=self.dropped, nulled=self.nulled, conflicts=self.conflicts
            )
        return outcomes.SymbolOutcome(
            symbol,
            outcomes.OK,
            rows=self.table.num_rows,
            dropped=self.dropped,
            gaps=gaps or [],
            nulled=self.nulled,
            conflicts=self.conflicts,
        )


def clean_bars(
    table: pa.Table,
    interval: str,
    window: Window,
    now: datetime,
    sessions: list[tuple[datetime, datetime]] | None = None,
    bounds: Bounds | None = None,
) -> CleanBars:
    """The shared end of every symbol's extract: deduplicate, keep closed bars in the window (and,
    when ``sessions`` are given, in regular trading hours), validate.

    :param table: one symbol's bars as normalised from the vendor's answer (canonical schema,
        times UTC), in the vendor's order.
    :param interval: canonical interval.
    :param window: the run's window ``[start, end)``, UTC.
    :param now: the vendor's clock (UTC), deciding which bar is still open.
    :param sessions: regular sessions ``[(open, close)]`` UTC; bars outside all of them are dropped
        as ``outside_session`` (an interval configured without ``extended_hours``). ``None``: keep all.
    :param bounds: the source's plausible magnitudes (:class:`Bounds`); default :class:`Bounds`.
    :return: the :class:`CleanBars`; its table holds only valid, closed, in-window bars, each
        key once, with every float finite.
    """
    table, dropped, conflicts = dedupe_answer(table)
    if conflicts:
        where = f"{table['source'][0]}:{table['symbol'][0]}"
        log.warning(
            "%s answered %d bars twice with different values (the later kept): %s", where, conflicts["keys"], conflicts["times"]
        )
    table, outside = keep_closed_in_window(table, interval, window, now)
    dropped.update(outside)
    if sessions is not None:
        table, off_hours = keep_in_sessions(table, sessions)
        dropped.update(off_hours)
    table, rejected, invalid = split_valid(table, bounds)
    dropped.update(invalid)
    table, nulled = null_non_finite(table)
    return CleanBars(table, dropped, nulled, conflicts, rejected)


def find_gaps(times: Any, interval: str, window: Window, now: datetime) -> list[tuple[datetime, datetime]]:
    """Ranges ``[first missing open, end)`` of closed bars in ``window`` with no bar, for markets
    that trade around the clock (every closed bar of the window should exist).

    :param times: open times (UTC) of the bars kept: a list of datetimes or an Arrow timestamp array.
    :return: missing ranges, oldest first; empty when every closed bar of the window is present.
        Linear in the bars (vectorised for fixed-length intervals).
    """
    from datetime import timedelta

    from market_ingest.intervals import INTERVAL_LENGTH, bar_end

    if interval not in INTERVAL_LENGTH:
        have = set(times.to_pylist() if hasattr(times, "to_pylist") else times)
        gaps: list[tuple[datetime, datetime]] = []
        t = window.start
        while t < window.end and bar_end(t, interval) <= now:
            nxt = bar_end(t, interval)
            if t not in have:
                if gaps and gaps[-1][1] == t:
                    gaps[-1] = (gaps[-1][0], nxt)
                else:
                    gaps.append((t, nxt))
            t = nxt
        return gaps
    import numpy as np
    import pyarrow as pa

    step = INTERVAL_LENGTH[interval]
    step_us = step // timedelta(microseconds=1)
    last_closed = min(window.end - timedelta(microseconds=1), now - step)  # the newest open time that is closed
    if last_closed < window.start:
        return []
    expected = (last_closed - window.start) // step + 1
    arr = pa.array(times, pa.timestamp("us", tz="UTC")) if not isinstance(times, (pa.Array, pa.ChunkedArray)) else times
    us = np.asarray(arr.cast(pa.int64()).to_numpy(zero_copy_only=False), dtype=np.int64) - int(
        window.start.timestamp() * 1_000_000
    )
    slots = np.unique(us[(us >= 0) & (us % step_us == 0)] // step_us)
    slots = slots[slots < expected]
    bounds = np.concatenate(([-1], slots, [expected]))
    holes = np.nonzero(np.diff(bounds) > 1)[0]
    return [(window.start + int(bounds[h] + 1) * step, window.start + int(bounds[h + 1]) * step) for h in holes]
