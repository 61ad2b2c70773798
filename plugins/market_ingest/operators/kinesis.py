"""The Kinesis publish task: the run's staged bars as records on a stream, resuming after a failed try."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from market_ingest.contracts import Dataset, KinesisResult
from market_ingest.operators.base import counting, failing_fast

if TYPE_CHECKING:
    from airflow.sdk import Context


class KinesisPublishOperator(BaseOperator):
    """Publish the run's staged bars to Kinesis, streamed, resuming after a failed try.

    Records are built lazily from the staged objects (``kinesis.record_format``: one bar per record,
    up to ``kinesis.bars_per_record`` bars of one symbol per JSON Lines record, or per KPL
    aggregated record) and sent in
    ``PutRecords`` calls; which ones the stream acknowledged is saved beside the run's staging
    (``<run_dir>/_published/kinesis-<stream>.json``), so a retried task sends only the rest. A
    missing stream fails at once, naming it and the connection.

    :param lake: the lake publish task's :class:`~market_ingest.contracts.LakeResult` (templated).
    :param stream: the Kinesis stream (``kinesis.stream``, or ``kinesis.quotes_stream`` for quotes).
    :param aws_conn_id: the AWS connection reaching it.
    :param bars_per_record: bars of one symbol per record (``json_lines``) or per aggregate (``kpl``); 1 for ``json``.
    :param record_format: ``json``, ``json_lines`` or ``kpl`` (:func:`market_ingest.kinesis.build_records`);
        absent: ``json_lines`` when ``bars_per_record`` > 1, else ``json``.
    :param spread_keys: ``{"<source>:<symbol>": N}``: hot series dealt over N partition keys
        (:mod:`market_ingest.kinesis`).
    :param max_records_per_call: records per ``PutRecords`` call (Kinesis allows 500).
    :param max_bytes_per_call: bytes per ``PutRecords`` call (Kinesis allows 5 MiB).
    :param max_attempts: attempts per call while entries keep failing (throttled shards).
    :param dataset: what the staged objects hold (the record schema).
    :return: :class:`~market_ingest.contracts.KinesisResult`.
    """

    template_fields: Sequence[str] = ("lake",)

    def __init__(
        self,
        *,
        lake: Any,
        stream: str,
        aws_conn_id: str,
        bars_per_record: int = 1,
        record_format: str | None = None,
        spread_keys: dict[str, int] | None = None,
        max_records_per_call: int = 500,
        max_bytes_per_call: int = 5 * 1024 * 1024,
        max_attempts: int = 8,
        dataset: Dataset = Dataset.BARS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.lake = lake
        self.stream = stream
        self.aws_conn_id = aws_conn_id
        self.bars_per_record = bars_per_record
        self.record_format = record_format or ("json_lines" if bars_per_record > 1 else "json")
        self.spread_keys = dict(spread_keys or {})
        self.max_records_per_call = max_records_per_call
        self.max_bytes_per_call = max_bytes_per_call
        self.max_attempts = max_attempts
        self.dataset = Dataset(dataset)

    def execute(self, context: Context) -> KinesisResult:
        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

        from market_ingest.kinesis import PublishProgress, build_records, check_stream, put_records
        from market_ingest.lake import iter_staged, lake_root

        lake, stream, dataset = self.lake or {}, self.stream, self.dataset
        client = KinesisHook(aws_conn_id=self.aws_conn_id).conn
        progress_path = lake_root(lake["run_dir"]) / "_published" / f"kinesis-{stream}.json" if lake.get("run_dir") else None
        counts: Counter[str] = Counter()
        with failing_fast():
            check_stream(client, stream, self.aws_conn_id)
            # Progress counts records: it only holds for the same packing and keys.
            packing = f"kpl:{self.bars_per_record}" if self.record_format == "kpl" else str(self.bars_per_record)
            layout = f"{packing}:{sorted(self.spread_keys.items())}" if self.spread_keys else packing
            progress = PublishProgress.load(progress_path, f"{lake.get('fingerprint')}:{layout}")
            if progress.acknowledged:
                self.log.info(
                    "Resuming: %d records were acknowledged by an earlier try and are not sent again", progress.acknowledged
                )
            records = build_records(
                counting(iter_staged(lake.get("staged", []), dataset, max_rows=16_384), counts),
                dataset,
                bars_per_record=self.bars_per_record,
                spread_keys=self.spread_keys,
                record_format=self.record_format,
            )
            stats = put_records(
                client,
                stream,
                records,
                max_records=self.max_records_per_call,
                max_bytes=self.max_bytes_per_call,
                max_attempts=self.max_attempts,
                progress=progress,
            )
        self.log.info(
            "Published %d bars as %d records to %s in %d calls (%d sent now, %d acknowledged earlier, %d re-sent)",
            sum(counts.values()),
            stats["records"],
            stream,
            stats["calls"],
            stats["sent"],
            stats["skipped"],
            stats["retried"],
        )
        return {
            "records": stats["records"],
            "sent": stats["sent"],
            "skipped": stats["skipped"],
            "calls": stats["calls"],
            "retried": stats["retried"],
            "bars_by_symbol": dict(counts),
        }
