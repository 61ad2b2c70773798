"""``make coverage``: the coverage ledger (``market.coverage``) in a terminal.

Per (source, interval): symbols, days, calendar-expected and loaded bars, symbol-days per state
and flagged bars; then the latest days that are not complete, with their reasons; then
:data:`LEDGER_LEGEND`. Reads the warehouse of ``make up`` (its state file), or the one ``--dsn``
names (a libpq connection string).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "plugins")]

STATE = ROOT / ".stack" / "state.json"
#: Units of the ledger's table (``market_ingest.coverage.format_summary``), and which "expected" it is.
LEDGER_LEGEND = (
    "units: cal-expected, loaded and flagged in bars; each state column in symbol-days (one symbol's UTC day); "
    "cal-expected = calendar-expected: the bars the market's calendar expects for those days"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", help="libpq connection string of the warehouse (default: the one `make up` started)")
    parser.add_argument("--source", help="only this source")
    parser.add_argument("--interval", help="only this interval")
    parser.add_argument("--limit", type=int, default=20, help="incomplete days listed (default 20)")
    args = parser.parse_args(argv)
    dsn = args.dsn
    if not dsn:
        if not STATE.exists():
            print("nothing to read: start the stack with `make up` (and run a DAG), or pass --dsn", file=sys.stderr)
            return 2
        dsn = json.loads(STATE.read_text())["postgres"]
    import psycopg

    from market_ingest import coverage

    with psycopg.connect(dsn) as conn:
        rows = coverage.summary(conn, args.source, args.interval)
        gaps = coverage.incomplete(conn, args.source, args.interval, args.limit)
    print("\n".join(coverage.format_summary(rows, gaps)))
    print(LEDGER_LEGEND)
    return 0


if __name__ == "__main__":
    sys.exit(main())
