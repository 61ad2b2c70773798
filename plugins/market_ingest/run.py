"""What one DAG run ingests: its window and its symbols, from the data interval and the Params form.

Stdlib only (imported at parse time by the DAG factory for the Params definitions).

A scheduled run ingests ``[data_interval_start, data_interval_end)`` for the configured universes.
A manual run may override the symbols and the window through Params; the override is validated
before any request is made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from market_ingest.errors import ConfigurationError

#: A symbol as the Params form accepts it: Yahoo (``BRK-B``, ``BP.L``, ``EURUSD=X``, ``^GSPC``)
#: and ccxt (``BTC/USDT``) spellings.
SYMBOL_PATTERN = r"^[A-Za-z0-9^][A-Za-z0-9.\-=^/:]{0,31}$"
_SYMBOL = re.compile(SYMBOL_PATTERN)


@dataclass(frozen=True)
class RunSelection:
    """The window and symbols of one run.

    :param start: window start, UTC (inclusive).
    :param end: window end, UTC (exclusive).
    :param symbols: symbols in order, without duplicates.
    :param manual: True when Params overrode the symbols or the window.
    """

    start: datetime
    end: datetime
    symbols: tuple[str, ...]
    manual: bool


def _parse_time(value: Any, name: str, source: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(source, f"param {name}={value!r} is not an ISO 8601 date or time") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=timezone.utc)  # a bare date in the form means UTC
    return parsed.astimezone(timezone.utc)


def select(
    source: str,
    default_symbols: list[str],
    data_interval_start: datetime,
    data_interval_end: datetime,
    params: dict[str, Any] | None,
) -> RunSelection:
    """Resolve a run's window and symbols.

    :param source: source name, for error messages.
    :param default_symbols: the configured universes' symbols.
    :param data_interval_start: the run's data interval start (aware).
    :param data_interval_end: the run's data interval end (aware).
    :param params: the run's Params: ``symbols`` (list or comma-separated string, optional),
        ``start`` and ``end`` (ISO 8601, optional; a bare date means 00:00 UTC).
    :return: the :class:`RunSelection`.
    :raises ConfigurationError: on a malformed symbol, an unparsable time, or ``end <= start``;
        the message names the offending value.
    """
    params = params or {}
    raw = params.get("symbols")
    if isinstance(raw, str):
        raw = [s for s in (p.strip() for p in raw.split(",")) if s]
    symbols = list(raw) if raw else list(default_symbols)
    bad = [s for s in symbols if not isinstance(s, str) or not _SYMBOL.match(s)]
    if bad:
        raise ConfigurationError(source, f"symbols {bad!r} are not valid symbols (allowed: {SYMBOL_PATTERN})")
    start = _parse_time(params["start"], "start", source) if params.get("start") else data_interval_start.astimezone(timezone.utc)
    end = _parse_time(params["end"], "end", source) if params.get("end") else data_interval_end.astimezone(timezone.utc)
    if end <= start:
        raise ConfigurationError(source, f"window end {end.isoformat()} is not after start {start.isoformat()}")
    manual = bool(raw) or bool(params.get("start")) or bool(params.get("end"))
    return RunSelection(start, end, tuple(dict.fromkeys(symbols)), manual)


def batch_symbols(symbols: tuple[str, ...] | list[str], size: int) -> list[list[str]]:
    """Split symbols into consecutive batches of at most ``size``."""
    return [list(symbols[i : i + size]) for i in range(0, len(symbols), size)]
