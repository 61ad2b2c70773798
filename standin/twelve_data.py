"""Twelve Data's REST API (``api.twelvedata.com``): ``/time_series`` and ``/quote``, JSON answers.

Behaviour, from Twelve Data's documentation (https://twelvedata.com/docs: errors, ``/time_series``,
``/quote``), its support articles (5214728 "Getting historical data", 5194820 "API credits limits"), its
changelog (the Basic plan's daily cap resets at midnight UTC), its OpenAPI-generated Go client (errors
come with their code as HTTP status) and message texts quoted alike by many clients
(``include/recordings/PROVENANCE.md``):

* ``/time_series?symbol=AAPL&interval=1day&start_date=...&end_date=...&outputsize=N&apikey=KEY``
  answers ``{"meta": {...}, "values": [...], "status": "ok"}``, newest bar first (``order=asc``
  reverses it). Each value's ``datetime`` is the bar's open in the instrument's local time
  (``exchange_timezone``; UTC for FX and crypto pairs): ``"2021-09-16 15:59:00"`` intraday,
  ``"2021-09-16"`` for days, weeks (the Monday) and months (the 1st). Prices are strings;
  ``volume`` is given for listings only, not for FX pairs (nor for crypto pairs: unverified).
* ``start_date`` / ``end_date`` (``2024-01-02``, ``2024-01-02 09:30:00`` or ``2024-01-02T09:30:00``)
  are read in the instrument's local time, or in ``timezone`` when given (``Exchange``, ``UTC`` or an
  IANA name). The stand-in keeps bars whose open lies in ``[start, end)``.
* ``outputsize`` (1..5000) defaults to 30 without dates and to 5000 with them; the newest
  ``outputsize`` bars of the range are answered.
* Listings: US symbols are NASDAQ/XNGS listings in ``America/New_York``; ``exchange`` / ``mic_code``
  (or ``symbol=VOD:LSE``) name another venue (``LSE`` / ``XLON``: London, ``GBp``; :data:`VENUES`;
  another venue answers 404). Symbols are case-insensitive. A pair with ``/`` is FX when both sides
  are currencies (:data:`FIAT`), crypto otherwise.
* Errors are ``{"code": N, "message": "...", "status": "error"}`` with HTTP status ``N`` (configurable,
  see :meth:`TwelveData.configure`): 401 for a missing or unknown ``apikey``, 404 for an unknown symbol,
  400 for an unsupported interval or a range holding no bar, 429 when the key's credits for the minute
  or the day are spent. The key is never echoed.
* Credits: each ``/time_series`` and ``/quote`` request costs 1 credit per symbol, counted per API key
  against a per-minute budget (calendar minutes) and a daily one (UTC days); default 8 and 800, the
  Basic plan's. Requests refused with 429 count as used, as the vendor's message ("9 API credits were
  used, with the current limit being 8") shows; an answer that is an error (400, 404) is charged too
  (unverified either way). Every answer to a valid key carries ``api-credits-used`` and
  ``api-credits-left`` for the key's current minute (headers clients read; their exact meaning is
  not documented by the vendor).

Recordings (``include/recordings/twelve_data``) are indexed by endpoint (``time_series``, ``quote``),
symbol (vendor spelling: ``AAPL``, ``EUR/USD``) and canonical interval; a recorded symbol is served from
its recording, cut to the asked range and size; any other symbol, or a range outside the recording, from
the synthetic market (without it: 404 for the symbol, 400 "No data" for the range).
"""

from __future__ import annotations

import json
import threading
import time
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from standin import synthetic
from standin.core import NotServed, Request, Response
from standin.recordings import DAY_MS, INTERVAL_MS, Recording

VENDOR = "twelve_data"
HOSTS = ("api.twelvedata.com",)
#: Twelve Data interval -> canonical interval (the vendor also offers 45min, 2h, 4h and 8h: not served).
TD_INTERVALS = {
    "1min": "1m",
    "5min": "5m",
    "15min": "15m",
    "30min": "30m",
    "1h": "1h",
    "1day": "1d",
    "1week": "1wk",
    "1month": "1mo",
}
ALL_TD_INTERVALS = "1min, 5min, 15min, 30min, 45min, 1h, 2h, 4h, 8h, 1day, 1week, 1month"
MAX_OUTPUTSIZE = 5000
DEFAULT_OUTPUTSIZE = 30
DEFAULT_MINUTE_CREDITS = 8
DEFAULT_DAILY_CREDITS = 800
#: ISO code -> the name Twelve Data's FX meta gives (``currency_base`` / ``currency_quote``).
FIAT = {
    "USD": "US Dollar",
    "EUR": "Euro",
    "GBP": "British Pound",
    "JPY": "Japanese Yen",
    "CHF": "Swiss Franc",
    "CAD": "Canadian Dollar",
    "AUD": "Australian Dollar",
    "NZD": "New Zealand Dollar",
    "SEK": "Swedish Krona",
    "NOK": "Norwegian Krone",
    "DKK": "Danish Krone",
    "HKD": "Hong Kong Dollar",
    "SGD": "Singapore Dollar",
    "CNY": "Chinese Yuan",
    "MXN": "Mexican Peso",
    "ZAR": "South African Rand",
    "TRY": "Turkish Lira",
    "PLN": "Polish Zloty",
    "HUF": "Hungarian Forint",
    "INR": "Indian Rupee",
}
#: Coins whose names the crypto meta spells out; others are named by their code.
COINS = {"BTC": "Bitcoin", "ETH": "Ethereum", "SOL": "Solana", "XRP": "Ripple", "ADA": "Cardano", "DOGE": "Dogecoin"}


class Venue:
    """Where a listing trades: Twelve Data's exchange name and MIC, its timezone and currency, and the
    Yahoo suffix under which the synthetic market (shared with the Yahoo stand-in) prices it."""

    def __init__(self, exchange: str, mic: str, tz: str, currency: str, suffix: str) -> None:
        self.exchange, self.mic, self.tz, self.currency, self.suffix = exchange, mic, tz, currency, suffix


US = Venue("NASDAQ", "XNGS", "America/New_York", "USD", "")
VENUES = [
    US,
    Venue("NYSE", "XNYS", "America/New_York", "USD", ""),
    Venue("LSE", "XLON", "Europe/London", "GBp", ".L"),
    Venue("XETR", "XETR", "Europe/Berlin", "EUR", ".DE"),
    Venue("FSX", "XFRA", "Europe/Berlin", "EUR", ".F"),
    Venue("Euronext", "XPAR", "Europe/Paris", "EUR", ".PA"),
    Venue("Euronext", "XAMS", "Europe/Amsterdam", "EUR", ".AS"),
    Venue("JPX", "XJPX", "Asia/Tokyo", "JPY", ".T"),
]
FX_SESSION = synthetic.Session("UTC", 0, 1440, weekdays_only=True)

# Message texts as Twelve Data words them (research-td.md: recorded by clients' tests and logs).
MSG_APIKEY = (
    "**apikey** parameter is incorrect or not specified. You can get your free API key instantly following this "
    "link: https://twelvedata.com/pricing. If you believe that everything is correct, you can contact us at "
    "https://twelvedata.com/contact/customer"
)
MSG_SYMBOL = "**symbol** not found: {symbol}. Please specify it correctly according to API Documentation."
MSG_NO_DATA = "No data is available on the specified dates. Try setting different start/end dates."
MSG_INTERVAL = "Invalid **interval** provided: {interval}. Supported intervals: " + ALL_TD_INTERVALS
MSG_MINUTE = (
    "You have run out of API credits for the current minute. {used} API credits were used, with the current "
    "limit being {limit}. Wait for the next minute or consider switching to a higher tier plan at "
    "https://twelvedata.com/pricing"
)
MSG_DAY = (
    "You have run out of API credits for the day. {used} API credits were used, with the current limit being "
    "{limit}. Wait for the next day or consider switching to a higher tier plan at https://twelvedata.com/pricing"
)


class Credits:
    """API credits per key: a budget per calendar minute and one per UTC day (``None``: unlimited).

    :param clock: seconds since the epoch (``time.time``); tests pass their own.
    """

    def __init__(self, minute: int | None = DEFAULT_MINUTE_CREDITS, daily: int | None = DEFAULT_DAILY_CREDITS, clock=time.time):
        self.minute, self.daily, self.clock = minute, daily, clock
        self.lock = threading.Lock()
        self.used: dict[str, list[int]] = {}  # key -> [minute index, used this minute, day index, used today]

    def spend(self, key: str, cost: int = 1) -> tuple[str, int, int] | None:
        """Charge ``cost`` credits to ``key``: ``None`` when answered, else ``(why, used, limit)`` with
        ``why`` ``"minute"`` or ``"daily"``. A refused request still counts as used, as the vendor's
        messages show ("18 API credits were used, with the current limit being 8"; "966 ... being 800"):
        towards the minute, and towards the day when the day refused it."""
        with self.lock:
            now = self.clock()
            minute, day = int(now // 60), int(now // 86_400)
            u = self.used.setdefault(key, [minute, 0, day, 0])
            if u[0] != minute:
                u[0], u[1] = minute, 0
            if u[2] != day:
                u[2], u[3] = day, 0
            u[1] += cost
            if self.daily is not None and u[3] + cost > self.daily:
                u[3] += cost
                return "daily", u[3], self.daily
            if self.minute is not None and u[1] > self.minute:
                return "minute", u[1], self.minute
            u[3] += cost
            return None

    def headers(self, key: str) -> dict[str, str]:
        """``api-credits-used`` / ``api-credits-left`` of the key's current minute (none when unlimited)."""
        with self.lock:
            u = self.used.get(key)
            if u is None or self.minute is None:
                return {}
            return {"api-credits-used": str(u[1]), "api-credits-left": str(max(0, self.minute - u[1]))}


def _error(code: int, message: str, http_status: int | None = None, **headers: str) -> Response:
    return Response.json(
        code if http_status is None else http_status, {"code": code, "message": message, "status": "error"}, None, **headers
    )


def _tz(name: str) -> ZoneInfo:
    return ZoneInfo(name)


def _parse_local(value: str) -> datetime:
    """A ``start_date`` / ``end_date`` value as a naive local datetime."""
    value = value.strip().replace("T", " ")
    return datetime.fromisoformat(value) if len(value) > 10 else datetime.fromisoformat(value[:10])


def _stamp(local: datetime, daily: bool) -> str:
    return local.strftime("%Y-%m-%d") if daily else local.strftime("%Y-%m-%d %H:%M:%S")


def _num(x: float) -> str:
    return f"{x:.5f}"


class Instrument:
    """What Twelve Data knows of a symbol: its kind (``equity``, ``fx``, ``crypto``), meta and clock."""

    def __init__(self, symbol: str, q: dict[str, str]) -> None:
        self.symbol = symbol
        self.venue: Venue | None
        exchange, mic = q.get("exchange", ""), q.get("mic_code", "")
        if "/" in symbol:
            base, _, quote = symbol.partition("/")
            self.kind = "fx" if base in FIAT and quote in FIAT else "crypto"
            self.base, self.quote = base, quote
            self.venue = None
            self.tz = "UTC"
            self.key = f"{base}{quote}=X" if self.kind == "fx" else f"{base}-{quote}"
            self.session = FX_SESSION if self.kind == "fx" else synthetic.CRYPTO
            self.exchange = exchange or None
        else:
            self.kind = "equity"
            venue = next((v for v in VENUES if mic and v.mic.upper() == mic.upper()), None)
            venue = venue or next((v for v in VENUES if exchange and v.exchange.upper() == exchange.upper()), None)
            self.venue = venue if venue or mic or exchange else US  # None: a venue the stand-in does not list
            v = self.venue or US
            self.tz = v.tz
            self.key = symbol + v.suffix  # the Yahoo spelling: one synthetic market for both vendors
            self.session = synthetic.equity_session(self.key)

    def meta(self, td_interval: str) -> dict:
        if self.kind == "fx":
            return {
                "symbol": self.symbol,
                "interval": td_interval,
                "currency_base": FIAT[self.base],
                "currency_quote": FIAT[self.quote],
                "type": "Physical Currency",
            }
        if self.kind == "crypto":
            meta = {
                "symbol": self.symbol,
                "interval": td_interval,
                "currency_base": COINS.get(self.base, self.base),
                "currency_quote": FIAT.get(self.quote, COINS.get(self.quote, self.quote)),
            }
            if self.exchange:
                meta["exchange"] = self.exchange
            meta["type"] = "Digital Currency"
            return meta
        assert self.venue is not None
        return {
            "symbol": self.symbol,
            "interval": td_interval,
            "currency": self.venue.currency,
            "exchange_timezone": self.venue.tz,
            "exchange": self.venue.exchange,
            "mic_code": self.venue.mic,
            "type": "Common Stock",
        }


def extent(rec: Recording) -> tuple[int, int] | None:
    """First bar's open to last bar's end, epoch ms, of a recorded ``time_series`` body.

    Stamps are local times of the meta's ``exchange_timezone`` (UTC for pairs, whose meta has none);
    daily and longer stamps are dates, taken as 00:00 UTC like the other vendors' dates.
    """
    try:
        doc = json.loads(rec.body)
        meta, values = doc["meta"], doc["values"]
        interval = rec.interval or TD_INTERVALS[meta["interval"]]
        stamps = sorted(v["datetime"] for v in values)
    except (ValueError, KeyError, TypeError):
        return None
    if not stamps:
        return None
    tz = _tz(meta.get("exchange_timezone") or "UTC")
    daily = interval in ("1d", "1wk", "1mo")

    def t(s: str) -> int:
        if daily:
            return int(datetime.fromisoformat(s[:10]).replace(tzinfo=timezone.utc).timestamp() * 1000)
        return int(datetime.fromisoformat(s).replace(tzinfo=tz).timestamp() * 1000)

    return t(stamps[0]), t(stamps[-1]) + INTERVAL_MS.get(interval, DAY_MS)


class TwelveData:
    """Twelve Data over the recordings and, in synthetic mode, any listing or pair."""

    vendor = VENDOR
    hosts = HOSTS

    def __init__(self, standin) -> None:
        self.standin = standin
        self.credits = Credits()
        self.keys: frozenset[str] | None = None  # None: any non-empty key is valid
        self.error_status: int | None = None  # None: HTTP status = the body's code

    def configure(self, conf: dict | None) -> None:
        """Apply ``POST /_standin/limits`` ``{"twelve_data": {...}}``; ``None`` (absent) restores the defaults.

        Keys: ``limit`` (credits per minute, default 8; ``null``: unlimited), ``daily`` (per UTC day,
        default 800; ``null``: unlimited), ``keys`` (the valid API keys; default: any non-empty key),
        ``error_status`` (HTTP status of every error answer, e.g. 200 as Twelve Data answered in
        earlier years; default: the body's ``code``).
        """
        conf = conf or {}
        self.credits = Credits(
            conf.get("limit", DEFAULT_MINUTE_CREDITS), conf.get("daily", DEFAULT_DAILY_CREDITS), self.credits.clock
        )
        self.keys = frozenset(conf["keys"]) if conf.get("keys") is not None else None
        self.error_status = conf.get("error_status")

    def error(self, code: int, message: str, **headers: str) -> Response:
        return _error(code, message, self.error_status, **headers)

    def throttled(self, request: Request, why: str) -> Response:
        """The minute's 429 (an injected ``throttled`` or ``banned`` fault)."""
        limit = self.credits.minute or DEFAULT_MINUTE_CREDITS
        return self.error(429, MSG_MINUTE.format(used=limit + 1, limit=limit))

    def fault_body(self, status: int) -> Response:
        return self.error(status, "Internal server error. Please try again later.") if status >= 500 else self.error(status, "")

    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if path not in ("/time_series", "/quote"):
            raise NotServed(f"Twelve Data path {request.path} is not served by the stand-in")
        q = {k.lower(): v for k, v in request.query.items()}  # Twelve Data's parameter names are case-insensitive
        key = q.get("apikey") or _header_key(request)
        if not key or (self.keys is not None and key not in self.keys):
            return self.error(401, MSG_APIKEY)
        symbol = (q.get("symbol") or "").strip().upper()  # values are case-insensitive too: aapl is AAPL
        if "," in symbol:
            raise NotServed("Twelve Data batch requests (comma-separated symbols) are not served by the stand-in")
        if ":" in symbol:  # symbol:exchange_name, e.g. VOD:LSE, AAPL:NASDAQ (the docs' "Exchanges")
            symbol, _, q["exchange"] = symbol.partition(":")
        if not symbol:
            return self.error(404, MSG_SYMBOL.format(symbol=""))
        if "/" not in symbol and Instrument(symbol, q).venue is None:
            return self.error(404, MSG_SYMBOL.format(symbol=symbol))  # a venue the stand-in does not list
        refused = self.credits.spend(key, 1)
        if refused:
            why, used, limit = refused
            response = self.error(429, (MSG_DAY if why == "daily" else MSG_MINUTE).format(used=used, limit=limit))
        elif path == "/quote":
            response = self._quote(symbol, q)
        else:
            response = self._time_series(symbol, q)
        response.headers.update(self.credits.headers(key))
        return response

    # -- /time_series -------------------------------------------------------------------------
    def _time_series(self, symbol: str, q: dict[str, str]) -> Response:
        td_interval = q.get("interval", "")
        interval = TD_INTERVALS.get(td_interval)
        if interval is None:
            if td_interval in ALL_TD_INTERVALS.split(", "):
                raise NotServed(f"Twelve Data interval {td_interval} is not served by the stand-in")
            return self.error(400, MSG_INTERVAL.format(interval=td_interval))
        inst = Instrument(symbol, q)
        try:
            tz = self._output_tz(inst, q, interval)
            start = _parse_local(q["start_date"]).replace(tzinfo=tz) if q.get("start_date") else None
            end = _parse_local(q["end_date"]).replace(tzinfo=tz) if q.get("end_date") else None
            dated = start is not None or end is not None
            size = int(q.get("outputsize") or (MAX_OUTPUTSIZE if dated else DEFAULT_OUTPUTSIZE))
        except (ValueError, ZoneInfoNotFoundError) as exc:
            return self.error(400, f"Invalid parameter: {exc}")
        if not 1 <= size <= MAX_OUTPUTSIZE:
            return self.error(400, f"**outputsize** must be in range [1, {MAX_OUTPUTSIZE}], got {size}")
        ascending = q.get("order", "desc").lower() == "asc"
        daily = interval in ("1d", "1wk", "1mo")
        start_ms = None if start is None else _window_ms(start, daily)
        end_ms = None if end is None else _window_ms(end, daily)
        recs = self.standin.library.of(VENDOR, "time_series", symbol, interval)
        if start_ms is None and end_ms is None:  # no dates: the latest bars, so the newest recording
            rec = max((r for r in recs if r.status == 200), key=lambda r: (r.end_ms or 0, r.recorded_ms), default=None)
        else:
            rec = self.standin.library.best(VENDOR, "time_series", symbol, interval, start_ms, end_ms) if recs else None
        if rec is not None and rec.status == 200:
            return self._cut(rec, tz, daily, start, end, size, ascending)
        if recs and not self.standin.synthetic:
            return self.error(400, MSG_NO_DATA, **{"X-Standin-Missing": f"no recording of {symbol} {td_interval} in range"})
        if not self.standin.synthetic:
            return self.error(404, MSG_SYMBOL.format(symbol=symbol), **{"X-Standin-Missing": f"no recording of {symbol}"})
        return self._synthetic_series(inst, td_interval, interval, tz, start, end, size, ascending)

    @staticmethod
    def _output_tz(inst: Instrument, q: dict[str, str], interval: str) -> ZoneInfo:
        """The timezone stamps (and start/end) are read in: ``timezone`` for intraday, else the instrument's."""
        name = q.get("timezone", "Exchange")
        if interval in ("1d", "1wk", "1mo") or name.lower() == "exchange":
            return _tz(inst.tz)
        return _tz("UTC" if name.upper() == "UTC" else name)

    def _cut(self, rec: Recording, tz, daily, start, end, size, ascending) -> Response:
        """A recorded body cut to ``[start, end)`` and the newest ``size`` bars, newest first."""
        doc = json.loads(rec.body)
        src_tz = _tz(doc["meta"].get("exchange_timezone") or "UTC")

        def local(s: str) -> datetime:
            if daily:
                return datetime.fromisoformat(s[:10]).replace(tzinfo=tz)
            return datetime.fromisoformat(s).replace(tzinfo=src_tz).astimezone(tz)

        rows = sorted(((local(v["datetime"]), v) for v in doc["values"]), key=lambda r: r[0], reverse=True)
        rows = [r for r in rows if (start is None or r[0] >= start) and (end is None or r[0] < end)][:size]
        if not rows:
            return self.error(400, MSG_NO_DATA)
        values = [{**v, "datetime": _stamp(t.replace(tzinfo=None), daily)} for t, v in rows]
        doc["values"] = values[::-1] if ascending else values
        return Response(200, json.dumps(doc, separators=(",", ":")), "application/json", rec.requested_at)

    def _synthetic_series(self, inst, td_interval, interval, tz, start, end, size, ascending) -> Response:
        clock = self.standin.now()
        now_ms = int(clock.timestamp() * 1000)
        daily = interval in ("1d", "1wk", "1mo")
        hi = now_ms + 1 if end is None else min(_window_ms(end, daily), now_ms + 1)
        if start is not None:
            bars = synthetic.bars(self.standin.seed, inst.key, interval, _window_ms(start, daily), hi, inst.session, now_ms)
        else:  # the newest `size` bars: widen the look-back until it holds them
            span = size * INTERVAL_MS[interval] * 2 + 10 * DAY_MS
            while True:
                bars = synthetic.bars(self.standin.seed, inst.key, interval, hi - span, hi, inst.session, now_ms)
                if len(bars) >= size or span > 40 * 366 * DAY_MS:
                    break
                span *= 4
        bars = sorted(bars, key=lambda b: -b.time_ms)[:size]
        if not bars:
            return self.error(400, MSG_NO_DATA)
        values = []
        for b in bars:
            opened = datetime.fromtimestamp(b.time_ms / 1000, timezone.utc)
            label = opened.date().isoformat() if daily else _stamp(opened.astimezone(tz).replace(tzinfo=None), False)
            row = {"datetime": label, "open": _num(b.open), "high": _num(b.high), "low": _num(b.low), "close": _num(b.close)}
            if inst.kind == "equity":
                row["volume"] = str(int(b.volume))
            values.append(row)
        doc = {"meta": inst.meta(td_interval), "values": values[::-1] if ascending else values, "status": "ok"}
        return Response(200, json.dumps(doc, separators=(",", ":")), "application/json", clock)

    # -- /quote -------------------------------------------------------------------------------
    def _quote(self, symbol: str, q: dict[str, str]) -> Response:
        recs = self.standin.library.of(VENDOR, "quote", symbol)
        if recs:
            rec = max(recs, key=lambda r: r.recorded_ms)
            return Response(rec.status, rec.body, rec.content_type, rec.requested_at)
        if not self.standin.synthetic:
            return self.error(404, MSG_SYMBOL.format(symbol=symbol), **{"X-Standin-Missing": f"no recording of quote {symbol}"})
        inst = Instrument(symbol, q)
        clock = self.standin.now()
        now_ms = int(clock.timestamp() * 1000)
        days = synthetic.bars(self.standin.seed, inst.key, "1d", now_ms - 400 * DAY_MS, now_ms + 1, inst.session, now_ms)
        if len(days) < 2:
            return self.error(400, MSG_NO_DATA)
        last, prev = days[-1], days[-2]
        year = [d for d in days if d.time_ms > now_ms - 365 * DAY_MS]
        low, high = min(d.low for d in year), max(d.high for d in year)
        meta = inst.meta("1day")
        doc: dict = {"symbol": symbol}
        if inst.kind == "equity":
            doc |= {"name": symbol, "exchange": meta["exchange"], "mic_code": meta["mic_code"], "currency": meta["currency"]}
        else:
            doc |= {"name": f"{meta['currency_base']} / {meta['currency_quote']}"}
            if inst.exchange:
                doc["exchange"] = inst.exchange
        doc |= {
            "datetime": datetime.fromtimestamp(last.time_ms / 1000, timezone.utc).date().isoformat(),
            "timestamp": last.time_ms // 1000,
            "open": _num(last.open),
            "high": _num(last.high),
            "low": _num(last.low),
            "close": _num(last.close),
        }
        if inst.kind == "equity":
            doc["volume"] = str(int(last.volume))
        doc |= {
            "previous_close": _num(prev.close),
            "change": _num(last.close - prev.close),
            "percent_change": _num((last.close / prev.close - 1) * 100),
        }
        if inst.kind == "equity":
            doc["average_volume"] = str(int(sum(d.volume for d in days[-10:]) / len(days[-10:])))
        doc |= {
            "is_market_open": _market_open(inst, now_ms),
            "fifty_two_week": {
                "low": _num(low),
                "high": _num(high),
                "low_change": _num(last.close - low),
                "high_change": _num(last.close - high),
                "low_change_percent": _num((last.close / low - 1) * 100),
                "high_change_percent": _num((last.close / high - 1) * 100),
                "range": f"{low:.6f} - {high:.6f}",
            },
        }
        return Response(200, json.dumps(doc, separators=(",", ":")), "application/json", clock)


def _market_open(inst: Instrument, now_ms: int) -> bool:
    minute = now_ms - now_ms % 60_000
    return bool(synthetic.bars(0, "_session_probe", "1m", minute, minute + 1, inst.session)) if not inst.session.always else True


def _window_ms(t: datetime, daily: bool) -> int:
    """Epoch ms of a range bound; for days, weeks and months the bound's local date at 00:00 UTC
    (the synthetic market's and the recordings' daily bars open at 00:00 UTC of their date)."""
    if daily:
        d = t.date() if t.time() == datetime.min.time() else t.date() + timedelta(days=1)
        return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)
    return int(t.timestamp() * 1000)


def _header_key(request: Request) -> str | None:
    """The key of an ``Authorization: apikey KEY`` header (Twelve Data's recommended way)."""
    auth = request.headers.get("authorization", "")
    return auth[7:].strip() or None if auth.lower().startswith("apikey ") else None
