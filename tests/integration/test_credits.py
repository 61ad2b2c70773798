"""The shared credit budgets on PostgreSQL: exact under concurrency, per minute and per day."""

from __future__ import annotations

import threading
from datetime import date, datetime, timedelta, timezone

import pytest

pytestmark = pytest.mark.integration

UTC = timezone.utc


@pytest.fixture
def stores(services):
    """Eight stores, as eight tasks on one key would hold them, on the migrated warehouse."""
    from market_ingest.hooks.timescale import TimescaleHook
    from market_ingest.quota import PostgresQuotaStore

    TimescaleHook().migrate()
    return [PostgresQuotaStore(TimescaleHook()) for _ in range(8)]


def _race(stores, take) -> list[bool]:
    """Every store takes five times at once (40 takes from eight threads); the outcomes, in any order."""
    results: list[bool] = []
    lock, start = threading.Lock(), threading.Barrier(len(stores))

    def task(store):
        start.wait()
        for _ in range(5):
            got = take(store)
            with lock:
                results.append(got)

    threads = [threading.Thread(target=task, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_eight_tasks_racing_for_a_minutes_credits_take_exactly_the_limit(stores):
    """Twelve Data's Basic plan: 8 credits a minute. 40 takes in one minute from eight stores at
    once: exactly 8 succeed; the next minute starts afresh; a take of more credits than are left
    takes nothing."""
    minute = datetime(2031, 1, 2, 14, 30, 17, tzinfo=UTC)
    results = _race(stores, lambda s: s.take_minute("twelvedata:race", minute, 8))
    assert sorted(results) == [False] * 32 + [True] * 8
    assert stores[0].take_minute("twelvedata:race", minute + timedelta(seconds=45), 8)  # 14:31:02: the next minute
    assert not stores[1].take_minute("twelvedata:race", minute + timedelta(seconds=50), 8, credits=8)  # 1 taken, 8 asked
    assert stores[1].take_minute("twelvedata:race", minute + timedelta(seconds=50), 8, credits=7)
    assert not stores[2].take_minute("twelvedata:race", minute + timedelta(seconds=51), 8)


def test_eight_tasks_racing_for_a_days_credits_take_exactly_the_budget(stores):
    """The day's 800 credits, shrunk to 25: 40 takes at once, exactly 25 succeed."""
    results = _race(stores, lambda s: s.take("twelvedata:day", date(2031, 1, 2), 25))
    assert sorted(results) == [False] * 15 + [True] * 25


def test_minute_rows_older_than_a_day_are_deleted_as_new_ones_come(stores, services):
    import psycopg

    first = datetime(2031, 1, 2, 9, 0, tzinfo=UTC)
    assert stores[0].take_minute("twelvedata:old", first, 8)
    assert stores[0].take_minute("twelvedata:old", first + timedelta(days=1, minutes=1), 8)
    with psycopg.connect(services.pg_conninfo()) as conn:
        minutes = conn.execute(
            "SELECT minute FROM market.vendor_minute_credits WHERE vendor = 'twelvedata:old' ORDER BY minute"
        ).fetchall()
    assert [m for (m,) in minutes] == [first + timedelta(days=1, minutes=1)]
