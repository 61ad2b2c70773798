"""What one DAG run ingests: its window and its symbols, from the data interval and the Params form.

Stdlib only (imported at parse time by the DAG factory for the Params definitions).

A scheduled run ingests ``[data_interval_start, data_interval_end)`` for the configured universes.
A manual run may override the symbols and the window through Params; the override is validated
before any request is made: every symbol must match its source's pattern *in full*, and the
window is clamped to what can exist (it ends no later than now, and starts no earlier than the
interval's configured start date).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from market_ingest.errors import ConfigurationError
from market_ingest.kinds import KINDS

#: Symbol spelling per source kind (:mod:`market_ingest.kinds`), matched against the whole symbol.
SYMBOL_PATTERNS: dict[str, str] = {name: k.symbol_pattern for name, k in KINDS.items()}


def form_pattern(pattern: str) -> str:
    """``pattern`` anchored for a JSON-schema ``pattern`` (a search, in Python and in browsers).

    ``$`` would accept a final newline in Python (``"MSFT\\n"``); the lookahead ``(?![\\s\\S])``
    means end of string in both regex dialects.
    """
    return rf"^(?:{pattern})(?![\s\S])"


@dataclass(frozen=True)
class RunSelection:
    """The window and symbols of one run.

    :param start: window start, UTC (inclusive).
    :param end: window end, UTC (exclusive).
    :param symbols: symbols in order, without duplicates.
    :param manual: True when Params overrode the symbols or the window.
    :param clamped: what was clamped and why, one line each (empty when nothing was).
    """

    start: datetime
    end: datetime
    symbols: tuple[str, ...]
    manual: bool
    clamped: tuple[str, ...] = field(default=())


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
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        raise ConfigurationError(source, f"param {name}={value!r} is out of range") from None


def select(
    source: str,
    default_symbols: list[str],
    data_interval_start: datetime,
    data_interval_end: datetime,
    params: dict[str, Any] | None,
    *,
    symbol_pattern: str = SYMBOL_PATTERNS["yahoo"],
    earliest: datetime | None = None,
    now: datetime | None = None,
) -> RunSelection:
    """Resolve a run's window and symbols.

    :param source: source name, for error messages.
    :param default_symbols: the configured universes' symbols.
    :param data_interval_start: the run's data interval start (aware).
    :param data_interval_end: the run's data interval end (aware).
    :param params: the run's Params: ``symbols`` (list or comma-separated string, optional),
        ``start`` and ``end`` (ISO 8601, optional; a bare date means 00:00 UTC).
    :param symbol_pattern: the source's symbol spelling (:data:`SYMBOL_PATTERNS`), matched in full.
    :param earliest: the interval's configured start date: the window starts no earlier.
    :param now: the current time (UTC): the window ends no later (no bar after it exists).
    :return: the :class:`RunSelection`, ``clamped`` saying what was cut.
    :raises ConfigurationError: on a malformed symbol, an unparsable or out-of-range time,
        ``end <= start``, or a window that lies wholly before ``earliest`` or after ``now``; the
        message names the offending value.
    """
    params = params or {}
    raw = params.get("symbols")
    if isinstance(raw, str):
        raw = [s for s in (p.strip() for p in raw.split(",")) if s]
    symbols = list(raw) if raw else list(default_symbols)
    spelling = re.compile(symbol_pattern)
    bad = [s for s in symbols if not isinstance(s, str) or not spelling.fullmatch(s)]
    if bad:
        raise ConfigurationError(source, f"symbols {bad!r} are not valid {source} symbols (allowed: {symbol_pattern})")
    start = _parse_time(params["start"], "start", source) if params.get("start") else data_interval_start.astimezone(timezone.utc)
    end = _parse_time(params["end"], "end", source) if params.get("end") else data_interval_end.astimezone(timezone.utc)
    if end <= start:
        raise ConfigurationError(source, f"window end {end.isoformat()} is not after start {start.isoformat()}")
    clamped = []
    if now is not None and end > now:
        if start >= now:
            raise ConfigurationError(
                source, f"window [{start.isoformat()}, {end.isoformat()}) starts after now ({now.isoformat()})"
            )
        clamped.append(f"window end {end.isoformat()} clamped to now ({now.isoformat()})")
        end = now
    if earliest is not None and start < earliest:
        if end <= earliest:
            raise ConfigurationError(
                source,
                f"window [{start.isoformat()}, {end.isoformat()}) ends before the interval's start date {earliest.isoformat()}",
            )
        clamped.append(f"window start {start.isoformat()} clamped to the interval's start date {earliest.isoformat()}")
        start = earliest
    manual = bool(raw) or bool(params.get("start")) or bool(params.get("end"))
    return RunSelection(start, end, tuple(dict.fromkeys(symbols)), manual, tuple(clamped))


def batch_symbols(symbols: tuple[str, ...] | list[str], size: int) -> list[list[str]]:
    """Split symbols into consecutive batches of at most ``size``."""
    return [list(symbols[i : i + size]) for i in range(0, len(symbols), size)]


def backfill_without_conf(context: Any) -> bool:
    """True for a backfill run created without a run conf: Airflow 3.3's Backfill dialog sends
    ``dag_run_conf: null`` unless "Override parameters on existing runs" is ticked, so such a run
    gets no Params override and takes every configured symbol (:func:`whole_universe_notice`).

    :param context: the task's Airflow context (reads ``dag_run.run_type`` and ``dag_run.conf``).
    """
    dag_run = context.get("dag_run")
    run_type = getattr(dag_run, "run_type", None)
    return getattr(run_type, "value", run_type) == "backfill" and not getattr(dag_run, "conf", None)


def whole_universe_notice(symbols: int) -> str:
    """What a backfill run without conf says in its plan log and its note: it took the whole
    universe, and why (the Backfill dialog's checkbox).

    :param symbols: how many symbols the run took.
    """
    return (
        f"backfill run without conf: it took every configured symbol ({symbols}) over its data interval. "
        "Airflow 3.3's Backfill dialog sends no parameters unless 'Override parameters on existing runs' is "
        "ticked; to narrow a backfill, tick it, or pass --dag-run-conf to airflow backfill create"
    )
