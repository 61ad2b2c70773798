"""Operational events: missed deadlines, failed runs, too many failed symbols.

One notifier, :class:`MarketEventNotifier`, serves every path an alert can take in Airflow 3:

* a DAG's Deadline Alert (``AsyncCallback``: the triggerer awaits the notifier with a small
  context ``{"dag_run": {...}, "deadline": {"id", "deadline_time"}}``);
* a DAG's ``on_failure_callback`` (the DAG processor calls it with the full context);
* the run report, when the share of failed symbols crosses ``report.max_failed_share``, or the
  share of symbols the vendor did not serve crosses ``report.max_unserved_share``, or the vendor
  stated corporate actions first seen by the run (:func:`emit`, called inside the report task).

Each event is one flat JSON object (:func:`build_event`). It is always written to the log
(logger ``market_ingest.alerts``, level WARNING) and put on the Kinesis stream
``alerts.events_stream`` (partition key: the DAG id). It is also published to SNS through the
amazon provider's ``SnsNotifier`` when ``alerts.sns_topic_arn`` is set. Events carry identities
and counts only, never connection fields, so no secret can reach the stream or the topic.

Parse-time cheap: boto3 and the amazon provider are imported inside the send path.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk.bases.notifier import BaseNotifier

from market_ingest.config import AlertsConfig

if TYPE_CHECKING:
    from airflow.sdk import Context

log = logging.getLogger(__name__)

#: Event kinds.
DEADLINE_MISSED = "deadline_missed"
DAG_FAILED = "dag_failed"
FAILED_SHARE_EXCEEDED = "failed_share_exceeded"
UNSERVED_SHARE_EXCEEDED = "unserved_share_exceeded"
#: A vendor stated corporate actions (splits, dividends) not seen before: adjusted series change.
CORPORATE_ACTIONS_FIRST_SEEN = "corporate_actions_first_seen"
SCHEMA_VERSION = 1


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ").replace(".000000Z", "Z")
    return str(value)


def _run_identity(context: Mapping[str, Any]) -> dict[str, Any]:
    """DAG and run fields of a context, whichever caller built it.

    The triggerer's deadline context holds ``dag_run`` as the REST API's JSON (``dag_run_id``);
    task and DAG callbacks hold a DagRun object (``run_id``).
    """
    run = context.get("dag_run") or {}
    get = run.get if isinstance(run, dict) else (lambda k, d=None: getattr(run, k, d))
    dag_id = get("dag_id") or getattr(context.get("dag"), "dag_id", None)
    return {
        "dag_id": dag_id,
        "run_id": get("dag_run_id") or get("run_id") or context.get("run_id"),
        "run_type": str(get("run_type") or "") or None,
        "logical_date": _iso(get("logical_date")),
        "data_interval_start": _iso(get("data_interval_start")),
        "data_interval_end": _iso(get("data_interval_end")),
    }


def build_event(kind: str, context: Mapping[str, Any], message: str, detail: dict | None = None) -> dict[str, Any]:
    """The event for ``kind`` in ``context``: a flat, JSON-serialisable dict.

    :param kind: :data:`DEADLINE_MISSED`, :data:`DAG_FAILED`, :data:`FAILED_SHARE_EXCEEDED` or
        :data:`UNSERVED_SHARE_EXCEEDED`.
    :param context: an Airflow context, or the triggerer's deadline context.
    :param message: one human line, e.g. ``deadline missed: market_yahoo_1d manual__... due 2024-...Z``.
    :param detail: extra JSON-safe fields (failed symbols, counts).
    :return: ``{"event", "dag_id", "run_id", "run_type", "logical_date", "data_interval_start",
        "data_interval_end", "deadline_time", "message", "detail", "emitted_at", "schema_version"}``;
        times are ISO 8601 UTC strings, ``deadline_time`` is ``None`` except for missed deadlines.
    """
    deadline = context.get("deadline") or {}
    return {
        "event": kind,
        **_run_identity(context),
        "deadline_time": _iso(deadline.get("deadline_time")),
        "message": message,
        "detail": detail or {},
        "emitted_at": _iso(datetime.now(timezone.utc)),
        "schema_version": SCHEMA_VERSION,
    }


def emit(event: dict[str, Any], channels: AlertsConfig | dict[str, Any]) -> dict[str, Any]:
    """Send ``event`` to the log, the events stream and (when configured) SNS.

    Every channel is tried; the log line is written first, so an event is never lost silently.

    :param channels: where to send it: the pipeline's ``alerts`` section (``aws_conn_id``,
        ``events_stream``, ``sns_topic_arn``), as the config object or its dict (as DAG callbacks
        carry it).

    :return: ``{"kinesis": sequence number or None, "sns": True/False}``.
    :raises RuntimeError: naming the channels that failed and why, after trying all of them.
    """
    cfg = channels if isinstance(channels, AlertsConfig) else AlertsConfig.model_validate(channels)
    body = json.dumps(event, sort_keys=True, default=str)
    log.warning("market event: %s", body)
    sent: dict[str, Any] = {"kinesis": None, "sns": False}
    errors = []
    try:
        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

        response = KinesisHook(aws_conn_id=cfg.aws_conn_id).conn.put_record(
            StreamName=cfg.events_stream, Data=body.encode(), PartitionKey=event.get("dag_id") or "market"
        )
        sent["kinesis"] = response["SequenceNumber"]
    except Exception as exc:  # one channel failing must not stop the others
        errors.append(f"kinesis stream {cfg.events_stream}: {exc}")
    if cfg.sns_topic_arn:
        try:
            from airflow.providers.amazon.aws.notifications.sns import SnsNotifier

            SnsNotifier(
                aws_conn_id=cfg.aws_conn_id,
                target_arn=cfg.sns_topic_arn,
                message=body,
                subject=f"[market-data] {event['event']}: {event.get('dag_id')}"[:100],
                message_attributes={"event": event["event"]},
            ).notify({})
            sent["sns"] = True
        except Exception as exc:
            errors.append(f"sns topic {cfg.sns_topic_arn}: {exc}")
    if errors:
        raise RuntimeError(f"market event {event['event']} for {event.get('dag_id')} not delivered to: {'; '.join(errors)}")
    return sent


class MarketEventNotifier(BaseNotifier):
    """Notifier for Deadline Alerts and failure callbacks: builds one event and :func:`emit` s it.

    Use it as ``on_failure_callback=MarketEventNotifier(kind=DAG_FAILED)`` or as a Deadline
    Alert's ``AsyncCallback(MarketEventNotifier, kwargs={"kind": DEADLINE_MISSED})``; the
    triggerer then constructs it with ``context=`` and awaits it.

    :param kind: the event kind (module constants).
    :param channels: where events go: the pipeline's ``alerts`` section as a dict (see :func:`emit`),
        handed over by the DAG factory; a callback reads no configuration file.
    :param context: set by the triggerer for deadline callbacks; empty otherwise.
    """

    def __init__(self, *, kind: str, channels: dict[str, Any], context: Context | None = None) -> None:
        super().__init__(context=context)
        self.kind = kind
        self.channels = channels

    def render_template_fields(self, context: Context, jinja_env=None) -> None:
        """Nothing to render: this notifier has no template fields.

        ``BaseNotifier.__call__`` renders before notifying and asks ``context["dag"]`` for a Jinja
        environment; under ``dag.test()`` (Airflow 3.3.2) that is a ``SerializedDAG`` without
        ``get_template_env``, the call raised ``AttributeError`` and the ``dag_failed`` event was lost.
        """
        if self.template_fields:  # a subclass that adds template fields renders them
            super().render_template_fields(context, jinja_env)

    def _event(self, context: Mapping[str, Any]) -> dict[str, Any]:
        ident = _run_identity(context)
        if self.kind == DEADLINE_MISSED:
            due = _iso((context.get("deadline") or {}).get("deadline_time"))
            message = f"deadline missed: {ident['dag_id']} run {ident['run_id']} was not done by {due}"
        else:
            reason = context.get("reason") or (str(context["exception"]) if context.get("exception") else "")
            message = f"{self.kind}: {ident['dag_id']} run {ident['run_id']}" + (f" ({reason})" if reason else "")
        return build_event(self.kind, context, message)

    def notify(self, context: Context) -> None:
        """Send the event (failure callbacks: DAG processor or task process)."""
        emit(self._event(context), self.channels)

    async def async_notify(self, context: Context) -> None:
        """Send the event from the triggerer; the blocking boto3 calls run in a worker thread."""
        await asyncio.to_thread(emit, self._event(context), self.channels)
