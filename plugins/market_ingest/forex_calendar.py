"""The foreign-exchange calendar (market ``24/5``), an ``exchange_calendars`` calendar.

Imports ``exchange_calendars`` (and so pandas): :mod:`market_ingest.calendars` imports this module
when a task first asks for market ``24/5``.
"""

from __future__ import annotations

from datetime import time
from zoneinfo import ZoneInfo

from exchange_calendars.exchange_calendar import ExchangeCalendar


class ForexCalendar(ExchangeCalendar):
    """Foreign exchange: one session per weekday, from 17:00 New York the day before to 17:00 New
    York that day, and no holidays.

    Monday's session so opens on Sunday at 22:00 UTC (21:00 in New York's summer) and Friday's
    closes at 22:00 (21:00) UTC; Saturday has no bar of any interval, Sunday only the evening's
    intraday bars. The trading week and the day's roll at 17:00 New York are the convention the
    vendors stamp: Alpha Vantage's ``FX_DAILY`` and Yahoo's ``=X`` daily bars are dated Monday to
    Friday, New Year's Day and Good Friday included (recorded:
    ``tests/fixtures/alpha_vantage/av_csv_FX_DAILY_EURUSD_demo_2025-12_2026-05.csv``, 100 weekdays
    from 2025-12-29 to 2026-05-15; ``include/recordings/yahoo/yahoo_chart_EURUSD=X_1d_*``).

    Not ``exchange_calendars``' own ``24/5`` (``WeekdayCalendar``), whose sessions are the UTC
    weekdays from midnight to midnight: it has no Sunday evening and a Friday evening with no
    trading.
    """

    name = "24/5"
    tz = ZoneInfo("America/New_York")
    open_times = ((None, time(17)),)
    close_times = ((None, time(17)),)

    @property
    def open_offset(self) -> int:
        """Each session opens the day before its date (Monday's on Sunday)."""
        return -1
