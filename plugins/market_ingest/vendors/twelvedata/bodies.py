"""Twelve Data response bodies: classification before parsing, then parsing into canonical bars.

Body facts (Twelve Data's documentation, "Errors"; the recorded and documented bodies in
``include/recordings/twelve_data``, whose PROVENANCE says which is which):

* Data: ``/time_series`` answers ``{"meta", "values", "status": "ok"}``; ``/quote`` a flat object
  with ``symbol``, ``datetime``, ``timestamp``, ``open``, ``high``, ``low``, ``close``, ``volume``,
  ``previous_close``, ``change``, ``percent_change`` and ``is_market_open``.
* Errors: ``{"code": N, "message": "...", "status": "error"}``, with HTTP status 200 or ``N``:
  400 a bad parameter, or "No data is available on the specified dates" (a window without bars);
  401 a missing or invalid key; 403 an endpoint or market the plan does not include; 404 a symbol
  not found (older answers: 400 with the same "**symbol** not found" text); 414 a parameter too long; 429 the credits of the current minute, or of the day, spent;
  500 the vendor's own failure.
* Numbers are strings (``"148.73500"``); FX pairs' values carry no ``volume``.

Stdlib only; :func:`series_to_bars` imports pyarrow when called.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from market_ingest.vendors import Classified, redact

if TYPE_CHECKING:
    import pyarrow as pa

# Body kinds, decided before any parsing.
DATA = "data"
NO_DATA = "no_data"  # 400 "No data is available on the specified dates": the window has no bars
BAD_REQUEST = "bad_request"  # 400, 414: a parameter the vendor refuses; the symbol fails
UNAUTHORIZED = "unauthorized"  # 401: the key is missing or invalid; the task fails at once
PLAN = "plan"  # 403: the plan does not include the endpoint or market; the symbol fails
UNKNOWN_SYMBOL = "unknown_symbol"  # 404: no such symbol
MINUTE_CREDITS = "minute_credits"  # 429 for the current minute: wait for the next one
DAILY_CREDITS = "daily_credits"  # 429 for the day: defer until 00:00 UTC
SERVER = "server"  # 500 and other codes of the vendor's own failures: retry later
UNKNOWN = "unknown"  # a shape we do not know: fail loudly, naming the keys


def classify(body: str, api_key: str | None = None, status: int = 200) -> Classified:
    """Decide what a Twelve Data body is, before any parsing of data.

    :param body: the response text.
    :param api_key: the key in use, redacted from every message.
    :param status: the HTTP status, which names the error when a body is not JSON (a proxy's page).
    :return: a :class:`Classified`; ``kind`` is one of the module's kinds (``data``, ``no_data``,
        ``bad_request``, ``unauthorized``, ``plan``, ``unknown_symbol``, ``minute_credits``,
        ``daily_credits``, ``server``, ``unknown``).
    """
    text = body.strip()
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        kind = SERVER if status >= 500 else UNKNOWN
        return Classified(kind, message=redact(f"HTTP {status}, not JSON ({exc.msg}): {text[:80]!r}", api_key), code=status)
    if not isinstance(doc, dict):
        return Classified(UNKNOWN, message=f"JSON body is a {type(doc).__name__}, not an object")
    keys = tuple(doc)
    if doc.get("status") == "error" or ("code" in doc and "message" in doc and "values" not in doc):
        code = _code(doc.get("code"), status)
        message = redact(str(doc.get("message", "")), api_key)
        low = message.lower()
        if code == 429:
            return Classified(
                DAILY_CREDITS if re.search(r"for the day|per day|daily", low) else MINUTE_CREDITS, doc, message, keys, code
            )
        if code == 400 and "no data is available" in low:
            return Classified(NO_DATA, doc, message, keys, code)
        if code == 401:
            return Classified(UNAUTHORIZED, doc, message, keys, code)
        if code == 403:
            return Classified(PLAN, doc, message, keys, code)
        if code == 404 or (code == 400 and "**symbol** not found" in low):  # older answers: 400 with this text
            return Classified(UNKNOWN_SYMBOL, doc, message, keys, code)
        if code in (400, 414):
            return Classified(BAD_REQUEST, doc, message, keys, code)
        if code is not None and code >= 500:
            return Classified(SERVER, doc, message, keys, code)
        return Classified(UNKNOWN, doc, f"error code {code}: {message}", keys, code)
    if status >= 500:  # a gateway's or proxy's own JSON, not Twelve Data's error shape
        return Classified(SERVER, doc, f"HTTP {status} with a body of keys {sorted(keys)}", keys, status)
    if status == 429:
        return Classified(MINUTE_CREDITS, doc, f"HTTP 429 with a body of keys {sorted(keys)}", keys, status)
    if isinstance(doc.get("values"), list) and isinstance(doc.get("meta"), dict):
        return Classified(DATA, doc, keys=keys)
    if "symbol" in doc and "close" in doc and "datetime" in doc:
        return Classified(DATA, doc, keys=keys)  # a /quote answer
    return Classified(UNKNOWN, doc, f"unknown body shape with keys {sorted(keys)}", keys=keys)


def _code(value: Any, status: int) -> int | None:
    """The error's code: the body's ``code``, else the HTTP status when it is an error status."""
    try:
        return int(value)
    except (TypeError, ValueError):
        return status if status >= 400 else None


def bar_time(stamp: str, tz: str, intraday: bool) -> datetime:
    """UTC bar open time of a Twelve Data ``datetime``.

    Intraday values are wall-clock times in the exchange's zone ``tz`` (``America/New_York``:
    09:30 is 13:30 UTC in summer, 14:30 in winter); daily and longer values are dates (the
    session's, or the week's or month's first), stamped 00:00 UTC as every source's daily bars are.
    """
    if not intraday:
        return datetime.combine(date.fromisoformat(stamp[:10]), datetime.min.time(), timezone.utc)
    return datetime.fromisoformat(stamp).replace(tzinfo=ZoneInfo(tz)).astimezone(timezone.utc)


def series_timezone(doc: dict[str, Any]) -> str:
    """The zone of a ``/time_series`` answer's ``datetime`` values: ``meta.exchange_timezone``, UTC
    where the meta states none (FX and crypto pairs) or states ``UTC``."""
    return str(doc.get("meta", {}).get("exchange_timezone") or "UTC")


def series_currency(doc: dict[str, Any], symbol: str) -> str | None:
    """The currency a series is priced in: a pair's quote side (``EUR/USD``: ``USD``; the meta
    names currencies in words there), else ``meta.currency`` in the product's spelling
    (:data:`~market_ingest.vendors.twelvedata.CURRENCY_SPELLING`: pence are ``GBp``)."""
    from market_ingest.vendors.twelvedata import CURRENCY_SPELLING, pair_of

    pair = pair_of(symbol)
    if pair:
        return pair[1]
    currency = doc.get("meta", {}).get("currency")
    return CURRENCY_SPELLING.get(currency, currency) if currency else None


def series_to_bars(docs: list[dict[str, Any]], *, symbol: str, interval: str, ingested_at: datetime, source: str) -> pa.Table:
    """Canonical bars (``BAR_SCHEMA``) from the ``/time_series`` answers of one symbol, oldest first.

    :param docs: the DATA bodies of the symbol's requests (:func:`classify`); a ``datetime``
        present in two of them (ranges that touch) is kept once, from the first.
    :return: prices as the vendor sent them (asked ``adjust=none``: as traded) in the series'
        currency (:func:`series_currency`); volume in shares or coins, 0 where the vendor states
        none (FX pairs); ``time`` the bar's open, UTC (:func:`bar_time`).
    :raises ValueError: a value that is not a number, naming the bar's ``datetime`` and the field.
    """
    import pyarrow as pa

    from market_ingest.intervals import INTRADAY_INTERVALS
    from market_ingest.schema import conform, empty_bars

    intraday = interval in INTRADAY_INTERVALS
    seen: dict[str, dict[str, Any]] = {}
    tz, currency = "UTC", None
    for doc in docs:
        tz, currency = series_timezone(doc), series_currency(doc, symbol)
        for value in doc["values"]:
            seen.setdefault(str(value.get("datetime")), value)
    if not seen:
        return empty_bars()
    stamps = sorted(seen)
    rows = [seen[s] for s in stamps]

    def numbers(name: str, default: float | None = None) -> list[float]:
        out = []
        for stamp, row in zip(stamps, rows, strict=True):
            raw = row.get(name)
            try:
                out.append(float(raw) if raw not in (None, "") else float("nan") if default is None else default)
            except (TypeError, ValueError):
                raise ValueError(f"bar {stamp}: {name} is {raw!r}, not a number") from None
        return out

    n = len(rows)
    ts = pa.timestamp("us", tz="UTC")
    return conform(
        pa.table(
            {
                "time": pa.array([bar_time(s, tz, intraday) for s in stamps], ts),
                "source": [source] * n,
                "symbol": [symbol] * n,
                "interval": [interval] * n,
                "open": numbers("open"),
                "high": numbers("high"),
                "low": numbers("low"),
                "close": numbers("close"),
                "volume": numbers("volume", 0.0),
                "currency": pa.array([currency] * n, pa.string()),
                "ingested_at": pa.array([ingested_at] * n, ts),
            }
        )
    )


@dataclass(frozen=True)
class Quote:
    """A ``/quote`` snapshot: prices in the listing's currency (or a pair's quote currency), volume
    in shares or coins over ``latest_trading_day`` (``None`` where the vendor states none: FX)."""

    price: float
    open: float
    high: float
    low: float
    previous_close: float
    change: float
    volume: float | None
    latest_trading_day: date
    currency: str | None


def parse_quote(classified: Classified, symbol: str) -> Quote:
    """A quote from a ``/quote`` body of ``symbol`` as configured (``VOD:LSE``; the vendor's own
    ``symbol`` drops the exchange). The last price is its ``close``; ``datetime`` dates the
    trading day.

    :raises ValueError: a missing or non-numeric field, naming it and the symbol.
    """
    q = classified.doc
    try:
        return Quote(
            price=float(q["close"]),
            open=float(q["open"]),
            high=float(q["high"]),
            low=float(q["low"]),
            previous_close=float(q["previous_close"]),
            change=float(q["change"]),
            volume=float(q["volume"]) if q.get("volume") not in (None, "") else None,
            latest_trading_day=date.fromisoformat(str(q["datetime"])[:10]),
            currency=series_currency({"meta": {"currency": q.get("currency")}}, symbol),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"quote of {symbol}: {type(exc).__name__}: {exc}") from None
