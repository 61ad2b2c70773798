"""Yahoo Finance's chart API as yfinance uses it, with the cookie/crumb handshake.

Hosts: ``fc.yahoo.com`` (cookie: 404 with ``Set-Cookie: A3``), ``query1/query2.finance.yahoo.com``
(``/v1/test/getcrumb``, ``/v8/finance/chart/<symbol>``, ``/v10/finance/quoteSummary/<symbol>``),
``guce.yahoo.com`` (consent page). Behaviour (recordings in ``include/recordings/yahoo``):

* ``period1``/``period2`` (epoch s) select bars opening in ``[period1, period2)``, none after the
  clock; ``range=`` (yfinance's timezone probe) answers the meta without bars;
* a window without sessions answers 200 with the meta and no ``timestamp``
  (``yahoo_chart_AAPL_1m_2025-02-01_weekend_empty``); an unknown symbol 404 in Yahoo's error shape
  (``yahoo_chart_ERROR_404_SIX_no_data_delisted``);
* lookback caps relative to the clock (1m: 30 days, 2m-90m: 60 days, 1h: 730 days) and 1m spans
  over 8 days answer 422 with Yahoo's error description (yfinance raises it as
  ``YFPricesMissingError`` with Yahoo's reason);
* without ``--synthetic``, an interval no recording of a recorded symbol holds (yfinance asks
  ``15m`` for ``30m`` bars) answers 404 "No data found for <symbol> at interval=15m: the stand-in
  holds no recording of <symbol> 15m (recorded: 30m)", dated by that symbol's newest recording:
  what happened, not a lookback refusal judged by today's clock;
* the chart does not require the crumb; ``getcrumb`` answers one when the ``A3`` cookie is sent.

Whole-history events (the product asks once per symbol and day for every split and dividend,
``market_ingest.vendors.yahoo.EVENTS_PARAMS``). Yahoo states a symbol's events only for the window
asked, dividend amounts split-adjusted as of its answer. The stand-in recognises an **events
request** as one with ``period1`` at or before the epoch (``0``) that asks ``events=`` (``div``,
``split`` or ``capitalGain``) at a daily or longer interval (intraday ones keep their lookback
refusal) and that no bar recording of the symbol at that interval covers (the product asks
``interval=1mo``, which no bar recording holds; a recorded request such as the TSLA
full history, ``period1=0&interval=1d&events=div``, keeps getting its bars). It answers 200 with
the meta and the events dated in ``[period1, period2)`` and not after the clock, and no bars:

* from the symbol's events recording (sidecar ``holds: events``, e.g. the constructed
  ``yahoo_chart_NVDA_1mo_events_constructed_2025-02-22``), with its clock as ``Date``;
* else from the symbol's chart recordings: the meta of the newest (its clock) and the union of the
  events they state, with ``X-Standin-Missing`` saying that no events recording exists;
* else, with ``--synthetic``: the meta only (``instrumentType`` ``EQUITY``, ``CRYPTOCURRENCY`` or
  ``CURRENCY``, :func:`instrument_type`), no events; else 404 like an unknown symbol.

An events recording is never served as bars: an ``interval=1mo`` request for bars answers as it
would without it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from standin import synthetic
from standin.core import NotServed, Request, Response
from standin.recordings import DAY_MS, INTERVAL_MS, Recording

VENDOR = "yahoo"
HOSTS = ("fc.yahoo.com", "query1.finance.yahoo.com", "query2.finance.yahoo.com", "guce.yahoo.com", "finance.yahoo.com")
CRUMB = "standin-crumb-0"

#: Yahoo interval -> canonical interval (Yahoo also offers 2m/90m/5d/3mo, which no recording holds).
INTERVALS = {"1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m", "60m": "1h", "1h": "1h", "1d": "1d", "1wk": "1wk", "1mo": "1mo"}
LOOKBACK_DAYS = {"1m": 30, "2m": 60, "5m": 60, "15m": 60, "30m": 60, "60m": 730, "90m": 60, "1h": 730}
MAX_SPAN_DAYS = {"1m": 8}
THROTTLED = Response(429, "Too Many Requests\r\n", "text/plain")


def extent(rec: Recording) -> tuple[int, int] | None:
    """First bar's open to last bar's end, epoch ms, of a chart body."""
    try:
        result = json.loads(rec.body)["chart"]["result"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    stamps = result.get("timestamp") or []
    if not stamps or rec.interval is None:
        return None
    return stamps[0] * 1000, stamps[-1] * 1000 + INTERVAL_MS[rec.interval]


def _error(status: int, code: str, description: str, clock=None) -> Response:
    return Response.json(status, {"chart": {"result": None, "error": {"code": code, "description": description}}}, clock)


def _currency(symbol: str) -> str:
    s = symbol.upper()
    if "-" in s:
        return s.rsplit("-", 1)[1]
    if s.endswith("=X"):
        return s[3:6] if len(s) >= 8 else "USD"
    for suffix, cur in ((".L", "GBp"), (".DE", "EUR"), (".F", "EUR"), (".PA", "EUR"), (".AS", "EUR"), (".T", "JPY")):
        if s.endswith(suffix):
            return cur
    return "USD"


def session_of(symbol: str) -> synthetic.Session:
    """Trading session of a Yahoo symbol: crypto pairs (``BTC-USD``) trade around the clock,
    FX (``EURUSD=X``) around the clock on weekdays, equities by their suffix."""
    s = symbol.upper()
    if "-" in s and not s.endswith((".L", ".DE", ".PA")):
        return synthetic.CRYPTO
    if s.endswith("=X"):
        return synthetic.Session("UTC", 0, 1440, weekdays_only=True)
    return synthetic.equity_session(s)


def instrument_type(symbol: str) -> str:
    """Yahoo's ``meta.instrumentType`` of a synthetic symbol, by the rules of :func:`session_of`:
    ``CURRENCY`` (``EURUSD=X``), ``CRYPTOCURRENCY`` (``BTC-USD``) or ``EQUITY``."""
    if symbol.upper().endswith("=X"):
        return "CURRENCY"
    return "CRYPTOCURRENCY" if session_of(symbol).always else "EQUITY"


def _meta(symbol: str, interval: str, clock: datetime, session: synthetic.Session) -> dict:
    tz = ZoneInfo(session.tz)
    now = int(clock.timestamp())
    offset = int(clock.astimezone(tz).utcoffset().total_seconds())
    day = clock.astimezone(tz).replace(hour=0, minute=0, second=0, microsecond=0)
    start, end = int(day.timestamp()) + session.open_min * 60, int(day.timestamp()) + session.close_min * 60
    period = {"timezone": clock.astimezone(tz).tzname(), "start": start, "end": end, "gmtoffset": offset}
    return {
        "currency": _currency(symbol),
        "symbol": symbol,
        "exchangeName": "CCC" if session.always else "NMS",
        "fullExchangeName": "CCC" if session.always else "NasdaqGS",
        "instrumentType": instrument_type(symbol),
        "firstTradeDate": 946684800,
        "regularMarketTime": now,
        "hasPrePostMarketData": not session.always,
        "gmtoffset": offset,
        "timezone": clock.astimezone(tz).tzname(),
        "exchangeTimezoneName": session.tz if session.tz != "UTC" else "UTC",
        "priceHint": 2,
        "currentTradingPeriod": {"pre": period, "regular": period, "post": period},
        "dataGranularity": interval,
        "range": "",
        "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
    }


def _result(meta: dict, rows: list[tuple], adjclose: bool, events: dict | None = None) -> dict:
    """A chart ``result`` from ``(epoch s, open, high, low, close, volume, adjclose)`` rows."""
    result: dict = {"meta": meta}
    if rows:
        result["timestamp"] = [r[0] for r in rows]
        if events:
            result["events"] = events
        quote = {k: [r[i] for r in rows] for k, i in (("open", 1), ("high", 2), ("low", 3), ("close", 4), ("volume", 5))}
        result["indicators"] = {"quote": [quote]}
        if adjclose:
            result["indicators"]["adjclose"] = [{"adjclose": [r[6] for r in rows]}]
    else:
        result["indicators"] = {"quote": [{}]}
        if adjclose:
            result["indicators"]["adjclose"] = [{}]
    return result


def _slice_recording(rec: Recording, start_ms: int, end_ms: int, clock_ms: int) -> dict:
    """The recorded result cut to bars opening in ``[start_ms, end_ms)`` and not after the clock."""
    result = json.loads(rec.body)["chart"]["result"][0]
    stamps = result.get("timestamp") or []
    keep = [i for i, t in enumerate(stamps) if start_ms <= t * 1000 < end_ms and t * 1000 <= clock_ms]
    quote = (result.get("indicators") or {}).get("quote", [{}])[0]
    adj = ((result.get("indicators") or {}).get("adjclose") or [{}])[0].get("adjclose")
    rows = [
        (
            stamps[i],
            *[(quote.get(k) or [None] * len(stamps))[i] for k in ("open", "high", "low", "close", "volume")],
            adj[i] if adj else None,
        )
        for i in keep
    ]
    events = {}
    for kind, items in (result.get("events") or {}).items():
        picked = {k: v for k, v in items.items() if start_ms <= int(v.get("date", k)) * 1000 < end_ms}
        if picked:
            events[kind] = picked
    return _result(result["meta"], rows, adj is not None, events or None)


class Yahoo:
    """Yahoo's chart API over the recordings (and, in synthetic mode, any symbol)."""

    vendor = VENDOR
    hosts = HOSTS

    def __init__(self, standin) -> None:
        self.standin = standin

    def throttled(self, request: Request, why: str) -> Response:
        """Yahoo answers 429 with a plain-text body when an IP asks too often."""
        return THROTTLED

    def fault_body(self, status: int) -> Response:
        """Yahoo's 5xx answers are HTML pages; yfinance checks for "Will be right back"."""
        return Response(status, "<html><body>Will be right back...</body></html>", "text/html")

    def handle(self, request: Request) -> Response:
        if request.host == "fc.yahoo.com":
            return Response(404, "", "text/html", headers={"Set-Cookie": "A3=standin; Path=/; Max-Age=31536000"})
        if request.host == "guce.yahoo.com":
            return Response(200, "<html><body></body></html>", "text/html")
        if request.path.endswith("/v1/test/getcrumb"):
            return Response(200, CRUMB, "text/plain")
        if request.path.startswith("/v10/finance/quoteSummary/"):
            symbol = request.path.rsplit("/", 1)[1]
            body = {
                "quoteSummary": {
                    "result": None,
                    "error": {"code": "Not Found", "description": f"Quote not found for symbol: {symbol}"},
                }
            }
            return Response.json(404, body)
        if request.path.startswith("/v8/finance/chart/"):
            return self.chart(request)
        raise NotServed(f"Yahoo path {request.path} is not served by the stand-in")

    def chart(self, request: Request) -> Response:
        symbol = request.path.rsplit("/", 1)[1]
        yahoo_interval = request.param("interval", default="1d")
        interval = INTERVALS.get(yahoo_interval)
        if interval is None:
            return _error(400, "Bad Request", f"Invalid input - interval={yahoo_interval} is not supported.")
        library = self.standin.library
        series = library.of(VENDOR, "chart", symbol)
        failed = [r for r in series if r.status != 200]
        if failed and not self.standin.synthetic:
            rec = failed[0]
            return Response(rec.status, rec.body, rec.content_type, rec.requested_at)
        if "period1" not in request.query:  # range=...: yfinance's timezone probe reads the meta only
            newest = max((r for r in series if r.status == 200), key=lambda r: r.recorded_ms, default=None)
            if newest is not None:
                result = json.loads(newest.body)["chart"]["result"][0]
                return Response.json(
                    200, {"chart": {"result": [_result(result["meta"], [], False)], "error": None}}, newest.requested_at
                )
            if self.standin.synthetic:
                clock = self.standin.now()
                meta = _meta(symbol, yahoo_interval, clock, session_of(symbol))
                return Response.json(200, {"chart": {"result": [_result(meta, [], False)], "error": None}}, clock)
            return self._unknown(symbol, interval, None, None)
        start_ms = int(request.query["period1"]) * 1000
        end_ms = int(request.param("period2", default="9999999999")) * 1000
        rec = library.best(VENDOR, "chart", symbol, interval, start_ms, end_ms)
        if rec is None and yahoo_interval not in LOOKBACK_DAYS and _asks_whole_history_events(request, start_ms):
            return self._events(symbol, yahoo_interval, interval, start_ms, end_ms)
        recorded = sorted({r.interval for r in series if r.status == 200 and r.interval}, key=list(INTERVAL_MS).index)
        if rec is None and recorded and interval not in recorded and not self.standin.synthetic:
            newest = max((r for r in series if r.status == 200), key=lambda r: r.recorded_ms)
            missing = f"the stand-in holds no recording of {symbol} {interval} (recorded: {', '.join(recorded)})"
            response = _error(
                404, "Not Found", f"No data found for {symbol} at interval={yahoo_interval}: {missing}", newest.requested_at
            )
            response.headers["X-Standin-Missing"] = missing
            return response
        # The clock: the covering recording's; else the synthetic market's (now) in synthetic mode;
        # else that of the series' recording nearest the range asked (the stand-in's world for that
        # series is as of then), else now.
        ref = rec or (None if self.standin.synthetic else library.nearest(VENDOR, "chart", symbol, interval, start_ms, end_ms))
        clock = (ref.requested_at if ref else None) or self.standin.now()
        refused = self._refused(yahoo_interval, start_ms, end_ms, clock)
        if refused:
            return refused
        if rec is not None:
            result = _slice_recording(rec, start_ms, end_ms, int(clock.timestamp() * 1000))
            return Response.json(200, {"chart": {"result": [result], "error": None}}, clock)
        if self.standin.synthetic:
            prepost = request.param("includePrePost", default="false").lower() == "true"
            return self._synthetic(symbol, yahoo_interval, interval, start_ms, end_ms, clock, prepost)
        if any(r.status == 200 for r in series):
            # Yahoo's "no data" answer: the meta without bars; the header says the stand-in lacks them.
            newest = max((r for r in series if r.status == 200), key=lambda r: r.recorded_ms)
            result = _result(json.loads(newest.body)["chart"]["result"][0]["meta"], [], False)
            missing = f"no recording of {symbol} {interval} covers [{_iso(start_ms)}, {_iso(end_ms)})"
            return Response.json(
                200, {"chart": {"result": [result], "error": None}}, newest.requested_at, **{"X-Standin-Missing": missing}
            )
        return self._unknown(symbol, interval, start_ms, end_ms)

    def _events(self, symbol: str, yahoo_interval: str, interval: str, start_ms: int, end_ms: int) -> Response:
        """Yahoo's answer to a whole-history events request: the meta and the events, no bars.

        :param start_ms, end_ms: ``period1`` and ``period2`` in epoch ms; events dated in
            ``[start_ms, end_ms)`` and not after the answer's clock are stated.
        :return: 200 from the symbol's newest events recording; else from its chart recordings
            (meta of the newest, union of their events, ``X-Standin-Missing``); else synthetic
            (meta only, the synthetic clock); else Yahoo's 404 for an unknown symbol.
        """
        library = self.standin.library
        headers = {}
        sources = library.of(VENDOR, "chart", symbol, holds="events")
        if not sources:
            sources = [r for r in library.of(VENDOR, "chart", symbol) if r.status == 200]
            if sources:
                headers["X-Standin-Missing"] = (
                    f"no events recording of {symbol}: the events stated are those its "
                    f"{len(sources)} chart recording(s) state for their own windows"
                )
        if not sources:
            if not self.standin.synthetic:
                return self._unknown(symbol, interval, start_ms, end_ms)
            clock = self.standin.now()
            meta = _meta(symbol, yahoo_interval, clock, session_of(symbol))
            return Response.json(200, {"chart": {"result": [_result(meta, [], False)], "error": None}}, clock)
        newest = max(sources, key=lambda r: r.recorded_ms)
        clock = newest.requested_at or self.standin.now()
        clock_ms = int(clock.timestamp() * 1000)
        events: dict[str, dict] = {}
        for rec in sources:
            for kind, items in (json.loads(rec.body)["chart"]["result"][0].get("events") or {}).items():
                for key, item in items.items():
                    t_ms = int(item.get("date", key)) * 1000
                    if start_ms <= t_ms < end_ms and t_ms <= clock_ms:
                        events.setdefault(kind, {})[key] = item
        meta = json.loads(newest.body)["chart"]["result"][0]["meta"]
        meta = {k: v for k, v in meta.items() if k != "tradingPeriods"} | {"dataGranularity": yahoo_interval}
        result = _result(meta, [], False)
        if events:
            result["events"] = {kind: dict(sorted(items.items(), key=lambda kv: int(kv[0]))) for kind, items in events.items()}
        return Response.json(200, {"chart": {"result": [result], "error": None}}, clock, **headers)

    def _unknown(self, symbol, interval, start_ms, end_ms) -> Response:
        span = f" [{_iso(start_ms)}, {_iso(end_ms)})" if start_ms is not None else ""
        return _error(
            404, "Not Found", f"No data found, symbol may be delisted (stand-in: no recording of {symbol} {interval}{span})"
        )

    def _refused(self, yahoo_interval: str, start_ms: int, end_ms: int, clock: datetime) -> Response | None:
        days = LOOKBACK_DAYS.get(yahoo_interval)
        clock_ms = int(clock.timestamp() * 1000)
        if days is not None and start_ms < clock_ms - days * DAY_MS:
            return _error(
                422,
                "Unprocessable Entity",
                f"{yahoo_interval} data not available for startTime={start_ms // 1000} and endTime={end_ms // 1000}. "
                f"The requested range must be within the last {days} days.",
                clock,
            )
        span = MAX_SPAN_DAYS.get(yahoo_interval)
        if span is not None and end_ms - start_ms > span * DAY_MS:
            return _error(
                422,
                "Unprocessable Entity",
                f"Only {span} days worth of {yahoo_interval} granularity data are allowed to be fetched per request.",
                clock,
            )
        return None

    def _synthetic(self, symbol, yahoo_interval, interval, start_ms, end_ms, clock, prepost=False) -> Response:
        session = session_of(symbol)
        now_ms = int(clock.timestamp() * 1000)
        daily = interval in ("1d", "1wk", "1mo")
        # Daily bars are dates, stamped at the session open: select them by that stamp, so a request
        # starting at the exchange's local midnight (yfinance's) gets the first day too.
        margin = 2 * DAY_MS if daily else 0
        bars = synthetic.bars(
            self.standin.seed, symbol, interval, start_ms - margin, end_ms + margin, session, now_ms, extended=prepost
        )
        rows = []
        for b in bars:
            t = b.time_ms
            if daily and not session.always:  # Yahoo stamps daily bars at the session open
                local = datetime.fromtimestamp(t / 1000, timezone.utc).date()
                opened = datetime(local.year, local.month, local.day, tzinfo=ZoneInfo(session.tz))
                t = int(opened.timestamp() * 1000) + session.open_min * 60_000
            if not start_ms <= t < end_ms:
                continue
            rows.append(
                (
                    t // 1000,
                    round(b.open, 4),
                    round(b.high, 4),
                    round(b.low, 4),
                    round(b.close, 4),
                    int(b.volume),
                    round(b.close, 4),
                )
            )
        meta = _meta(symbol, yahoo_interval, clock, session)
        if not daily:  # intraday answers list each day's session (yfinance reads them; AAPL 1m recording)
            regular = _trading_periods(session, start_ms, end_ms, session.open_min, session.close_min)
            if prepost and session.pre_min is not None:  # with pre- and post-market: Yahoo's dict form
                meta["tradingPeriods"] = {
                    "pre": _trading_periods(session, start_ms, end_ms, session.pre_min, session.open_min),
                    "regular": regular,
                    "post": _trading_periods(session, start_ms, end_ms, session.close_min, session.post_min),
                }
            else:
                meta["tradingPeriods"] = regular
        return Response.json(200, {"chart": {"result": [_result(meta, rows, daily)], "error": None}}, clock)


def _asks_whole_history_events(request: Request, start_ms: int) -> bool:
    """True for a request of a symbol's whole history of events: ``period1`` at or before the
    epoch and ``events=`` naming dividends, splits or capital gains (module docstring)."""
    asked = (request.param("events", default="") or "").lower()
    return start_ms <= 0 and any(kind in asked for kind in ("div", "split", "capitalgain"))


def _trading_periods(session: synthetic.Session, start_ms: int, end_ms: int, open_min: int, close_min: int) -> list[list[dict]]:
    """``[[{timezone, start, end, gmtoffset}]]``: ``open_min``..``close_min`` local of each trading day in the range."""
    from datetime import timedelta

    tz = ZoneInfo(session.tz)
    day = datetime.fromtimestamp(start_ms / 1000, tz).date()
    last = datetime.fromtimestamp(end_ms / 1000, tz).date()
    periods = []
    while day <= last:
        if not session.weekdays_only or day.weekday() < 5:
            midnight = datetime(day.year, day.month, day.day, tzinfo=tz)
            opened = midnight + timedelta(minutes=open_min)
            periods.append(
                [
                    {
                        "timezone": opened.tzname(),
                        "start": int(opened.timestamp()),
                        "end": int((midnight + timedelta(minutes=close_min)).timestamp()),
                        "gmtoffset": int(opened.utcoffset().total_seconds()),
                    }
                ]
            )
        day += timedelta(days=1)
    return periods


def _iso(t_ms: int | None) -> str:
    return "-" if t_ms is None else datetime.fromtimestamp(t_ms / 1000, timezone.utc).isoformat().replace("+00:00", "Z")
