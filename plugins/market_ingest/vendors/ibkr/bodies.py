"""Interactive Brokers Client Portal Web API bodies: classification, contract search, history bars.

Facts (sources in ``/work/notes/research-ib.md`` and ``include/recordings/PROVENANCE.md``):

* ``GET /iserver/secdef/search?symbol=AAPL`` answers a JSON list of contracts
  ``{"conid": "265598", "companyHeader": "APPLE INC - NASDAQ", "companyName": ..., "symbol": "AAPL",
  "description": "NASDAQ", "sections": [{"secType": "STK"}, {"secType": "OPT", ...}]}``: ``description``
  is the listing exchange, ``conid`` a string (some answers: a number).
* ``GET /iserver/marketdata/history`` answers ``{"symbol", "text", "priceFactor", "startTime", "high",
  "low", "timePeriod", "barLength", "mdAvailability", "outsideRth", "volumeFactor", "data": [{"o", "h",
  "l", "c", "v", "t"}], "points", ...}``. ``t`` is the bar's open, epoch milliseconds UTC; daily bars
  open at the session's start (09:30 New York for US stocks, 04:00 with ``outsideRth``), monthly
  bars at 00:00 UTC of the 1st. ``o/h/l/c`` are prices as they are (``priceFactor`` scales only the
  ``high``/``low`` chart strings: ``"17510/..."`` for 175.10). ``v`` is in lots of 100 shares for US
  stocks (IBKR's spec: "reported volume = actual volume/100"; ``volumeFactor`` is 1 in every recorded
  answer, so it does not say this): :func:`history_to_bars` multiplies by ``volume_lot`` (100).
* Errors come as an HTTP status with ``{"error": "..."}`` (or an empty / HTML body): 401 when the
  session is not authenticated, 429 "Too many requests" for pacing, 5xx from the gateway.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from market_ingest.vendors import Classified

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

SOURCE = "ibkr"

DATA = "data"
NO_DATA = "no_data"  # the period holds no bar: nothing to write, not a failure
NO_PERMISSION = "no_permission"  # no market-data subscription for the listing: configuration, fail fast
PACING = "pacing"  # 429 / pacing violation: back off, retry later
UNAUTHENTICATED = "unauthenticated"  # session not logged in (401): tickle / reauthenticate / log in again
UNKNOWN_CONTRACT = "unknown_contract"  # conid or symbol IB does not know: skip the symbol, report it
SERVER = "server"  # gateway or backend failure (5xx, "Chart data unavailable"): retry
UNKNOWN = "unknown"  # a shape we do not know: fail loudly, naming the keys

#: IB bar spelling -> canonical interval (IB also has 2min, 3min, 10min, 2h, 3h, 4h, 8h).
IB_BARS = {"1min": "1m", "5min": "5m", "15min": "15m", "30min": "30m", "1h": "1h", "1d": "1d", "1w": "1wk", "1m": "1mo"}
#: canonical interval -> IB bar spelling.
BARS_IB = {v: k for k, v in IB_BARS.items()}
#: IB's names of the US listing exchanges (``description`` of a search entry): the listings this
#: product serves (New York sessions, USD).
US_EXCHANGES = ("NASDAQ", "NYSE", "ARCA", "AMEX", "BATS", "IEX")
VOLUME_LOT = 100.0


def _message(doc: Any) -> str:
    """An error answer's text (``error``, ``message``, ``msg``); never a data answer's ``text``,
    which is the company's name."""
    if isinstance(doc, dict):
        for key in ("error", "message", "msg"):
            if isinstance(doc.get(key), str):
                return doc[key]
    return ""


def classify(body: str | bytes | None, status: int = 200) -> Classified:
    """Decide what an IB body is, before any parsing of data.

    :param body: the response text (JSON, or empty / HTML from the gateway).
    :param status: the HTTP status it came with.
    :return: a :class:`Classified` of kind ``data``, ``no_data``, ``no_permission``, ``pacing``,
        ``unauthenticated``, ``unknown_contract``, ``server`` or ``unknown``.
    """
    text = (body.decode("utf-8", "replace") if isinstance(body, bytes) else body or "").strip()
    doc: Any = None
    if text.startswith(("{", "[")):
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as exc:
            if status >= 500:
                return Classified(SERVER, None, f"HTTP {status}, unparsable body", code=status)
            return Classified(UNKNOWN, message=f"unparsable JSON body ({exc.msg} at char {exc.pos})", code=status)
    keys = tuple(doc) if isinstance(doc, dict) else ()
    message = _message(doc) or (text[:200] if doc is None else "")
    low = message.lower()
    if status == 401 or "not authenticated" in low or "no bridge" in low:  # no bridge: no brokerage session
        return Classified(UNAUTHENTICATED, doc, message or f"HTTP {status}: not authenticated", keys, status)
    if status == 429 or "too many requests" in low or "pacing" in low:
        return Classified(PACING, doc, message or f"HTTP {status}: too many requests", keys, status)
    if "permission" in low or "not subscribed" in low:
        return Classified(NO_PERMISSION, doc, message, keys, status)
    if "no data" in low or "returned no data" in low:
        return Classified(NO_DATA, doc, message, keys, status)
    if status >= 500 or "chart data" in low or "unavailable" in low:  # before the contract words: retried, not skipped
        return Classified(SERVER, doc, message or f"HTTP {status}", keys, status)
    if "security definition" in low or "conid" in low or "contract" in low and "not found" in low:
        return Classified(UNKNOWN_CONTRACT, doc, message, keys, status)
    if status >= 400:
        return Classified(UNKNOWN, doc, message or f"HTTP {status} with an unknown body", keys, status)
    if isinstance(doc, list):
        if not doc:  # secdef search for a symbol IB does not list
            return Classified(UNKNOWN_CONTRACT, doc, "empty contract list", (), status)
        return Classified(DATA, doc, code=status)
    if isinstance(doc, dict):
        if isinstance(doc.get("data"), list):
            if not doc["data"]:
                return Classified(NO_DATA, doc, "history answered no bars", keys, status)
            if str(doc.get("mdAvailability", "")).upper().startswith("N"):  # N = Not Subscribed
                return Classified(NO_PERMISSION, doc, f"mdAvailability {doc['mdAvailability']}", keys, status)
            return Classified(DATA, doc, keys=keys, code=status)
        if "authenticated" in doc or "session" in doc or "iserver" in doc:  # /tickle, /iserver/auth/status
            return Classified(DATA, doc, keys=keys, code=status)
        return Classified(UNKNOWN, doc, f"unknown body shape with keys {sorted(keys)}", keys, status)
    return Classified(UNKNOWN, message=f"not JSON: {text[:80]!r}", code=status)


def parse_search(doc: Any, symbol: str, exchange: str | Collection[str] | None = None) -> int:
    """The conid of ``symbol``'s stock listing in a ``/iserver/secdef/search`` answer.

    :param exchange: the listing exchange wanted (``NASDAQ``, ``LSE``), or any of several
        (:data:`US_EXCHANGES`: the first of them IB answers, its order putting the primary listing
        first); ``None``: the first stock listing IB answers, wherever it is.
    :raises ValueError: naming the symbol and the listings seen, when no entry is a stock
        (``secType`` ``STK``) of that symbol on that exchange.
    """
    if not isinstance(doc, list):
        raise ValueError(f"IB contract search for {symbol!r}: answer is a {type(doc).__name__}, not a list")
    want = symbol.upper()
    wanted = {exchange.upper()} if isinstance(exchange, str) else {e.upper() for e in exchange} if exchange else None
    seen = []
    for entry in doc:
        if not isinstance(entry, dict):
            continue
        if str(entry.get("symbol", "")).upper() != want:
            continue
        sec_types = {str(s.get("secType", "")).upper() for s in entry.get("sections") or [] if isinstance(s, dict)}
        if entry.get("secType"):
            sec_types.add(str(entry["secType"]).upper())
        where = str(entry.get("description") or "").upper()
        if not where:
            header = str(entry.get("companyHeader") or "")
            where = header.rsplit(" - ", 1)[-1].upper() if " - " in header else ""
        seen.append(where or "?")
        if "STK" not in sec_types:
            continue
        if wanted is not None and where not in wanted:
            continue
        try:
            return int(entry["conid"])
        except (KeyError, TypeError, ValueError):
            continue
    on = f" on {exchange if isinstance(exchange, str) else ', '.join(sorted(wanted or ()))}" if exchange else ""
    raise ValueError(f"IB lists no stock {symbol!r}{on} (listings seen: {', '.join(seen) or 'none'})")


def bar_open(t_ms: int, interval: str, tz: str = "America/New_York") -> datetime:
    """A bar's canonical ``time``: its open in UTC; for days 00:00 UTC of the session date in the
    exchange's timezone ``tz`` (a ``t`` already at 00:00 UTC is its own date); weeks and months on
    the canonical grid (:func:`market_ingest.intervals.bar_start`: Monday, the 1st) of that date,
    whichever session IB stamps a week or a month with (its first; after a holiday, a Tuesday)."""
    from market_ingest.intervals import bar_start

    t = datetime.fromtimestamp(t_ms / 1000, timezone.utc)
    if interval not in ("1d", "1wk", "1mo"):
        return t
    if t.hour or t.minute or t.second:
        d = t.astimezone(ZoneInfo(tz)).date()
    else:
        d = t.date()
    day = datetime(d.year, d.month, d.day, tzinfo=timezone.utc)
    return day if interval == "1d" else bar_start(day, interval)


def history_to_bars(
    doc: dict,
    *,
    symbol: str,
    interval: str,
    ingested_at: datetime,
    source: str = SOURCE,
    currency: str | None = "USD",
    tz: str = "America/New_York",
    volume_lot: float = VOLUME_LOT,
) -> pa.Table:
    """Canonical bars (``BAR_SCHEMA``) from a ``/iserver/marketdata/history`` answer, oldest first.

    :param interval: canonical interval (``1m`` .. ``1mo``) the request asked for (``bar``).
    :param tz: the listing's timezone, for the session date of daily and longer bars.
    :param volume_lot: shares per unit of ``v`` (100 for US stocks; 1 where IB counts units).
    """
    import pyarrow as pa

    from market_ingest.schema import conform, empty_bars

    rows = [r for r in doc.get("data") or [] if isinstance(r, dict) and r.get("t") is not None]
    if not rows:
        return empty_bars()
    by_time: dict[datetime, dict] = {}
    for r in rows:
        by_time[bar_open(int(r["t"]), interval, tz)] = r  # a repeated bar: the later one wins
    times = sorted(by_time)
    n = len(times)
    ts = pa.timestamp("us", tz="UTC")
    col = [by_time[t] for t in times]
    return conform(
        pa.table(
            {
                "time": pa.array(times, ts),
                "source": [source] * n,
                "symbol": [symbol] * n,
                "interval": [interval] * n,
                "open": [float(r["o"]) for r in col],
                "high": [float(r["h"]) for r in col],
                "low": [float(r["l"]) for r in col],
                "close": [float(r["c"]) for r in col],
                "volume": [round(float(r.get("v") or 0) * volume_lot, 6) for r in col],
                "currency": pa.array([currency] * n, pa.string()),
                "ingested_at": pa.array([ingested_at] * n, ts),
            }
        )
    )
