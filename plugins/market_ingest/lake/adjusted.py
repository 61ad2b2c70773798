"""Price bases in the lake: adjusted series on read, and re-basing rows stored by earlier versions.

Every bar written now is stored as traded (``price_basis`` ``as_traded``; :mod:`market_ingest.actions`).
Rows written before bar schema 2 have ``price_basis`` null: the source's vendor basis at the time,
which for a Yahoo source (:attr:`market_ingest.vendors.SourceKind.price_basis` ``split_adjusted``)
means split-adjusted as of the row's ``ingested_at``, and for the other sources as traded.

* :func:`read_adjusted`: one series back-adjusted for splits (and dividends) as known at a point in
  time, from the partitions (:func:`~market_ingest.lake.read_lake`) and the symbol's actions object
  (:func:`~market_ingest.lake.actions.actions_object`). Refuses rows whose basis is not as traded.
* :func:`rebase_lake`: converts a source's null-basis rows to as traded in place (once, at upgrade;
  ``market_setup``), with the same conditional writes as a publish.

Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

from market_ingest.actions import (
    ADJUSTMENTS,
    AS_TRADED,
    CASH_KINDS,
    SPLIT_ADJUSTED,
    Adjusted,
    CorporateAction,
    SplitHistory,
    adjust_bars,
    bar_days,
    known_at,
    local_date,
    rescaled,
)
from market_ingest.errors import PriceBasisError
from market_ingest.lake.actions import actions_object, read_actions
from market_ingest.lake.layout import _base, lake_root
from market_ingest.lake.merge import read_modify_write
from market_ingest.lake.objects import _decoding
from market_ingest.lake.partitions import _objects, _partition_folders, read_lake

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

#: How far before an ex-date the reader looks in the daily series for the close before it.
PRIOR_CLOSE_LOOKBACK = timedelta(days=10)


def read_adjusted(
    lake: str | ObjectStoragePath,
    source: str,
    symbol: str,
    interval: str,
    start: datetime,
    end: datetime,
    adjust: str = "split",
    as_of: datetime | None = None,
    *,
    legacy_basis: str | None = None,
    actions_source: str | None = None,
    tz: str | None = None,
) -> Adjusted:
    """``symbol``'s ``interval`` bars of ``source`` opening in ``[start, end)``, back-adjusted as
    someone saw the series at ``as_of`` (:func:`market_ingest.actions.adjust_bars`).

    The bars are read with :func:`~market_ingest.lake.read_lake`, the actions from the symbol's
    object under ``corporate_actions/`` (:func:`~market_ingest.lake.actions.actions_object`). For
    ``split_dividend``, the close before an ex-date the bars do not span (a later dividend, or any
    dividend of an intraday series) is the last daily bar of ``source`` stored in the
    :data:`PRIOR_CLOSE_LOOKBACK` before it; a dividend without one is left out, listed in
    :attr:`~market_ingest.actions.Adjusted.skipped` and logged as a warning.

    :param lake: the lake URL (``s3://conn@bucket/prefix``, ``file:///path``) or its root.
    :param adjust: ``split`` or ``split_dividend``.
    :param as_of: the point in time (aware): actions with a later ex-date (exchange-local) or
        first seen later are not applied; ``None``: every action the lake holds.
    :param legacy_basis: what the source's rows stored before bar schema 2 (``price_basis`` null)
        are: ``as_traded`` (Alpha Vantage, ccxt: read as they are) or ``split_adjusted`` (Yahoo);
        the source kind's :attr:`~market_ingest.vendors.SourceKind.price_basis`. ``None``
        (unknown) or ``split_adjusted``: such rows are refused.
    :param actions_source: whose actions object to apply (default ``source``); e.g. Yahoo's actions
        for Alpha Vantage's bars of the same symbol.
    :param tz: the exchange's timezone (IANA), dating intraday bars and ``as_of``; ``None``: the
        timezone of the symbol's market (:func:`market_ingest.calendars.market_of`).
    :return: :class:`~market_ingest.actions.Adjusted`: the bars (``BAR_SCHEMA``, sorted by time,
        ``price_basis`` ``split_adjusted`` or ``split_dividend_adjusted``) and the skipped dividends.
    :raises PriceBasisError: rows stored before schema 2 that are not known to be as traded (re-base
        the lake: :func:`rebase_lake`), or no actions object for the symbol (its actions were never
        asked of the vendor, so nothing says the series has none), naming the series.
    :raises ValueError: an unknown ``adjust``.
    """
    if adjust not in ADJUSTMENTS:
        raise ValueError(f"adjust={adjust!r}: use one of {', '.join(ADJUSTMENTS)}")
    root = lake_root(lake) if isinstance(lake, str) else lake
    bars = _series(root, source, symbol, interval, start, end, legacy_basis)
    path = actions_object(root, actions_source or source, symbol)
    actions, checked = read_actions(path)
    if checked is None:
        raise PriceBasisError(
            source,
            f"{interval} bars cannot be adjusted: the lake holds no corporate actions of the symbol from "
            f"{actions_source or source} ({path} does not exist; an extract of a split-adjusted vendor writes it, "
            "or pass actions_source)",
            symbol,
        )
    tz = tz or _timezone(symbol)
    prior: dict[date, float] = {}
    if adjust == "split_dividend" and bars.num_rows:
        days = bar_days(bars, tz)
        spanned = interval == "1d"
        wanted = [
            a.ex_date
            for a in known_at(actions, as_of, tz)
            if a.kind in CASH_KINDS and a.ex_date > min(days) and not (spanned and a.ex_date <= max(days))
        ]
        prior = _prior_closes(root, source, symbol, sorted(set(wanted)), legacy_basis)
    adjusted = adjust_bars(bars, actions, adjust, as_of, tz, prior)
    if adjusted.skipped:
        log.warning(
            "%s:%s %s %s: %d cash distributions left out (no close before the ex-date in the lake, or another currency): %s",
            source,
            symbol,
            interval,
            adjust,
            len(adjusted.skipped),
            ", ".join(f"{a.kind} {a.ex_date} {a.amount}" for a in adjusted.skipped),
        )
    return adjusted


def _series(
    root: ObjectStoragePath, source: str, symbol: str, interval: str, start: datetime, end: datetime, legacy_basis: str | None
) -> pa.Table:
    """The stored bars of one series, rows of null basis labelled as traded when ``legacy_basis`` says so."""
    import pyarrow as pa
    import pyarrow.compute as pc

    bars = read_lake(root, source, interval, start, end)
    bars = bars.filter(pc.equal(bars["symbol"], symbol))
    legacy = pc.is_null(bars["price_basis"])
    if not pc.any(legacy).as_py():
        return bars
    if legacy_basis == AS_TRADED:
        basis = pc.fill_null(bars["price_basis"], AS_TRADED)
        return bars.set_column(bars.schema.get_field_index("price_basis"), bars.schema.field("price_basis"), basis)
    times = bars.filter(legacy)["time"]
    what = (
        "split-adjusted as of their extraction" if legacy_basis == SPLIT_ADJUSTED else "of unknown basis (legacy_basis not given)"
    )
    raise PriceBasisError(
        source,
        f"{interval}: {pc.sum(legacy.cast(pa.int64())).as_py()} bars from {pc.min(times).as_py():%Y-%m-%d} to "
        f"{pc.max(times).as_py():%Y-%m-%d} were stored before bar schema 2 (price_basis null), {what}; they are not "
        "mixed with as-traded rows: re-base the lake first (market_ingest.lake.rebase_lake, market_setup's re-basing task)",
        symbol,
    )


def _prior_closes(
    root: ObjectStoragePath, source: str, symbol: str, ex_dates: list[date], legacy_basis: str | None
) -> dict[date, float]:
    """``{ex_date: as-traded close of the last daily bar stored in the lookback before it}``, for
    the ex-dates that have one (rows not as traded are not used)."""
    from datetime import timezone

    import pyarrow.compute as pc

    found: dict[date, float] = {}
    for ex in ex_dates:
        end = datetime(ex.year, ex.month, ex.day, tzinfo=timezone.utc)
        try:
            daily = _series(root, source, symbol, "1d", end - PRIOR_CLOSE_LOOKBACK, end, legacy_basis)
        except PriceBasisError:
            continue  # the close before it is not known as traded: the dividend is skipped
        daily = daily.filter(pc.equal(daily["price_basis"], AS_TRADED))
        if daily.num_rows:
            found[ex] = daily["close"][-1].as_py()  # read_lake sorts by time
    return found


def rebase_lake(lake: str | ObjectStoragePath, source: str, legacy_basis: str, *, tz: str | None = None) -> dict[str, Any]:
    """Convert ``source``'s bars stored before bar schema 2 (``price_basis`` null) to as traded, in place.

    For upgrades (``market_setup``): every partition object of every interval of ``source``,
    whatever layout wrote it, is rewritten if it holds null-basis rows:

    * ``legacy_basis`` ``split_adjusted`` (a Yahoo source): each such row of a symbol is multiplied
      back by the product of the ratios of the splits with ``bar date < ex_date <= the
      exchange-local date of its ingested_at`` (what Yahoo had applied when it answered;
      :func:`market_ingest.actions.to_as_traded`: prices, vwap and dividend times it, volume
      divided by it; ``adj_close`` stays Yahoo's), from the symbol's actions object
      (:func:`~market_ingest.lake.actions.actions_object`). A symbol without an actions object
      cannot be re-based: its rows are left null (a read adjusted refuses them) and it is listed;
      a later extract of the symbol writes its actions object, and a second run converts them.
    * ``legacy_basis`` ``as_traded`` (every other source): the rows are only labelled.

    Each object is rewritten by one conditional write (:func:`~market_ingest.lake.read_modify_write`:
    S3 ``If-Match``, a local ``flock``), the conversion redone on the fresh object when a publish
    replaced it meanwhile, so no published bar is lost; ``ingested_at`` is kept (the row's lineage),
    so a newer extraction still wins a later merge. Idempotent: rows already labelled are never
    touched, and an object with nothing to convert is not written (a second run writes nothing).
    Quotes (no ``price_basis``) are not visited.

    :param lake: the lake URL or its root.
    :param source: the configured source name (the ``source=`` folder).
    :param legacy_basis: ``split_adjusted`` or ``as_traded``: the source kind's
        :attr:`~market_ingest.vendors.SourceKind.price_basis` (what its vendor sends, so what an
        earlier version stored).
    :param tz: the exchange timezone (IANA) dating intraday bars and ``ingested_at``; ``None``: each
        symbol's market's (:func:`market_ingest.calendars.market_of` from its spelling).
    :return: ``{"rows_converted": rows multiplied back to as traded, "rows_labelled": rows only
        labelled as traded, "rows_left": null-basis rows left (their symbols lack actions),
        "objects_written": objects rewritten, "symbols_lacking_actions": sorted symbols}``.
    :raises ValueError: a ``legacy_basis`` other than those two.
    :raises ConcurrentPublishError: an object kept changing under the rewrite (run it again).
    :raises CorruptObjectError: an object is not Parquet of the bar schema.
    """
    if legacy_basis not in (AS_TRADED, SPLIT_ADJUSTED):
        raise ValueError(f"{source}: legacy_basis {legacy_basis!r}: use {AS_TRADED!r} or {SPLIT_ADJUSTED!r}")
    root = lake_root(lake) if isinstance(lake, str) else lake
    rebaser = _Rebaser(root, source, legacy_basis, tz)
    totals = {"rows_converted": 0, "rows_labelled": 0, "rows_left": 0, "objects_written": 0}
    for interval in _intervals(root, source):
        for _, _, folder in _partition_folders(root, source, interval):
            for obj in _objects(folder):
                if not _may_hold_legacy_rows(obj):
                    continue  # nothing stored before schema 2: only its footer was read
                stats: dict[str, int] = {}
                try:
                    read_modify_write(obj, partial(rebaser.rebase, stats=stats))
                    totals["objects_written"] += 1
                except _Unchanged:
                    pass
                for k in ("rows_converted", "rows_labelled", "rows_left"):
                    totals[k] += stats.get(k, 0)
                if stats.get("rows_converted") or stats.get("rows_labelled"):
                    log.info("rebase %s: %s", obj, stats)
    lacking = sorted(rebaser.lacking)
    if lacking:
        log.warning(
            "rebase %s: %d symbols have no corporate-actions object, their %d rows stored before schema 2 are left: %s",
            source,
            len(lacking),
            totals["rows_left"],
            ", ".join(lacking),
        )
    return {**totals, "symbols_lacking_actions": lacking}


class _Unchanged(Exception):
    """Raised inside a conditional write's update: nothing to rewrite, so nothing is written."""


class _Rebaser:
    """The conversion of one source's null-basis rows; caches each symbol's actions and timezone."""

    def __init__(self, root: ObjectStoragePath, source: str, legacy_basis: str, tz: str | None) -> None:
        self.root, self.source, self.legacy_basis, self.tz = root, source, legacy_basis, tz
        self.actions: dict[str, list[CorporateAction] | None] = {}
        self.lacking: set[str] = set()

    def _actions(self, symbol: str) -> list[CorporateAction] | None:
        if symbol not in self.actions:
            actions, checked = read_actions(actions_object(self.root, self.source, symbol))
            self.actions[symbol] = actions if checked is not None else None
        return self.actions[symbol]

    def rebase(self, table: pa.Table | None, stats: dict[str, int]) -> pa.Table:
        """``table`` with its null-basis rows converted; fills ``stats`` (this attempt's counts).

        :raises _Unchanged: no row to convert or label (the object is not written).
        """
        import pyarrow as pa

        stats.clear()
        if table is None or not table["price_basis"].null_count:
            raise _Unchanged
        basis = table["price_basis"].to_pylist()
        rows_of: dict[str, list[int]] = {}
        for i, (symbol, old) in enumerate(zip(table["symbol"].to_pylist(), basis)):
            if old is None:
                rows_of.setdefault(symbol, []).append(i)
        factors = [1.0] * table.num_rows
        converted = labelled = left = 0
        for symbol, rows in sorted(rows_of.items()):
            if self.legacy_basis == AS_TRADED:
                labelled += len(rows)
            else:
                actions = self._actions(symbol)
                if actions is None:
                    self.lacking.add(symbol)
                    left += len(rows)
                    continue
                tz = self.tz or _timezone(symbol)
                part = table.take(pa.array(rows, pa.int64()))
                histories: dict[date, SplitHistory] = {}
                for i, day, ingested in zip(rows, bar_days(part, tz), part["ingested_at"].to_pylist()):
                    seen = local_date(ingested, tz)
                    if seen not in histories:
                        histories[seen] = SplitHistory.of(actions, seen)
                    factors[i] = histories[seen].factor(day)
                converted += len(rows)
            for i in rows:
                basis[i] = AS_TRADED
        stats.update(rows_converted=converted, rows_labelled=labelled, rows_left=left)
        if not converted and not labelled:
            raise _Unchanged
        out = rescaled(table, pa.array(factors, pa.float64()))
        field = out.schema.field("price_basis")
        return out.set_column(out.schema.get_field_index("price_basis"), field, pa.array(basis, pa.string()))


def _may_hold_legacy_rows(obj: ObjectStoragePath) -> bool:
    """Whether ``obj`` may hold rows of null ``price_basis``, from its Parquet footer alone: it
    lacks the column (written before schema 2), or a row group's statistics count nulls in it (or
    state no count)."""
    import pyarrow.parquet as pq

    with obj.open("rb") as fh, _decoding(str(obj)):
        meta = pq.ParquetFile(fh).metadata
    names = meta.schema.names
    if "price_basis" not in names:
        return meta.num_rows > 0
    column = names.index("price_basis")
    for group in range(meta.num_row_groups):
        stats = meta.row_group(group).column(column).statistics
        if stats is None or not stats.has_null_count or stats.null_count:
            return True
    return False


def _intervals(root: ObjectStoragePath, source: str) -> list[str]:
    """The intervals with an ``interval=`` folder under ``source=<source>/`` (quotes have none)."""
    base = _base(root, source, None)
    if not base.exists():
        return []
    return sorted(p.name.partition("=")[2] for p in base.iterdir() if p.name.startswith("interval=") and p.is_dir())


def _timezone(symbol: str) -> str:
    """The timezone of ``symbol``'s market by its spelling (:func:`market_ingest.calendars.market_of`)."""
    from market_ingest.calendars import market_of, market_timezone

    return market_timezone(market_of(symbol))
