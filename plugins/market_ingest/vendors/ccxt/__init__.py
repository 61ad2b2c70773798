"""Crypto exchanges through ccxt (kind ``ccxt``): exchange quirks, request planning, paging and candles.

The hook (:class:`market_ingest.hooks.exchange.ExchangeHook`) holds the ccxt instance, the
connection, retries and the translation of ccxt's errors; everything here is offline.

ccxt unifies symbols (``BTC/USDT``), timeframes and error types across more than a hundred
exchanges. What it leaves to a pipeline, and this module adds:

* **exact windows**: ``fetch_ohlcv(symbol, timeframe, since, limit)`` pages from the window start,
  in UTC milliseconds, with at most the exchange's per-request maximum (ccxt's
  ``features[<type>]["fetchOHLCV"]["limit"]``: Binance 1000, KuCoin 1500, Coinbase 300, Kraken 720),
  until the window end (:func:`iter_pages`); candles outside ``[start, end)`` are dropped and
  counted by the extract step;
* **pagination without gaps or duplicates**: the next page starts one interval after the last
  candle returned; a candle returned twice (page boundaries of exchanges whose ``since`` is
  inclusive or rounded) is kept once and counted as ``duplicate``; minutes the exchange returned no
  candle for are reported as gaps (illiquid pairs have none when nothing traded);
* **limits**: Kraken serves only its latest 720 candles (``max_lookback_bars`` in the config); a
  window older than that fails before any request, naming the oldest servable time
  (:func:`oldest_candle`);
* **exchange quirks as data** (:data:`EXCHANGES`): which exchanges count a contract market's
  volume in contracts, and which choose an endpoint by the candles' age.

Stdlib only at import time: ccxt (~0.7 s, 67 MB) and pyarrow are imported inside the functions
that use them.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from market_ingest.errors import VendorUnavailableError
from market_ingest.intervals import INTERVAL_LENGTH, Window, bar_end, bar_start
from market_ingest.vendors import ConnectionForm, SourceKind, flag_field, number_field, text_field

if TYPE_CHECKING:
    import pyarrow as pa

#: canonical interval -> ccxt unified timeframe.
CCXT_TIMEFRAMES: dict[str, str] = {
    "1m": "1m",
    "5m": "5m",
    "15m": "15m",
    "30m": "30m",
    "1h": "1h",
    "1d": "1d",
    "1wk": "1w",
    "1mo": "1M",
}

#: Tries of a request while the exchange times out, drops the connection, answers 5xx or throttles
#: (connection extra ``retry_attempts``).
DEFAULT_RETRY_ATTEMPTS = 4


@dataclass(frozen=True)
class ExchangeQuirks:
    """What one exchange does differently from ccxt's unified behaviour, read where it matters.

    :param volume_in_contracts: ccxt's unified OHLCV volume of a *contract* market (swap, future)
        counts contracts, not base units (:func:`volume_in_base_units`).
    :param recent_candles: the exchange serves only its latest this many candles of an interval
        from one endpoint and older ones from another, and ccxt chooses by its own clock;
        :func:`candle_endpoint_params` chooses by the run's window instead. ``None``: one endpoint.
    :param recent_params: ``fetch_ohlcv`` params asking the recent endpoint.
    :param history_params: ``fetch_ohlcv`` params asking the history endpoint.
    """

    volume_in_contracts: bool = False
    recent_candles: int | None = None
    recent_params: Mapping[str, str] = field(default_factory=dict)
    history_params: Mapping[str, str] = field(default_factory=dict)


#: ccxt exchange id -> its quirks; an exchange not listed has none (:func:`quirks`).
#:
#: * Volume in contracts: ccxt 4.5.90's ``parse_ohlcv`` passes the exchange's own field through
#:   (KuCoin Futures ``volume`` in lots, Gate futures ``v`` and MEXC contract ``vol`` in contracts,
#:   Kraken Futures ``volume`` in contracts). Binance (inverse: its base-asset volume, field 7), OKX
#:   (``volCcy``), Bybit and Bitget (inverse: turnover in coin) already give base units.
#: * OKX serves the latest 1,440 candles of an interval from ``market/candles`` and older ones from
#:   ``market/history-candles``; ccxt picks by comparing ``since`` with its own clock (okx.py,
#:   ``historyBorder = now - 1439 * duration``).
EXCHANGES: dict[str, ExchangeQuirks] = {
    "kucoinfutures": ExchangeQuirks(volume_in_contracts=True),
    "gate": ExchangeQuirks(volume_in_contracts=True),
    "mexc": ExchangeQuirks(volume_in_contracts=True),
    "krakenfutures": ExchangeQuirks(volume_in_contracts=True),
    "okx": ExchangeQuirks(recent_candles=1439, recent_params={"type": "Candles"}, history_params={"type": "HistoryCandles"}),
}


def quirks(exchange: str) -> ExchangeQuirks:
    """The quirks of ccxt exchange ``exchange`` (:data:`EXCHANGES`); none for an exchange not listed."""
    return EXCHANGES.get(exchange) or ExchangeQuirks()


#: Candle as ccxt returns it: ``[open time ms UTC, open, high, low, close, volume in base units]``.
Candle = list

#: Binance's ban message (HTTP 418, code -1003): ``... banned until 1660090423228 ...`` (epoch ms).
_BAN_UNTIL = re.compile(r"banned until (\d{13})")


def banned_until(message: str) -> datetime | None:
    """The end of an IP ban an exchange's error message states (Binance: ``banned until <ms>``), or ``None``."""
    until = _BAN_UNTIL.search(message)
    return from_ms(int(until.group(1))) if until else None


def to_ms(t: datetime) -> int:
    """UTC epoch milliseconds of an aware datetime."""
    return int(t.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Aware UTC datetime of epoch milliseconds."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc)


def _nominal(interval: str) -> timedelta:
    """Length of one bar, the shortest month for ``1mo`` (so counts derived from it are upper bounds)."""
    return INTERVAL_LENGTH.get(interval, timedelta(days=28))


def oldest_candle(max_lookback_bars: int | None, interval: str, now: datetime) -> datetime | None:
    """The oldest candle open time an exchange serving only its latest ``max_lookback_bars``
    closed candles answers for at ``now`` (Kraken: 720, its OHLC documentation); ``None``: no cap.

    Counted back from the start of the candle open at ``now``, so exactly ``max_lookback_bars``
    closed candles lie between it and ``now``.
    """
    if not max_lookback_bars:
        return None
    return bar_start(now, interval) - max_lookback_bars * _nominal(interval)


def ohlcv_limit(features: dict | None, market: dict) -> int:
    """ccxt's per-request candle maximum for ``market`` from an exchange's ``features``.

    Spot markets read ``features["spot"]["fetchOHLCV"]["limit"]``; swaps and futures one level
    deeper, under ``linear`` or ``inverse`` (ccxt 4.5: OKX swap 300, Binance swap 500 against
    Binance spot 1000). 500 (ccxt's common default) when the exchange states none.
    """
    kind = market.get("type") or "spot"
    level = (features or {}).get(kind) or {}
    if kind != "spot" and "fetchOHLCV" not in level:
        level = level.get("inverse" if market.get("inverse") else "linear") or {}
    return int((level.get("fetchOHLCV") or {}).get("limit") or 500)


def volume_in_base_units(exchange: str, market: dict) -> float | None:
    """The factor turning ccxt's OHLCV volume of ``market`` into base units (coins), or ``None``.

    Spot markets, and contract markets of exchanges whose quirks (:data:`EXCHANGES`) do not count
    volume in contracts: 1. Linear contracts counted in contracts: the contract size (ccxt
    ``contractSize``, base units per contract: KuCoin ``XBTUSDTM`` 0.001 BTC). Inverse contracts
    counted in contracts are worth a fixed amount of the *quote* currency each, so their base
    volume depends on the price of every trade, which candles do not carry: ``None``, and the
    caller refuses the symbol.
    """
    if not market.get("contract") or not quirks(exchange).volume_in_contracts:
        return 1.0
    if market.get("inverse"):
        return None
    return float(market.get("contractSize") or 1)


def market_note(market: dict, factor: float) -> str:
    """What a contract market's bars mean, for the run report; empty for spot.

    ``"swap settled in USDT: prices in USDT, volume in BTC (contracts x 0.001)"``.
    """
    if not market.get("contract"):
        return ""
    scaled = f" (contracts x {factor:g})" if factor != 1 else ""
    return (
        f"{market.get('type') or 'contract'} settled in {market.get('settle')}: prices in {market.get('quote')}, "
        f"volume in {market.get('base')}{scaled}"
    )


def candle_endpoint_params(exchange: str, since_ms: int, window: Window, interval: str) -> dict:
    """ccxt ``fetch_ohlcv`` params that choose an exchange's endpoint from the run's window, not the wall clock.

    For an exchange serving recent and older candles from two endpoints (:attr:`ExchangeQuirks.recent_candles`:
    OKX), ccxt picks by comparing ``since`` with its own clock, so the URL a backfill calls would
    depend on the day it runs. Here the window's end stands for "now": a run of a recent window
    asks the recent endpoint (OKX ``candles``) and a backfill the history one
    (``history-candles``), whenever either runs. ``{}`` for other exchanges.
    """
    q = quirks(exchange)
    if q.recent_candles is None:
        return {}
    border = to_ms(window.end) - q.recent_candles * int(_nominal(interval).total_seconds() * 1000)
    return dict(q.history_params if since_ms < border else q.recent_params)


def iter_pages(
    fetch_page: Callable[[int, int], list[Candle]], window: Window, interval: str, limit: int
) -> Iterator[list[Candle]]:
    """Fetch every candle of ``window`` in pages of at most ``limit``, yielding each non-empty page.

    :param fetch_page: ``(since_ms, limit) -> candles``; candles open at or after ``since_ms``
        (ccxt's ``fetch_ohlcv`` contract), oldest first or in any order.
    :param window: ``[start, end)`` in UTC.
    :param interval: canonical interval, for the step from one page to the next.
    :param limit: the exchange's per-request maximum.
    :return: pages in request order. The next page starts one interval after the last candle of
        the previous one, so a candle repeated at a page boundary appears on both pages (the
        caller's :func:`~market_ingest.quality.clean_bars` keeps the later one and counts the
        other). Candles may lie beyond ``window.end`` (a page is not cut at the end); callers filter.
    :raises VendorUnavailableError: when a page returns only candles before its ``since`` (the
        exchange ignored the request's start; paging would never end).
    """
    start_ms, end_ms = to_ms(window.start), to_ms(window.end)
    step_ms = int(_nominal(interval).total_seconds() * 1000)
    since = start_ms
    while since < end_ms:
        want = max(1, min(limit, math.ceil((end_ms - since) / step_ms)))
        page = fetch_page(since, want)
        if not page:
            since += want * step_ms  # nothing in the span this request covered
            continue
        last = max(int(c[0]) for c in page)
        if last < since:
            raise VendorUnavailableError("ccxt", f"page from {from_ms(since).isoformat()} returned only older candles")
        yield page
        since = to_ms(bar_end(from_ms(last), interval))


def candles_to_bars(
    candles: list[Candle], *, source: str, symbol: str, interval: str, currency: str | None, ingested_at: datetime
) -> pa.Table:
    """ccxt candles as canonical bars (:data:`market_ingest.schema.BAR_SCHEMA`).

    :param candles: ``[ms, open, high, low, close, base volume]`` rows (ccxt's unified OHLCV).
    :param currency: the market's quote currency: prices are in it (``USDT`` for ``BTC/USDT``).
    :return: one row per candle, in the given order; volume in base units (coins), as ccxt
        unifies it; a missing value stays null (validation rejects the bar, naming the reason).
    """
    import pyarrow as pa

    from market_ingest.schema import conform, utc_timestamps

    n = len(candles)
    cols: list[Any] = list(zip(*candles)) if candles else [[]] * 6
    times = pa.array([int(ms) for ms in cols[0]], pa.int64()).cast(pa.timestamp("ms", tz="UTC"))
    table = pa.table(
        {
            "time": times.cast(pa.timestamp("us", tz="UTC")),
            "source": pa.array([source] * n, pa.string()),
            "symbol": pa.array([symbol] * n, pa.string()),
            "interval": pa.array([interval] * n, pa.string()),
            **{
                name: pa.array([None if v is None else float(v) for v in cols[i + 1]], pa.float64())
                for i, name in enumerate(("open", "high", "low", "close", "volume"))
            },
            "currency": pa.array([currency] * n, pa.string()),
            "ingested_at": utc_timestamps(ingested_at, n),
        }
    )
    return conform(table)


def scaled_volume(table: pa.Table, factor: float) -> pa.Table:
    """``table`` (canonical bars) with its volume multiplied by ``factor`` (:func:`volume_in_base_units`)."""
    if factor == 1:
        return table
    import pyarrow as pa
    import pyarrow.compute as pc

    volume = pc.multiply(table["volume"], pa.scalar(factor, pa.float64()))
    return table.set_column(table.schema.get_field_index("volume"), "volume", volume)


def by_open_time(table: pa.Table) -> pa.Table:
    """``table`` (canonical bars, pages in request order) sorted by open time, stably: a candle
    repeated at a page boundary keeps its page order (the extract step keeps the later one)."""
    import pyarrow.compute as pc

    if table.num_rows > 1 and not pc.all(pc.less_equal(table["time"][:-1], table["time"][1:])).as_py():
        return table.take(pc.sort_indices(table["time"]))
    return table


def first_url(table: Any) -> str | None:
    """The first absolute URL without a placeholder in a ccxt ``urls`` table (a string, or nested
    dicts and lists of them, as ``urls["api"]``), or ``None``."""
    if isinstance(table, str):
        return table if table.startswith(("http://", "https://")) and "{" not in table else None
    for value in table.values() if isinstance(table, dict) else table if isinstance(table, list) else ():
        if found := first_url(value):
            return found
    return None


def ticker_row(
    ticker: dict, *, source: str, symbol: str, currency: str | None, as_of: datetime, ingested_at: datetime
) -> dict[str, Any] | None:
    """One quote row (:data:`~market_ingest.schema.QUOTE_SCHEMA`) from a ccxt unified ticker, or
    ``None`` when it has no last price.

    ``price`` = last trade (else ``close``), ``open/high/low/change/volume`` over the exchange's
    rolling 24 h (volume in base units), ``time`` the ticker's timestamp, else ``as_of``;
    ``currency`` the market's quote currency.
    """
    price = ticker.get("last") or ticker.get("close")
    if price is None:
        return None
    return {
        "time": from_ms(ticker["timestamp"]) if ticker.get("timestamp") else as_of,
        "source": source,
        "symbol": symbol,
        "price": price,
        "open": ticker.get("open"),
        "high": ticker.get("high"),
        "low": ticker.get("low"),
        "previous_close": ticker.get("previousClose"),
        "change": ticker.get("change"),
        "volume": ticker.get("baseVolume"),
        "latest_trading_day": None,
        "currency": currency,
        "ingested_at": ingested_at,
    }


def planned_requests(src: Any, interval: str, window: Window, now: datetime) -> int:
    """Upper bound of ``fetch_ohlcv`` requests for one symbol over ``window``, without any request.

    Pages of the source's ``page_limit`` or ccxt's spot maximum for its exchange (``features`` of
    the exchange's ccxt class, read offline: building the class makes no request); windows longer
    than ``max_lookback_bars`` count only what the exchange serves.

    :param src: the source's config (``exchange``, ``page_limit``, ``max_lookback_bars``).
    :param now: unused (the window's length decides).
    """
    import ccxt

    bars = math.ceil((window.end - window.start) / _nominal(interval))
    if src.max_lookback_bars:
        bars = min(bars, src.max_lookback_bars)
    limit = src.page_limit
    if not limit:
        cls = getattr(ccxt, src.exchange_id, None)
        limit = ohlcv_limit(cls().features if cls else None, {"type": "spot"})
    return max(1, math.ceil(bars / limit))


def oldest_servable(src: Any, interval: str, now: datetime) -> datetime | None:
    """The oldest candle open time the source's exchange serves at ``now`` (:func:`oldest_candle`
    with its ``max_lookback_bars``); ``None``: no cap."""
    return oldest_candle(src.max_lookback_bars, interval, now)


#: ccxt unified symbols: ``BTC/USDT``, swaps ``BTC/USDT:USDT``, futures ``BTC/USDT:USDT-250328``.
#: The exchange id is in the pipeline config (``exchange:``); one connection per exchange,
#: ``market_<source>`` (optional: public market data needs none).
KIND = SourceKind(
    "ccxt",
    r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}/[A-Za-z0-9]{1,16}(:[A-Za-z0-9]{1,16}(-[A-Za-z0-9]{1,16})?)?",
    hook="market_ingest.hooks.exchange.ExchangeHook",
    planned_requests=planned_requests,
    oldest_servable=oldest_servable,
    exchange=True,
    continuous=True,
    conn_type="ccxt",
    form=ConnectionForm(
        hook_name="Crypto exchange (ccxt)",
        integration="ccxt",
        doc_url="https://docs.ccxt.com/",
        fields={
            "sandbox": flag_field("Sandbox", "Use the exchange's testnet (ccxt set_sandbox_mode)."),
            "retry_attempts": number_field(
                "Tries per request",
                "Tries of a request while the exchange times out, drops the connection, answers 5xx or throttles (not a ban).",
                DEFAULT_RETRY_ATTEMPTS,
                "integer",
            ),
            "passphrase": text_field("API passphrase", "KuCoin, Coinbase and OKX keys have one; others: empty.", secret=True),
        },
        behaviour={
            "hidden-fields": ["schema", "port"],
            "relabeling": {"login": "API key (optional)", "password": "Secret (optional)", "host": "Base URL (optional)"},
            "placeholders": {"extra": '{"options": {"defaultType": "spot"}}'},
        },
    ),
)
