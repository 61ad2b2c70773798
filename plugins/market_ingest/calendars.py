"""Which bars should exist: trading sessions from exchange calendars, and around the clock for crypto.

The calendars are ``exchange_calendars``' (holidays, early closes and unscheduled closures such as
2001-09-11 or 2012's Hurricane Sandy, from its published rules). A *market* is one of its calendar
names: ``XNYS``, ``XNAS``, ``XLON``, ``XETR``, ``XPAR``, ... and ``24/7`` (crypto: every bar of
every day) or ``24/5`` (foreign exchange: :class:`~market_ingest.forex_calendar.ForexCalendar`, New York 17:00 Sunday to 17:00
Friday, not ``exchange_calendars``' own ``24/5`` of UTC weekdays). The bars a market should have,
by the canonical intervals, as this product stamps them (DESIGN.md, "Data contract": UTC open times):

* intraday (``1m`` to ``1h``): every interval from each session's open while before its close, the
  last one shortened by the close (``1h`` on XNYS: 13:30, 14:30, ..., 19:30 UTC in summer, as
  Yahoo's chart answers);
* ``1d``: one bar per session, at 00:00 UTC of the session's date;
* ``1wk`` / ``1mo``: one per week (Monday 00:00 UTC) / month (the 1st) holding a session;
* ``24/7``: every bar of the UTC grid (:func:`~market_ingest.intervals.bar_start`).

Checked against recorded answers: Alpha Vantage's 6,047 daily AAPL bars (1999-11-01 to 2023-11-10)
and Yahoo's 3,303 daily TSLA bars (2010-06-29 to 2023-08-11) fall on exactly the XNYS sessions of
those ranges; Yahoo's AAPL 1m chart of 2024-10-02 holds the 390 minutes of that session; Alpha
Vantage's 100 daily EUR/USD bars (2025-12-29 to 2026-05-15) and Yahoo's EURUSD=X days are the 24/5
sessions (every weekday, holidays included).

The warehouse keeps the same sessions in ``market.sessions`` (migration V014; :func:`store_sessions`,
filled by the loads a market and year at a time), against which the coverage ledger counts
expected bars in SQL (:func:`market_ingest.coverage.record`).

Imports ``exchange_calendars`` (and so pandas) inside functions: call from tasks, not at DAG parse.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache

from market_ingest.intervals import INTERVAL_LENGTH, INTRADAY_INTERVALS, Window, bar_end, bar_start, validate_interval

UTC = timezone.utc

#: The calendar of markets that never close (crypto exchanges).
ALWAYS_OPEN = "24/7"
#: The calendar of foreign exchange (:class:`~market_ingest.forex_calendar.ForexCalendar`).
FOREX = "24/5"
#: The market of a symbol without a listed suffix (Yahoo's spelling: ``AAPL``, ``MSFT``).
DEFAULT_MARKET = "XNYS"
#: Listing suffixes and the market each names: Yahoo's (``OCDO.L``; ``=X`` (FX) trades 24/5 and
#: ``=F`` (futures) on CME Globex hours) and Twelve Data's ``SYMBOL:EXCHANGE`` (``VOD:LSE``; its
#: exchange names, documentation "Exchanges"; Euronext's markets share Paris's sessions).
SUFFIX_MARKETS: dict[str, str] = {
    ".L": "XLON",
    ".DE": "XETR",
    ".PA": "XPAR",
    "=X": FOREX,
    "=F": "CMES",
    ":LSE": "XLON",
    ":XETR": "XETR",
    ":Euronext": "XPAR",
    ":TSX": "XTSE",
    ":NASDAQ": "XNYS",
    ":NYSE": "XNYS",
    ":ASX": "XASX",
    ":HKEX": "XHKG",
    ":JPX": "XTKS",
    ":SIX": "XSWX",
}
#: Pairs as Yahoo (``BTC-USD``) and Alpha Vantage (``BTC/EUR``, ``EUR/USD``) spell them: base, quote.
_PAIR = re.compile(r"^([A-Z0-9]{2,10})(?:-(USD|USDT|USDC|EUR|GBP|JPY|BTC|ETH)|/([A-Z]{3,4}))$")


def market_of(symbol: str, configured: str | None = None, *, continuous: bool = False) -> str:
    """The market (calendar name) whose sessions ``symbol``'s bars follow.

    :param symbol: the symbol in its source's spelling (``OCDO.L``, ``BTC/USDT``).
    :param configured: the market set in config for the symbol's universe or source; wins when given.
    :param continuous: the source trades around the clock (crypto exchanges): ``24/7``.
    :return: ``configured``; else ``24/7`` for a continuous source; else ``24/5`` for a pair of
        two fiat currencies (Alpha Vantage's ``EUR/USD``; :func:`is_fiat`) and ``24/7`` for any
        other pair (``BTC-USD``, ``BTC/EUR``); else the market of the symbol's suffix
        (:data:`SUFFIX_MARKETS`: Yahoo's ``EURUSD=X`` is ``24/5``); else :data:`DEFAULT_MARKET`.
    """
    if configured:
        return configured
    if continuous:
        return ALWAYS_OPEN
    pair = _PAIR.match(symbol)
    if pair:
        base, quote = pair.group(1), pair.group(2) or pair.group(3)
        return FOREX if is_fiat(base) and is_fiat(quote) else ALWAYS_OPEN
    for suffix, market in SUFFIX_MARKETS.items():
        if symbol.endswith(suffix):
            return market
    return DEFAULT_MARKET


def is_fiat(code: str) -> bool:
    """True when ``code`` is a currency legal tender somewhere today (``EUR``, ``USD``, ``JPY``,
    ``XOF``; and ``CNH``, the offshore yuan FX vendors quote), by Babel's CLDR territory data (Babel
    is a dependency of Airflow's task SDK). Not crypto (``BTC``, ``ETH``, ``USDT``), not metals or
    funds (``XAU``, ``XDR``), not withdrawn currencies (``DEM``, ``VEF``). A crypto token that
    shares a currency's code (``MNT``, ``TOP``) reads as that currency."""
    return code in _tender()


@lru_cache(maxsize=1)
def _tender() -> frozenset[str]:
    from datetime import date

    from babel.core import get_global
    from babel.numbers import get_territory_currencies

    today = date.today()
    codes = {"CNH"}
    for territory in get_global("territory_currencies"):
        codes.update(get_territory_currencies(territory, today, tender=True, non_tender=False))
    return frozenset(codes)


@lru_cache(maxsize=4)
def _forex_calendar(first_year: int, last_year: int | None = None):
    from market_ingest.forex_calendar import ForexCalendar

    return ForexCalendar(start=f"{first_year}-01-01", end=f"{last_year}-12-31" if last_year else None)


def _calendar(market: str, since: datetime, until_year: int | None = None):
    """``market``'s calendar from 2000 (from ``since``'s year when earlier), built once per process
    and start (``exchange_calendars`` caches it: about 0.3 s for XNYS). ``24/5`` is
    :class:`~market_ingest.forex_calendar.ForexCalendar`.

    :param until_year: the calendar reaches to the end of that year (``exchange_calendars``'
        default: a year from today).
    :raises ValueError: naming the market, when ``exchange_calendars`` has no calendar of that name,
        or when ``since`` is before the earliest date its rules cover.
    """
    import exchange_calendars as xcals

    if market == FOREX:
        return _forex_calendar(min(since.year, 2000), until_year)
    if market not in xcals.get_calendar_names():
        raise ValueError(f"market {market!r} is not an exchange_calendars calendar (for example XNYS, XLON, 24/7)")
    first = min(since.year, 2000)
    try:
        return xcals.get_calendar(market, start=f"{first}-01-01", end=f"{until_year}-12-31" if until_year else None)
    except ValueError as exc:
        raise ValueError(f"market {market}: no calendar from {first}-01-01 ({exc})") from exc


def market_timezone(market: str) -> str:
    """The IANA timezone of ``market``'s calendar (``XNYS``: ``America/New_York``; ``24/7``: ``UTC``;
    ``24/5``: ``America/New_York``), which dates its sessions and so its corporate actions' ex-dates.

    :raises ValueError: as :func:`_calendar`, for a market without a calendar.
    """
    return str(_calendar(market, datetime(2000, 1, 1, tzinfo=UTC)).tz)


def sessions(market: str, window: Window) -> list[tuple[datetime, datetime, datetime]]:
    """The sessions of ``market`` whose date (the session label) falls in ``window``'s UTC dates.

    :param market: a calendar name (:func:`market_of`).
    :param window: ``[start, end)``, UTC.
    :return: ``[(session date at 00:00 UTC, open, close)]``, oldest first; open and close are the
        regular session's UTC instants (early closes included). Empty for a weekend or holiday.
    :raises ValueError: see :func:`_calendar`.
    """
    cal = _calendar(market, window.start)
    last = window.end - timedelta(microseconds=1)
    schedule = cal.schedule.loc[window.start.strftime("%Y-%m-%d") : last.strftime("%Y-%m-%d")]
    return [
        (datetime(label.year, label.month, label.day, tzinfo=UTC), o.to_pydatetime(), c.to_pydatetime())
        for label, o, c in zip(schedule.index, schedule["open"], schedule["close"], strict=True)
    ]


#: Bumped when this module's sessions change for a reason other than ``exchange_calendars``' version
#: (:class:`~market_ingest.forex_calendar.ForexCalendar`, ``24/7``): ``market.sessions`` is filled again.
SESSIONS_VERSION = 1


def session_rows(market: str, year: int) -> list[tuple[date, datetime, datetime, bool]]:
    """Every session of ``market`` dated in ``year``, as ``market.sessions`` stores them.

    :param market: a calendar name (:func:`market_of`); ``24/7``: every UTC day, 00:00 to 24:00.
    :return: ``[(session date, open, close, early close)]``, oldest first; open and close in UTC,
        the close of an early-close day its early close (the sessions :func:`sessions` gives).
    :raises ValueError: see :func:`_calendar`.
    """
    if market == ALWAYS_OPEN:
        first, days = date(year, 1, 1), (date(year + 1, 1, 1) - date(year, 1, 1)).days
        midnights = [datetime.combine(first + timedelta(days=i), datetime.min.time(), UTC) for i in range(days + 1)]
        return [(midnights[i].date(), midnights[i], midnights[i + 1], False) for i in range(days)]
    cal = _calendar(market, datetime(year, 1, 1, tzinfo=UTC), until_year=max(year, date.today().year + 1))
    schedule = cal.schedule.loc[f"{year}-01-01" : f"{year}-12-31"]
    early = set(cal.early_closes)
    return [
        (label.date(), o.to_pydatetime(), c.to_pydatetime(), label in early)
        for label, o, c in zip(schedule.index, schedule["open"], schedule["close"], strict=True)
    ]


def store_sessions(cur, markets: Iterable[str], start: datetime, end: datetime) -> int:
    """Make ``market.sessions`` (migration V014) hold every session of ``markets`` dated from the
    day before ``start`` to the day after ``end``: the (market, year)s not filled yet, or filled by
    another version of ``exchange_calendars`` (or of :data:`SESSIONS_VERSION`), are filled
    (replaced) from :func:`session_rows`, under a transaction-level advisory lock; the others are
    left as they are, so a second call writes nothing.

    Called by the load (:func:`market_ingest.coverage.record`) for the span it records, in its
    transaction: a year is computed once per deployment and version, not per run.

    :param cur: a psycopg cursor (the load's transaction).
    :param start: ``end``: the span, UTC.
    :return: the (market, year)s filled by this call.
    :raises ValueError: a market without a calendar (see :func:`_calendar`), naming it.
    """
    from importlib.metadata import version

    wanted = {(m, y) for m in set(markets) for y in range((start - timedelta(days=1)).year, (end + timedelta(days=1)).year + 1)}
    if not wanted:
        return 0
    stamp = f"exchange_calendars {version('exchange_calendars')}; sessions {SESSIONS_VERSION}"

    def missing() -> list[tuple[str, int]]:
        keys = sorted(wanted)
        cur.execute(
            "SELECT k.market, k.year FROM unnest(%s::text[], %s::int[]) AS k(market, year) "
            "LEFT JOIN market.session_years y USING (market, year) WHERE y.calendars IS DISTINCT FROM %s",
            ([m for m, _ in keys], [y for _, y in keys], stamp),
        )
        return sorted(cur.fetchall())

    if not missing():
        return 0
    cur.execute("SELECT pg_advisory_xact_lock(hashtextextended('market.sessions', 0))")
    todo = missing()  # another load may have filled them while this one waited
    for market, year in todo:
        rows = session_rows(market, year)
        cur.execute(
            "DELETE FROM market.sessions WHERE market = %s AND day >= make_date(%s, 1, 1) AND day < make_date(%s + 1, 1, 1)",
            (market, year, year),
        )
        cur.execute(
            "INSERT INTO market.sessions (market, day, open, close, early_close) "
            "SELECT %s, * FROM unnest(%s::date[], %s::timestamptz[], %s::timestamptz[], %s::boolean[])",
            (market, *([r[i] for r in rows] for i in range(4))),
        )
        cur.execute(
            "INSERT INTO market.session_years (market, year, calendars) VALUES (%s, %s, %s) "
            "ON CONFLICT (market, year) DO UPDATE SET calendars = EXCLUDED.calendars, filled_at = now()",
            (market, year, stamp),
        )
    return len(todo)


def expected_bars(market: str, interval: str, window: Window, now: datetime | None = None) -> list[datetime]:
    """Open times (UTC) of the bars ``market`` should have in ``window`` for ``interval``.

    :param market: a calendar name (:func:`market_of`); ``24/7`` for every bar of the UTC grid.
    :param interval: canonical interval.
    :param window: ``[start, end)``, UTC; a bar belongs to it when its open time does.
    :param now: when given, only bars closed by then (``open + interval <= now``).
    :return: open times, oldest first, each once; about 390 per XNYS session for ``1m``.
    :raises ValueError: a non-canonical interval, or see :func:`_calendar`.
    """
    validate_interval(interval)
    if market == ALWAYS_OPEN:
        times, t = [], bar_start(window.start, interval)
        if t < window.start:
            t = bar_end(t, interval)
        while t < window.end:
            times.append(t)
            t = bar_end(t, interval)
    elif interval in INTRADAY_INTERVALS:
        step = INTERVAL_LENGTH[interval]
        times = []
        # A session may open the day before its date (CME Globex: Sunday evening for Monday).
        for _, open_, close in sessions(market, Window(window.start - timedelta(days=1), window.end + timedelta(days=1))):
            t = open_
            while t < close:
                if window.start <= t < window.end:
                    times.append(t)
                t += step
    elif interval == "1d":
        times = [label for label, _, _ in sessions(market, window)]
    else:  # a week or month holding a session; one opening before the window is not the window's
        opens = {bar_start(label, interval) for label, _, _ in sessions(market, window)}
        times = sorted(t for t in opens if t >= window.start)
    if now is not None:
        times = [t for t in times if bar_end(t, interval) <= now]
    return times


def closed_throughout(market: str, interval: str, window: Window, *, extended_hours: bool = False) -> bool:
    """True when ``market`` has no bar of ``interval`` in ``window`` (a weekend, a holiday): a run
    for it need not ask the vendor. Always False for ``24/7``; for ``24/5``, True for a Saturday
    (and for a Sunday's daily bar, which does not exist).

    :param extended_hours: intraday bars before the open and after the close are kept: then only a
        window with no session dated within a day of it is closed throughout (post-market hours of a
        Friday reach into Saturday in UTC).
    :raises ValueError: see :func:`_calendar`.
    """
    if market == ALWAYS_OPEN:
        return False
    if extended_hours and interval in INTRADAY_INTERVALS:
        return not sessions(market, Window(window.start - timedelta(days=1), window.end + timedelta(days=1)))
    return not expected_bars(market, interval, window)
