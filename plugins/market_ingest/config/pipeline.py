"""The whole pipeline's settings: its sinks (lake, Kinesis, TimescaleDB), retries, run report,
repair and alerts, and :class:`PipelineConfig`, which holds them and every source.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from pydantic import Field, field_validator, model_validator

from market_ingest.config.base import Interval, PipelineConfigError, Schedule, SourceName, _Model
from market_ingest.config.sources import SourceConfig, SplitsFrom
from market_ingest.intervals import CANONICAL_INTERVALS


class RetryConfig(_Model):
    """Task retries: exponential backoff from ``delay_seconds`` up to ``max_delay_seconds``."""

    retries: int = Field(3, ge=2, description="at least 2: vendors fail transiently")
    delay_seconds: int = Field(60, gt=0)
    max_delay_seconds: int = Field(1800, gt=0)
    rate_limited_delay_seconds: int = Field(900, gt=0, description="wait before retrying a rate-limited task")


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
    record_format: Literal["json", "json_lines", "kpl"] | None = Field(
        None,
        description="json: one JSON record per bar; json_lines: up to bars_per_record bars of one symbol per record, "
        "one JSON object a line; kpl: KPL aggregated records of up to bars_per_record bars of one symbol (consumers "
        "de-aggregate with the KCL, the Lambda deaggregator or Firehose). Absent: json_lines when bars_per_record > 1, else json",
    )
    bars_per_record: int = Field(
        1, ge=1, le=10_000, description="bars per record for json_lines and kpl (user records per aggregate); 1 for json"
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

    @model_validator(mode="after")
    def _record_format(self) -> KinesisConfig:
        """Resolve an absent ``record_format`` from ``bars_per_record`` (configs written before it
        existed) and reject packings that contradict the format."""
        if self.record_format is None:
            object.__setattr__(self, "record_format", "json_lines" if self.bars_per_record > 1 else "json")
        elif self.record_format == "json" and self.bars_per_record > 1:
            raise ValueError(
                f"kinesis.record_format: json sends one bar per record, but kinesis.bars_per_record is {self.bars_per_record}: "
                "set record_format: json_lines or kpl to pack bars, or bars_per_record: 1"
            )
        elif self.record_format == "kpl" and self.bars_per_record == 1:
            raise ValueError(
                "kinesis.record_format: kpl aggregates up to kinesis.bars_per_record bars per record, which is 1: "
                "set bars_per_record above 1 (e.g. 500), or record_format: json for one bar per record"
            )
        return self


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


class ReconciliationConfig(_Model):
    """How bars of one instrument from several sources are compared (``market.cross_source_checks``).

    A bar of two sources disagrees when their as-traded closes differ by more than
    ``close_tolerance_bps`` basis points of the lower close, or, for a source pair with a
    ``volume_tolerance``, when their volumes differ by more than that share of the larger one
    (venues count volume differently, so volume is compared only where a pair is told to).
    """

    close_tolerance_bps: float = Field(25.0, gt=0, description="basis points of the lower close two sources may differ by")
    close_tolerance_bps_by_instrument: dict[str, float] = Field(
        default_factory=dict, description="per-instrument override, e.g. {BTC-USD: 50} (crypto venues differ more)"
    )
    volume_tolerance: dict[str, float] = Field(
        default_factory=dict,
        description="per source pair 'a/b' (either order): the share of the larger volume the two may differ by, "
        "e.g. {alpha_vantage/yahoo: 0.05}; pairs not named: volume not compared",
    )

    @field_validator("volume_tolerance")
    @classmethod
    def _pairs(cls, v: dict[str, float]) -> dict[str, float]:
        for pair, share in v.items():
            names = pair.split("/")
            if len(names) != 2 or names[0] == names[1] or not 0 <= share <= 1:
                raise ValueError(
                    f"volume_tolerance {pair!r}: {share}: keys are two different sources 'source_a/source_b', values shares in [0, 1]"
                )
        return v

    @field_validator("close_tolerance_bps_by_instrument")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        for instrument, bps in v.items():
            if not bps > 0:
                raise ValueError(f"close_tolerance_bps_by_instrument {instrument}: {bps}: basis points above 0")
        return v

    def close_tolerance(self, instrument: str) -> float:
        """The close tolerance of ``instrument``, in basis points."""
        return self.close_tolerance_bps_by_instrument.get(instrument, self.close_tolerance_bps)

    def volume_tolerance_of(self, a: str, b: str) -> float | None:
        """The volume tolerance of the source pair ``a``, ``b`` (either order), or ``None``: not compared."""
        return self.volume_tolerance.get(f"{a}/{b}", self.volume_tolerance.get(f"{b}/{a}"))


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
    instruments: dict[str, dict[str, str]] = Field(
        default_factory=dict,
        description="one instrument served by several sources: instrument id -> {source: its symbol there}, "
        "e.g. AAPL: {yahoo: AAPL, alpha_vantage: AAPL, twelvedata: AAPL}; compared after each load "
        "(reconciliation) and read as one series through market.bars_consensus",
    )
    reconciliation: ReconciliationConfig = ReconciliationConfig()

    @field_validator("instruments")
    @classmethod
    def _instruments(cls, v: dict[str, dict[str, str]], info) -> dict[str, dict[str, str]]:
        """Each instrument names at least two configured sources, each symbol in its source's spelling."""
        import re

        sources = info.data.get("sources") or {}
        problems: list[str] = []
        owner: dict[tuple[str, str], str] = {}
        for instrument, symbols in v.items():
            for pair in symbols.items():
                if pair in owner:
                    problems.append(f"{instrument}: {pair[0]} {pair[1]} is already instrument {owner[pair]}")
                owner.setdefault(pair, instrument)
            if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,31}", instrument):
                problems.append(f"{instrument!r}: an instrument id is letters, digits and . _ : / - (at most 32)")
            if len(symbols) < 2:
                problems.append(f"{instrument}: names {len(symbols)} source; two or more are compared")
            for source, symbol in symbols.items():
                src = sources.get(source)
                if src is None:
                    problems.append(f"{instrument}: source {source!r} is not configured (sources: {', '.join(sources)})")
                elif not re.fullmatch(src.symbols_like, symbol):
                    problems.append(f"{instrument}: {symbol!r} is not a {source} symbol (pattern {src.symbols_like})")
        if problems:
            raise ValueError("; ".join(problems))
        return v

    @field_validator("reconciliation")
    @classmethod
    def _known(cls, v: ReconciliationConfig, info) -> ReconciliationConfig:
        """Tolerances name configured instruments and sources (a typo would compare on a default)."""
        instruments, sources = info.data.get("instruments") or {}, info.data.get("sources") or {}
        unknown = [i for i in v.close_tolerance_bps_by_instrument if i not in instruments]
        unknown += [s for pair in v.volume_tolerance for s in pair.split("/") if s not in sources]
        if unknown:
            raise ValueError(f"names no configured instrument or source: {', '.join(unknown)}")
        return v

    def instruments_of(self, source: str, interval: str | None = None) -> dict[str, dict[str, str]]:
        """The instruments ``source`` serves, each with every source's symbol: what its DAGs reconcile.

        :param interval: only the instruments another of their sources also loads at ``interval``
            (a DAG of ``(source, interval)`` has something to compare with).
        """
        return {
            i: dict(symbols)
            for i, symbols in self.instruments.items()
            if source in symbols
            and (interval is None or any(s != source and interval in self.sources[s].intervals for s in symbols))
        }

    def splits_from_of(self, source: str) -> SplitsFrom | None:
        """Where ``source`` takes its splits (its ``splits_from``), with the instruments' symbols
        there; ``None`` for a source without ``splits_from``.

        :raises ValueError: ``splits_from`` names no configured source, or one whose vendor states
            no splits (the config check reports it for the source's DAGs only).
        """
        from market_ingest import kinds

        other = self.sources[source].splits_from
        if other is None:
            return None
        src = self.sources.get(other)
        if src is None or not kinds.kind(src.kind).actions_requests or kinds.kind(src.kind).splits_elsewhere:
            states = sorted(
                n
                for n, s in self.sources.items()
                if kinds.kind(s.kind).actions_requests and not kinds.kind(s.kind).splits_elsewhere
            )
            raise ValueError(
                f"splits_from {other!r} names no configured source whose vendor states splits (configured ones that do: "
                f"{', '.join(states) or 'none'})"
            )
        symbols = {s[source]: s[other] for s in self.instruments.values() if source in s and other in s}
        return SplitsFrom(other, src, symbols)

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
