"""Daily request budgets shared by all tasks and DAG runs of a vendor.

A free Alpha Vantage key allows about 25 requests a day (recorded quota body,
``av_ERROR_Information_rate_limit_25_per_day_2025-12.json``). Tasks run in separate processes, so the
count lives in PostgreSQL (``market.vendor_quota``, migration V003): :meth:`take` reserves one
request atomically, and :meth:`mark_exhausted` records that the vendor said the day is spent, so
every later task defers its symbols without calling. Days are UTC days.
"""

from __future__ import annotations

from contextlib import closing
from datetime import date, datetime, timezone
from typing import Protocol


class QuotaStore(Protocol):
    """What a hook needs from a budget store."""

    def take(self, vendor: str, day: date, budget: int) -> bool:
        """Reserve one request of ``day``'s budget; False when spent or marked exhausted."""

    def mark_exhausted(self, vendor: str, day: date) -> None:
        """Record that the vendor refused for the rest of ``day``."""


class PostgresQuotaStore:
    """:class:`QuotaStore` on the warehouse's ``market.vendor_quota`` table.

    :param hook: a ``PostgresHook`` (e.g. ``TimescaleHook``) whose migrations have run.
    """

    def __init__(self, hook) -> None:
        self.hook = hook

    def take(self, vendor: str, day: date, budget: int) -> bool:
        with closing(self.hook.get_conn()) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "INSERT INTO market.vendor_quota AS q (vendor, day, requests) VALUES (%s, %s, 1) "
                "ON CONFLICT (vendor, day) DO UPDATE SET requests = q.requests + 1 "
                "WHERE q.exhausted_at IS NULL AND q.requests < %s RETURNING requests",
                (vendor, day, budget),
            )
            return cur.fetchone() is not None

    def mark_exhausted(self, vendor: str, day: date) -> None:
        with closing(self.hook.get_conn()) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "INSERT INTO market.vendor_quota AS q (vendor, day, exhausted_at) VALUES (%s, %s, now()) "
                "ON CONFLICT (vendor, day) DO UPDATE SET exhausted_at = COALESCE(q.exhausted_at, now())",
                (vendor, day),
            )


def utc_today(now: datetime | None = None) -> date:
    """The current UTC day (the unit of vendor daily quotas)."""
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).date()
