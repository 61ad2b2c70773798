"""Alpha Vantage's query API (``www.alphavantage.co/query``), JSON answers.

Behaviour (recorded bodies in ``tests/fixtures/alpha_vantage`` and ``include/recordings/alpha_vantage``):

* every answer is HTTP 200; a missing key answers ``Error Message`` ("the parameter apikey is
  invalid or missing"); a symbol without data answers ``Error Message`` ("Invalid API call...");
* ``outputsize=compact`` (the default) answers the latest 100 points, ``full`` all of them, for
  the functions that take ``outputsize`` (:data:`OUTPUTSIZE_FUNCTIONS`); every other series
  (``TIME_SERIES_WEEKLY``, ``DIGITAL_CURRENCY_DAILY``, ...) is answered whole, as recorded;
  intraday ``month=YYYY-MM`` answers that month only; newest point first;
* the burst limit answers the recorded ``Note`` body and the daily quota the ``Information`` body,
  which echoes the API key as Alpha Vantage's does (the pipeline must redact it);
* intraday stamps are US/Eastern wall-clock times, daily stamps are dates.

Recordings are indexed by endpoint = ``function`` and symbol = ``symbol`` (or ``from_symbol/to_symbol``
for FX, ``symbol/market`` for digital currencies).
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from standin import synthetic
from standin.core import NotServed, Request, Response
from standin.recordings import DAY_MS, INTERVAL_MS, Recording

VENDOR = "alpha_vantage"
HOSTS = ("www.alphavantage.co",)
EASTERN = ZoneInfo("US/Eastern")
_NUMBERED = re.compile(r"^\s*\d+[a-z]?\.\s*")  # "6. Time Zone" -> "Time Zone"
AV_INTERVALS = {"1min": "1m", "5min": "5m", "15min": "15m", "30min": "30m", "60min": "1h"}
#: Functions with an ``outputsize`` parameter (compact: the latest 100 points), per Alpha Vantage's
#: documentation; the others (weekly, monthly, DIGITAL_CURRENCY_*) always answer the whole series.
OUTPUTSIZE_FUNCTIONS = frozenset(
    {"TIME_SERIES_INTRADAY", "TIME_SERIES_DAILY", "TIME_SERIES_DAILY_ADJUSTED", "FX_INTRADAY", "FX_DAILY", "CRYPTO_INTRADAY"}
)
SERIES_FUNCTIONS = {
    "TIME_SERIES_DAILY": ("1d", "Time Series (Daily)", "Daily Prices (open, high, low, close) and Volumes"),
    "TIME_SERIES_DAILY_ADJUSTED": ("1d", "Time Series (Daily)", "Daily Time Series with Splits and Dividend Events"),
    "TIME_SERIES_WEEKLY": ("1wk", "Weekly Time Series", "Weekly Prices (open, high, low, close) and Volumes"),
    "TIME_SERIES_MONTHLY": ("1mo", "Monthly Time Series", "Monthly Prices (open, high, low, close) and Volumes"),
    "TIME_SERIES_INTRADAY": (None, None, None),
}
# Recorded bodies (tests/fixtures/alpha_vantage/av_ERROR_Note_5calls_per_minute_2018-11.json and
# av_ERROR_Information_rate_limit_25_per_day_2025-12.json); the daily one names the key it was sent.
BURST_NOTE = (
    "Thank you for using Alpha Vantage! Our standard API call frequency is 5 calls per minute and 500 calls per day. "
    "Please visit https://www.alphavantage.co/premium/ if you would like to target a higher API call frequency."
)
DAILY_INFORMATION = (
    "We have detected your API key as {key} and our standard API rate limit is 25 requests per day. "
    "Please subscribe to any of the premium plans at https://www.alphavantage.co/premium/ to instantly remove all daily rate limits."
)


def series_symbol(query: dict[str, str]) -> str | None:
    """The recording index's symbol of a query: ``symbol``, ``FROM/TO`` for FX, ``SYMBOL/MARKET`` for crypto."""
    if "from_symbol" in query:
        return f"{query['from_symbol']}/{query.get('to_symbol', '')}"
    if query.get("function", "").startswith("DIGITAL_CURRENCY") and "market" in query:
        return f"{query.get('symbol')}/{query['market']}"
    return query.get("symbol")


def extent(rec: Recording) -> tuple[int, int] | None:
    """First bar's open to last bar's end, epoch ms, of a series body (JSON or CSV).

    Intraday stamps are wall-clock times in the meta's ``Time Zone`` (a CSV carries no meta: US/Eastern
    for listings, UTC for pairs such as ``ETH/USD``); daily and longer stamps are dates, 00:00 UTC.
    The bar's length is the sidecar's ``interval``, else the meta's ``Interval``, else the
    function's (``TIME_SERIES_WEEKLY``: a week), else a day for dates and the smallest step
    between stamps for times.
    """
    text = rec.body.decode("utf-8", "replace").strip()
    meta: dict[str, str] = {}
    try:
        if text.startswith("{"):
            doc = json.loads(text)
            key = next(k for k in doc if "Time Series" in k)
            stamps = sorted(doc[key])
            meta = {_NUMBERED.sub("", k).strip().lower(): str(v) for k, v in doc.get("Meta Data", {}).items()}
        else:
            lines = text.splitlines()
            if not lines or not lines[0].lower().startswith(("timestamp,", "time,")):
                return None
            stamps = sorted(line.split(",", 1)[0] for line in lines[1:] if line.strip())
    except (ValueError, StopIteration, TypeError, AttributeError):
        return None
    if not stamps:
        return None
    intraday = len(stamps[0]) > 10
    tz = ZoneInfo(meta.get("time zone") or ("UTC" if "/" in (rec.symbol or "") else "US/Eastern"))

    def t(s: str) -> int:
        if not intraday:
            return int(datetime.fromisoformat(s[:10]).replace(tzinfo=timezone.utc).timestamp() * 1000)
        return int(datetime.fromisoformat(s).replace(tzinfo=tz).timestamp() * 1000)

    try:
        times = [t(s) for s in stamps]
    except ValueError:
        return None
    interval = rec.interval or AV_INTERVALS.get(meta.get("interval", "")) or SERIES_FUNCTIONS.get(rec.endpoint, (None,))[0]
    if interval in INTERVAL_MS:
        step = INTERVAL_MS[interval]
    elif intraday and len(times) > 1:
        step = min(b - a for a, b in zip(times, times[1:]) if b > a)
    else:
        step = DAY_MS
    return times[0], times[-1] + step


def _compact(q: dict[str, str]) -> bool:
    """True when Alpha Vantage answers only the latest 100 points: a function of
    :data:`OUTPUTSIZE_FUNCTIONS` asked without ``outputsize=full`` and without ``month``."""
    return q.get("function") in OUTPUTSIZE_FUNCTIONS and q.get("outputsize", "compact") == "compact" and not q.get("month")


def _error_message(function: str) -> dict:
    return {
        "Error Message": "Invalid API call. Please retry or visit the documentation (https://www.alphavantage.co/documentation/) "
        f"for {function}."
    }


class AlphaVantage:
    """Alpha Vantage over the recordings (and, in synthetic mode, any equity symbol)."""

    vendor = VENDOR
    hosts = HOSTS

    def __init__(self, standin) -> None:
        self.standin = standin

    def throttled(self, request: Request, why: str) -> Response:
        """HTTP 200 with the vendor's throttle body: ``Note`` for the burst, ``Information`` for the day."""
        if why == "daily":
            return Response.json(200, {"Information": DAILY_INFORMATION.format(key=request.query.get("apikey", ""))})
        return Response.json(200, {"Note": BURST_NOTE})

    def fault_body(self, status: int) -> Response:
        return Response(status, "<html><head><title>503 Service Temporarily Unavailable</title></head></html>", "text/html")

    def handle(self, request: Request) -> Response:
        if request.path.rstrip("/") != "/query":
            raise NotServed(f"Alpha Vantage path {request.path} is not served by the stand-in")
        q = request.query
        function = q.get("function", "")
        if not q.get("apikey"):
            return Response.json(
                200,
                {
                    "Error Message": "the parameter apikey is invalid or missing. Please claim your free API key on "
                    "(https://www.alphavantage.co/support/#api-key). It should take less than 20 seconds."
                },
            )
        symbol = series_symbol(q)
        interval = AV_INTERVALS.get(q.get("interval", "")) if function.endswith("INTRADAY") else None
        if function in SERIES_FUNCTIONS and function != "TIME_SERIES_INTRADAY":
            interval = SERIES_FUNCTIONS[function][0]
        recs = [
            r for r in self.standin.library.of(VENDOR, function, symbol) if interval is None or r.interval in (None, interval)
        ]
        if recs:
            rec = max(recs, key=lambda r: r.recorded_ms)
            return Response(rec.status, self._slice(rec.body, q), rec.content_type, rec.requested_at)
        if self.standin.synthetic and symbol and "/" not in symbol:
            return self._synthetic(function, symbol, interval, q)
        missing = f"no recording of {function} {symbol} {q.get('interval', '')}".strip()
        return Response.json(200, _error_message(function), None, **{"X-Standin-Missing": missing})

    @staticmethod
    def _slice(body: bytes, q: dict[str, str]) -> bytes:
        """Apply ``month=YYYY-MM`` and, where the function takes it (:func:`_compact`),
        ``outputsize=compact`` (latest 100) to a recorded JSON series; anything else byte for byte."""
        if not q.get("month") and not _compact(q):
            return body
        try:
            doc = json.loads(body)
        except ValueError:
            return body
        key = next((k for k in doc if "Time Series" in k), None)
        if key is None:
            return body
        points = doc[key]
        if q.get("month"):
            points = {k: v for k, v in points.items() if k.startswith(q["month"])}
        if _compact(q):
            points = dict(sorted(points.items(), reverse=True)[:100])
        doc[key] = points
        return json.dumps(doc, indent=4).encode()

    def _synthetic(self, function: str, symbol: str, interval: str | None, q: dict[str, str]) -> Response:
        clock = self.standin.now()
        session = synthetic.equity_session(symbol)
        if function == "GLOBAL_QUOTE":
            days = synthetic.bars(
                self.standin.seed,
                symbol,
                "1d",
                int(clock.timestamp() * 1000) - 10 * 86_400_000,
                int(clock.timestamp() * 1000),
                session,
            )
            last, prev = days[-1], days[-2]
            return Response.json(
                200,
                {
                    "Global Quote": {
                        "01. symbol": symbol,
                        "02. open": f"{last.open:.4f}",
                        "03. high": f"{last.high:.4f}",
                        "04. low": f"{last.low:.4f}",
                        "05. price": f"{last.close:.4f}",
                        "06. volume": str(int(last.volume)),
                        "07. latest trading day": datetime.fromtimestamp(last.time_ms / 1000, timezone.utc).date().isoformat(),
                        "08. previous close": f"{prev.close:.4f}",
                        "09. change": f"{last.close - prev.close:.4f}",
                        "10. change percent": f"{(last.close / prev.close - 1) * 100:.4f}%",
                    }
                },
                clock,
            )
        if function not in SERIES_FUNCTIONS or interval is None:
            return Response.json(200, _error_message(function), clock)
        now_ms = int(clock.timestamp() * 1000)
        if function == "TIME_SERIES_INTRADAY":
            if q.get("month"):
                start = datetime.fromisoformat(q["month"] + "-01").replace(tzinfo=timezone.utc)
                end = (start.replace(day=28) + (datetime(2000, 1, 5) - datetime(2000, 1, 1))).replace(day=1)
                span = (int(start.timestamp() * 1000), int(end.timestamp() * 1000))
            else:
                span = (now_ms - 5 * 86_400_000, now_ms)
            extended = q.get("extended_hours", "true").lower() == "true"  # Alpha Vantage's default: true
            bars = synthetic.bars(self.standin.seed, symbol, interval, *span, session, now_ms, extended=extended)
            bars = [b for b in bars if b.time_ms + synthetic.INTERVAL_MS[interval] <= now_ms]  # AV serves closed bars
            key = f"Time Series ({q['interval']})"
            stamps = {b.time_ms: datetime.fromtimestamp(b.time_ms / 1000, EASTERN).strftime("%Y-%m-%d %H:%M:%S") for b in bars}
            info = f"Intraday ({q['interval']}) open, high, low, close prices and volume"
        else:
            bars = synthetic.bars(self.standin.seed, symbol, interval, now_ms - 30 * 365 * 86_400_000, now_ms, session, now_ms)
            key, info = SERIES_FUNCTIONS[function][1], SERIES_FUNCTIONS[function][2]
            stamps = {b.time_ms: datetime.fromtimestamp(b.time_ms / 1000, timezone.utc).date().isoformat() for b in bars}
        compact = _compact(q)
        bars = sorted(bars, key=lambda b: -b.time_ms)[: 100 if compact else None]
        if not bars:
            return Response.json(200, _error_message(function), clock)
        points = {
            stamps[b.time_ms]: {
                "1. open": f"{b.open:.4f}",
                "2. high": f"{b.high:.4f}",
                "3. low": f"{b.low:.4f}",
                "4. close": f"{b.close:.4f}",
                "5. volume": str(int(b.volume)),
            }
            for b in bars
        }
        meta = {"1. Information": info, "2. Symbol": symbol, "3. Last Refreshed": stamps[bars[0].time_ms]}
        if interval in AV_INTERVALS.values() and function == "TIME_SERIES_INTRADAY":
            meta.update(
                {
                    "4. Interval": q["interval"],
                    "5. Output Size": "Compact" if compact else "Full size",
                    "6. Time Zone": "US/Eastern",
                }
            )
        else:
            meta.update({"4. Output Size": "Compact" if compact else "Full size", "5. Time Zone": "US/Eastern"})
        return Response(200, json.dumps({"Meta Data": meta, key: points}, indent=4), "application/json", clock)
