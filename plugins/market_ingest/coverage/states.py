"""The ledger's states and columns, what one run asked per symbol (:func:`asked`), and the state
of a day (:func:`state_of`). The rules are :mod:`market_ingest.coverage`'s docstring.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from market_ingest import outcomes
from market_ingest.contracts import Batch, ExtractResult

if TYPE_CHECKING:
    import pyarrow as pa

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


#: The reasons :func:`state_of` gives, by state: one text for Python and SQL (:func:`state_sql`).
_REASONS = {
    REJECTED: "{loaded} of {expected} bars stored; dropped as invalid by the run: {invalid}",
    MISSING: "the vendor returned bars for the window but none of the {expected} expected this day",
    PARTIAL: "{loaded} of {expected} expected bars stored; the vendor returned no bar for the others",
}


def state_of(a: Asked, expected: int, loaded: int) -> tuple[str, str]:
    """The ledger state of one day of one symbol, and its reason (the rules of :mod:`market_ingest.coverage`)."""
    if loaded >= expected:
        return COMPLETE, ""
    if a.status in _SKIPPED_STATE:
        return _SKIPPED_STATE[a.status], a.reason
    if a.invalid:
        return REJECTED, _REASONS[REJECTED].format(loaded=loaded, expected=expected, invalid=a.invalid)
    if loaded == 0:
        return MISSING, _REASONS[MISSING].format(expected=expected)
    return PARTIAL, _REASONS[PARTIAL].format(loaded=loaded, expected=expected)


def state_sql() -> tuple[str, str]:
    """:func:`state_of` as two SQL expressions, ``(state, reason)``, over the columns ``status``,
    ``reason`` (the :class:`Asked`'s), ``invalid`` (``str(Asked.invalid)``, NULL for none),
    ``expected`` and ``loaded``; ``%`` doubled for psycopg's parameter syntax.
    """
    import re

    def text(template: str) -> str:
        names = re.findall(r"{(\w+)}", template)
        literal = re.sub(r"{\w+}", "%s", template.replace("%", "%%").replace("'", "''"))
        return f"format('{literal}', {', '.join(names)})"

    skipped = " ".join(f"WHEN '{status}' THEN '{state}'" for status, state in _SKIPPED_STATE.items())
    rules = [
        ("loaded >= expected", f"'{COMPLETE}'", "''"),
        (f"status IN ({', '.join(repr(s) for s in _SKIPPED_STATE)})", f"CASE status {skipped} END", "reason"),
        ("invalid IS NOT NULL", f"'{REJECTED}'", text(_REASONS[REJECTED])),
        ("loaded = 0", f"'{MISSING}'", text(_REASONS[MISSING])),
    ]
    state = "CASE " + " ".join(f"WHEN {w} THEN {s}" for w, s, _ in rules) + f" ELSE '{PARTIAL}' END"
    reason = "CASE " + " ".join(f"WHEN {w} THEN {r}" for w, _, r in rules) + f" ELSE {text(_REASONS[PARTIAL])} END"
    return state.replace("%", "%%"), reason.replace("%", "%%")


def counts(rows: pa.Table) -> dict[str, int]:
    """Ledger rows per state, every state present (zeros included), in :data:`STATES` order.

    :param rows: ledger rows with a ``state`` column (:func:`~market_ingest.coverage.record`).
    """
    import pyarrow.compute as pc

    tally = dict.fromkeys(STATES, 0)
    found = pc.value_counts(rows["state"])
    for state, n in zip(found.field("values").to_pylist(), found.field("counts").to_pylist(), strict=True):
        tally[state] += n
    return tally
