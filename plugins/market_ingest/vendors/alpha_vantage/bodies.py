"""Alpha Vantage response bodies: classification before parsing, then parsing into canonical rows.

Body facts (DESIGN.md, "Vendor facts", and the recorded bodies in ``include/recordings/alpha_vantage``):

* Every answer is HTTP 200. Errors are JSON bodies: ``Error Message`` (bad call or symbol),
  ``Information`` (daily quota "25 requests per day", burst "1 request per second", or a premium
  endpoint), ``Note`` (the 2018-2023 throttle text "5 calls per minute and 500 calls per day"), and
  ``{"endpoint", "message": "This is a premium endpoint..."}`` for premium functions.
* The quota body echoes the API key on some plans, and the key is a query parameter: every text
  that leaves this module passes through :func:`redact`.
* Data keys are numbered (``"1. open"``, ``"1a. open (CNY)"``); meta names the time zone
  (``"6. Time Zone": "US/Eastern"``). CSV answers (``datatype=csv``) carry no meta: equities are
  US/Eastern, FX and crypto UTC.
* Intraday stamps mark the bar's **start** (US/Eastern wall clock), and the product stores bars by
  their open time: the recorded ``TIME_SERIES_INTRADAY`` IBM 5min answer of 2026-05-15 (extended
  hours, 04:00-20:00 ET) ends the day at ``19:55:00``, the bar 19:55-20:00. The retired
  ``TIME_SERIES_INTRADAY_EXTENDED`` stamped bar ends instead (its recorded MSFT 1min days run
  ``04:01`` .. ``20:00``); nothing here calls it. So did ``TIME_SERIES_INTRADAY`` around 2020 (the
  recorded IBM 5min day of 2020-08-21: the ``09:30`` bar holds pre-market volume, the ``16:00`` one
  the closing auction): a source replaying such bodies declares ``bar_stamp: end`` and the extract
  step moves each time back one interval (:func:`market_ingest.extract.bar_ends_to_opens`).
* Series carry no currency: the caller states it (:func:`market_ingest.vendors.alpha_vantage.listing_currency`).

Stdlib only; :func:`rows_to_bars` imports pyarrow when called.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from market_ingest.vendors import Classified, redact
from market_ingest.vendors.alpha_vantage import SOURCE

if TYPE_CHECKING:
    import pyarrow as pa

    from market_ingest.actions import CorporateAction

# Body kinds, decided before any parsing.
DATA = "data"
ERROR_MESSAGE = "error_message"  # bad symbol or call: skip the symbol, report it
PREMIUM = "premium"  # the function needs a paid plan: configuration error, fail fast
BURST = "burst"  # per-second/per-minute throttle: retry with backoff
DAILY_QUOTA = "daily_quota"  # daily request budget spent: stop calling until 00:00 UTC
UNKNOWN = "unknown"  # a shape we do not know: fail loudly, naming the keys

_NUMBERED = re.compile(r"^\s*\d+[a-z]?\.\s*")
__all__ = ["Classified", "classify", "redact"]  # Classified and redact are market_ingest.vendors'


def classify(body: str, api_key: str | None = None) -> Classified:
    """Decide what an Alpha Vantage body is, before any parsing of data.

    :param body: the response text (JSON or CSV).
    :param api_key: the key in use, redacted from every message.
    :return: a :class:`Classified`; ``kind`` is one of ``data``, ``error_message``, ``premium``,
        ``burst``, ``daily_quota``, ``unknown``.
    """
    text = body.strip()
    if not text.startswith(("{", "[")):
        first = text.splitlines()[0].lower() if text else ""
        if first.startswith(("timestamp,", "time,", "symbol,", "effective_date,", "ex_dividend_date,")):
            return Classified(DATA, text)
        return Classified(UNKNOWN, message=redact(f"not JSON and no known CSV header: {text[:80]!r}", api_key))
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        return Classified(UNKNOWN, message=f"unparsable JSON body ({exc.msg} at char {exc.pos})")
    if not isinstance(doc, dict):
        return Classified(UNKNOWN, message=f"JSON body is a {type(doc).__name__}, not an object")
    keys = tuple(doc)
    if "Error Message" in doc:
        return Classified(ERROR_MESSAGE, doc, redact(str(doc["Error Message"]), api_key), keys)
    notice = doc.get("Information") or doc.get("Note") or doc.get("message")
    if notice and not any(k.startswith(("Meta Data", "Time Series")) for k in keys):
        low = str(notice).lower()
        message = redact(str(notice), api_key)
        if re.search(r"per day", low) and not re.search(r"per (minute|second)", low):
            return Classified(DAILY_QUOTA, doc, message, keys)
        if re.search(r"per (minute|second)|burst|spreading out", low):
            return Classified(BURST, doc, message, keys)
        if "premium" in low:
            return Classified(PREMIUM, doc, message, keys)
        return Classified(UNKNOWN, doc, message, keys)
    if "Global Quote" in doc:
        if not doc["Global Quote"]:  # {"Global Quote": {}}: Alpha Vantage's answer for an unknown symbol
            return Classified(ERROR_MESSAGE, doc, "empty Global Quote: unknown symbol", keys)
        return Classified(DATA, doc, keys=keys)
    if any("Time Series" in k for k in keys) or (isinstance(doc.get("data"), list) and "symbol" in doc):
        return Classified(DATA, doc, keys=keys)  # a series, or SPLITS / DIVIDENDS ({"symbol", "data": [...]})
    return Classified(UNKNOWN, doc, f"unknown body shape with keys {sorted(keys)}", keys)


def _strip(key: str) -> str:
    """``"1a. open (CNY)"`` -> ``"open (CNY)"``; ``"5. adjusted close"`` -> ``"adjusted close"``."""
    return _NUMBERED.sub("", key).strip().lower()


@dataclass(frozen=True)
class Row:
    """One bar as Alpha Vantage states it: local time (naive) or date, prices in ``currency``."""

    stamp: str
    open: float
    high: float
    low: float
    close: float
    volume: float
    adj_close: float | None = None
    dividend: float | None = None
    split_ratio: float | None = None


def _field(values: dict[str, str], name: str, currency: str | None) -> str:
    """Look up ``name`` among de-numbered keys, preferring ``"<name> (<currency>)"``.

    :raises ValueError: neither key is there.
    """
    if currency and f"{name} ({currency.lower()})" in values:
        return values[f"{name} ({currency.lower()})"]
    if name not in values:
        raise ValueError(f"no {name!r} value")
    return values[name]


def parse_series_json(doc: dict, market: str | None = None) -> tuple[list[Row], str]:
    """Rows and time zone of a ``Time Series ...`` JSON body.

    :param doc: the parsed body (classified ``data``).
    :param market: for ``DIGITAL_CURRENCY_*``, the market currency whose prices to take (``CNY``).
    :return: ``(rows newest-first as sent, IANA time zone of the stamps)``.
    :raises ValueError: naming the key, when a value is not a number.
    """
    meta = {_strip(k): v for k, v in doc.get("Meta Data", {}).items()}
    tz = meta.get("time zone", "UTC")
    series_key = next(k for k in doc if "Time Series" in k)
    rows = []
    for stamp, raw in doc[series_key].items():
        values = {_strip(k): v for k, v in raw.items()}
        try:
            rows.append(
                Row(
                    stamp=stamp,
                    open=float(_field(values, "open", market)),
                    high=float(_field(values, "high", market)),
                    low=float(_field(values, "low", market)),
                    close=float(_field(values, "close", market)),
                    volume=float(values.get("volume", 0) or 0),
                    adj_close=float(values["adjusted close"]) if "adjusted close" in values else None,
                    dividend=float(values["dividend amount"]) if "dividend amount" in values else None,
                    split_ratio=float(values["split coefficient"]) if "split coefficient" in values else None,
                )
            )
        except (TypeError, ValueError) as exc:
            raise ValueError(f"{series_key}[{stamp}]: not a number: {exc}") from None
    return rows, tz


def parse_series_csv(text: str, tz: str) -> list[Row]:
    """Rows of a CSV time series (``timestamp,open,high,low,close[,adjusted_close],volume,...``).

    :param tz: the time zone of the stamps (CSV carries no meta; see the module docstring).
    """
    reader = csv.DictReader(io.StringIO(text))
    rows = []
    for rec in reader:
        stamp = rec.get("timestamp") or rec.get("time") or ""
        rows.append(
            Row(
                stamp=stamp,
                open=float(rec["open"]),
                high=float(rec["high"]),
                low=float(rec["low"]),
                close=float(rec["close"]),
                volume=float(rec.get("volume") or 0),
                adj_close=float(rec["adjusted_close"]) if rec.get("adjusted_close") else None,
                dividend=float(rec["dividend_amount"]) if rec.get("dividend_amount") else None,
                split_ratio=float(rec["split_coefficient"]) if rec.get("split_coefficient") else None,
            )
        )
    return rows


def bar_time(stamp: str, tz: str, intraday: bool) -> datetime:
    """UTC bar open time of an Alpha Vantage stamp.

    Intraday stamps are local wall-clock times in ``tz`` (``US/Eastern`` observes daylight saving:
    09:30 is 13:30 UTC in summer and 14:30 UTC in winter). Daily and longer stamps are dates,
    stamped 00:00 UTC of that date as every source's daily bars are.
    """
    if not intraday:
        return datetime.combine(date.fromisoformat(stamp[:10]), datetime.min.time(), timezone.utc)
    local = datetime.fromisoformat(stamp).replace(tzinfo=ZoneInfo(tz))
    return local.astimezone(timezone.utc)


def rows_to_bars(
    rows: list[Row], *, symbol: str, interval: str, tz: str, currency: str | None, ingested_at: datetime, source: str = SOURCE
) -> pa.Table:
    """Canonical bars (``BAR_SCHEMA``) from parsed rows, oldest first; ``source`` is the configured
    source name written into every row (default ``alpha_vantage``)."""
    import pyarrow as pa

    from market_ingest.intervals import INTRADAY_INTERVALS
    from market_ingest.schema import conform, empty_bars

    if not rows:
        return empty_bars()
    intraday = interval in INTRADAY_INTERVALS
    rows = sorted(rows, key=lambda r: r.stamp)
    n = len(rows)
    ts = pa.timestamp("us", tz="UTC")
    return conform(
        pa.table(
            {
                "time": pa.array([bar_time(r.stamp, tz, intraday) for r in rows], ts),
                "source": [source] * n,
                "symbol": [symbol] * n,
                "interval": [interval] * n,
                "open": [r.open for r in rows],
                "high": [r.high for r in rows],
                "low": [r.low for r in rows],
                "close": [r.close for r in rows],
                "volume": [r.volume for r in rows],
                "adj_close": pa.array([r.adj_close for r in rows], pa.float64()),
                "dividend": pa.array([r.dividend for r in rows], pa.float64()),
                "split_ratio": pa.array([r.split_ratio for r in rows], pa.float64()),
                "currency": pa.array([currency] * n, pa.string()),
                "ingested_at": pa.array([ingested_at] * n, ts),
            }
        )
    )


@dataclass(frozen=True)
class Quote:
    """A ``GLOBAL_QUOTE`` snapshot, prices in the listing currency, volume in shares."""

    symbol: str
    price: float
    open: float
    high: float
    low: float
    previous_close: float
    change: float
    volume: float
    latest_trading_day: date


def parse_quote(classified: Classified) -> Quote:
    """A quote from a ``GLOBAL_QUOTE`` body, JSON (numbered keys) or CSV (``symbol,open,...``)."""
    if isinstance(classified.doc, dict):
        q = {_strip(k): v for k, v in classified.doc["Global Quote"].items()}
        day, prev = q["latest trading day"], q["previous close"]
    else:
        q = next(csv.DictReader(io.StringIO(classified.doc)))
        day, prev = q["latestDay"], q["previousClose"]
    return Quote(
        symbol=q["symbol"],
        price=float(q["price"]),
        open=float(q["open"]),
        high=float(q["high"]),
        low=float(q["low"]),
        previous_close=float(prev),
        change=float(q["change"]),
        volume=float(q["volume"]),
        latest_trading_day=date.fromisoformat(day),
    )


def parse_actions(
    splits: Any, dividends: Any, *, symbol: str, currency: str | None, clock: datetime, source: str
) -> list[CorporateAction]:
    """The corporate actions of ``SPLITS`` and ``DIVIDENDS`` answers, as traded.

    :param splits: the ``SPLITS`` answer: CSV text (``effective_date,split_factor``) or JSON
        (``{"symbol", "data": [{"effective_date", "split_factor"}]}``); ``split_factor`` is new shares
        per old (IBM's 2021-11-04 Kyndryl spin-off is stated as a split of 1.046).
    :param dividends: the ``DIVIDENDS`` answer: CSV (``ex_dividend_date,declaration_date,record_date,
        payment_date,amount``) or JSON with those keys; amounts are cash per share as traded on the
        ex-date (IBM's 1999-05-06 dividend is 0.24, before its 2:1 split of 1999-05-27).
    :param currency: the listing's currency (Alpha Vantage states none).
    :param clock: its answer's ``Date``: ``first_seen`` and ``extracted_at`` of every action.
    :return: :class:`~market_ingest.actions.CorporateAction` values, oldest first.
    :raises ValueError: naming the source and symbol, when a row lacks its date or value.
    """
    from market_ingest.actions import DIVIDEND, SPLIT, CorporateAction

    def rows(answer: Any) -> list[dict]:
        if isinstance(answer, dict):
            return list(answer.get("data") or [])
        return list(csv.DictReader(io.StringIO(answer or "")))

    actions = []
    try:
        for r in rows(splits):
            actions.append(
                CorporateAction(
                    source,
                    symbol,
                    date.fromisoformat(r["effective_date"]),
                    SPLIT,
                    ratio=float(r["split_factor"]),
                    first_seen=clock,
                    extracted_at=clock,
                )
            )
        for r in rows(dividends):
            actions.append(
                CorporateAction(
                    source,
                    symbol,
                    date.fromisoformat(r["ex_dividend_date"]),
                    DIVIDEND,
                    amount=float(r["amount"]),
                    currency=currency,
                    first_seen=clock,
                    extracted_at=clock,
                )
            )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{source}:{symbol}: a corporate action Alpha Vantage stated cannot be read ({type(exc).__name__}: {exc})"
        ) from None
    return sorted(actions, key=lambda a: (a.ex_date, a.kind))
