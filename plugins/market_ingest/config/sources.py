"""The settings of one source (``sources.<name>`` in ``include/pipeline.yaml``): its kind, pool
and batches, its DAGs (one per interval, and its quote snapshots), its anomaly checks and the
plausible magnitudes of its bars.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import Field, field_validator, model_validator

from market_ingest import kinds
from market_ingest.config.base import _ID, Interval, Schedule, _Model
from market_ingest.intervals import INTRADAY_INTERVALS
from market_ingest.quality import Bounds


class IntervalConfig(_Model):
    """One (source, interval) pair, or a source's quote snapshots: one DAG each."""

    schedule: Schedule = Field(description="cron or preset; the data interval is the run's window")
    start_date: datetime = Field(datetime(2024, 1, 1, tzinfo=timezone.utc))
    universes: list[str] | None = Field(None, description="overrides the source's universes")
    batch_size: int | None = Field(None, gt=0)
    max_active_runs: int = Field(1, gt=0)
    catchup: bool = Field(
        False,
        description="when the DAG is unpaused, run every missed data interval since start_date (Airflow's "
        "catchup); false runs only the latest, and a backfill fetches older windows",
    )
    extended_hours: bool = Field(
        False,
        description="intraday Yahoo and Alpha Vantage bars: keep pre- and post-market bars; false drops them, "
        "counted as outside_session in the run report",
    )
    allowed_lateness: timedelta = Field(
        timedelta(hours=2),
        gt=timedelta(0),
        description="Deadline Alert: a run must finish this long after its data interval ends "
        "(ISO 8601 duration in YAML, e.g. PT2H); manual and backfill runs count from when they were queued",
    )

    @field_validator("start_date")
    @classmethod
    def _utc(cls, v: datetime) -> datetime:
        return v if v.tzinfo else v.replace(tzinfo=timezone.utc)


class AnomalyConfig(_Model):
    """Anomaly checks of a source's bars (:mod:`market_ingest.anomalies`): they flag, never drop.

    Each loaded bar is compared with the ``trailing_bars`` stored bars before it (at least
    ``min_bars`` of them for the two z-score checks).
    """

    enabled: bool = True
    trailing_bars: int = Field(20, ge=3, le=500, description="bars before each bar that its checks compare with")
    min_bars: int = Field(10, ge=2, description="fewer trailing bars than this: no z-score check")
    return_z: float = Field(
        6.0, gt=0, description="flag a log return further than this many standard deviations from the trailing mean"
    )
    volume_z: float = Field(
        10.0, gt=0, description="flag a volume more than this many standard deviations above the trailing mean"
    )
    unit_ratio: float = Field(
        50.0, gt=1, description="flag a close at least this many times (or 1/this of) the previous close: pence and pounds (100x)"
    )
    stale_closes: int = Field(
        5, ge=2, description="flag the bars of a run of at least this many identical closes that traded volume"
    )


class BoundsConfig(_Model):
    """Plausible magnitudes of a source's bars (:class:`market_ingest.quality.Bounds`, whose
    defaults these are): a finite price or volume outside them is rejected by name
    (``invalid: implausible_price``, ``invalid: implausible_volume``) and kept in the lake's
    rejects table, never loaded."""

    min_price: float = Field(Bounds.min_price, gt=0, description="lowest plausible open, high, low or close (listing currency)")
    max_price: float = Field(Bounds.max_price, gt=0, description="highest plausible open, high, low or close (listing currency)")
    max_volume: float = Field(Bounds.max_volume, gt=0, description="highest plausible volume of one bar (units of the asset)")

    @model_validator(mode="after")
    def _ordered(self) -> BoundsConfig:
        if self.min_price >= self.max_price:
            raise ValueError(f"min_price {self.min_price} must be below max_price {self.max_price}")
        return self

    def bounds(self) -> Bounds:
        """As the :class:`market_ingest.quality.Bounds` the validation reads."""
        return Bounds(self.min_price, self.max_price, self.max_volume)


class SourceConfig(_Model):
    """A data source: which hook serves it, its pool (the vendor's rate limit) and its DAGs."""

    kind: str = Field(description="which hook serves this source: a kind registered in market_ingest.kinds")
    exchange: str | None = Field(None, description="ccxt exchange id (kind ccxt only), e.g. binance, kucoin, coinbase, kraken")
    page_limit: int | None = Field(None, gt=0, description="kind ccxt: candles per request; default ccxt's per-exchange maximum")
    max_lookback_bars: int | None = Field(
        None, gt=0, description="kind ccxt: the exchange serves only this many most recent candles (Kraken: 720)"
    )
    markets_file: str | None = Field(
        None, description="kind ccxt: JSON of ccxt market structures (path under include/) used instead of load_markets()"
    )
    options: dict | None = Field(
        None, description="kind ccxt: ccxt exchange options (no secrets), e.g. {fetchMarkets: {types: [spot]}}"
    )
    description: str = ""
    pool: str
    pool_slots: int = Field(gt=0, description="concurrent extract tasks allowed across all DAGs")
    batch_size: int = Field(gt=0, description="symbols per extract task")
    symbols_in_flight: int = Field(
        1,
        gt=0,
        le=16,
        description="symbols one extract task fetches at once, in threads (kinds with concurrent_symbols: yahoo); "
        "the connection's requests_per_second still spaces every request of the task",
    )
    universes: list[str] = Field(min_length=1)
    intervals: dict[Interval, IntervalConfig] = Field(min_length=1)
    quotes: IntervalConfig | None = Field(None, description="quote snapshots: DAG market_<source>_quote")
    conn_id: str | None = None
    symbol_pattern: str | None = Field(
        None, description="regex a symbol must match in full; default per kind (market_ingest.kinds)"
    )
    max_requests_per_manual_run: int = Field(
        2000, gt=0, description="a manual run (Params override) planning more vendor requests is refused before any request"
    )
    anomalies: AnomalyConfig = AnomalyConfig()
    bounds: BoundsConfig = BoundsConfig()
    bar_stamp: Literal["start", "end"] = Field(
        "start",
        description="what the vendor's intraday bar times mark: start (the bar's open, as every shipped source sends) or "
        "end (the bar's close, as Alpha Vantage's 2020-era intraday bodies did); end moves each intraday time back one "
        "interval to the bar's open before the window and closed-bar rules, and the run report says so. Daily and "
        "longer bars are dated, not stamped, and are never moved",
    )
    corporate_actions: bool | None = Field(
        None,
        description="ask the vendor for each symbol's splits and dividends, once a day (market.corporate_actions, "
        "market.bars_adjusted): required by vendors that send split-adjusted prices (yahoo: always on); alpha_vantage: "
        "off by default (SPLITS and DIVIDENDS cost two of the key's daily requests per symbol); not for ccxt",
    )
    splits_from: str | None = Field(
        None,
        description="kinds whose vendor sends split-adjusted prices without a split history (ibkr): the configured "
        "source (a yahoo or alpha_vantage one) whose splits convert them to as traded; the symbol there is the "
        "instrument's (instruments) or the same",
    )
    market: str | None = Field(
        None,
        pattern=r"^[A-Z0-9]{2,6}$|^24/[57]$",
        description="exchange calendar (exchange_calendars name: XNYS, XLON, XETR; 24/7; 24/5 for FX, New York 17:00 Sunday "
        "to 17:00 Friday) of every symbol of this source; default per symbol (market_ingest.calendars.market_of): "
        "24/7 for ccxt and crypto pairs, 24/5 for FX pairs, by suffix, XNYS",
    )

    def market_of(self, symbol: str) -> str:
        """The market (calendar name) of ``symbol`` of this source: ``market`` when set, else 24/7
        for a source trading around the clock, else by the symbol
        (:func:`market_ingest.calendars.market_of`)."""
        from market_ingest.calendars import market_of

        return market_of(symbol, self.market, continuous=kinds.kind(self.kind).continuous)

    def connection_id(self, name: str) -> str:
        """The Airflow connection id this source's hook reads: ``conn_id``, else its kind's default
        (``market_yahoo``, ``market_alpha_vantage``), else ``market_<name>`` (``name``: the source's
        key in the config, e.g. ``market_binance``)."""
        return self.conn_id or kinds.kind(self.kind).default_conn_id or f"market_{name}"

    def interval_config(self, interval: str) -> IntervalConfig:
        """The settings of the DAG of ``interval`` (a canonical interval, or ``quote`` for the quote
        snapshots' DAG).

        :raises KeyError: the source has no such DAG (no ``intervals.<interval>``, or no ``quotes``).
        """
        if interval == "quote":
            if self.quotes is None:
                raise KeyError("quote: the source has no quotes section")
            return self.quotes
        return self.intervals[interval]

    @property
    def actions_enabled(self) -> bool:
        """Whether extract tasks keep this source's corporate actions (``corporate_actions``, else
        on exactly when the vendor's prices need them: ``price_basis`` ``split_adjusted``)."""
        if self.corporate_actions is not None:
            return self.corporate_actions
        return kinds.kind(self.kind).price_basis != "as_traded"

    @property
    def exchange_id(self) -> str:
        """The ccxt exchange id of a source of a kind with an exchange (validated present for those).

        :raises ValueError: the source's kind has no exchange.
        """
        if not self.exchange:
            raise ValueError(f"kind {self.kind} has no exchange")
        return self.exchange

    @property
    def symbols_like(self) -> str:
        """The symbol spelling this source accepts: ``symbol_pattern`` or its kind's default."""
        return self.symbol_pattern or kinds.kind(self.kind).symbol_pattern

    @field_validator("symbol_pattern")
    @classmethod
    def _compiles(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                re.compile(v)
            except re.error as exc:
                raise ValueError(f"symbol_pattern {v!r} is not a regular expression: {exc}") from None
        return v

    @field_validator("kind")
    @classmethod
    def _registered(cls, v: str) -> str:
        kinds.kind(v)  # raises naming the registered kinds
        return v

    @model_validator(mode="after")
    def _exchange_only_for_ccxt(self) -> SourceConfig:
        ccxt_fields = {
            "exchange": self.exchange,
            "page_limit": self.page_limit,
            "max_lookback_bars": self.max_lookback_bars,
            "markets_file": self.markets_file,
            "options": self.options,
        }
        source_kind = kinds.kind(self.kind)
        if source_kind.exchange:
            if not self.exchange or not _ID.match(self.exchange):
                raise ValueError(f"kind {self.kind} needs exchange: a ccxt exchange id such as binance")
        elif any(v is not None for v in ccxt_fields.values()):
            raise ValueError(f"{sorted(k for k, v in ccxt_fields.items() if v is not None)} apply to kind ccxt only")
        if self.symbols_in_flight > 1 and not source_kind.concurrent_symbols:
            concurrent = sorted(k for k, v in kinds.KINDS.items() if v.concurrent_symbols)
            raise ValueError(f"symbols_in_flight above 1 applies to kinds {concurrent}; not {self.kind}")
        if self.corporate_actions is False and source_kind.price_basis != "as_traded":
            raise ValueError(
                f"corporate_actions cannot be off for kind {self.kind}: its vendor sends {source_kind.price_basis} prices, "
                "which are stored as traded with each symbol's split history"
            )
        if source_kind.splits_elsewhere and not self.splits_from:
            raise ValueError(
                f"kind {self.kind} needs splits_from: a configured yahoo or alpha_vantage source whose splits convert "
                "its split-adjusted prices to as traded"
            )
        if self.splits_from and not source_kind.splits_elsewhere:
            raise ValueError(f"splits_from applies to kinds whose vendor states no splits (ibkr); not {self.kind}")
        if self.corporate_actions and not source_kind.actions_requests:
            raise ValueError(f"corporate_actions: kind {self.kind} states no corporate actions")
        extended = [i for i, ic in self.intervals.items() if ic.extended_hours]
        if extended and (not source_kind.extended_hours or any(i not in INTRADAY_INTERVALS for i in extended)):
            raise ValueError(
                f"extended_hours applies to intraday intervals of yahoo, alpha_vantage and ibkr sources; not {self.kind} {extended}"
            )
        return self


@dataclass(frozen=True)
class SplitsFrom:
    """Where a source whose vendor states no splits (``splits_from``; kind ``ibkr``) takes them.

    :param source: the configured source asked (a ``yahoo`` or ``alpha_vantage`` one).
    :param settings: its settings.
    :param symbols: the asking source's symbol -> its symbol there (from ``instruments``); a
        symbol not listed is asked as it is spelled.
    """

    source: str
    settings: SourceConfig
    symbols: dict[str, str] = field(default_factory=dict)

    def symbol_of(self, symbol: str) -> str:
        """``symbol``'s spelling at :attr:`source`."""
        return self.symbols.get(symbol, symbol)
