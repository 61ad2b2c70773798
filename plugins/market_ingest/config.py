"""The pipeline configuration as typed data (``include/pipeline.yaml``).

Parsed at DAG parse time, so this module imports only pydantic (an Airflow dependency) and
PyYAML. A bad config raises :class:`PipelineConfigError` naming the file and the field; it never
silently drops a DAG.
"""

from __future__ import annotations

import csv
import os
import re
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from market_ingest import kinds
from market_ingest.intervals import CANONICAL_INTERVALS, INTRADAY_INTERVALS, validate_interval

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: include/ beside plugins/ (Astro, docker-compose); MWAA deployments that ship include/ inside
#: the DAGs folder point MARKET_INGEST_INCLUDE_DIR at it.
INCLUDE_DIR = Path(os.environ.get("MARKET_INGEST_INCLUDE_DIR") or PROJECT_ROOT / "include")
DEFAULT_CONFIG = INCLUDE_DIR / "pipeline.yaml"
CONFIG_ENV = "MARKET_INGEST_CONFIG"

_ID = re.compile(r"^[a-z][a-z0-9_]*$")

#: A key naming a bar interval in the config; validation fails naming it when it is not canonical.
Interval = Annotated[str, AfterValidator(validate_interval)]


class PipelineConfigError(ValueError):
    """The pipeline config is invalid. The message names the file and each bad field."""


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

    schedule: str = Field(description="cron or preset; the data interval is the run's window")
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
    market: str | None = Field(
        None,
        pattern=r"^[A-Z0-9]{2,6}$|^24/[57]$",
        description="exchange calendar (exchange_calendars name: XNYS, XLON, XETR, 24/7) of every symbol of this source; "
        "default per symbol (market_ingest.calendars.market_of): by suffix, XNYS, 24/7 for ccxt",
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
    """Run report: the run alerts and fails when the share of failed symbols exceeds ``max_failed_share``."""

    max_failed_share: float = Field(0.2, ge=0, le=1)
    run_note_conn_id: str | None = Field(
        "market_airflow_api",
        description="http connection to the Airflow API server through which the report writes the run's note "
        "(window, bars per sink; market_ingest.run_note); without that connection the note is skipped; null: never",
    )


class RepairConfig(_Model):
    """The ``market_repair`` DAG: asks the vendors again for the ledger's ``partial``, ``missing``
    and ``failed`` days (:mod:`market_ingest.coverage`), newest first, within each vendor's lookback."""

    schedule: str = Field("0 6 * * *", description="cron (UTC) of market_repair; its data interval is not used")
    max_requests_per_source: int = Field(
        200, gt=0, description="vendor requests one repair run may plan per (source, interval); the rest wait for the next run"
    )
    max_days_back: int = Field(365, gt=0, description="days before the run that repairs look at; older gaps are left as they are")


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
    sources: dict[str, SourceConfig] = Field(min_length=1)

    @model_validator(mode="after")
    def _ids_and_universes(self) -> PipelineConfig:
        for name, src in self.sources.items():
            if not _ID.match(name):
                raise ValueError(f"source name {name!r} must match {_ID.pattern}")
            for interval, ic in [*src.intervals.items(), *([("quote", src.quotes)] if src.quotes else [])]:
                for u in ic.universes or src.universes:
                    if not universe_path(u).is_file():
                        raise ValueError(f"sources.{name}.intervals.{interval}: universe {u!r} has no file {universe_path(u)}")
        return self

    def dag_pairs(self) -> list[tuple[str, str]]:
        """Every configured ``(source, interval)``, in file order."""
        return [(s, i) for s, src in self.sources.items() for i in src.intervals]

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


def load_universe(name: str) -> list[str]:
    """Symbols of a universe, in file order.

    :raises PipelineConfigError: when the file is missing or has no ``symbol`` column.
    """
    path = universe_path(name)
    try:
        with path.open(newline="") as fh:
            return [row["symbol"].strip() for row in csv.DictReader(fh) if row["symbol"].strip()]
    except (OSError, KeyError) as exc:
        raise PipelineConfigError(f"{path}: cannot read universe {name!r}: {exc}") from None


def config_path() -> Path:
    """The config file: ``$MARKET_INGEST_CONFIG`` or ``include/pipeline.yaml``."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


@lru_cache(maxsize=8)
def load_config(path: Path | str | None = None) -> PipelineConfig:
    """Load and validate the pipeline config.

    :param path: YAML file; default :func:`config_path`.
    :raises PipelineConfigError: naming the file and every invalid field, e.g.
        ``include/pipeline.yaml: sources.yahoo.batch_size: Input should be greater than 0``.
    """
    path = Path(path) if path else config_path()
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineConfigError(f"{path}: cannot read config: {exc}") from None
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in err['loc']) or '<root>'}: {err['msg']}" for err in exc.errors())
        raise PipelineConfigError(f"{path}: {problems}") from None
