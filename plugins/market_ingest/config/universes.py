"""Universes: the symbol lists in ``include/symbols/<name>.csv`` that the config names
(:func:`load_universe`), read at DAG parse time.
"""

from __future__ import annotations

import csv
import re
from pathlib import Path

from market_ingest.config.base import INCLUDE_DIR, PipelineConfigError


def universe_path(name: str) -> Path:
    """Path of a universe file in ``include/symbols/``."""
    return INCLUDE_DIR / "symbols" / f"{name}.csv"


#: Header names of a universe's symbol column, compared case-insensitively, in order of preference:
#: ``symbol,name`` as this project writes it, ``Symbol,Name`` as index providers publish it
#: (yfiua/index-constituents), ``Ticker,Company`` as others do.
SYMBOL_COLUMNS = ("symbol", "ticker")


def load_universe(name: str, symbol_pattern: str | None = None) -> list[str]:
    """Symbols of a universe, in file order.

    The file is CSV (UTF-8, a byte-order mark allowed) whose header names a symbol column
    (:data:`SYMBOL_COLUMNS`, any case: ``symbol``, ``Symbol``, ``ticker``); other columns are
    ignored, and so are blank lines.

    :param symbol_pattern: when given, a regex every symbol must match in full (the source's
        spelling, ``SourceConfig.symbols_like``).
    :raises PipelineConfigError: naming the file and line (``include/symbols/dax40.csv:7: ...``)
        when the file is missing or unreadable, its header names no symbol column, a row has no
        symbol, a symbol does not match ``symbol_pattern``, or it lists no symbol at all.
    """
    path = universe_path(name)
    spelling = re.compile(symbol_pattern) if symbol_pattern else None
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.reader(fh)
            header = next(reader, None) or []
            folded = [h.strip().casefold() for h in header]
            column = next((folded.index(c) for c in SYMBOL_COLUMNS if c in folded), None)
            if column is None:
                raise PipelineConfigError(
                    f"{path}:1: universe {name!r} has no symbol column (header {header}); "
                    f"name one column {' or '.join(SYMBOL_COLUMNS)} (any case)"
                )
            symbols = []
            for row in reader:
                if not any(field.strip() for field in row):
                    continue
                symbol = row[column].strip() if column < len(row) else ""
                if not symbol:
                    raise PipelineConfigError(f"{path}:{reader.line_num}: universe {name!r}: no {header[column]!r} in {row}")
                if spelling and not spelling.fullmatch(symbol):
                    raise PipelineConfigError(
                        f"{path}:{reader.line_num}: universe {name!r}: {symbol!r} is not a symbol of the source's "
                        f"spelling ({symbol_pattern})"
                    )
                symbols.append(symbol)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise PipelineConfigError(f"{path}: cannot read universe {name!r}: {reason}") from None
    if not symbols:
        raise PipelineConfigError(f"{path}: universe {name!r} lists no symbol")
    return symbols
