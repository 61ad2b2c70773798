"""Yahoo Finance (kind ``yahoo``): its facts, connection form, request planning and bar parsing.

The hook (:class:`market_ingest.hooks.yahoo.YahooFinanceHook`) asks Yahoo's chart API through
``yfinance``; everything here is offline.

Vendor facts (DESIGN.md, "Vendor facts"; yfinance 1.7 source; the recordings in
``include/recordings/yahoo``):

* Lookback caps: 1m within 30 days and at most 8 days per request; 5m-30m within 60 days;
  1h within 730 days. The last bar of an open session is incomplete.
* A delisted or unknown symbol answers 404 (recording ``yahoo_chart_ERROR_404_SIX_...``), and a
  window without sessions answers 200 with no timestamps (``yahoo_chart_AAPL_1m_2025-02-01_...``).
* A window beyond the lookback cap answers 422 "The requested range must be within the last N
  days", judged by Yahoo's clock; yfinance raises it as ``YFPricesMissingError`` with that reason.
  The hook then clamps the window (:func:`clamp_window`) by the ``Date`` of that answer and asks
  once more.
* Intraday answers state the regular sessions (``tradingPeriods``, :func:`regular_sessions`);
  daily ones do not.
* **OHLC, volume and dividend amounts are adjusted for every split up to the day of the answer**
  (``adjclose`` also for dividends): the recorded NVDA answer of 2025-02-22 gives 2021-07-16's
  close as 18.161, traded at 726.44 (/ 4 for the split of 2021-07-20, / 10 for 2024-06-10's).
  The extract step undoes it (:data:`PRICE_BASIS`, :func:`market_ingest.actions.to_as_traded`).
* Split and dividend events come only for the window asked; a symbol's whole history of events is
  one request with ``period1=0`` at a coarse interval (:data:`EVENTS_PARAMS`, :func:`parse_events`).
  Only equities, ETFs and funds have them (``meta.instrumentType``, :data:`WITH_ACTIONS`).

Stdlib only at import time; :func:`normalise_history` imports pandas and pyarrow when called.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

from market_ingest.actions import CAPITAL_GAIN, DIVIDEND, SPLIT, CorporateAction, SplitHistory
from market_ingest.errors import WindowNotServableError
from market_ingest.intervals import INTRADAY_INTERVALS, Window
from market_ingest.vendors import ConnectionForm, SourceKind, number_field, text_field

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

SOURCE = "yahoo"

#: What Yahoo's chart prices are: adjusted for every split up to the answer (see above).
PRICE_BASIS = "split_adjusted"
#: ``meta.instrumentType`` values whose symbols have corporate actions (not CURRENCY,
#: CRYPTOCURRENCY, FUTURE, INDEX).
WITH_ACTIONS = frozenset({"EQUITY", "ETF", "MUTUALFUND"})
#: The query of a symbol's whole history of events (besides ``period2``): monthly bars are the
#: cheapest answer that still states every event with its exact date (AAPL since 1980: 540 bars).
EVENTS_PARAMS = {"period1": "0", "interval": "1mo", "events": "div,splits,capitalGains", "includePrePost": "false"}

#: canonical interval -> yfinance interval (yfinance fetches 30m as 15m and resamples).
YF_INTERVAL = {"1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1h", "1d": "1d", "1wk": "1wk", "1mo": "1mo"}

#: How far back Yahoo serves each interval, and the longest span one request may cover.
LOOKBACK: dict[str, timedelta] = {
    "1m": timedelta(days=30),
    "5m": timedelta(days=60),
    "15m": timedelta(days=60),
    "30m": timedelta(days=60),
    "1h": timedelta(days=730),
}
MAX_SPAN: dict[str, timedelta] = {"1m": timedelta(days=8)}

#: yfinance retries of a dropped connection or a timeout per request (connection extra ``retries``).
DEFAULT_RETRIES = 3
#: Tries per symbol's request (bars, corporate actions) while Yahoo answers its 5xx page or a body
#: that is not JSON, or the connection drops past yfinance's retries (connection extra ``symbol_attempts``).
DEFAULT_SYMBOL_ATTEMPTS = 3


def clamp_window(interval: str, window: Window, now: datetime, source: str = SOURCE) -> Window:
    """Clamp ``window`` to what Yahoo serves for ``interval`` at time ``now``.

    :param source: the configured source name, for the error.
    :param interval: canonical interval.
    :param window: requested window, UTC.
    :param now: the vendor's current time (UTC): the ``Date`` of its latest answer.
    :return: the window with its start moved forward to the lookback limit where needed.
    :raises WindowNotServableError: when the whole window lies beyond the lookback cap, so a
        backfill asks for what Yahoo cannot serve. The message gives the cap and the oldest
        servable time.
    """
    cap = LOOKBACK.get(interval)
    if cap is None:
        return window
    oldest = now - cap
    if window.end <= oldest:
        raise WindowNotServableError(
            source,
            f"{interval} bars are served only for the last {cap.days} days; window "
            f"[{window.start.isoformat()}, {window.end.isoformat()}) ends before {oldest.isoformat()}. "
            "Use a coarser interval for this backfill.",
        )
    return Window(max(window.start, oldest), window.end)


def split_window(interval: str, window: Window) -> list[Window]:
    """Split ``window`` into request-sized pieces (1m: at most 8 days per request)."""
    span = MAX_SPAN.get(interval)
    if span is None:
        return [window]
    pieces, start = [], window.start
    while start < window.end:
        pieces.append(Window(start, min(start + span, window.end)))
        start += span
    return pieces


def oldest_servable(src: Any, interval: str, now: datetime) -> datetime | None:
    """The oldest bar open time Yahoo serves for ``interval`` at ``now`` (:data:`LOOKBACK`); ``None``: no cap.

    :param src: the source's config (unused: Yahoo's caps are the same for every source).
    """
    cap = LOOKBACK.get(interval)
    return now - cap if cap else None


def planned_requests(src: Any, interval: str, window: Window, now: datetime) -> int:
    """Upper bound of chart requests for one symbol over ``window``, without any request or clock.

    A window reaching further back than Yahoo's lookback cap is counted from ``end - cap`` (Yahoo
    serves nothing older, and ``end`` is no later than the vendor's now), then split as
    :func:`split_window` splits it (1m: 8 days per request).

    :param src: the source's config; ``now``: unused (the window's end stands for it).
    """
    cap = LOOKBACK.get(interval)
    if cap is not None and window.start < window.end - cap:
        window = Window(window.end - cap, window.end)
    return len(split_window(interval, window))


def regular_sessions(metadata: dict | None) -> list[tuple[datetime, datetime]]:
    """Regular sessions ``[(open, close)]`` (aware datetimes) of an intraday chart answer.

    yfinance formats the meta's ``tradingPeriods`` into a frame with ``start``/``end`` per day (the
    regular session; ``pre_*``/``post_*`` beside them when pre- and post-market were asked). Empty
    for daily answers, which carry none.
    """
    periods = (metadata or {}).get("tradingPeriods")
    if periods is None or not hasattr(periods, "columns") or "start" not in periods.columns:
        return []
    return [(a.to_pydatetime(), b.to_pydatetime()) for a, b in zip(periods["start"], periods["end"])]


def normalise_history(
    frame: pd.DataFrame, symbol: str, interval: str, currency: str | None, ingested_at: datetime, source: str = SOURCE
) -> pa.Table:
    """Turn a ``Ticker.history(auto_adjust=False, actions=True)`` frame into canonical bars.

    :param frame: yfinance output: tz-aware index in the exchange's timezone; columns ``Open High
        Low Close Adj Close Volume Dividends Stock Splits`` (prices in listing currency, volume in
        shares or units).
    :param symbol: canonical (Yahoo) symbol.
    :param interval: canonical interval.
    :param currency: the chart meta's ``currency`` as Yahoo states it (``GBp`` stays pence).
    :param ingested_at: lineage stamp, UTC.
    :param source: the configured source name written into ``source`` (default ``yahoo``).
    :return: a :data:`~market_ingest.schema.BAR_SCHEMA` table. Intraday bars keep their open time,
        converted to UTC; daily and longer bars are stamped 00:00 UTC of their exchange-local date,
        so the key of a trading day does not depend on the exchange's session hours.
        ``dividend`` is 0.0 and ``split_ratio`` 1.0 on daily bars without an event, and null on
        intraday bars (Yahoo reports events per day).
    """
    import pandas as pd
    import pyarrow as pa

    from market_ingest.schema import conform, empty_bars

    if frame is None or len(frame) == 0:
        return empty_bars()
    index = frame.index
    if getattr(index, "tz", None) is None:
        raise ValueError(f"{source}:{symbol}: yfinance returned a naive index; cannot place bars in UTC")
    intraday = interval in INTRADAY_INTERVALS
    if intraday:
        times = index.tz_convert("UTC")
    else:
        times = pd.DatetimeIndex(index.tz_localize(None).normalize()).tz_localize("UTC")
    n = len(frame)
    splits = frame.get("Stock Splits", pd.Series(0.0, index=index)).astype("float64")
    dividends = frame.get("Dividends", pd.Series(0.0, index=index)).astype("float64")
    columns = {
        "time": pa.array(times.as_unit("us"), pa.timestamp("us", tz="UTC")),
        "source": pa.array([source] * n),
        "symbol": pa.array([symbol] * n),
        "interval": pa.array([interval] * n),
        "open": pa.array(frame["Open"].astype("float64")),
        "high": pa.array(frame["High"].astype("float64")),
        "low": pa.array(frame["Low"].astype("float64")),
        "close": pa.array(frame["Close"].astype("float64")),
        "volume": pa.array(frame["Volume"].astype("float64")),  # a missing volume stays null: rejected, counted
        "adj_close": pa.array(frame["Adj Close"].astype("float64"))
        if not intraday and "Adj Close" in frame
        else pa.nulls(n, pa.float64()),
        "dividend": pa.nulls(n, pa.float64()) if intraday else pa.array(dividends),
        "split_ratio": pa.nulls(n, pa.float64()) if intraday else pa.array(splits.where(splits != 0, 1.0)),
        "currency": pa.array([currency] * n, pa.string()),
        "ingested_at": pa.array([ingested_at] * n, pa.timestamp("us", tz="UTC")),
    }
    return conform(pa.table(columns))


def parse_events(body: dict, symbol: str, clock: datetime, source: str = SOURCE) -> tuple[list[CorporateAction], str]:
    """The corporate actions a chart answer states, as traded, and the exchange's timezone.

    :param body: Yahoo's chart JSON (``{"chart": {"result": [{"meta", "events"?, ...}]}}``);
        ``events.splits`` items carry ``date`` (epoch s of the ex-date's open), ``numerator`` and
        ``denominator``; ``events.dividends`` and ``events.capitalGains`` items ``date``, ``amount``
        and sometimes ``currency`` (else the listing currency, ``meta.currency``).
    :param clock: the answer's ``Date`` (UTC): ex-dates up to its exchange-local date were applied.
    :return: ``(actions, timezone)``: splits as stated (ratio = numerator / denominator);
        dividend and capital-gain amounts multiplied back by the splits after their ex-date (Yahoo
        states them split-adjusted like prices); ``first_seen`` and ``extracted_at`` = ``clock``.
    :raises ValueError: naming the source and symbol, when the body is not a chart answer or an
        event lacks its date or values.
    """
    from zoneinfo import ZoneInfo

    try:
        result = body["chart"]["result"][0]
        meta = result["meta"]
    except (KeyError, IndexError, TypeError):
        raise ValueError(f"{source}:{symbol}: not a chart answer (no chart.result[0].meta)") from None
    tz_name = meta.get("exchangeTimezoneName") or "UTC"
    tz = ZoneInfo(tz_name)
    events = result.get("events") or {}

    def day(item: dict) -> date:
        return datetime.fromtimestamp(int(item["date"]), tz).date()

    try:
        splits = [(day(e), float(e["numerator"]) / float(e["denominator"])) for e in (events.get("splits") or {}).values()]
        history = SplitHistory(tuple(splits), clock.astimezone(tz).date())
        actions = [CorporateAction(source, symbol, d, SPLIT, ratio=r, first_seen=clock, extracted_at=clock) for d, r in splits]
        for key, kind in (("dividends", DIVIDEND), ("capitalGains", CAPITAL_GAIN)):
            for e in (events.get(key) or {}).values():
                d = day(e)
                actions.append(
                    CorporateAction(
                        source,
                        symbol,
                        d,
                        kind,
                        amount=float(e["amount"]) * history.factor(d),
                        currency=e.get("currency") or meta.get("currency"),
                        first_seen=clock,
                        extracted_at=clock,
                    )
                )
    except (KeyError, TypeError, ValueError, ZeroDivisionError) as exc:
        raise ValueError(f"{source}:{symbol}: an event Yahoo stated cannot be read ({type(exc).__name__}: {exc})") from None
    return sorted(actions, key=lambda a: (a.ex_date, a.kind)), tz_name


#: Yahoo symbols: ``AAPL``, ``BRK-B``, ``BP.L``, ``EURUSD=X``, ``GC=F``, ``^GSPC``, ``BTC-USD`` (no
#: ``/``: a symbol becomes a URL path segment).
KIND = SourceKind(
    "yahoo",
    r"[A-Za-z0-9^][A-Za-z0-9.=^-]{0,31}",
    hook="market_ingest.hooks.yahoo.YahooFinanceHook",
    planned_requests=planned_requests,
    oldest_servable=oldest_servable,
    extended_hours=True,
    concurrent_symbols=True,
    price_basis=PRICE_BASIS,
    actions_requests=1,
    conn_type="yahoo_finance",
    default_conn_id="market_yahoo",
    form=ConnectionForm(
        hook_name="Yahoo Finance",
        integration="Yahoo Finance",
        doc_url="https://github.com/ranaroussi/yfinance",
        fields={
            "requests_per_second": number_field(
                "Requests per second",
                "Most requests one extract task sends per second (its threads share it); pool slots x this is the "
                "rate the source may use. Yahoo publishes no limit. Empty: no spacing.",
                None,
            ),
            "retries": number_field(
                "Retries per request",
                "yfinance asks again after a dropped connection or a timeout (1, 2, 4 s).",
                DEFAULT_RETRIES,
                "integer",
            ),
            "symbol_attempts": number_field(
                "Tries per symbol",
                "Tries per symbol while Yahoo answers its 5xx page, a body that is not JSON, or drops the connection.",
                DEFAULT_SYMBOL_ATTEMPTS,
                "integer",
            ),
            "proxy": text_field("HTTP proxy", "http://host:port for yfinance's requests; empty: the environment's proxy."),
        },
        behaviour={
            "hidden-fields": ["schema", "login", "password", "port", "extra"],
            "relabeling": {"host": "Base URL (optional)"},
            "placeholders": {"host": "empty: query2.finance.yahoo.com"},
        },
    ),
)
