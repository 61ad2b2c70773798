"""The deadline reference of market DAGs: the end of the run's data interval.

Airflow 3.3's built-in references are the logical date, the queue time, a fixed time and an
average runtime; none says "within N of the interval's end", and the logical date is the
interval's *start*, a whole period earlier. :class:`DataIntervalEndDeadline` is that reference,
registered with Airflow by the ``market_ingest`` plugin (:mod:`market_ingest.plugin`) so
the scheduler can evaluate it.

* Scheduled runs: the deadline is ``data_interval_end + allowed_lateness``, so a run created late
  (scheduler down, a catch-up) alerts at once: its bars are late.
* Manual and backfill runs: the deadline is ``queued_at + allowed_lateness`` (or the time of
  evaluation if not queued yet). Their interval ended long ago by design; measuring them from the
  interval would page on-call for every backfilled day.

Imports only the Task SDK at module level; core imports stay inside the method, as Airflow asks
of custom references.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk.definitions.deadline import BaseDeadlineReference

if TYPE_CHECKING:
    from sqlalchemy.orm import Session


class DataIntervalEndDeadline(BaseDeadlineReference):
    """Deadline reference: a scheduled run's data interval end; a manual or backfill run's queue time.

    Evaluated by the scheduler when the run is created (``DAGRUN_CREATED``); the Deadline Alert's
    ``interval`` is added to the returned time.
    """

    required_kwargs = {"dag_id", "run_id"}

    def _evaluate_with(self, *, session: Session, dag_id: str, run_id: str, **kwargs: Any) -> datetime | None:
        """:return: the reference time (UTC), or ``None`` when the run is not found (no deadline)."""
        from airflow.models import DagRun
        from sqlalchemy import select

        row = session.execute(
            select(DagRun.run_type, DagRun.data_interval_end, DagRun.queued_at).where(
                DagRun.dag_id == dag_id, DagRun.run_id == run_id
            )
        ).one_or_none()
        if row is None:
            return None
        run_type, interval_end, queued_at = row
        if run_type == "scheduled" and interval_end is not None:  # DagRunType.SCHEDULED
            return interval_end
        return queued_at or datetime.now(timezone.utc)
