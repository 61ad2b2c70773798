"""Kinesis Data Streams sink: JSON records sent with ``PutRecords``, streamed, resumable.

Record format (``Data``, ``kinesis.record_format``), version :data:`~market_ingest.schema.SCHEMA_VERSION`:

* ``json``, one bar per record (the default): compact UTF-8 JSON of the row's canonical columns
  (times ISO 8601 UTC with ``Z``, dates ISO, non-finite floats as ``null``), plus ``record_id``,
  ``dataset`` and ``schema_version``;
* ``json_lines`` (``bars_per_record: N > 1``; what such a config without ``record_format`` means):
  up to N consecutive bars *of one symbol* in one record, the same per-bar objects joined by
  ``\\n``. Consumers split ``Data`` on newlines.
* ``kpl``: a KPL aggregated record (the Kinesis Producer Library's format: magic bytes, a protobuf
  ``AggregatedRecord``, an MD5 digest; built by ``aws_kinesis_agg``) of up to N consecutive bars of
  one symbol, each a user record holding one bar's JSON and the record's partition key. The KCL,
  Lambda's event source (with ``aws_kinesis_agg``'s deaggregator) and Firehose de-aggregate it.

A shard takes 1,000 records per second, so packing is what lets a long backfill through.

Every bar object carries ``record_id``, a deterministic hash of its natural key: delivery is
at-least-once, consumers deduplicate on it. The partition key is ``<source>:<symbol>``, so a
series is ordered on one shard. A shard takes 1,000 records and 1 MiB per second, so one busy
series (a year of BTC/USDT minutes in a backfill) can outrun its shard whatever the stream's size:
``kinesis.spread_keys`` (``{"binance:BTC/USDT": 4}``) deals that series' records round robin over
N partition keys ``<source>:<symbol>#<k>`` (k = 0..N-1), each sent with the ``ExplicitHashKey`` at
the middle of the k-th of N equal slices of the 128-bit hash key space: on a stream whose shards
split that space evenly (what ``CreateStream`` with a shard count makes) N = shards puts one key
on each shard (MD5 of the keys alone put 2 of 4 keys on one shard in ``bench/kinesis.py``). Order
is then kept per key, not per series: records k, k+N, k+2N... of the series are in order on key
``#k``; consumers that need the series in order sort by ``time``.

Limits (AWS Kinesis ``PutRecords`` API reference): at most 500 records and 5 MiB per call, 1 MiB
per record (data plus partition key). A call can succeed with ``FailedRecordCount > 0``; only the
failed entries are sent again, with exponential backoff and jitter.

**Resuming.** :func:`put_records` numbers records in their (deterministic) order and records which
ones the stream acknowledged in a :class:`PublishProgress`, saved after every batch of up to
``max_records`` records (once its failed entries are re-sent) and when it gives up. A retried task
loads it and sends only what was not acknowledged, so a throttle that outlasts the in-task retries
costs no duplicate records, and a task killed outright (SIGKILL, the OOM killer, a lost worker: no
handler runs) re-sends at most the acknowledged records of the one batch it was in (500 at most).
That costs one small object write (an S3 ``PUT``) per batch. Records are built lazily from record batches: memory does not grow with the number of bars.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from market_ingest.contracts import Dataset
from market_ingest.errors import MarketDataError, SerializationError, SinkNotFoundError

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

MAX_RECORD_BYTES = 1024 * 1024
#: Save progress after this many batches of ``PutRecords`` (each up to ``max_records`` records, with
#: the re-sends of its failed entries): a killed task re-sends at most the records of this many batches.
#: 1: every batch (every 20 let a SIGKILL after 15 batches of 50 re-send 750 records; tests/faults).
CHECKPOINT_CALLS = 1


class PartialFailureError(MarketDataError):
    """Entries of ``PutRecords`` calls still failed after the in-task retries. Retryable.

    The message names the stream, how many records failed and were acknowledged, the error
    codes and the symbols of the failed records; a retried task resumes from the saved progress.
    """

    retryable = True

    def __init__(self, stream: str, pending: list[dict], codes: set[str], acked: int = 0) -> None:
        self.pending = pending
        symbols = sorted({symbol_of(r["PartitionKey"]) for r in pending})
        shown = symbols[:20] + ([f"... {len(symbols) - 20} more"] if len(symbols) > 20 else [])
        super().__init__(
            "kinesis",
            f"stream {stream}: {len(pending)} records still failing ({', '.join(sorted(codes))}) after retries; "
            f"{acked} records were acknowledged and will not be sent again; symbols {shown}",
        )


def record_id(*key: str) -> str:
    """Deterministic id of a row: hex SHA-256 of its natural key joined by ``|`` (first 32 chars).

    Bars: ``record_id(source, symbol, interval, time_iso)``; quotes: ``record_id(source, symbol,
    time_iso)``; times ISO 8601 UTC with ``Z`` (``2021-07-19T00:00:00Z``).
    """
    return hashlib.sha256("|".join(key).encode()).hexdigest()[:32]


def partition_key(source: str, symbol: str) -> str:
    """Partition key of a record: ``<source>:<symbol>``, so a series stays ordered on one shard."""
    return f"{source}:{symbol}"


def symbol_of(key: str) -> str:
    """The symbol a partition key names: ``binance:BTC/USDT#2`` -> ``BTC/USDT``."""
    return key.split(":", 1)[-1].rsplit("#", 1)[0]


def _json_ready(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with times as ISO strings (``...Z``, no fraction when whole seconds) and dates as
    ISO strings, computed column-wise."""
    import pyarrow as pa
    import pyarrow.compute as pc

    arrays, fields = [], []
    for f, col in zip(batch.schema, batch.columns):
        if pa.types.is_timestamp(f.type):
            # UTC wall time as text ("2021-07-19 00:00:00.000000"; 30x faster than strftime), then ISO with Z.
            text = col.cast(pa.timestamp("us", tz="UTC")).cast(pa.timestamp("us")).cast(pa.string())
            text = pc.replace_substring(pc.replace_substring(text, " ", "T", max_replacements=1), ".000000", "")
            col = pc.binary_join_element_wise(text, "Z", "")
        elif pa.types.is_date(f.type):
            col = col.cast(pa.string())
        arrays.append(col)
        fields.append(pa.field(f.name, col.type))
    return pa.RecordBatch.from_arrays(arrays, schema=pa.schema(fields))


def bar_lines(batches: Iterable[pa.RecordBatch], dataset: Dataset = Dataset.BARS) -> Iterator[tuple[str, bytes]]:
    """``(partition key, JSON line)`` per row of ``batches``, in order; never fails on a value.

    Serialised by orjson: compact, UTF-8, and NaN or infinite floats written as ``null`` (JSON has
    no such numbers; validation keeps them out of staged bars, this keeps one from failing a publish).

    :param dataset: ``bars`` or ``quotes``; decides the natural key hashed into ``record_id``.
    """
    import orjson

    from market_ingest.schema import DATASETS, SCHEMA_VERSION

    key = DATASETS[dataset].key
    for batch in batches:
        ready = _json_ready(batch)
        names = ready.schema.names
        key_at = [names.index(k) for k in key]
        source_at, symbol_at = names.index("source"), names.index("symbol")
        for values in zip(*(col.to_pylist() for col in ready.columns)):
            row = dict(zip(names, values))
            row["record_id"] = record_id(*(str(values[i]) for i in key_at))
            row["dataset"] = dataset
            row["schema_version"] = SCHEMA_VERSION
            yield partition_key(values[source_at], values[symbol_at]), orjson.dumps(row)


def _kpl_record_class():
    """``aws_kinesis_agg.aggregator.AggRecord``, imported with ``sys.path`` restored afterwards (the
    package puts its own folder and site-packages at the head of ``sys.path`` when imported)."""
    import sys

    saved = list(sys.path)
    try:
        from aws_kinesis_agg.aggregator import AggRecord
    finally:
        sys.path[:] = saved
    return AggRecord


def build_records(
    batches: Iterable[pa.RecordBatch] | pa.Table,
    dataset: Dataset = Dataset.BARS,
    bars_per_record: int = 1,
    spread_keys: Mapping[str, int] | None = None,
    record_format: str = "json",
) -> Iterator[dict[str, Any]]:
    """Kinesis entries (``{"Data": bytes, "PartitionKey": str}``, plus ``"ExplicitHashKey"`` for a
    spread series) for the rows of ``batches``, lazily.

    :param batches: record batches (or a table) of the dataset's schema, in publishing order.
    :param bars_per_record: rows per record: 1 for ``json``; for ``json_lines`` and ``kpl`` up to N
        consecutive rows of one partition key per record (never over 1 MiB with the partition key).
    :param spread_keys: ``{"<source>:<symbol>": N}``: that series' records go round robin to
        partition keys ``<source>:<symbol>#0`` .. ``#N-1``, each with its ``ExplicitHashKey`` (see
        the module docstring). The same rows in the same order give the same keys on every try.
    :param record_format: ``json`` (one row's JSON per record), ``json_lines`` (rows' JSON joined by
        ``\\n``) or ``kpl`` (a KPL aggregated record, built by ``aws_kinesis_agg``, whose user records
        are the rows' JSON, each with the record's partition key and explicit hash key).
    :raises SerializationError: naming the row, when one row alone exceeds 1 MiB.
    :raises ValueError: ``json`` with ``bars_per_record`` > 1, or an unknown format.
    """
    if record_format not in ("json", "json_lines", "kpl") or (record_format == "json" and bars_per_record != 1):
        raise ValueError(f"record_format {record_format!r} with bars_per_record {bars_per_record}")
    if hasattr(batches, "to_batches"):
        batches = batches.to_batches(max_chunksize=65_536)
    spread = spread_keys or {}
    dealt: dict[str, int] = {}  # records of each spread series so far

    def keys(series: str) -> dict[str, str]:
        """The next record's ``PartitionKey`` (and ``ExplicitHashKey``) for ``series``."""
        n = spread.get(series, 1)
        if n <= 1:
            return {"PartitionKey": series}
        k = dealt.get(series, 0) % n
        dealt[series] = dealt.get(series, 0) + 1
        return {"PartitionKey": f"{series}#{k}", "ExplicitHashKey": str((2 * k + 1) * 2**128 // (2 * n))}

    def too_big(key: str, line: bytes) -> SerializationError:
        return SerializationError("kinesis", f"{key} row {line[:120]!r}... exceeds the 1 MiB record limit")

    if record_format == "kpl":
        yield from _kpl_records(bar_lines(batches, dataset), bars_per_record, keys, too_big)
        return

    pkey, size = "", 0
    lines: list[bytes] = []
    for key, line in bar_lines(batches, dataset):
        if len(line) + len(key) + 6 > MAX_RECORD_BYTES:  # 6: room for a "#<k>" suffix
            raise too_big(key, line)
        if lines and (key != pkey or len(lines) >= bars_per_record or size + 1 + len(line) + len(key) + 6 > MAX_RECORD_BYTES):
            yield {"Data": b"\n".join(lines), **keys(pkey)}
            lines, size = [], 0
        pkey = key
        lines.append(line)
        size += len(line) + 1
    if lines:
        yield {"Data": b"\n".join(lines), **keys(pkey)}


def _kpl_records(
    rows: Iterable[tuple[str, bytes]],
    per_record: int,
    keys: Callable[[str], dict[str, str]],
    too_big: Callable[[str, bytes], SerializationError],
) -> Iterator[dict[str, Any]]:
    """KPL aggregated entries for ``(series, JSON)`` rows: up to ``per_record`` consecutive rows of
    one series each, ``Data`` plus ``PartitionKey`` within 1 MiB (the aggregate's own accounting).
    Each user record carries the entry's ``PartitionKey`` (and ``ExplicitHashKey``), so the KCL,
    which drops user records whose hash falls outside the shard, keeps every one."""
    agg_record = _kpl_record_class()
    current: Any = None
    series = ""
    entry: dict[str, str] = {}
    for key, line in rows:
        if current is not None and (key != series or current.get_num_user_records() >= per_record):
            yield {**entry, "Data": current.get_contents()[2]}
            current = None
        for _ in range(2):
            if current is None:
                series, entry = key, keys(key)
                pk = entry["PartitionKey"].encode()
                ehk = entry["ExplicitHashKey"].encode() if "ExplicitHashKey" in entry else None
                current = agg_record(MAX_RECORD_BYTES - len(pk))
            try:
                # Keys as bytes: given str, aws_kinesis_agg 1.2.3 looks them up as bytes in a table of
                # str, so it counts a key's bytes again for every user record (aggregates fill less).
                added = current.add_user_record(pk, line, ehk)
            except ValueError:  # one row alone does not fit in an aggregate
                raise too_big(key, line) from None
            if added:
                break
            yield {**entry, "Data": current.get_contents()[2]}  # full: this row starts the next aggregate
            current = None
    if current is not None:
        yield {**entry, "Data": current.get_contents()[2]}


def batches(records: Iterable[dict], max_records: int = 500, max_bytes: int = 5 * 1024 * 1024) -> Iterator[list[dict]]:
    """Split records into ``PutRecords`` calls within ``max_records`` and ``max_bytes`` each, lazily."""
    current: list[dict] = []
    size = 0
    for rec in records:
        rec_size = len(rec["Data"]) + len(rec["PartitionKey"].encode())
        if current and (len(current) == max_records or size + rec_size > max_bytes):
            yield current
            current, size = [], 0
        current.append(rec)
        size += rec_size
    if current:
        yield current


@dataclass
class PublishProgress:
    """Which records of one publish the stream has acknowledged, by ordinal (0-based, in order).

    :param fingerprint: identifies the data published (the run's staged objects); progress of
        other data is ignored.
    :param done_below: every record with an ordinal below this is acknowledged.
    :param acked: acknowledged ordinals at or above ``done_below``.
    :param complete: the whole publish succeeded. A later try with ``complete`` progress is a
        clear, not a retry: it sends everything again.
    :param path: where it is saved (``None``: not saved).
    """

    fingerprint: str
    done_below: int = 0
    acked: set[int] = field(default_factory=set)
    complete: bool = False
    path: ObjectStoragePath | None = None

    @classmethod
    def load(cls, path: ObjectStoragePath | None, fingerprint: str) -> PublishProgress:
        """The saved progress at ``path`` for ``fingerprint``, or a fresh one (none saved, other
        data, a publish that had completed, or a file that is not progress: everything is sent
        again, which at-least-once delivery allows)."""
        fresh = cls(fingerprint, path=path)
        if path is None or not path.exists():
            return fresh
        try:
            saved = json.loads(path.read_bytes())
        except ValueError as exc:
            log.warning("Publish progress %s is unreadable (%s); sending every record again", path, exc)
            return fresh
        if saved.get("fingerprint") != fingerprint or saved.get("complete"):
            return fresh
        return cls(fingerprint, int(saved["done_below"]), set(saved.get("acked", [])), False, path)

    def is_acked(self, ordinal: int) -> bool:
        return ordinal < self.done_below or ordinal in self.acked

    def ack(self, ordinal: int) -> None:
        self.acked.add(ordinal)
        while self.done_below in self.acked:
            self.acked.discard(self.done_below)
            self.done_below += 1

    @property
    def acknowledged(self) -> int:
        return self.done_below + len(self.acked)

    def save(self) -> None:
        """Replace the saved progress at ``path`` (nothing when ``None``), atomically: a kill
        mid-write leaves the previous progress (:func:`market_ingest.lake.write_object`)."""
        if self.path is not None:
            from market_ingest.lake import write_object

            body = {
                "fingerprint": self.fingerprint,
                "done_below": self.done_below,
                "acked": sorted(self.acked),
                "complete": self.complete,
            }
            write_object(self.path, json.dumps(body).encode())


def check_stream(client, stream: str, aws_conn_id: str) -> None:
    """Fail when ``stream`` does not exist; never create it.

    :raises SinkNotFoundError: naming the stream and the connection.
    """
    try:
        client.describe_stream_summary(StreamName=stream)
    except client.exceptions.ResourceNotFoundException:
        raise SinkNotFoundError(
            "kinesis",
            f"stream {stream!r} does not exist (connection {aws_conn_id}); nothing creates it: "
            "create the stream or fix the stream name in the pipeline config",
        ) from None


def put_records(
    client,
    stream: str,
    records: Iterable[dict],
    *,
    max_records: int = 500,
    max_bytes: int = 5 * 1024 * 1024,
    max_attempts: int = 8,
    max_wait: float = 10.0,
    progress: PublishProgress | None = None,
    checkpoint_calls: int = CHECKPOINT_CALLS,
) -> dict[str, int]:
    """Send ``records`` to ``stream``, retrying exactly the failed entries of each call, skipping
    what ``progress`` says was acknowledged before.

    :param client: a boto3 Kinesis client (``KinesisHook(...).conn``).
    :param stream: stream name.
    :param records: entries from :func:`build_records`, in the same order on every try.
    :param max_attempts: attempts per call while entries keep failing.
    :param max_wait: cap of the exponential backoff between attempts, seconds.
    :param progress: acknowledged records of earlier tries; updated and saved as records are
        acknowledged (every ``checkpoint_calls`` calls, on failure, and at the end).
    :param checkpoint_calls: calls between saves (default :data:`CHECKPOINT_CALLS`, 1); a killed
        task re-sends at most this many calls' records.
    :return: ``{"records": records in the data, "sent": acknowledged by this call, "skipped":
        acknowledged by earlier tries, "calls": PutRecords calls made, "retried": entries re-sent}``.
    :raises PartialFailureError: when entries still fail after ``max_attempts`` (naming the
        stream and the symbols); the progress is saved first.
    :raises SinkNotFoundError: the stream does not exist.
    """
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

    progress = progress or PublishProgress("")
    total = calls = retried = sent = skipped = 0

    def numbered():
        nonlocal total, skipped
        for ordinal, rec in enumerate(records):
            total += 1
            if progress.is_acked(ordinal):
                skipped += 1
                continue
            yield {**rec, "_ordinal": ordinal}

    def entries(recs):
        return [{k: r[k] for k in ("Data", "PartitionKey", "ExplicitHashKey") if k in r} for r in recs]

    try:
        for n, batch in enumerate(batches(numbered(), max_records, max_bytes), start=1):
            pending = batch
            for attempt in Retrying(
                stop=stop_after_attempt(max_attempts),
                wait=wait_exponential_jitter(initial=0.1, max=max_wait),
                retry=retry_if_exception_type(PartialFailureError),
                reraise=True,
            ):
                with attempt:
                    if attempt.retry_state.attempt_number > 1:
                        retried += len(pending)
                    calls += 1
                    try:
                        response = client.put_records(StreamName=stream, Records=entries(pending))
                    except client.exceptions.ResourceNotFoundException:
                        raise SinkNotFoundError("kinesis", f"stream {stream!r} does not exist") from None
                    failed = []
                    for rec, res in zip(pending, response["Records"]):
                        if res.get("ErrorCode"):
                            failed.append((rec, res["ErrorCode"]))
                        else:
                            progress.ack(rec["_ordinal"])
                            sent += 1
                    if failed:
                        pending = [rec for rec, _ in failed]
                        raise PartialFailureError(stream, pending, {code for _, code in failed}, progress.acknowledged)
            if n % checkpoint_calls == 0:
                progress.save()
    except BaseException:
        try:
            progress.save()
        except Exception as exc:  # the publish error matters more; without progress a retry re-sends
            log.warning("Could not save the publish progress to %s: %s", progress.path, exc)
        raise
    progress.complete = True
    progress.save()
    return {"records": total, "sent": sent, "skipped": skipped, "calls": calls, "retried": retried}
