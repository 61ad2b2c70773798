"""Build ``include/symbols/*.csv`` from the index constituent lists in ``tools/indices/`` (provenance there).

Symbols are normalised to Yahoo's spelling: Bloomberg-style slashes become Yahoo's form
(``BP/.L`` -> ``BP.L``, ``BT/A.L`` -> ``BT-A.L``); duplicates are dropped; anything that is still not
a plausible Yahoo symbol stops the build with the file and row named. Run from the repo root::

    python tools/build_universes.py
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
INDICES = Path(__file__).resolve().parent / "indices"
OUT = ROOT / "include" / "symbols"

# universe -> (file, symbol column, name column, provenance)
SOURCES = {
    "nasdaq100": ("nasdaq100_constituents_yfiua_2026-07-01.csv", "Symbol", "Name"),
    "dax40": ("dax_constituents_yfiua_2026-07-01.csv", "Symbol", "Name"),
    "ftse100": ("ftse100_constituents_yfiua_2026-07-01.csv", "Symbol", "Name"),
    "cac40": ("cac40_constituents_fredkomo172_dash-yfinance_2026-09-02.json", None, None),
}
YAHOO_SYMBOL = re.compile(r"^[A-Z0-9][A-Z0-9.\-=^]*$")


def to_yahoo(symbol: str) -> str:
    """Normalise a constituent symbol to Yahoo's spelling (``BP/.L`` -> ``BP.L``, ``BT/A.L`` -> ``BT-A.L``)."""
    symbol = symbol.strip().upper()
    if "/" in symbol:
        base, _, rest = symbol.partition("/")
        share_class, _, suffix = rest.partition(".")
        symbol = f"{base}-{share_class}.{suffix}" if share_class else f"{base}.{suffix}"
    return symbol


def rows(universe: str) -> list[tuple[str, str]]:
    file, sym_col, name_col = SOURCES[universe]
    path = INDICES / file
    if path.suffix == ".json":
        companies = json.loads(path.read_text())["companies"]
        return [(sym, name) for name, sym in companies.items()]
    with path.open(newline="") as fh:
        return [(r[sym_col], r[name_col]) for r in csv.DictReader(fh)]


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    for universe, (file, _, _) in SOURCES.items():
        seen: dict[str, str] = {}
        for i, (raw, name) in enumerate(rows(universe), start=2):
            sym = to_yahoo(raw)
            if not YAHOO_SYMBOL.match(sym):
                raise SystemExit(f"{file} row {i}: {raw!r} is not a Yahoo symbol after normalising ({sym!r})")
            seen.setdefault(sym, name.strip())
        with (OUT / f"{universe}.csv").open("w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["symbol", "name"])
            w.writerows(sorted(seen.items()))
        print(f"{universe}: {len(seen)} symbols from {file}")


if __name__ == "__main__":
    main()
