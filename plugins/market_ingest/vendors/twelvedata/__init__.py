"""Twelve Data (kind ``twelvedata``): its facts, connection form and request planning.

The hook (:class:`market_ingest.hooks.twelve_data.TwelveDataHook`) sends the requests planned here
(:func:`series_params`) and reads the answers with :mod:`market_ingest.vendors.twelvedata.bodies`
(classification before parsing, then canonical bars). Everything here is offline.

Vendor facts (Twelve Data's documentation, https://twelvedata.com/docs, and support articles):

* ``GET /time_series`` answers ``{"meta": {...}, "values": [{"datetime", "open", "high", "low",
  "close", "volume"}, ...], "status": "ok"}``, newest first, at most 5,000 points per request
  ("Getting historical data", support article 5214728). ``start_date`` and ``end_date`` bound the
  answer; the end is exclusive (the article's ``end_date=2020-05-06`` answers 2020-05-05 and
  earlier). Both are read in the exchange's time zone unless ``timezone`` is given, and the
  answer's ``datetime`` values are the exchange's wall clock (``meta.exchange_timezone``;
  FX and crypto answers carry none and are UTC).
* Intervals ``1min 5min 15min 30min 45min 1h 2h 4h 1day 1week 1month``; the canonical ones map
  one to one (:data:`INTERVALS`). ``datetime`` is the bar's start.
* Daily, weekly and monthly prices are split-adjusted by default and intraday ones are not
  ("Are the prices adjusted?", support article 5179064); ``adjust=none`` asks every interval as
  traded, which is what the product stores, so every request carries it.
* A listing outside the US is named ``SYMBOL:EXCHANGE`` (``VOD:LSE``, ``RY:TSX``; documentation,
  "Exchanges"); the exchange names its calendar (:data:`market_ingest.calendars.SUFFIX_MARKETS`).
* Credits: ``/time_series`` and ``/quote`` cost 1 credit per symbol ("Credits", support article
  5615854); the Basic plan allows 8 per minute and 800 per day, the day resetting at 00:00 UTC;
  paid plans have no daily cap. Running out answers code 429.
* FX pairs carry no volume: their bars are stored with volume 0, and the run note says so.

Stdlib only at import time.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import Any

from market_ingest.calendars import is_fiat
from market_ingest.intervals import INTERVAL_LENGTH, Window, validate_interval
from market_ingest.vendors import ConnectionForm, SourceKind, number_field

SOURCE = "twelvedata"
DEFAULT_URL = "https://api.twelvedata.com"
#: Points per ``/time_series`` answer at most (support article 5214728).
MAX_POINTS = 5000
#: The Basic plan's credits per minute and per UTC day (connection extra ``credits_per_minute``,
#: ``daily_credits``; ``daily_credits`` 0: no daily cap, as on paid plans).
DEFAULT_CREDITS_PER_MINUTE = 8
DEFAULT_DAILY_CREDITS = 800
#: canonical interval -> Twelve Data's ``interval``
INTERVALS = {
    "1m": "1min",
    "5m": "5min",
    "15m": "15min",
    "30m": "30min",
    "1h": "1h",
    "1d": "1day",
    "1wk": "1week",
    "1mo": "1month",
}
#: Twelve Data's spelling of the currencies it states in ``meta.currency`` that the product spells
#: otherwise: London prices in pence are ``GBp`` in every source (as Yahoo spells them).
CURRENCY_SPELLING = {"GBX": "GBp", "GBp": "GBp", "ZAc": "ZAc", "ILA": "ILA"}


def pair_of(symbol: str) -> tuple[str, str] | None:
    """``(base, quote)`` of a ``BASE/QUOTE`` pair (``EUR/USD``, ``BTC/USD``); ``None`` for a listing."""
    if "/" not in symbol:
        return None
    base, _, quote = symbol.upper().partition("/")
    return base, quote


def is_fx(symbol: str) -> bool:
    """True for a pair of two fiat currencies (``EUR/USD``): no volume, the 24/5 market."""
    pair = pair_of(symbol)
    return pair is not None and is_fiat(pair[0]) and is_fiat(pair[1])


def _chunk_days(interval: str) -> int:
    """Whole days one request may span without passing :data:`MAX_POINTS`, counting every bar of
    a 24-hour day (crypto), so that no market's day overflows it."""
    per_day = timedelta(days=1) / INTERVAL_LENGTH[interval] if interval in INTERVAL_LENGTH else 1
    if interval == "1wk":
        return MAX_POINTS * 7
    if interval == "1mo":
        return MAX_POINTS * 28
    return max(1, int(MAX_POINTS // max(per_day, 1)))


def date_chunks(interval: str, window: Window) -> list[tuple[date, date]]:
    """The ``[start_date, end_date)`` exchange-local date ranges serving ``window``, each within
    :data:`MAX_POINTS` points.

    The answer's dates are the exchange's, which differ from UTC's by less than a day: the ranges
    cover ``window``'s UTC dates with a day more on each side, and the extract step keeps the bars
    opening in the window.
    """
    validate_interval(interval)
    first = window.start.date() - timedelta(days=1)
    last = (window.end - timedelta(microseconds=1)).date() + timedelta(days=2)  # exclusive
    step = timedelta(days=_chunk_days(interval))
    chunks, cursor = [], first
    while cursor < last:
        chunks.append((cursor, min(cursor + step, last)))
        cursor += step
    return chunks


def planned_requests(src: Any, interval: str, window: Window, now: datetime) -> int:
    """Requests (and credits) for one symbol over ``window``: one per :func:`date_chunks` range.

    :param src: the source's config (unused: every source of the kind plans alike).
    """
    return len(date_chunks(interval, window))


def series_params(symbol: str, interval: str, window: Window) -> list[dict[str, str]]:
    """The ``/time_series`` queries serving ``window`` for ``symbol`` (without the API key, which
    travels in the ``Authorization`` header), oldest range first.

    :return: one dict of query parameters per range: ``symbol`` as configured (``VOD:LSE`` names
        its exchange), ``interval`` (:data:`INTERVALS`), ``start_date`` and ``end_date``
        (``YYYY-MM-DD``, exchange-local, end exclusive), ``outputsize`` 5000, ``adjust=none``
        (as traded, every interval).
    """
    return [
        {
            "symbol": symbol,
            "interval": INTERVALS[interval],
            "start_date": f"{start:%Y-%m-%d}",
            "end_date": f"{end:%Y-%m-%d}",
            "outputsize": str(MAX_POINTS),
            "adjust": "none",
        }
        for start, end in date_chunks(interval, window)
    ]


#: Twelve Data symbols: listings (``AAPL``, ``BRK.B``), listings on a named exchange (``VOD:LSE``,
#: ``SAP:XETR``) and ``BASE/QUOTE`` pairs (``EUR/USD``, ``BTC/USD``). Daily history back to each
#: symbol's first trading day; intraday for a few years (1-minute from 2020-02-10): no cap stated
#: per request, so no lookback cap here (an empty answer is reported as no data).
KIND = SourceKind(
    SOURCE,
    r"[A-Za-z0-9][A-Za-z0-9.-]{0,15}(:[A-Za-z0-9]{2,12})?|[A-Za-z0-9]{2,10}/[A-Za-z0-9]{2,10}",
    hook="market_ingest.hooks.twelve_data.TwelveDataHook",
    planned_requests=planned_requests,
    defers=True,
    quote_request_per_symbol=True,
    conn_type="twelvedata",
    default_conn_id="market_twelvedata",
    form=ConnectionForm(
        hook_name="Twelve Data",
        integration="Twelve Data",
        doc_url="https://twelvedata.com/docs",
        fields={
            "credits_per_minute": number_field(
                "API credits per minute",
                "Credits the plan allows per minute, shared by every task on this key (Basic: 8).",
                DEFAULT_CREDITS_PER_MINUTE,
                "integer",
            ),
            "daily_credits": number_field(
                "API credits per day",
                "Credits per UTC day shared by every task (Basic: 800); 0 on a paid plan, which has no daily cap.",
                DEFAULT_DAILY_CREDITS,
                "integer",
            ),
        },
        behaviour={
            "hidden-fields": ["schema", "login", "port", "extra"],
            "relabeling": {"password": "API key", "host": "API base URL (optional)"},
            "placeholders": {"host": DEFAULT_URL},
        },
    ),
)
