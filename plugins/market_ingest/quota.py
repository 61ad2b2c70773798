"""Request and credit budgets shared by all tasks and DAG runs of a vendor key.

A free Alpha Vantage key allows about 25 requests a day (recorded quota body,
``av_ERROR_Information_rate_limit_25_per_day_2025-12.json``); Twelve Data's Basic plan 8 API
credits a minute and 800 a day. Tasks run in separate processes, so the counts live in PostgreSQL:
per UTC day in ``market.vendor_quota`` (migration V003): :meth:`~QuotaStore.take` reserves one
request atomically, and :meth:`~QuotaStore.mark_exhausted` records that the vendor said the day is
spent, so every later task defers its symbols without calling; per minute in
``market.vendor_minute_credits`` (V016): :meth:`~PostgresQuotaStore.take_minute`, refused past the
minute's limit so the caller waits for the next minute. Days are UTC days.
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


class MinuteStore(Protocol):
    """What a hook with a per-minute credit limit needs from a budget store."""

    def take_minute(self, vendor: str, minute: datetime, limit: int, credits: int = 1) -> bool:
        """Take ``credits`` of ``minute``'s ``limit``; False (nothing taken) when they would pass it."""


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

    def take_minute(self, vendor: str, minute: datetime, limit: int, credits: int = 1) -> bool:
        """Take ``credits`` of the ``limit`` of ``minute`` (an aware instant, truncated here to its
        minute) for ``vendor`` in one atomic upsert: two tasks asking at once never take more than
        ``limit`` between them. Rows of that vendor older than a day are deleted in the same
        transaction.

        :return: True when taken; False, with nothing taken, when the minute has fewer left.
        """
        start = minute.astimezone(timezone.utc).replace(second=0, microsecond=0)
        with closing(self.hook.get_conn()) as conn, conn.transaction(), conn.cursor() as cur:
            cur.execute(
                "INSERT INTO market.vendor_minute_credits AS m (vendor, minute, credits) "
                "SELECT %(vendor)s, %(minute)s, %(credits)s WHERE %(credits)s <= %(limit)s "
                "ON CONFLICT (vendor, minute) DO UPDATE SET credits = m.credits + %(credits)s "
                "WHERE m.credits + %(credits)s <= %(limit)s RETURNING credits",
                {"vendor": vendor, "minute": start, "credits": credits, "limit": limit},
            )
            taken = cur.fetchone() is not None
            cur.execute(
                "DELETE FROM market.vendor_minute_credits WHERE vendor = %s AND minute < %s::timestamptz - interval '1 day'",
                (vendor, start),
            )
            return taken


def utc_today(now: datetime | None = None) -> date:
    """The current UTC day (the unit of vendor daily quotas)."""
    return (now or datetime.now(timezone.utc)).astimezone(timezone.utc).date()
