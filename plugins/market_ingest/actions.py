"""Corporate actions (splits, dividends) and the price basis of stored bars.

Every stored bar is **as traded**: the prices and volume printed on its day, never restated when a
later split arrives. A vendor that sends prices adjusted for splits (Yahoo's chart API: OHLC and
volume adjusted for every split up to the day of the answer; DESIGN.md, "Facts gathered") has
its adjustment undone at extraction (:func:`to_as_traded`) with the split history known then
(:class:`SplitHistory`), so the stored row does not depend on when it was extracted. Adjusted
series are computed on read from the actions (``market.bars_adjusted`` in the warehouse).

Conventions (the CRSP ones, as Yahoo and most vendors apply them):

* a split ``ratio`` is new shares per old share (4:1 -> 4.0, a 1:10 reverse split -> 0.1);
  it applies to every bar *before* its ex-date: price / ratio, volume * ratio;
* a dividend ``amount`` is cash per share in ``currency``, as traded on the ex-date (Yahoo states
  amounts split-adjusted as of its answer: converted like prices);
* ex-dates are dates of the exchange's calendar; a bar belongs to the exchange-local date of its
  open (daily bars are stamped 00:00 UTC of that date already).

Stdlib only at import time; the table functions import pyarrow when called.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import pyarrow as pa

#: The stored prices are those printed on the bar's day (``price_basis`` of every row written now).
AS_TRADED = "as_traded"
#: Prices (and volume) adjusted for every split up to the vendor's answer (Yahoo's chart API); never
#: stored by this version, but the basis of Yahoo rows stored by earlier ones (``price_basis`` null).
SPLIT_ADJUSTED = "split_adjusted"
PRICE_BASES = (AS_TRADED, SPLIT_ADJUSTED)

SPLIT = "split"
DIVIDEND = "dividend"
#: Mutual funds' and ETFs' capital-gain distributions (Yahoo ``capitalGains``): cash per share.
CAPITAL_GAIN = "capital_gain"
ACTION_KINDS = (SPLIT, DIVIDEND, CAPITAL_GAIN)

#: Natural key of an action in every sink: a vendor states one action of a kind per ex-date.
ACTION_KEY: tuple[str, ...] = ("source", "symbol", "ex_date", "kind")


def action_schema() -> pa.Schema:
    """The corporate-action record (``market.corporate_actions``, the lake's ``corporate_actions/``).

    ``ratio``: splits only, new shares per old share. ``amount``: dividends and capital gains
    only, cash per share as traded on the ex-date, in ``currency`` (as the vendor states it:
    ``USD``, ``GBp``). ``first_seen``: the vendor's clock when this product first saw the action
    (point-in-time reads: an action first seen after ``as_of`` is not applied); ``extracted_at``:
    the latest answer that stated it.
    """
    import pyarrow as pa

    return pa.schema(
        [
            pa.field("source", pa.string(), nullable=False),
            pa.field("symbol", pa.string(), nullable=False),
            pa.field("ex_date", pa.date32(), nullable=False),
            pa.field("kind", pa.string(), nullable=False),
            pa.field("ratio", pa.float64()),
            pa.field("amount", pa.float64()),
            pa.field("currency", pa.string()),
            pa.field("first_seen", pa.timestamp("us", tz="UTC"), nullable=False),
            pa.field("extracted_at", pa.timestamp("us", tz="UTC"), nullable=False),
        ],
        metadata={"schema": "market_ingest.corporate_action", "version": "1"},
    )


@dataclass(frozen=True)
class CorporateAction:
    """One action as a vendor states it (see :func:`action_schema` for the units)."""

    source: str
    symbol: str
    ex_date: date
    kind: str
    ratio: float | None = None
    amount: float | None = None
    currency: str | None = None
    first_seen: datetime | None = None
    extracted_at: datetime | None = None

    @property
    def key(self) -> tuple[str, str, date, str]:
        return self.source, self.symbol, self.ex_date, self.kind


@dataclass(frozen=True)
class SplitHistory:
    """A symbol's splits as known at ``as_of`` (the vendor's clock of the answer that stated them).

    :param splits: ``(ex_date, ratio)`` pairs, any order (ratio: new shares per old share).
    :param as_of: the exchange-local date of the vendor's clock: a split with a later ex-date was
        not yet applied by the vendor, so it is not undone.
    """

    splits: tuple[tuple[date, float], ...]
    as_of: date
    _dates: list[date] = field(init=False, repr=False, compare=False)
    _after: list[float] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        applied = sorted((d, r) for d, r in self.splits if d <= self.as_of)
        # _after[i]: product of the ratios of splits i.. (the factor of a bar before _dates[i]).
        after = [1.0] * (len(applied) + 1)
        for i in range(len(applied) - 1, -1, -1):
            after[i] = after[i + 1] * applied[i][1]
        object.__setattr__(self, "_dates", [d for d, _ in applied])
        object.__setattr__(self, "_after", after)

    @classmethod
    def of(cls, actions: Iterable[CorporateAction], as_of: date) -> SplitHistory:
        """The splits among ``actions`` (other kinds ignored), as known at ``as_of``."""
        return cls(tuple((a.ex_date, float(a.ratio)) for a in actions if a.kind == SPLIT and a.ratio), as_of)

    def factor(self, day: date) -> float:
        """Product of the ratios of the splits with ``day < ex_date <= as_of``: a price the vendor
        adjusted as of ``as_of`` times this is the price as traded on ``day``."""
        return self._after[bisect.bisect_right(self._dates, day)]

    def __len__(self) -> int:
        return len(self._dates)


def to_as_traded(bars: pa.Table, history: SplitHistory, tz: str | None) -> pa.Table:
    """Undo a vendor's split adjustment: ``bars`` adjusted as of ``history.as_of`` -> as traded.

    :param bars: canonical bars (:data:`~market_ingest.schema.BAR_SCHEMA`) whose open, high, low,
        close, volume and dividend the vendor adjusted for every split up to ``history.as_of``.
    :param history: the symbol's splits known to that answer.
    :param tz: the exchange's timezone (IANA), to date intraday bars; ``None``: by their UTC date.
        Daily and longer bars are always dated by their UTC date: they are stamped 00:00 UTC of
        their exchange-local date (read in New York, 2020-08-31's stamp would be the 30th).
    :return: the same rows with prices and dividends times the factor of their date
        (:meth:`SplitHistory.factor`), volume divided by it, ``price_basis`` ``as_traded``.
        ``adj_close`` is left as the vendor stated it (its adjusted close as of the answer).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if bars.num_rows == 0 or not len(history):
        return _with_basis(bars, AS_TRADED)
    from market_ingest.intervals import INTRADAY_INTERVALS

    times = bars["time"]
    intraday = bool(set(bars["interval"].unique().to_pylist()) & set(INTRADAY_INTERVALS))
    if intraday and tz and tz != "UTC":
        times = pc.local_timestamp(pc.cast(times, pa.timestamp("us", tz=tz)))
    days = pc.cast(times, pa.date32()).to_pylist()
    factors = pa.array([history.factor(d) for d in days], pa.float64())
    out = bars
    for name in ("open", "high", "low", "close", "dividend"):
        if name in out.column_names:
            out = out.set_column(out.schema.get_field_index(name), out.schema.field(name), pc.multiply(out[name], factors))
    if "volume" in out.column_names:
        out = out.set_column(out.schema.get_field_index("volume"), out.schema.field("volume"), pc.divide(out["volume"], factors))
    return _with_basis(out, AS_TRADED)


def _with_basis(bars: pa.Table, basis: str) -> pa.Table:
    import pyarrow as pa

    column = pa.array([basis] * bars.num_rows, pa.string())
    if "price_basis" in bars.column_names:
        return bars.set_column(bars.schema.get_field_index("price_basis"), bars.schema.field("price_basis"), column)
    return bars.append_column(pa.field("price_basis", pa.string()), column)


def actions_table(actions: Iterable[CorporateAction]) -> pa.Table:
    """``actions`` as a table of :func:`action_schema`, sorted by symbol, ex-date and kind."""
    import pyarrow as pa

    rows = sorted(actions, key=lambda a: (a.source, a.symbol, a.ex_date, a.kind))
    schema = action_schema()
    return pa.Table.from_pylist([{f.name: getattr(a, f.name) for f in schema} for a in rows], schema=schema)


def actions_of(table: pa.Table) -> list[CorporateAction]:
    """The rows of an :func:`action_schema` table as :class:`CorporateAction` values."""
    return [CorporateAction(**row) for row in table.to_pylist()]


def merge_actions(
    known: Iterable[CorporateAction], answered: Iterable[CorporateAction]
) -> tuple[list[CorporateAction], list[CorporateAction]]:
    """The union of what was known and what the vendor now states, and the actions first seen now.

    An action already known keeps its ``first_seen`` and takes the new answer's values and
    ``extracted_at`` (a vendor correcting an amount restates it); an action the vendor no longer
    states is kept (a vendor's history is not shortened by a later answer's omission).

    :return: ``(merged, new)``, each sorted by ex-date and kind.
    """
    merged: dict[tuple[str, str, date, str], CorporateAction] = {a.key: a for a in known}
    new = []
    for a in answered:
        before = merged.get(a.key)
        if before is None:
            new.append(a)
            merged[a.key] = a
        else:
            merged[a.key] = CorporateAction(**{**a.__dict__, "first_seen": before.first_seen or a.first_seen})
    order = lambda a: (a.ex_date, a.kind)  # noqa: E731
    return sorted(merged.values(), key=order), sorted(new, key=order)


@dataclass(frozen=True)
class ActionsAnswer:
    """A vendor's answer about a symbol's whole history of actions.

    :param actions: every action it states, as traded (amounts in the listing currency per share).
    :param now: its clock (UTC) when it answered.
    :param tz: the exchange's timezone (IANA), which dates the ex-dates.
    """

    actions: list[CorporateAction]
    now: datetime
    tz: str


class ActionsClient(Protocol):
    """A bar client whose vendor states corporate actions (the Yahoo hook)."""

    source: str

    def corporate_actions(self, symbol: str) -> ActionsAnswer:
        """Every action the vendor states for ``symbol``, over its whole history (one request)."""


class SplitHistories(Protocol):
    """Where the extract step gets a symbol's split history: the lake's copy of the vendor's
    action answers (:class:`market_ingest.lake.actions.ActionsCache`) or :class:`AskEveryTime`."""

    def split_history(self, client: ActionsClient, symbol: str, now: datetime, tz: str) -> SplitHistory:
        """The splits of ``symbol`` known at the vendor's clock ``now`` (dated in ``tz``); may ask ``client``."""


class AskEveryTime:
    """:class:`SplitHistories` without a cache: one actions request per symbol per call."""

    def split_history(self, client: ActionsClient, symbol: str, now: datetime, tz: str) -> SplitHistory:
        return SplitHistory.of(client.corporate_actions(symbol).actions, local_date(now, tz))


def local_date(instant: datetime, tz: str | None) -> date:
    """The date of ``instant`` (aware) in the timezone ``tz`` (IANA; ``None``: UTC)."""
    from zoneinfo import ZoneInfo

    return instant.astimezone(ZoneInfo(tz) if tz else timezone.utc).date()
