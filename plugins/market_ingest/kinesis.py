"""Kinesis Data Streams sink: one JSON record per bar, sent with ``PutRecords``.

Limits (AWS Kinesis ``PutRecords`` API reference): at most 500 records and 5 MiB per call, 1 MiB per
record (data plus partition key). A call can succeed with ``FailedRecordCount > 0``; only the
failed entries are sent again, with exponential backoff and jitter. Delivery is at-least-once, so
every record carries ``record_id``, a deterministic hash of the bar's natural key that consumers
deduplicate on.
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

MAX_RECORD_BYTES = 1024 * 1024


class PartialFailureError(RuntimeError):
    """Some entries of a ``PutRecords`` call failed; carries the entries still to send."""

    def __init__(self, pending: list[dict], codes: set[str]) -> None:
        self.pending = pending
        super().__init__(f"{len(pending)} Kinesis records failed ({', '.join(sorted(codes))})")


def record_id(*key: str) -> str:
    """Deterministic id of a row: hex SHA-256 of its natural key joined by ``|`` (first 32 chars).

    Bars: ``record_id(source, symbol, interval, time_iso)``; quotes: ``record_id(source, symbol,
    time_iso)``; times ISO 8601 UTC with ``Z`` (``2021-07-19T00:00:00Z``).
    """
    return hashlib.sha256("|".join(key).encode()).hexdigest()[:32]


def partition_key(source: str, symbol: str) -> str:
    """Partition key of a record: ``<source>:<symbol>``, so a series stays ordered on one shard."""
    return f"{source}:{symbol}"


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")
    if isinstance(value, date):
        return value.isoformat()
    return value


def build_records(table: pa.Table, dataset: str = "bars") -> list[dict[str, Any]]:
    """Kinesis entries (``{"Data": bytes, "PartitionKey": str}``) for every row, in table order.

    ``Data`` is compact JSON of the row's canonical columns (times ISO 8601 UTC with ``Z``, dates
    ISO), plus ``record_id``, ``dataset`` and ``schema_version``.

    :param dataset: ``bars`` or ``quotes``; decides the natural key hashed into ``record_id``.
    :raises ValueError: naming the row, when one record would exceed 1 MiB.
    """
    from market_ingest.schema import DATASETS, SCHEMA_VERSION

    key = DATASETS[dataset].key
    records = []
    for row in table.to_pylist():
        row = {k: _iso(v) for k, v in row.items()}
        row["record_id"] = record_id(*(str(row[k]) for k in key))
        row["dataset"] = dataset
        row["schema_version"] = SCHEMA_VERSION
        data = json.dumps(row, separators=(",", ":"), allow_nan=False).encode()
        pkey = partition_key(row["source"], row["symbol"])
        if len(data) + len(pkey.encode()) > MAX_RECORD_BYTES:
            raise ValueError(f"{row['source']}:{row['symbol']} row at {row['time']} exceeds the 1 MiB record limit")
        records.append({"Data": data, "PartitionKey": pkey})
    return records


def batches(records: list[dict], max_records: int = 500, max_bytes: int = 5 * 1024 * 1024) -> list[list[dict]]:
    """Split records into ``PutRecords`` calls within ``max_records`` and ``max_bytes`` each."""
    out, current, size = [], [], 0
    for rec in records:
        rec_size = len(rec["Data"]) + len(rec["PartitionKey"].encode())
        if current and (len(current) == max_records or size + rec_size > max_bytes):
            out.append(current)
            current, size = [], 0
        current.append(rec)
        size += rec_size
    if current:
        out.append(current)
    return out


def put_records(
    client,
    stream: str,
    records: list[dict],
    *,
    max_records: int = 500,
    max_bytes: int = 5 * 1024 * 1024,
    max_attempts: int = 8,
    max_wait: float = 10.0,
) -> dict[str, int]:
    """Send ``records`` to ``stream``, retrying exactly the failed entries of each call.

    :param client: a boto3 Kinesis client (``KinesisHook(...).conn``).
    :param stream: stream name.
    :param records: entries from :func:`build_records`.
    :param max_attempts: attempts per batch while entries keep failing.
    :param max_wait: cap of the exponential backoff between attempts, seconds.
    :return: ``{"records": sent, "calls": PutRecords calls made, "retried": entries re-sent}``.
    :raises PartialFailureError: when entries still fail after ``max_attempts``.
    """
    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

    calls = retried = 0
    for batch in batches(records, max_records, max_bytes):
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
                response = client.put_records(StreamName=stream, Records=pending)
                if response.get("FailedRecordCount", 0):
                    failed = [(rec, res) for rec, res in zip(pending, response["Records"]) if res.get("ErrorCode")]
                    pending = [rec for rec, _ in failed]
                    raise PartialFailureError(pending, {res["ErrorCode"] for _, res in failed})
    return {"records": len(records), "calls": calls, "retried": retried}
