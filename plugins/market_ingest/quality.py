"""Row-level checks on canonical bars, applied before anything is staged.

A bar that fails a check is dropped and counted under ``invalid: <check>`` in its symbol's outcome;
the other bars of the symbol are kept. Imports pyarrow: call from tasks only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from datetime import datetime

    import pyarrow as pa

    from market_ingest.intervals import Window

#: check name -> description, in the order they are applied.
CHECKS = {
    "non_positive_price": "open, high, low and close must be finite and > 0",
    "high_below_range": "high must be >= open, close and low",
    "low_above_range": "low must be <= open and close",
    "negative_volume": "volume must be >= 0",
}


def validate_bars(table: pa.Table) -> tuple[pa.Table, dict[str, int]]:
    """Split ``table`` (canonical bars) into valid rows and counts of invalid ones.

    :param table: bars with :data:`market_ingest.schema.BAR_SCHEMA` columns.
    :return: ``(valid_rows, {"invalid: <check>": count})``; a row failing several checks is
        counted under the first one only.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    o, h, l, c, v = (table[n] for n in ("open", "high", "low", "close", "volume"))
    fails = {
        "non_positive_price": pc.invert(
            pc.and_kleene(
                pc.and_kleene(pc.greater(o, 0), pc.greater(h, 0)),
                pc.and_kleene(pc.greater(l, 0), pc.greater(c, 0)),
            )
        ),
        "high_below_range": pc.or_(pc.or_(pc.less(h, o), pc.less(h, c)), pc.less(h, l)),
        "low_above_range": pc.or_(pc.greater(l, o), pc.greater(l, c)),
        "negative_volume": pc.less(v, 0),
    }
    bad = pa.array([False] * table.num_rows, pa.bool_())
    counts: dict[str, int] = {}
    for name in CHECKS:
        # NaN compares false everywhere; a null is treated as a failure of the price check.
        this = pc.and_(pc.fill_null(fails[name], True), pc.invert(bad))
        n = pc.sum(this).as_py() or 0
        if n:
            counts[f"invalid: {name}"] = n
        bad = pc.or_(bad, this)
    return table.filter(pc.invert(bad)), counts


def keep_closed_in_window(table: pa.Table, interval: str, window: Window, now: datetime) -> tuple[pa.Table, dict[str, int]]:
    """Keep bars that open inside ``window`` and have closed by ``now`` (the vendor's clock).

    A bar opening at ``t`` is closed once ``bar_end(t, interval) <= now``; the last bar of a
    running session or the current exchange minute is still open and would change on a rerun.

    :return: ``(kept, {"out_of_window": n, "open_bar": m})`` (zero counts omitted).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.intervals import bar_end

    times = table["time"]
    inside = pc.and_(pc.greater_equal(times, window.start), pc.less(times, window.end))
    kept = table.filter(inside)
    dropped = {"out_of_window": table.num_rows - kept.num_rows}
    closed = [bar_end(t, interval) <= now for t in kept["time"].to_pylist()]
    final = kept.filter(pa.array(closed, pa.bool_())) if kept.num_rows else kept
    dropped["open_bar"] = kept.num_rows - final.num_rows
    return final, {k: v for k, v in dropped.items() if v}
