"""Crypto exchanges through ``ccxt``: closed OHLCV bars for exact windows, and ticker snapshots.

The exchanges' quirks, request planning, paging and the candles' conversion to canonical bars are
in :mod:`market_ingest.vendors.ccxt`; the ccxt instance (one per hook, so per task: ccxt's rate
limiter is per instance, and markets are loaded once), the connection, retries and the
translation of ccxt's errors are :class:`~market_ingest.hooks.exchange_client.CcxtClient`'s, which
this hook extends with the bars and quotes the extract step asks for.

**Closed candles only**: the latest candle is still open while the exchange's clock is inside it
(the recorded Binance page ends with such a candle: 7 trades against 375-769 in the minutes before
it); the extract step drops it and counts it as ``open_bar``, by the exchange's clock: the ``Date``
of its latest answer (:meth:`ExchangeHook.vendor_now`).

ccxt is imported inside methods: never at DAG parse time (it costs ~0.7 s and 67 MB).
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from market_ingest import outcomes
from market_ingest.errors import (
    ConfigurationError,
    MarketDataError,
    SymbolError,
    UnknownSymbolError,
    WindowNotServableError,
)
from market_ingest.extract import SharedExtract
from market_ingest.hooks.exchange_client import CcxtClient
from market_ingest.intervals import Window, validate_interval
from market_ingest.routing import without_queries
from market_ingest.vendors.ccxt import (
    CCXT_TIMEFRAMES,
    by_open_time,
    candle_endpoint_params,
    candles_to_bars,
    first_url,
    iter_pages,
    market_note,
    ohlcv_limit,
    oldest_candle,
    scaled_volume,
    ticker_row,
    volume_in_base_units,
)

if TYPE_CHECKING:
    import pyarrow as pa

    from market_ingest.config import SourceConfig
    from market_ingest.extract import Answer


class ExchangeHook(SharedExtract, CcxtClient):
    """One crypto exchange through ccxt.

    :param exchange: ccxt exchange id (``binance``, ``kucoin``, ``coinbase``, ``kraken``, ...).
    :param exchange_conn_id: optional connection (API key for higher limits, sandbox, options).
    :param source: the configured source name written into every row (default: ``exchange``).
    :param page_limit: candles per request; default ccxt's per-exchange maximum.
    :param max_lookback_bars: the exchange serves only this many most recent candles.
    :param markets_file: JSON list of ccxt market structures used instead of ``load_markets()``.
    :param options: ccxt exchange options (no secrets).

    One ccxt instance per hook (so per task): ccxt's rate limiter is per instance, and markets are
    loaded once per hook.
    """

    conn_name_attr = "exchange_conn_id"
    default_conn_name = "market_exchange"
    conn_type = "ccxt"
    hook_name = "Crypto exchange (ccxt)"

    def __init__(
        self,
        exchange: str,
        exchange_conn_id: str | None = None,
        *,
        source: str | None = None,
        page_limit: int | None = None,
        max_lookback_bars: int | None = None,
        markets_file: str | None = None,
        options: dict | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.exchange = exchange
        self.exchange_conn_id = exchange_conn_id
        self.source = source or exchange
        self.page_limit = page_limit
        self.max_lookback_bars = max_lookback_bars
        self.markets_file = markets_file
        self.options = options or {}

    @classmethod
    def for_source(cls, name: str, src: SourceConfig, *, timescale_conn_id: str) -> ExchangeHook:
        """The hook serving source ``name`` configured as ``src``: its exchange, connection, page
        size, lookback cap, markets file and ccxt options.

        :param timescale_conn_id: unused (an exchange keeps no state in the warehouse).
        """
        return cls(
            src.exchange_id,
            src.connection_id(name),
            source=name,
            page_limit=src.page_limit,
            max_lookback_bars=src.max_lookback_bars,
            markets_file=src.markets_file,
            options=src.options,
        )

    def timeframe(self, interval: str) -> str:
        """The ccxt timeframe for a canonical interval.

        :raises ConfigurationError: when the exchange offers no such timeframe (ccxt's ``timeframes``).
        """
        validate_interval(interval)
        tf = CCXT_TIMEFRAMES[interval]
        if tf not in (self.client.timeframes or {}):
            raise ConfigurationError(
                self.source,
                f"{self.exchange} has no {interval} candles (ccxt timeframe {tf}); "
                f"it offers {' '.join(sorted(self.client.timeframes or {}))}",
            )
        return tf

    def request_limit(self, symbol: str) -> int:
        """Candles per request: ``page_limit`` if configured, else ccxt's maximum for the market's type
        (:func:`ohlcv_limit`: spot, or the linear/inverse level of swaps and futures)."""
        if self.page_limit:
            return self.page_limit
        return ohlcv_limit(self.client.features, self.client.market(symbol))

    def check_lookback(self, interval: str, window: Window, now: datetime) -> None:
        """Fail before any candle request when the window starts before the oldest candle the exchange serves.

        The exchange counts its latest ``max_lookback_bars`` closed candles back from the start of
        the candle open at ``now`` (Kraken: 720 committed frames, plus the current one), so a window
        of exactly that many closed candles is servable.

        :raises WindowNotServableError: naming the cap, the oldest servable open time and the window.
        """
        oldest = oldest_candle(self.max_lookback_bars, interval, now)
        if oldest and window.start < oldest:
            raise WindowNotServableError(
                self.source,
                f"{self.exchange} serves only its latest {self.max_lookback_bars} {interval} candles (from "
                f"{oldest.isoformat()} at {now.isoformat()}); window [{window.start.isoformat()}, "
                f"{window.end.isoformat()}) starts earlier. Backfill it from an exchange with deeper history.",
            )

    def endpoint(self) -> tuple[str, str | None]:
        """The connection's base URL, else the first URL of ccxt's API table for the exchange
        (its ``urls["test"]`` in sandbox mode); building the ccxt class makes no request."""
        s = self._settings
        if s.get("base_url"):
            return s["base_url"], self.exchange_conn_id
        urls = self._ccxt_class()().urls
        table = urls.get("test") if s.get("sandbox") and urls.get("test") else urls.get("api")
        return first_url(table) or f"https://{self.exchange}.invalid/", self.exchange_conn_id

    def prepare(self, interval: str, window: Window) -> None:
        """Before the first symbol: the exchange offers ``interval`` and serves ``window``.

        Loads the markets (one request, or none with ``markets_file``); from then on the
        exchange's clock is known.

        :raises ConfigurationError: the exchange has no such timeframe, or no such exchange exists.
        :raises WindowNotServableError: the window is older than the exchange serves.
        """
        self.timeframe(interval)
        self.check_lookback(interval, window, self.vendor_now())

    def answer(self, symbol: str, interval: str, window: Window, ingested_at: datetime) -> Answer:
        """Every candle of ``window`` for ``symbol``, paged from the window start, as canonical bars.

        Pages of at most the market's per-request maximum (:meth:`request_limit`); one page of
        Python candles at a time becomes Arrow before the next request. Prices are in the
        market's quote currency, volume in base units (:func:`candles_to_bars`).

        Swaps and futures: prices in the quote currency, volume in base units whatever the
        exchange counts (:func:`volume_in_base_units`), and the settle currency stated in the
        outcome's ``note`` (:func:`market_note`).

        :return: the :class:`~market_ingest.extract.Answer`, sorted by open time (a repeated
            candle keeps its page order), ``continuous`` (exchanges trade around the clock).
        :raises UnknownSymbolError: the exchange does not list ``symbol`` (``BadSymbol``).
        :raises SymbolError: the exchange refused the request for this symbol (another
            ``ExchangeError``), or an inverse contract's volume cannot be stated in base units.
        :raises RateLimitedError, VendorUnavailableError: transient; Airflow retries the task.
        """
        import ccxt
        import pyarrow as pa

        from market_ingest.extract import Answer
        from market_ingest.schema import empty_bars

        tf = self.timeframe(interval)
        requests, pages = 0, []
        try:
            market = self.client.market(symbol)

            def page_of(since, limit, params):
                page = self.client.fetch_ohlcv(symbol, tf, since, limit, params)
                if not page and self.client.last_json_response is None and self.client.last_http_response:
                    # ccxt reads a body that is not JSON (cut mid-transfer) as no candles: an empty
                    # page would be reported as the vendor having none (seen in the soak benchmark).
                    raise ccxt.NetworkError(
                        f"{self.exchange} answered fetch_ohlcv {symbol} with a body that is not JSON "
                        f"({len(self.client.last_http_response)} characters)"
                    )
                return page

            def fetch(since, limit):
                nonlocal requests
                requests += 1
                params = candle_endpoint_params(self.exchange, since, window, interval)
                return self._call(page_of, since, limit, params, what="fetch_ohlcv", symbol=symbol)

            for page in iter_pages(fetch, window, interval, self.request_limit(symbol)):
                pages.append(
                    candles_to_bars(
                        page,
                        source=self.source,
                        symbol=symbol,
                        interval=interval,
                        currency=market.get("quote"),
                        ingested_at=ingested_at,
                    )
                )
        except ccxt.BadSymbol as exc:
            reason = without_queries(f"{self.exchange} does not list {symbol} (BadSymbol: {exc})")
            raise UnknownSymbolError(self.source, reason, symbol) from None
        except ccxt.ExchangeError as exc:
            raise SymbolError(
                self.source,
                without_queries(f"{self.exchange} refused fetch_ohlcv {symbol} {tf}: {type(exc).__name__}: {exc}"),
                symbol,
            ) from None
        table = pa.concat_tables(pages) if pages else empty_bars()
        factor = volume_in_base_units(self.exchange, market)
        if factor is None:
            raise SymbolError(
                self.source,
                f"{symbol} is an inverse contract whose {self.exchange} candles count contracts worth "
                f"{market.get('contractSize')} {market.get('quote')} each; its volume in {market.get('base')} "
                "cannot be stated without trade prices",
                symbol,
            )
        return Answer(
            by_open_time(scaled_volume(table, factor)),
            now=self.vendor_now(),
            continuous=True,
            requests=requests,
            no_data_reason="no closed candle in the window",
            note=market_note(market, factor),
        )

    def fetch_quotes(
        self, symbols: list[str], as_of: datetime, ingested_at: datetime
    ) -> tuple[pa.Table, list[outcomes.SymbolOutcome]]:
        """Ticker snapshots with one ``fetch_tickers`` call for all listed symbols, quote schema.

        :param as_of: stamped into ``time`` when the exchange gives no ticker timestamp.
        :return: ``(quotes, outcomes)``: ``price`` = last trade, ``open/high/low/change/volume`` over
            the exchange's rolling 24 h (volume in base units), ``currency`` = the quote currency.
            Symbols the exchange does not list are ``unknown_symbol`` (no request is spent on them).
        """
        import ccxt
        import pyarrow as pa

        from market_ingest.schema import QUOTE_SCHEMA, conform

        results: dict[str, outcomes.SymbolOutcome] = {}
        rows = []
        listed = [s for s in symbols if s in self.client.markets]
        for s in symbols:
            if s not in listed:
                results[s] = outcomes.SymbolOutcome(s, outcomes.UNKNOWN_SYMBOL, reason=f"{self.exchange} does not list {s}")
        tickers = {}
        if listed:
            try:
                tickers = self._call(self.client.fetch_tickers, listed, what="fetch_tickers")
            except ccxt.ExchangeError as exc:
                raise MarketDataError(
                    self.source, without_queries(f"fetch_tickers {listed}: {type(exc).__name__}: {exc}")
                ) from None
        for s in listed:
            t = tickers.get(s) or {}
            currency = self.client.markets[s].get("quote")
            row = ticker_row(t, source=self.source, symbol=s, currency=currency, as_of=as_of, ingested_at=ingested_at)
            if row is None:
                reason = "no last price in the ticker" if t else f"{self.exchange} returned no ticker for it"
                results[s] = outcomes.SymbolOutcome(s, outcomes.NO_DATA, reason=reason)
                continue
            rows.append(row)
            results[s] = outcomes.SymbolOutcome(s, outcomes.OK, rows=1)
        table = conform(pa.Table.from_pylist(rows), QUOTE_SCHEMA) if rows else QUOTE_SCHEMA.empty_table()
        return table, [results[s] for s in symbols]
