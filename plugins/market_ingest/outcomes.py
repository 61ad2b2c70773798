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

    def as_dict(self) -> dict:
        """A JSON-safe dict for XCom and the report."""
        return asdict(self)
