"""Per-symbol outcomes of one extract, the raw material of the run report.

Stdlib only: these objects cross XCom as plain dicts (:meth:`SymbolOutcome.as_dict`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

#: Status values. ``ok`` with ``rows == 0`` never happens: a symbol without bars is ``no_data``.
OK = "ok"
NO_DATA = "no_data"  # the vendor answered, but no bar falls in the window (weekend, holiday)
UNKNOWN_SYMBOL = "unknown_symbol"  # the vendor does not know the symbol, or it is delisted
FAILED = "failed"  # anything else that stopped this symbol; the reason says what
DEFERRED = "deferred"  # not requested: the vendor's daily quota is spent; not a failure

SKIPPED_STATUSES = frozenset({NO_DATA, UNKNOWN_SYMBOL, DEFERRED})


@dataclass
class SymbolOutcome:
    """What happened to one symbol in one extract.

    :param symbol: canonical symbol.
    :param status: one of ``ok``, ``no_data``, ``unknown_symbol``, ``deferred``, ``failed``.
    :param rows: bars kept (in the window, closed, valid).
    :param reason: why the symbol was skipped or failed; empty when ``ok``.
    :param dropped: bars the vendor returned that were not kept, by reason
        (``out_of_window``, ``open_bar``, ``duplicate``, ``invalid: <check>``; see
        :mod:`market_ingest.quality`).
    :param gaps: ``[start, end)`` ISO ranges of closed bars in the window the vendor returned no
        bar for (reported by sources that trade around the clock; empty otherwise).
    :param nulled: optional values (``adj_close``, ``vwap``, ...) that were NaN or infinite and
        were stored as null, by column.
    :param conflicts: ``{"keys": n, "times": [ISO, ...]}`` when the vendor's answer held the same
        bar twice with different values (the last was kept); empty otherwise.
    :param note: what the bars mean when it is not obvious, e.g. ``swap settled in USDT: prices in
        USDT, volume in BTC (contracts x 0.001)``; empty otherwise.
    :param asked: the vendor was asked for this symbol. False for a ``no_data`` symbol whose market
        had no session in the window (a weekend), which no vendor answer could change: it is
        not counted among the symbols the vendor did not serve (:func:`unserved`).
    """

    symbol: str
    status: str
    rows: int = 0
    reason: str = ""
    dropped: dict[str, int] = field(default_factory=dict)
    gaps: list[list[str]] = field(default_factory=list)
    nulled: dict[str, int] = field(default_factory=dict)
    conflicts: dict = field(default_factory=dict)
    note: str = ""
    asked: bool = True

    def as_dict(self) -> dict:
        """A JSON-safe dict for XCom and the report."""
        return asdict(self)


def unserved(outcome: dict) -> bool:
    """True for an outcome (as :meth:`SymbolOutcome.as_dict`) whose vendor was asked and served no
    bar: it does not know the symbol, or answered nothing for a window in which its market was
    open. A run made of these is empty, not healthy (``report.max_unserved_share``). A ``no_data``
    symbol whose vendor did send bars, none kept (outside the window or the session, still open,
    invalid: its ``dropped`` says which), was served."""
    return outcome.get("status") in (UNKNOWN_SYMBOL, NO_DATA) and outcome.get("asked", True) and not outcome.get("dropped")
