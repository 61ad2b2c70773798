"""Alpha Vantage (kind ``alpha_vantage``): its facts, connection form and request planning.

The hook (:class:`market_ingest.hooks.alpha_vantage.AlphaVantageHook`) sends the requests planned
here (:func:`series_params`) and reads the answers with :mod:`market_ingest.vendors.alpha_vantage.bodies`
(classification before parsing, then canonical bars). Everything here is offline.

Vendor facts (Alpha Vantage documentation):

* Intraday series (``TIME_SERIES_INTRADAY``) serve the trailing 30 days, or one month of history
  per request (``month=YYYY-MM``) back to 2000; daily series the latest 100 points (``compact``)
  or the whole history (``full``). So any past window is served (no lookback cap).
* Series carry no currency. Equities are priced in their listing's currency, which the symbol's
  exchange suffix names (``TSCO.LON``, ``SHOP.TRT``, ``MBG.DEX``, ``RELIANCE.BSE``,
  ``600104.SHH``); a symbol without one is a US listing, in USD (:func:`listing_currency`).
* FX pairs (``FX_DAILY``) and digital currencies (``DIGITAL_CURRENCY_DAILY``) are daily only.
* The free key allows 25 requests per day and about 1 per second.
* ``TIME_SERIES_DAILY`` (and the intraday, weekly and monthly series) are as traded. Corporate
  actions are two free functions, ``SPLITS`` and ``DIVIDENDS`` (the whole history of a symbol,
  amounts as traded); asking them is a source's choice (``corporate_actions: true``): two of the
  day's 25 requests per symbol, once a day (:data:`ACTIONS_FUNCTIONS`).

Stdlib only at import time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, cast
from zoneinfo import ZoneInfo

from market_ingest.calendars import is_fiat
from market_ingest.errors import ConfigurationError
from market_ingest.intervals import INTRADAY_INTERVALS, Window, bar_end, validate_interval
from market_ingest.vendors import ConnectionForm, SourceKind, flag_field, number_field

SOURCE = "alpha_vantage"
DEFAULT_URL = "https://www.alphavantage.co/query"
COMPACT_POINTS = 100  # outputsize=compact returns the latest 100 data points (AV documentation)
#: Requests per second and per UTC day of the free key (connection extra ``requests_per_second``, ``daily_budget``).
DEFAULT_REQUESTS_PER_SECOND = 1
DEFAULT_DAILY_BUDGET = 25

#: The functions stating a symbol's corporate actions (free plan; CSV asked, as recorded).
ACTIONS_FUNCTIONS = ("SPLITS", "DIVIDENDS")

#: canonical interval -> (function, interval parameter or None)
INTERVAL_FUNCTIONS = {
    "1m": ("TIME_SERIES_INTRADAY", "1min"),
    "5m": ("TIME_SERIES_INTRADAY", "5min"),
    "15m": ("TIME_SERIES_INTRADAY", "15min"),
    "30m": ("TIME_SERIES_INTRADAY", "30min"),
    "1h": ("TIME_SERIES_INTRADAY", "60min"),
    "1d": ("TIME_SERIES_DAILY", None),
    "1wk": ("TIME_SERIES_WEEKLY", None),
    "1mo": ("TIME_SERIES_MONTHLY", None),
}

#: exchange suffix of an Alpha Vantage symbol -> listing currency (London in pence, spelled ``GBp``
#: as Yahoo spells it, so one currency code means one unit across sources)
SUFFIX_CURRENCY = {
    "LON": "GBp",
    "TRT": "CAD",
    "TRV": "CAD",
    "DEX": "EUR",
    "FRK": "EUR",
    "PAR": "EUR",
    "AMS": "EUR",
    "BSE": "INR",
    "NSE": "INR",
    "SHH": "CNY",
    "SHZ": "CNY",
}


def regular_sessions(window) -> list[tuple[datetime, datetime]]:
    """US equities' regular sessions, 09:30-16:00 US/Eastern on each weekday the window touches, UTC.

    Alpha Vantage's intraday series cover US listings, with extended hours 04:00-20:00 ET by
    default (documentation of ``TIME_SERIES_INTRADAY``, ``extended_hours``); exchange holidays need
    no entry (no bars are sent for them).
    """
    eastern = ZoneInfo("US/Eastern")
    day = window.start.astimezone(eastern).date()
    sessions = []
    while day <= window.end.astimezone(eastern).date():
        if day.weekday() < 5:
            opened = datetime(day.year, day.month, day.day, 9, 30, tzinfo=eastern)
            sessions.append((opened.astimezone(timezone.utc), opened.replace(hour=16, minute=0).astimezone(timezone.utc)))
        day += timedelta(days=1)
    return sessions


def listing_currency(symbol: str) -> str | None:
    """The currency an Alpha Vantage equity symbol is priced in: ``USD`` without an exchange suffix,
    the suffix's currency (:data:`SUFFIX_CURRENCY`) with one, ``None`` for a suffix not listed."""
    base, dot, suffix = symbol.upper().rpartition(".")
    if not dot or not base:
        return "USD"
    return SUFFIX_CURRENCY.get(suffix)


def pair_kind(symbol: str) -> tuple[str, str, str] | None:
    """``("fx"|"crypto", base, quote)`` for ``BASE/QUOTE`` symbols, ``None`` for listings like ``IBM``.

    Both sides fiat (:func:`market_ingest.calendars.is_fiat`, the same test that puts the pair on
    the 24/5 calendar) is an FX pair (``FX_DAILY``); a non-fiat base on a fiat market is a digital
    currency (``DIGITAL_CURRENCY_DAILY``), priced in that market.

    :raises ConfigurationError: for a pair whose quote side is not a fiat currency.
    """
    if "/" not in symbol:
        return None
    base, _, quote = symbol.upper().partition("/")
    if not is_fiat(quote):
        raise ConfigurationError(SOURCE, f"{symbol}: Alpha Vantage prices pairs in a fiat market; {quote} is not one", symbol)
    return ("fx" if is_fiat(base) else "crypto"), base, quote


def planned_requests(src: Any, interval: str, window: Window, now: datetime) -> int:
    """Requests for one symbol over ``window``, as :func:`series_params` plans them, without a
    connection: one per month the window touches for intraday windows starting more than 30 days
    before ``now``, else one.

    :param src: the source's config (unused: every source of the kind plans alike).
    """
    validate_interval(interval)
    if interval in INTRADAY_INTERVALS and window.start < now - timedelta(days=30):
        months, cursor = 0, window.start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        while cursor < window.end:
            months += 1
            cursor = bar_end(cursor, "1mo")
        return months
    return 1


def series_params(
    symbol: str, interval: str, window: Window, now: datetime, *, premium: bool = False, source: str = SOURCE
) -> list[dict[str, str]]:
    """The requests serving ``window`` for ``symbol`` at the vendor's time ``now``.

    Intraday: ``TIME_SERIES_INTRADAY`` with ``month=YYYY-MM`` for each month the window
    touches when it starts more than 30 days back, else the trailing series. Daily:
    ``TIME_SERIES_DAILY`` (``_ADJUSTED`` on a premium key), ``compact`` when the window starts
    within the latest 100 points, else ``full``. Weekly and monthly: the whole series.

    :param premium: the key is on a premium plan (daily bars from ``TIME_SERIES_DAILY_ADJUSTED``).
    :param source: the configured source name, for errors.
    :return: the query parameters of each request (without the API key).
    :raises ConfigurationError: naming the symbol: a pair asked for other than daily bars, or a
        pair whose market is not a fiat currency (:func:`pair_kind`).
    """
    validate_interval(interval)
    function, av_interval = INTERVAL_FUNCTIONS[interval]
    pair = pair_kind(symbol)
    if pair:
        kind, from_symbol, quote = pair
        if interval != "1d":
            raise ConfigurationError(
                source, f"{symbol}: only daily bars are fetched for FX and crypto pairs, not {interval}", symbol
            )
        if kind == "fx":
            compact = window.start >= now - timedelta(days=COMPACT_POINTS * 7 // 5 - 10)
            return [
                {
                    "function": "FX_DAILY",
                    "from_symbol": from_symbol,
                    "to_symbol": quote,
                    "outputsize": "compact" if compact else "full",
                }
            ]
        return [{"function": "DIGITAL_CURRENCY_DAILY", "symbol": from_symbol, "market": quote}]
    if interval in INTRADAY_INTERVALS:
        # extended_hours=true is Alpha Vantage's default, asked explicitly: pre- and post-market
        # bars are kept or counted by the caller (fetch_bars' extended_hours), never unseen.
        base: dict[str, str] = {
            "function": function,
            "symbol": symbol,
            "interval": cast(str, av_interval),  # every intraday interval has one
            "outputsize": "full",
            "extended_hours": "true",
        }
        if window.start >= now - timedelta(days=30):
            return [base]
        months, cursor = [], window.start.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        while cursor < window.end:
            months.append({**base, "month": f"{cursor:%Y-%m}"})
            cursor = bar_end(cursor, "1mo")
        return months
    if interval == "1d":
        if premium:
            function = "TIME_SERIES_DAILY_ADJUSTED"
        compact = window.start >= now - timedelta(days=COMPACT_POINTS * 7 // 5 - 10)  # 100 sessions, with holidays
        return [{"function": function, "symbol": symbol, "outputsize": "compact" if compact else "full"}]
    return [{"function": function, "symbol": symbol}]


#: Alpha Vantage symbols: listings (``IBM``, ``BRK.B``, ``TSCO.LON``) and ``BASE/QUOTE`` pairs
#: (``EUR/USD``, ``BTC/EUR``). Full daily history; intraday by month back to 2000: no lookback cap.
KIND = SourceKind(
    "alpha_vantage",
    r"[A-Za-z0-9][A-Za-z0-9.-]{0,15}|[A-Za-z]{2,10}/[A-Za-z]{3}",
    hook="market_ingest.hooks.alpha_vantage.AlphaVantageHook",
    planned_requests=planned_requests,
    defers=True,
    extended_hours=True,
    quote_request_per_symbol=True,
    actions_requests=len(ACTIONS_FUNCTIONS),
    conn_type="alpha_vantage",
    default_conn_id="market_alpha_vantage",
    form=ConnectionForm(
        hook_name="Alpha Vantage",
        integration="Alpha Vantage",
        doc_url="https://www.alphavantage.co/documentation/",
        fields={
            "premium": flag_field(
                "Premium plan", "The key is on a premium plan: daily bars come from TIME_SERIES_DAILY_ADJUSTED."
            ),
            "requests_per_second": number_field(
                "Requests per second",
                "Spacing of the hook's requests; the free key allows 1 per second.",
                DEFAULT_REQUESTS_PER_SECOND,
            ),
            "daily_budget": number_field(
                "Daily budget", "Requests per UTC day shared by every task (the free key: 25).", DEFAULT_DAILY_BUDGET, "integer"
            ),
        },
        behaviour={
            "hidden-fields": ["schema", "login", "port", "extra"],
            "relabeling": {"password": "API key", "host": "Query endpoint URL (optional)"},
            "placeholders": {"host": DEFAULT_URL},
        },
    ),
)
