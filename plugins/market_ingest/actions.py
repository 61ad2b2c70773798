"""Corporate actions (splits, dividends) and the price basis of stored bars.

Every stored bar is **as traded**: the prices and volume printed on its day, never restated when a
later split arrives. A vendor that sends prices adjusted for splits (Yahoo's chart API: OHLC and
volume adjusted for every split up to the day of the answer; DESIGN.md, "Facts gathered") has
its adjustment undone at extraction (:func:`to_as_traded`) with the split history known then
(:class:`SplitHistory`), so the stored row does not depend on when it was extracted. Adjusted
series are computed on read from the actions, as known at a point in time (:func:`adjust_bars`;
the lake's :func:`market_ingest.lake.read_adjusted`, ``market.bars_adjusted`` in the warehouse).

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, NamedTuple, Protocol

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
    (point-in-time reads: an action first seen after ``as_of`` is not applied); the actions of a
    symbol's first history answer are taken as known from their ex-date (00:00 UTC); ``extracted_at``:
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
        close, vwap, volume and dividend the vendor adjusted for every split up to ``history.as_of``.
    :param history: the symbol's splits known to that answer.
    :param tz: the exchange's timezone (IANA), to date intraday bars (:func:`bar_days`; daily and
        longer bars are dated by their UTC date whatever ``tz``).
    :return: the same rows with prices and dividends times the factor of their date
        (:meth:`SplitHistory.factor`), volume divided by it, ``price_basis`` ``as_traded``.
        ``adj_close`` is left as the vendor stated it (its adjusted close as of the answer).
    """
    import pyarrow as pa

    if bars.num_rows == 0 or not len(history):
        return with_basis(bars, AS_TRADED)
    factors = pa.array([history.factor(d) for d in bar_days(bars, tz)], pa.float64())
    return with_basis(rescaled(bars, factors), AS_TRADED)


def bar_days(bars: pa.Table, tz: str | None) -> list[date]:
    """The date each bar belongs to, for comparing with ex-dates (exchange-calendar dates).

    Intraday bars (``interval`` of :data:`~market_ingest.intervals.INTRADAY_INTERVALS`) are dated
    by their open in ``tz`` (the exchange's IANA timezone; ``None``: UTC). Daily and longer bars
    are stamped 00:00 UTC of their session's (week's, month's) date, so they are dated by their
    UTC date whatever ``tz``: in New York that instant is the evening before.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.intervals import INTRADAY_INTERVALS

    times = pc.cast(pc.cast(bars["time"], pa.timestamp("us")), pa.date32())
    if tz and tz != "UTC":
        local = pc.cast(pc.local_timestamp(pc.cast(bars["time"], pa.timestamp("us", tz=tz))), pa.date32())
        times = pc.if_else(pc.is_in(bars["interval"], pa.array(sorted(INTRADAY_INTERVALS))), local, times)
    return times.to_pylist()


#: Columns in price per share (scaled like prices by splits and by cash distributions).
_PRICE_COLUMNS = ("open", "high", "low", "close", "vwap")


def rescaled(bars: pa.Table, per_share: pa.Array, cash: pa.Array | None = None) -> pa.Table:
    """``bars`` moved to another price basis, row by row: prices (open, high, low, close, vwap)
    times ``per_share`` and times ``cash`` when given, ``dividend`` times ``per_share``, volume
    divided by ``per_share``.

    :param per_share: one float per row, the split factor between the bases (a share of the
        target basis is ``per_share`` shares of the row's); 1.0 leaves a row unchanged.
    :param cash: one float per row, the cumulative cash-distribution factor (CRSP), or ``None``.
    """
    import pyarrow.compute as pc

    price = per_share if cash is None else pc.multiply(per_share, cash)
    out = bars
    for name, factor, op in [(n, price, pc.multiply) for n in _PRICE_COLUMNS] + [
        ("dividend", per_share, pc.multiply),
        ("volume", per_share, pc.divide),
    ]:
        if name in out.column_names:
            i = out.schema.get_field_index(name)
            out = out.set_column(i, out.schema.field(name), op(out[name], factor).cast(out.schema.field(name).type))
    return out


def with_basis(bars: pa.Table, basis: str) -> pa.Table:
    """``bars`` with ``price_basis`` set to ``basis`` on every row (the column added when missing)."""
    import pyarrow as pa

    column = pa.array([basis] * bars.num_rows, pa.string())
    if "price_basis" in bars.column_names:
        return bars.set_column(bars.schema.get_field_index("price_basis"), bars.schema.field("price_basis"), column)
    return bars.append_column(pa.field("price_basis", pa.string()), column)


#: ``adjust`` values of an adjusted read, and the ``price_basis`` its rows are labelled with.
ADJUSTMENTS = {"split": "split_adjusted", "split_dividend": "split_dividend_adjusted"}
#: Actions paid in cash per share: their CRSP factor ``1 - amount / prior close`` enters ``split_dividend``.
CASH_KINDS = (DIVIDEND, CAPITAL_GAIN)


class Adjusted(NamedTuple):
    """An adjusted series (:func:`adjust_bars`): the bars, and the cash distributions left out.

    ``skipped``: distributions that would have applied but whose factor could not be computed (no
    as-traded close before the ex-date known, or an amount in another currency than the bars):
    the series is adjusted for every other action, and the caller says which were left out.
    """

    bars: pa.Table
    skipped: list[CorporateAction]


def known_at(actions: Iterable[CorporateAction], as_of: datetime | None, tz: str | None) -> list[CorporateAction]:
    """The actions someone knew at ``as_of`` (aware): ex-date on or before ``as_of``'s date in
    ``tz`` (the exchange's timezone; ``None``: UTC) and first seen at or before ``as_of`` (an
    action without ``first_seen`` counts as always known). ``as_of`` ``None``: all of them."""
    if as_of is None:
        return list(actions)
    day = local_date(as_of, tz)
    return [a for a in actions if a.ex_date <= day and (a.first_seen is None or a.first_seen <= as_of)]


def adjust_bars(
    bars: pa.Table,
    actions: Iterable[CorporateAction],
    adjust: str,
    as_of: datetime | None = None,
    tz: str | None = None,
    prior_closes: Mapping[date, float] | None = None,
) -> Adjusted:
    """One series of as-traded bars back-adjusted for the actions known at ``as_of`` (CRSP convention).

    Each bar dated ``d`` (:func:`bar_days`) is adjusted for every action known at ``as_of``
    (:func:`known_at`) with ``d < ex_date``:

    * ``adjust="split"``: prices (open, high, low, close, vwap) divided by the product ``S`` of
      those splits' ratios, volume multiplied by it, dividend divided by it;
    * ``adjust="split_dividend"``: also prices multiplied by ``1 - amount / P`` for each such
      dividend or capital gain (:data:`CASH_KINDS`), ``P`` the as-traded close of the last daily bar
      before its ex-date (divided by the ratio of a split on that same ex-date, so that ``P`` and
      the amount are per the same share). ``P`` comes from ``bars`` when they are daily and span
      the ex-date (a bar before it and one on or after it), else from ``prior_closes``. A
      distribution whose ``P`` is unknown this way (or not above the amount), or whose
      ``currency`` differs from the bars', is **skipped**: its factor is left out (not guessed) and it is listed in
      :attr:`Adjusted.skipped`. Volume is not changed by cash distributions.

    ``adj_close`` is left as stored (the vendor's own adjusted close as of ``ingested_at``).
    For Yahoo's recorded answers, ``split`` as of the answer's date gives Yahoo's close and
    ``split_dividend`` its ``adjclose`` (tests/unit/test_adjusted.py).

    :param bars: one series (one source, symbol and interval) of canonical bars, every row
        ``price_basis`` ``as_traded``.
    :param actions: that instrument's actions (any source's, any kind; other kinds are ignored).
    :param adjust: ``split`` or ``split_dividend`` (:data:`ADJUSTMENTS`).
    :param as_of: the point in time (aware) the series is seen from; ``None``: every action given.
    :param tz: the exchange's timezone (IANA): dates intraday bars and ``as_of``; ``None``: UTC.
    :param prior_closes: ``{ex_date: as-traded close of the session before it}`` for ex-dates the
        bars do not span.
    :return: :class:`Adjusted`: the rows in the same order and schema, prices and volume
        adjusted, ``price_basis`` ``split_adjusted`` or ``split_dividend_adjusted``; and the skipped
        distributions, by ex-date.
    :raises ValueError: an unknown ``adjust``, or ``bars`` holding more than one series.
    :raises PriceBasisError: a row not as traded (``price_basis`` null or another basis), naming
        the series: re-base the stored rows first (:func:`market_ingest.lake.rebase_lake`).
    """
    import bisect

    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.errors import PriceBasisError

    if adjust not in ADJUSTMENTS:
        raise ValueError(f"adjust={adjust!r}: use one of {', '.join(ADJUSTMENTS)}")
    if bars.num_rows == 0:
        return Adjusted(with_basis(bars, ADJUSTMENTS[adjust]), [])
    series = {c: pc.unique(bars[c]).to_pylist() for c in ("source", "symbol", "interval")}
    if any(len(v) > 1 for v in series.values()):
        raise ValueError(f"adjust_bars takes one series; the bars hold {series}")
    source, symbol, interval = (series[c][0] for c in ("source", "symbol", "interval"))
    basis = bars["price_basis"] if "price_basis" in bars.column_names else pa.nulls(bars.num_rows, pa.string())
    not_traded = pc.invert(pc.fill_null(pc.equal(basis, AS_TRADED), False))
    if pc.any(not_traded).as_py():
        first = bars.filter(not_traded).slice(0, 1).to_pylist()[0]
        raise PriceBasisError(
            source,
            f"{interval} bars: {pc.sum(not_traded).as_py()} rows are not stored as traded (the first, "
            f"{first['time'].isoformat()}, has price_basis {first.get('price_basis') or 'null'}); an adjusted series is computed only "
            "from as-traded rows: re-base them first (market_ingest.lake.rebase_lake, market_setup's re-basing task)",
            symbol,
        )
    known = known_at(actions, as_of, tz)
    days = bar_days(bars, tz)
    splits = SplitHistory.of(known, date.max)
    per_share = pa.array([1.0 / splits.factor(d) for d in days], pa.float64())
    if adjust == "split":
        return Adjusted(with_basis(rescaled(bars, per_share), ADJUSTMENTS[adjust]), [])

    closes = bars["close"].to_pylist()
    order = sorted(range(len(days)), key=days.__getitem__)
    ordered = [days[i] for i in order]
    currencies = {c for c in pc.unique(bars["currency"]).to_pylist() if c} if "currency" in bars.column_names else set()
    ratio_on = {d: r for d, r in splits.splits}
    factors: list[tuple[date, float]] = []
    skipped: list[CorporateAction] = []
    for a in sorted((a for a in known if a.kind in CASH_KINDS and a.amount), key=lambda a: a.ex_date):
        if a.ex_date <= ordered[0]:
            continue  # no bar before it: nothing to adjust
        before = bisect.bisect_left(ordered, a.ex_date)  # bars [0, before) are dated before the ex-date
        prior = None
        if interval == "1d" and before < len(ordered):
            prior = closes[order[before - 1]]
        elif prior_closes and a.ex_date in prior_closes:
            prior = prior_closes[a.ex_date]
        factor = 1.0 - float(a.amount or 0.0) * ratio_on.get(a.ex_date, 1.0) / prior if prior else 0.0
        if factor <= 0.0 or (a.currency and currencies and currencies != {a.currency}):
            skipped.append(a)  # no close before it known (or none above the amount), or another currency
            continue
        factors.append((a.ex_date, factor))
    cash = SplitHistory(tuple(factors), date.max)  # the same cumulative product, of cash factors
    cash_factors = pa.array([cash.factor(d) for d in days], pa.float64())
    return Adjusted(with_basis(rescaled(bars, per_share, cash_factors), ADJUSTMENTS[adjust]), skipped)


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
