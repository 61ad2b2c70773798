"""The pipeline configuration as typed data (``include/pipeline.yaml``) and its universes
(``include/symbols/*.csv``).

Parsed at DAG parse time, so this module imports only pydantic (an Airflow dependency), PyYAML
and stdlib-only modules of this package at the top. A bad config raises :class:`PipelineConfigError` naming the file, the line and
the field; it never silently drops a DAG. :func:`load_config_parts` keeps what is good: a problem
confined to one source, one interval, a source's quotes or the repair settings (a bad universe
file, interval or schedule) stops only the DAGs that use that part, each named in a
:class:`ConfigProblem`, and the DAG folder reports them as an import error of their own
(``dags/market_config_check.py``).
"""

from __future__ import annotations

import copy
import csv
import os
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from market_ingest import kinds
from market_ingest.intervals import CANONICAL_INTERVALS, INTRADAY_INTERVALS, validate_interval
from market_ingest.quality import Bounds

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: include/ beside plugins/ (Astro, docker-compose); MWAA deployments that ship include/ inside
#: the DAGs folder point MARKET_INGEST_INCLUDE_DIR at it.
INCLUDE_DIR = Path(os.environ.get("MARKET_INGEST_INCLUDE_DIR") or PROJECT_ROOT / "include")
DEFAULT_CONFIG = INCLUDE_DIR / "pipeline.yaml"
CONFIG_ENV = "MARKET_INGEST_CONFIG"

_ID = re.compile(r"^[a-z][a-z0-9_]*$")

#: A key naming a bar interval in the config; validation fails naming it when it is not canonical.
Interval = Annotated[str, AfterValidator(validate_interval)]


def _source_name(name: str) -> str:
    if not _ID.match(name):
        raise ValueError(f"source name {name!r} must match {_ID.pattern}")
    return name


#: A key naming a source: lower case, digits and underscores (it is part of DAG ids and pool names).
SourceName = Annotated[str, AfterValidator(_source_name)]


def _schedule(expression: str) -> str:
    """``expression`` when Airflow's cron timetable accepts it (a cron expression, or a preset such as
    ``@hourly``, ``@daily``); the check the DAG processor runs on every DAG (``DAG.validate``).

    :raises ValueError: naming the expression and croniter's reason.
    """
    from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    try:
        CronDataIntervalTimetable(expression, timezone="UTC").validate()
    except AirflowTimetableInvalid as exc:
        raise ValueError(f"{expression!r} is not a cron expression or preset (@hourly, @daily, ...): {exc}") from None
    return expression


#: A cron expression or preset, checked as Airflow checks a DAG's schedule.
Schedule = Annotated[str, AfterValidator(_schedule)]


class PipelineConfigError(ValueError):
    """The pipeline config or a universe file is invalid. The message names the file, the line and
    each bad field (``include/pipeline.yaml:57: sources.yahoo.intervals.1d.schedule: ...``)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetryConfig(_Model):
    """Task retries: exponential backoff from ``delay_seconds`` up to ``max_delay_seconds``."""

    retries: int = Field(3, ge=2, description="at least 2: vendors fail transiently")
    delay_seconds: int = Field(60, gt=0)
    max_delay_seconds: int = Field(1800, gt=0)
    rate_limited_delay_seconds: int = Field(900, gt=0, description="wait before retrying a rate-limited task")


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
    ``_rejects/``, never loaded."""

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
        extended = [i for i, ic in self.intervals.items() if ic.extended_hours]
        if extended and (not source_kind.extended_hours or any(i not in INTRADAY_INTERVALS for i in extended)):
            raise ValueError(
                f"extended_hours applies to intraday intervals of yahoo and alpha_vantage sources; not {self.kind} {extended}"
            )
        return self


class LakeConfig(_Model):
    """Parquet lake. ``url`` is an ObjectStoragePath URL: ``s3://<conn_id>@bucket/prefix`` or ``file:///path``."""

    url: str
    quotes_url: str = Field(description="root of the quote snapshots, same URL form as url")
    compression: str = "zstd"

    @property
    def _s3_authorities(self) -> list[tuple[str, str]]:
        """``(conn_id, bucket)`` of each S3 URL (``s3://conn@bucket/prefix``; ``conn_id`` is ``""``
        when the URL names none, and ObjectStoragePath then uses the amazon provider's default)."""
        found = [u.split("://", 1)[1].split("/", 1)[0] for u in (self.url, self.quotes_url) if u.startswith("s3")]
        return [(conn_id, bucket) for conn_id, _, bucket in (a.rpartition("@") for a in found)]

    @property
    def buckets(self) -> list[str]:
        """The S3 buckets the lake uses (``s3://conn@bucket/prefix`` -> ``bucket``), without duplicates."""
        return list(dict.fromkeys(bucket for _, bucket in self._s3_authorities))

    @property
    def aws_conn_ids(self) -> list[str]:
        """The AWS connection ids the lake's S3 URLs name (``s3://conn@bucket/prefix`` -> ``conn``),
        without duplicates; a URL without one adds none."""
        return list(dict.fromkeys(conn_id for conn_id, _ in self._s3_authorities if conn_id))


class KinesisConfig(_Model):
    """Kinesis Data Streams sink."""

    aws_conn_id: str
    stream: str
    quotes_stream: str
    max_records_per_call: int = Field(500, gt=0, le=500)
    max_bytes_per_call: int = Field(5 * 1024 * 1024, gt=0, le=5 * 1024 * 1024)
    max_attempts: int = Field(8, gt=0, description="attempts per PutRecords call while entries keep failing")
    bars_per_record: int = Field(
        1, ge=1, le=10_000, description="1: one JSON record per bar; N > 1: up to N bars of one symbol per record, as JSON Lines"
    )
    spread_keys: dict[str, int] = Field(
        default_factory=dict,
        description='hot series: {"<source>:<symbol>": N} deals its records over N partition keys "<source>:<symbol>#<k>" '
        "(order then holds per key, not per series)",
    )

    @field_validator("spread_keys")
    @classmethod
    def _spread(cls, value: dict[str, int]) -> dict[str, int]:
        for series, n in value.items():
            source, _, symbol = series.partition(":")
            if not source or not symbol or "#" in symbol:
                raise ValueError(f"kinesis.spread_keys: {series!r} is not '<source>:<symbol>' (e.g. 'binance:BTC/USDT')")
            if not 1 <= n <= 64:
                raise ValueError(f"kinesis.spread_keys: {series}: {n} keys; give 1 to 64 (a stream's shards, at most)")
        return value


class TimescaleConfig(_Model):
    """TimescaleDB (or plain PostgreSQL) sink; tables are ``market.*`` as the migrations create them.

    The policies apply on TimescaleDB only, set by the ``market_setup`` DAG: each bar table's chunks
    convert to the columnstore ``columnstore_after`` (per interval, or the default) and are dropped
    after ``retention`` (per interval; absent: kept for ever).
    """

    conn_id: str
    reader_conn_id: str = Field(
        "market_timescale_reader",
        description="the connection the coverage view reads the warehouse through: a login in the read-only "
        "role market_reader (migration V012), never the loading connection",
    )
    restatement_window: timedelta = Field(
        timedelta(days=60),
        gt=timedelta(0),
        description="how far back routine reruns, repairs and vendor-lookback backfills rewrite bars "
        "(Yahoo serves 5m-30m bars for 60 days); every columnstore delay must outlast it",
    )
    columnstore_after: timedelta = Field(timedelta(days=90), description="default age at which chunks convert to the columnstore")
    columnstore_after_by_interval: dict[Interval, timedelta] = Field(default_factory=dict, description="per-interval override")
    retention: dict[Interval, timedelta] = Field(
        default_factory=dict, description="interval -> drop bars older than this; an interval not named keeps every bar"
    )

    @model_validator(mode="after")
    def _columnstore_outlasts_restatements(self) -> TimescaleConfig:
        short = {i: str(d) for i, d in self.columnstore_delays().items() if d <= self.restatement_window}
        if short:
            raise ValueError(
                f"columnstore delays {short} do not outlast the restatement window ({self.restatement_window}): "
                "routine reruns would keep decompressing the chunks they rewrite"
            )
        return self

    def columnstore_delays(self) -> dict[str, timedelta]:
        """Interval -> age at which its chunks convert to the columnstore, for every canonical interval."""
        return {i: self.columnstore_after_by_interval.get(i, self.columnstore_after) for i in CANONICAL_INTERVALS}


class ReportConfig(_Model):
    """Run report: the run alerts and fails when the share of failed symbols exceeds
    ``max_failed_share``, or the share of symbols the vendor did not serve exceeds ``max_unserved_share``."""

    max_failed_share: float = Field(0.2, ge=0, le=1)
    max_unserved_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="above this share of symbols the vendor does not know or answered no bar for (while their market "
        "was open) an ingestion run alerts (unserved_share_exceeded) and fails instead of succeeding with nothing in "
        "it; weekends and holidays, when the vendor is not asked, do not count. Repairs are exempt: they ask days the "
        "vendor may never serve, and the ledger's attempts decide",
    )
    run_note_conn_id: str | None = Field(
        "market_airflow_api",
        description="http connection to the Airflow API server through which the report writes the run's note "
        "(window, bars per sink; market_ingest.run_note); without that connection the note is skipped; null: never",
    )


class RepairConfig(_Model):
    """The ``market_repair`` DAG: asks the vendors again for the ledger's ``partial``, ``missing``
    and ``failed`` days (:mod:`market_ingest.coverage`), within each vendor's lookback: the days
    asked fewest times first, newest first among those (:mod:`market_ingest.repair`). A day asked
    ``max_attempts`` times without being served, or beyond the vendor's lookback, becomes
    ``unrecoverable`` (its reason says why) and is not asked again, so the budget goes to days
    that may still come: every repairable day is asked within a bounded number of runs."""

    schedule: Schedule = Field("0 6 * * *", description="cron (UTC) of market_repair; its data interval is not used")
    max_requests_per_source: int = Field(
        200, gt=0, description="vendor requests one repair run may plan per (source, interval); the rest wait for the next run"
    )
    max_days_back: int = Field(365, gt=0, description="days before the run that repairs look at; older gaps are left as they are")
    max_attempts: int = Field(
        3,
        gt=0,
        description="times a day is asked again (by repairs, clears or backfills) and still not served before the repair "
        "gives up on it: the day becomes unrecoverable, its reason naming the attempts and the last reason",
    )


class AlertsConfig(_Model):
    """Where operational events go (missed deadlines, failed runs, too many failed symbols).

    Every event is written to the task or triggerer log and put on the Kinesis stream
    ``events_stream`` as one JSON record; it is also published to the SNS topic ``sns_topic_arn``
    when one is set (amazon provider ``SnsNotifier``).
    """

    aws_conn_id: str = "market_aws"
    events_stream: str = "market-events"
    sns_topic_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:sns:")


class PipelineConfig(_Model):
    """The whole pipeline: sinks, defaults, and one entry per source."""

    version: Literal[1]
    owner: str = "market-data"
    retry: RetryConfig = RetryConfig()
    lake: LakeConfig
    kinesis: KinesisConfig
    timescale: TimescaleConfig
    report: ReportConfig = ReportConfig()
    repair: RepairConfig = RepairConfig()
    alerts: AlertsConfig = AlertsConfig()
    sources: dict[SourceName, SourceConfig] = Field(min_length=1)

    def dag_pairs(self) -> list[tuple[str, str]]:
        """Every configured ``(source, interval)``, in file order."""
        return [(s, i) for s, src in self.sources.items() for i in src.intervals]

    def universes_of(self, source: str, interval: str) -> list[str]:
        """The universe names of ``(source, interval)`` (``interval`` ``quote``: its quote snapshots):
        the interval's own, else the source's."""
        src = self.sources[source]
        return list(src.interval_config(interval).universes or src.universes)

    def pools(self) -> dict[str, dict]:
        """Airflow pools, one per source's ``pool``, in ``airflow pools import`` format.

        :return: ``{pool: {"slots": n, "description": str, "include_deferred": False}}``.
        :raises PipelineConfigError: when two sources share a pool with different slots.
        """
        pools: dict[str, dict] = {}
        for name, src in self.sources.items():
            entry = pools.setdefault(
                src.pool, {"slots": src.pool_slots, "description": "", "include_deferred": False, "sources": []}
            )
            if entry["slots"] != src.pool_slots:
                raise PipelineConfigError(f"pool {src.pool!r}: sources give it {entry['slots']} and {src.pool_slots} slots")
            entry["sources"].append(name)
        for entry in pools.values():
            names = entry.pop("sources")
            entry["description"] = (
                f"rate limit of {', '.join(names)}: concurrent extract tasks across all DAGs (include/pipeline.yaml)"
            )
        return pools

    def quote_sources(self) -> list[str]:
        """Sources with quote snapshots configured."""
        return [s for s, src in self.sources.items() if src.quotes]


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


def config_path() -> Path:
    """The config file: ``$MARKET_INGEST_CONFIG`` or ``include/pipeline.yaml``."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


@dataclass(frozen=True)
class ConfigProblem:
    """A part of the pipeline config that cannot be used, and the DAGs it stops.

    :param part: the part, as a field path: ``sources.<s>`` (the whole source),
        ``sources.<s>.intervals.<i>``, ``sources.<s>.quotes`` or ``repair``.
    :param pairs: the ``(source, interval)`` pairs it stops (``interval`` ``quote`` for a source's
        quote snapshots); empty for ``repair``, which stops the ``market_repair`` DAG.
    :param message: ``<file>:<line>: <field>: <what is wrong>``; for a universe, its CSV file and
        line, then the config line that names the universe.
    """

    part: str
    pairs: tuple[tuple[str, str], ...]
    message: str


@dataclass(frozen=True)
class ConfigParts:
    """What :func:`load_config_parts` read: the usable config and the parts left out.

    :param config: every source, interval and quote section without a problem of its own
        (and the repair settings' defaults when they have one: see ``problems``).
    :param problems: the parts left out and why, in file order.
    """

    config: PipelineConfig
    problems: list[ConfigProblem]

    def stopped(self) -> set[tuple[str, str]]:
        """Every ``(source, interval)`` pair a problem stops."""
        return {pair for p in self.problems for pair in p.pairs}

    @property
    def repair_stopped(self) -> bool:
        """The ``repair`` settings have a problem: no ``market_repair`` DAG."""
        return any(p.part == "repair" for p in self.problems)


def _yaml_document(path: Path):
    """``(data, root node)`` of the YAML file at ``path``, one parse; the node keeps the lines.

    :raises PipelineConfigError: naming the file, and the line yaml stopped at.
    """
    try:
        with path.open() as fh:
            loader = yaml.SafeLoader(fh)
            try:
                node = loader.get_single_node()
                return (loader.construct_document(node) if node is not None else None), node
            finally:
                loader.dispose()
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineConfigError(f"{path}: cannot read config: {exc}") from None


def _line(node, loc: tuple) -> int | None:
    """The line (1-based) of the deepest key of ``loc`` (a pydantic error location) found in the
    YAML ``node``; ``None`` when not even the first is there."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if found is None:
                return line
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _at(path: Path, node, loc: tuple) -> str:
    """``<file>:<line>: <field>`` for the error location ``loc``."""
    line = _line(node, loc)
    field = ".".join(str(p) for p in loc) or "<root>"
    return f"{path}:{line}: {field}" if line else f"{path}: {field}"


def _part(doc: dict, loc: tuple) -> tuple[tuple, tuple[tuple[str, str], ...]] | None:
    """The part of the config document an error at ``loc`` lies in, as the keys leading to it in
    ``doc`` (``("sources", "yahoo", "intervals", "1d")``), and the ``(source, interval)`` pairs
    that part holds; ``None`` for an error that concerns every DAG (sinks, retries, the sources
    list itself)."""
    if loc[:1] == ("repair",):
        return ("repair",), ()
    sources = doc.get("sources")
    if len(loc) < 2 or loc[0] != "sources" or not isinstance(sources, dict) or loc[1] not in sources:
        return None
    name = loc[1]
    src: dict = sources[name] if isinstance(sources[name], dict) else {}
    intervals: dict = src["intervals"] if isinstance(src.get("intervals"), dict) else {}
    if len(loc) >= 4 and loc[2] == "intervals" and loc[3] in intervals:
        return ("sources", name, "intervals", loc[3]), ((str(name), str(loc[3])),)
    if len(loc) >= 3 and loc[2] == "quotes" and "quotes" in src:
        return ("sources", name, "quotes"), ((str(name), "quote"),)
    pairs = [(str(name), str(i)) for i in intervals] + ([(str(name), "quote")] if src.get("quotes") else [])
    return ("sources", name), tuple(pairs)


def _universe_problems(cfg: PipelineConfig, path: Path, root) -> list[ConfigProblem]:
    """A :class:`ConfigProblem` for each pair (and quote section) of ``cfg`` with a universe that
    :func:`load_universe` refuses (each file read once per symbol spelling)."""
    refused: dict[tuple[str, str], str | None] = {}
    problems = []
    for source, src in cfg.sources.items():
        sections: list[tuple[str, tuple[str, ...], IntervalConfig]] = [
            (i, ("intervals", i), ic) for i, ic in src.intervals.items()
        ]
        sections += [("quote", ("quotes",), src.quotes)] if src.quotes else []
        for interval, where, ic in sections:
            named_at = ("sources", source, *where, "universes") if ic.universes else ("sources", source, "universes")
            for name in cfg.universes_of(source, interval):
                key = (name, src.symbols_like)
                if key not in refused:
                    try:
                        load_universe(name, src.symbols_like)
                        refused[key] = None
                    except PipelineConfigError as exc:
                        refused[key] = str(exc)
                if refused[key]:
                    message = f"{refused[key]} (universe named at {_at(path, root, named_at)})"
                    problems.append(ConfigProblem(".".join(("sources", source, *where)), ((source, interval),), message))
                    break
    return problems


def load_config_parts(path: Path | str | None = None) -> ConfigParts:
    """Load the pipeline config, leaving out the parts that are invalid, and read every universe.

    An error inside one source, interval, quote section or the repair settings leaves that part
    out and names it in a :class:`ConfigProblem`; so does a universe that cannot be read
    (:func:`load_universe`, checked against the source's symbol spelling), for each pair using it.
    Everything else must be valid.

    :param path: YAML file; default :func:`config_path`.
    :raises PipelineConfigError: naming the file, line and every invalid field, when the file
        cannot be read or parsed, an error concerns every DAG (sinks, retries, ``version``), or no
        source is left.
    """
    path = Path(path) if path else config_path()
    raw, root = _yaml_document(path)
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{path}: the config is not a YAML mapping (version, lake, kinesis, timescale, sources)")
    doc = copy.deepcopy(raw)
    problems: list[ConfigProblem] = []
    while True:
        try:
            cfg = PipelineConfig.model_validate(doc)
            break
        except ValidationError as exc:
            parts: dict[tuple, tuple[tuple, list[str]]] = {}
            shared = []
            for err in exc.errors():
                message = f"{_at(path, root, err['loc'])}: {err['msg']}"
                part = _part(doc, err["loc"])
                if part is None:
                    shared.append(message)
                else:
                    parts.setdefault(part[0], (part[1], []))[1].append(message)
            if shared:
                raise PipelineConfigError("\n".join([*shared, *(p.message for p in problems)])) from None
            for keys in sorted(parts, key=len, reverse=True):  # an interval's errors join its source's, when it has some
                whole = next((k for k in parts if len(k) < len(keys) and keys[: len(k)] == k), None)
                if whole:
                    parts[whole][1].extend(parts.pop(keys)[1])
            for keys, (pairs, messages) in parts.items():
                problems.append(ConfigProblem(".".join(str(k) for k in keys), pairs, "\n".join(messages)))
                parent = doc
                for key in keys[:-1]:
                    parent = parent[key]
                del parent[keys[-1]]  # repair: its defaults validate, and no market_repair DAG is built
                if keys[2:3] == ("intervals",) and not parent and not doc["sources"][keys[1]].get("quotes"):
                    del doc["sources"][keys[1]]  # nothing left of it: its intervals' problems say why
    return ConfigParts(cfg, problems + _universe_problems(cfg, path, root))


@lru_cache(maxsize=8)
def load_config(path: Path | str | None = None) -> PipelineConfig:
    """Load and validate the pipeline config and its universes, all of it.

    :param path: YAML file; default :func:`config_path`.
    :raises PipelineConfigError: naming the file, line and every invalid field, e.g.
        ``include/pipeline.yaml:47: sources.yahoo.batch_size: Input should be greater than 0``,
        and every universe that cannot be read (:func:`load_config_parts` lists the same).
    """
    parts = load_config_parts(path)
    if parts.problems:
        raise PipelineConfigError("\n".join(p.message for p in parts.problems))
    return parts.config


@lru_cache(maxsize=8)
def load_timescale_config(path: Path | str | None = None) -> TimescaleConfig:
    """Only the ``timescale`` section of the pipeline config, validated: what the coverage view
    needs to reach the warehouse. A problem in a source, a universe or a schedule, which stops only
    its own DAGs (:func:`load_config_parts`), does not stop the view either.

    :param path: YAML file; default :func:`config_path`.
    :raises PipelineConfigError: naming the file and line, when the file cannot be read or its
        ``timescale`` section is invalid.
    """
    path = Path(path) if path else config_path()
    raw, root = _yaml_document(path)
    try:
        return TimescaleConfig.model_validate((raw or {}).get("timescale") if isinstance(raw, dict) else None)
    except ValidationError as exc:
        raise PipelineConfigError(
            "; ".join(f"{_at(path, root, ('timescale', *err['loc']))}: {err['msg']}" for err in exc.errors())
        ) from None
