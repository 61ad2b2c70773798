"""Public REST market data of crypto exchanges, as ccxt calls them: candles, tickers and markets.

One class per exchange, each speaking that exchange's own wire format (public API documentation
of each exchange; the recorded bodies in ``include/recordings/<exchange>/``):

============== ============================================== ====== ======== ==================
exchange       candles endpoint                               order  max/page window params
============== ============================================== ====== ======== ==================
binance        /api/v3/klines                                 oldest 1000     startTime/endTime ms
kucoin         /api/v1/market/candles                         newest 1500     startAt/endAt s
coinbase       /api/v3/brokerage/market/products/{id}/candles newest 350      start/end s
coinbaseexch.  /products/{id}/candles                         newest 300      start/end ISO 8601
kraken         /0/public/OHLC                                 oldest 720      since s (latest 720 only)
okx            /api/v5/market/candles, history-candles        newest 300/100  after/before ms
============== ============================================== ====== ======== ==================

Every page holds the candle still open at the exchange's clock (the recording's time, or now in
synthetic mode) when the window reaches it, as the exchanges do. Markets: a recorded market list
is served as it was recorded (Binance's ``exchangeInfo``); otherwise the stand-in lists
``standin.pairs`` (spot) in the exchange's format, plus every swap and future market that has
recorded candles, on exchanges whose market ids spell the contract (:meth:`Exchange.contract`:
OKX ``BTC-USDT-SWAP``, ``BTC-USD-250627``), so a recording of swap candles needs no markets file. A symbol the exchange does not list answers the
exchange's own "invalid symbol" error, naming the symbol; a listed symbol outside every recording
answers an empty page (the exchange's "no trades" answer) with ``X-Standin-Missing`` naming it.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone

from standin import synthetic
from standin.core import NotServed, Request, Response
from standin.recordings import INTERVAL_MS, Recording


def _iso_ms(t_ms: int) -> str:
    return datetime.fromtimestamp(t_ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _num(x: float) -> str:
    return f"{x:.8f}".rstrip("0").rstrip(".")


class Exchange:
    """What every exchange shares: series lookup (recording or synthetic), pages, markets."""

    vendor = ""
    hosts: tuple[str, ...] = ()
    #: exchange timeframe spelling -> canonical interval
    timeframes: dict[str, str] = {}
    max_limit = 500
    default_limit = 500
    newest_first = False
    separator = ""

    def __init__(self, standin) -> None:
        self.standin = standin

    # -- the exchange's wire format (overridden) ----------------------------------------------
    def candle_rows(self, rec: Recording) -> list[tuple[int, object]]:
        """``(open ms, candle as the exchange sends it)`` of a recorded candles body, any order."""
        raise NotImplementedError

    def make_candle(self, bar: synthetic.Bar, interval: str) -> object:
        """A synthetic bar in the exchange's candle format."""
        raise NotImplementedError

    def market_id(self, base: str, quote: str) -> str:
        """The exchange's id of a spot market (``BTCUSDT``, ``BTC-USDT``)."""
        return f"{base}{self.separator}{quote}"

    # -- shared -------------------------------------------------------------------------------
    def extent(self, rec: Recording) -> tuple[int, int] | None:
        """First candle's open to last candle's end, epoch ms."""
        if rec.endpoint != "candles" or rec.interval is None:
            return None
        try:
            opens = [t for t, _ in self.candle_rows(rec)]
        except (ValueError, KeyError, TypeError, IndexError):
            return None
        return (min(opens), max(opens) + INTERVAL_MS[rec.interval]) if opens else None

    def contract(self, market_id: str) -> dict | None:
        """What a swap or future market id says, where the exchange spells it into the id:
        ``{"type": "swap"|"future", "base", "quote", "settle", "expiry_ms"}`` (``expiry_ms`` None
        for swaps); ``None`` for a spot id (every exchange here but OKX lists spot only)."""
        return None

    def contracts(self) -> dict[str, dict]:
        """Swap and future markets listed: ``{market id: contract}`` of every recorded candle series
        whose id is a contract (:meth:`contract`), in recording order."""
        found = {}
        for rec in self.standin.library.of(self.vendor, "candles"):
            if rec.symbol and (c := self.contract(rec.symbol)) is not None:
                found.setdefault(rec.symbol, c)
        return found

    def pairs(self) -> list[tuple[str, str]]:
        """Spot markets listed: the stand-in's pairs plus every spot pair a recording holds."""
        listed = list(self.standin.pairs)
        for rec in self.standin.library.of(self.vendor, "candles"):
            pair = None if self.contract(rec.symbol or "") else self.split_id(rec.symbol or "")
            if pair and pair not in listed:
                listed.append(pair)
        return listed

    def world_clock(self):
        """The exchange's clock for answers that are not candles (markets, currencies, time): now in
        synthetic mode, else the newest candle recording's time (the stand-in's world for this
        exchange is as of its recordings), else now."""
        recorded = [r.requested_at for r in self.standin.library.of(self.vendor, "candles") if r.requested_at]
        return self.standin.now() if self.standin.synthetic or not recorded else max(recorded)

    def split_id(self, market_id: str) -> tuple[str, str] | None:
        """``(base, quote)`` of a market id, or ``None`` when the exchange does not list it."""
        for base, quote in self.standin.pairs:
            if self.market_id(base, quote) == market_id:
                return base, quote
        if self.separator and self.separator in market_id:
            base, _, quote = market_id.partition(self.separator)
            return base, quote
        for quote in ("USDT", "USDC", "USD", "EUR", "BTC", "ETH"):
            if market_id.endswith(quote) and len(market_id) > len(quote):
                return market_id[: -len(quote)], quote
        return None

    def listed(self, market_id: str) -> bool:
        """True when the exchange lists ``market_id``: recorded, one of the stand-in's pairs, or (synthetic
        mode) any id that reads as base and quote."""
        if self.standin.library.of(self.vendor, "candles", market_id):
            return True
        if self.standin.synthetic and self.split_id(market_id):
            return True
        return any(self.market_id(b, q) == market_id for b, q in self.pairs())

    def page(self, market_id: str, interval: str, start_ms: int | None, end_ms: int | None, limit: int, newest: bool = False):
        """Candles of one request: ``(clock, [(open ms, candle)], missing reason or None)``, oldest first.

        :param start_ms, end_ms: open times asked, ``[start, end]`` inclusive as the exchanges treat them.
        :param newest: with no start, the latest ``limit`` candles up to the clock (the exchanges' default).
        """
        step = INTERVAL_MS[interval]
        rec = self.standin.library.best(
            self.vendor, "candles", market_id, interval, start_ms, None if end_ms is None else end_ms + 1
        )
        if rec is None and not start_ms and self.standin.library.of(self.vendor, "candles", market_id, interval):
            rec = max(self.standin.library.of(self.vendor, "candles", market_id, interval), key=lambda r: r.recorded_ms)
        if rec is not None:
            clock = rec.requested_at or self.standin.now()
            clock_ms = int(clock.timestamp() * 1000)
            rows = sorted((t, c) for t, c in self.candle_rows(rec) if t <= clock_ms)
            missing = None
        elif self.standin.synthetic:
            clock = self.standin.now()
            clock_ms = int(clock.timestamp() * 1000)
            lo = start_ms if start_ms is not None else clock_ms - limit * step
            hi = min(end_ms + 1 if end_ms is not None else clock_ms + 1, lo + limit * step if not newest else clock_ms + 1)
            if start_ms is None and end_ms is not None:
                lo = end_ms - (limit - 1) * step
            rows = [
                (b.time_ms, self.make_candle(b, interval))
                for b in synthetic.bars(self.standin.seed, market_id, interval, lo, hi, synthetic.CRYPTO, clock_ms)
            ]
            missing = None
        else:
            return self.standin.now(), [], f"no recording of {self.vendor} {market_id} {interval}"
        if start_ms is not None:
            rows = [r for r in rows if r[0] >= start_ms]
        if end_ms is not None:
            rows = [r for r in rows if r[0] <= end_ms]
        rows = rows[-limit:] if (start_ms is None) else rows[:limit]
        if rec is not None and not rows:
            missing = f"the recording of {self.vendor} {market_id} {interval} holds no candle in the range asked"
        return clock, rows, missing

    def recorded_error(self, market_id: str | None, interval: str | None) -> Response | None:
        """A recorded non-200 answer for this market's candles (an exchange's error body), served as recorded."""
        for rec in self.standin.library.of(self.vendor, "candles", market_id, interval):
            if rec.status != 200:
                return Response(rec.status, rec.body, rec.content_type, rec.requested_at)
        return None

    def throttled(self, request: Request, why: str) -> Response:
        """HTTP 429 in the exchange's error shape (overridden where the exchange differs)."""
        return Response.json(429, {"error": "Too Many Requests"})

    def fault_body(self, status: int) -> Response:
        return Response(status, "<html><body><h1>503 Service Unavailable</h1></body></html>", "text/html")

    def interval_of(self, timeframe: str | None) -> str | None:
        return self.timeframes.get(timeframe or "")

    def ordered(self, rows: list) -> list:
        return [c for _, c in (reversed(rows) if self.newest_first else rows)]

    def missing_headers(self, missing: str | None) -> dict[str, str]:
        return {"X-Standin-Missing": missing} if missing else {}


class Binance(Exchange):
    """Binance spot (``api.binance.com``): exchangeInfo, klines, ticker/24hr."""

    vendor = "binance"
    hosts = ("api.binance.com", "api1.binance.com", "api2.binance.com", "api3.binance.com")
    timeframes = {"1m": "1m", "5m": "5m", "15m": "15m", "30m": "30m", "1h": "1h", "1d": "1d", "1w": "1wk", "1M": "1mo"}
    max_limit, default_limit = 1000, 500

    def candle_rows(self, rec):
        return [(int(c[0]), c) for c in json.loads(rec.body)]

    def make_candle(self, b, interval):
        step = INTERVAL_MS[interval]
        return [
            b.time_ms,
            _num(b.open),
            _num(b.high),
            _num(b.low),
            _num(b.close),
            _num(b.volume),
            b.time_ms + step - 1,
            _num(b.volume * b.close),
            int(b.volume) + 1,
            _num(b.volume / 2),
            _num(b.volume * b.close / 2),
            "0",
        ]

    def throttled(self, request, why):
        if why == "banned":
            until = int(self.world_clock().timestamp() * 1000) + 120_000
            msg = f"Way too many requests; IP(127.0.0.1) banned until {until}. Please use the websocket for live updates to avoid bans."
            return Response.json(418, {"code": -1003, "msg": msg})
        msg = "Too many requests; current limit of IP(127.0.0.1) is 1200 requests per minute. Please use the websocket for live updates to avoid polling the API."
        return Response.json(429, {"code": -1003, "msg": msg})

    def invalid(self, what: str) -> Response:
        return Response.json(400, {"code": -1121, "msg": "Invalid symbol."}, None, **{"X-Standin-Missing": what})

    def handle(self, request: Request) -> Response:
        path = request.path
        if path == "/api/v3/exchangeInfo":
            return self.exchange_info()
        if path in ("/api/v3/ping",):
            return Response.json(200, {})
        if path == "/api/v3/time":
            return Response.json(200, {"serverTime": int(self.world_clock().timestamp() * 1000)})
        if path == "/api/v3/klines":
            market_id, interval = request.param("symbol"), self.interval_of(request.param("interval"))
            if interval is None:
                return Response.json(400, {"code": -1120, "msg": "Invalid interval."})
            if (error := self.recorded_error(market_id, interval)) is not None:
                return error
            if not market_id or not self.listed(market_id):
                return self.invalid(f"binance does not list {market_id}")
            limit = min(int(request.param("limit", default=str(self.default_limit))), self.max_limit)
            start = request.param("startTime")
            end = request.param("endTime")
            clock, rows, missing = self.page(market_id, interval, int(start) if start else None, int(end) if end else None, limit)
            return Response.json(200, self.ordered(rows), clock, **self.missing_headers(missing))
        if path == "/api/v3/ticker/24hr":
            return self.tickers(request)
        raise NotServed(f"Binance path {path} is not served by the stand-in")

    def exchange_info(self) -> Response:
        recorded = self.standin.library.of(self.vendor, "markets")
        if recorded and not self.standin.synthetic:
            rec = max(recorded, key=lambda r: r.recorded_ms)
            return Response(rec.status, rec.body, rec.content_type, rec.requested_at)
        template = json.loads(recorded[0].body)["symbols"][0] if recorded else None
        symbols = []
        for base, quote in self.pairs():
            entry = dict(template) if template else {
                "status": "TRADING", "baseAssetPrecision": 8, "quotePrecision": 8, "quoteAssetPrecision": 8,
                "orderTypes": ["LIMIT", "MARKET"], "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
                "filters": [{"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
                            {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"}],
                "permissions": ["SPOT"],
            }  # fmt: skip
            entry.update({"symbol": self.market_id(base, quote), "baseAsset": base, "quoteAsset": quote})
            symbols.append(entry)
        clock = self.world_clock()
        doc = {"timezone": "UTC", "serverTime": int(clock.timestamp() * 1000),
               "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 1200}],
               "exchangeFilters": [], "symbols": symbols}  # fmt: skip
        return Response.json(200, doc, clock)

    def tickers(self, request: Request) -> Response:
        wanted = (
            json.loads(request.param("symbols", default="[]"))
            if request.param("symbols")
            else [self.market_id(b, q) for b, q in self.pairs()]
        )
        out = []
        for market_id in wanted:
            clock, rows, _ = self.page(market_id, "1m", None, None, 1440)
            if not rows:
                continue
            last, first = rows[-1][1], rows[0][1]
            out.append({"symbol": market_id, "priceChange": _num(float(last[4]) - float(first[1])),
                        "priceChangePercent": _num((float(last[4]) / float(first[1]) - 1) * 100),
                        "lastPrice": last[4], "openPrice": first[1], "highPrice": _num(max(float(c[2]) for _, c in rows)),
                        "lowPrice": _num(min(float(c[3]) for _, c in rows)), "volume": _num(sum(float(c[5]) for _, c in rows)),
                        "openTime": rows[0][0], "closeTime": rows[-1][0] + 59_999})  # fmt: skip
        return Response.json(200, out, self.world_clock())


class KuCoin(Exchange):
    """KuCoin spot (``api.kucoin.com``): currencies, symbols, candles, allTickers."""

    vendor = "kucoin"
    hosts = ("api.kucoin.com", "openapi-v2.kucoin.com", "api-futures.kucoin.com")
    timeframes = {
        "1min": "1m",
        "5min": "5m",
        "15min": "15m",
        "30min": "30m",
        "1hour": "1h",
        "1day": "1d",
        "1week": "1wk",
        "1month": "1mo",
    }
    max_limit = default_limit = 1500
    newest_first = True
    separator = "-"

    def candle_rows(self, rec):
        return [(int(c[0]) * 1000, c) for c in json.loads(rec.body)["data"]]

    def make_candle(self, b, interval):
        return [
            str(b.time_ms // 1000),
            _num(b.open),
            _num(b.close),
            _num(b.high),
            _num(b.low),
            _num(b.volume),
            _num(b.volume * b.close),
        ]

    def throttled(self, request, why):
        return Response.json(429, {"code": "429000", "msg": "Too Many Requests"})

    def handle(self, request: Request) -> Response:
        path = request.path
        ok = {"code": "200000"}
        if path == "/api/v3/currencies":
            assets = sorted({a for pair in self.pairs() for a in pair})
            data = [{"currency": a, "name": a, "fullName": a, "precision": 8, "confirms": None, "contractAddress": None,
                     "isMarginEnabled": False, "isDebitEnabled": False, "chains": []} for a in assets]  # fmt: skip
            return Response.json(200, {**ok, "data": data}, self.world_clock())
        if path in ("/api/v2/symbols", "/api/v1/symbols"):
            data = [{"symbol": self.market_id(b, q), "name": self.market_id(b, q), "baseCurrency": b, "quoteCurrency": q,
                     "feeCurrency": q, "market": q, "baseMinSize": "0.00001", "quoteMinSize": "0.1", "baseMaxSize": "10000000000",
                     "quoteMaxSize": "99999999", "baseIncrement": "0.00000001", "quoteIncrement": "0.000001", "priceIncrement": "0.1",
                     "priceLimitRate": "0.1", "minFunds": "0.1", "isMarginEnabled": False, "enableTrading": True,
                     "feeCategory": 1, "makerFeeCoefficient": "1.00", "takerFeeCoefficient": "1.00", "st": False}
                    for b, q in self.pairs()]  # fmt: skip
            return Response.json(200, {**ok, "data": data}, self.world_clock())
        if path == "/api/v1/market/candles":
            market_id, interval = request.param("symbol"), self.interval_of(request.param("type"))
            if interval is None:
                return Response.json(400, {"code": "400100", "msg": "type invalid"})
            if (error := self.recorded_error(market_id, interval)) is not None:
                return error
            if not market_id or not self.listed(market_id):
                return Response.json(200, {"code": "400100", "msg": "This pair is not provided at present"}, None,
                                     **{"X-Standin-Missing": f"kucoin does not list {market_id}"})  # fmt: skip
            start, end = request.param("startAt"), request.param("endAt")
            clock, rows, missing = self.page(
                market_id, interval, int(start) * 1000 if start and start != "0" else None,
                int(end) * 1000 - 1 if end and end != "0" else None, self.max_limit)  # fmt: skip
            return Response.json(200, {**ok, "data": self.ordered(rows)}, clock, **self.missing_headers(missing))
        if request.host == "api-futures.kucoin.com":  # ccxt's kucoin asks for futures too; the stand-in lists spot only
            return Response.json(200, {**ok, "data": []}, self.world_clock())
        if path == "/api/v1/market/allTickers":
            recorded = self.standin.library.of(self.vendor, "tickers")
            if recorded and not self.standin.synthetic:
                rec = max(recorded, key=lambda r: r.recorded_ms)
                return Response(rec.status, rec.body, rec.content_type, rec.requested_at)
            clock = self.world_clock()
            ticker = []
            for b, q in self.pairs():
                _, rows, _ = self.page(self.market_id(b, q), "1h", None, None, 24)
                if rows:
                    last, first = rows[-1][1], rows[0][1]
                    ticker.append({"symbol": self.market_id(b, q), "symbolName": self.market_id(b, q), "last": last[2],
                                   "high": _num(max(float(c[3]) for _, c in rows)), "low": _num(min(float(c[4]) for _, c in rows)),
                                   "vol": _num(sum(float(c[5]) for _, c in rows)), "changePrice": _num(float(last[2]) - float(first[1])),
                                   "changeRate": _num(float(last[2]) / float(first[1]) - 1)})  # fmt: skip
            return Response.json(200, {**ok, "data": {"time": int(clock.timestamp() * 1000), "ticker": ticker}}, clock)
        raise NotServed(f"KuCoin path {path} is not served by the stand-in")


class Coinbase(Exchange):
    """Coinbase Advanced Trade public market data (``api.coinbase.com``)."""

    vendor = "coinbase"
    hosts = ("api.coinbase.com",)
    timeframes = {
        "ONE_MINUTE": "1m",
        "FIVE_MINUTE": "5m",
        "FIFTEEN_MINUTE": "15m",
        "THIRTY_MINUTE": "30m",
        "ONE_HOUR": "1h",
        "ONE_DAY": "1d",
    }
    max_limit = default_limit = 350
    newest_first = True
    separator = "-"

    def candle_rows(self, rec):
        return [(int(c["start"]) * 1000, c) for c in json.loads(rec.body)["candles"]]

    def make_candle(self, b, interval):
        return {"start": str(b.time_ms // 1000), "low": _num(b.low), "high": _num(b.high), "open": _num(b.open),
                "close": _num(b.close), "volume": _num(b.volume)}  # fmt: skip

    def throttled(self, request, why):
        return Response.json(429, {"message": "Too many requests"})

    def handle(self, request: Request) -> Response:
        path = request.path
        clock = self.world_clock()
        if path in ("/v2/currencies", "/v2/currencies/crypto"):
            assets = sorted({a for pair in self.pairs() for a in pair})
            if path.endswith("crypto"):
                data = [{"code": a, "name": a, "color": "#000000", "sort_index": i, "exponent": 8, "type": "crypto",
                         "address_regex": "", "asset_id": a} for i, a in enumerate(assets)]  # fmt: skip
            else:
                data = [{"id": a, "name": a, "min_size": "0.01"} for a in assets]
            return Response.json(200, {"data": data}, clock)
        if path.startswith("/v2/exchange-rates"):
            return Response.json(200, {"data": {"currency": request.param("currency", default="USD"), "rates": {}}}, clock)
        if path in ("/api/v3/brokerage/market/products", "/api/v3/brokerage/products"):
            if request.param("product_type") == "FUTURE":
                return Response.json(200, {"products": [], "num_products": 0}, clock)
            products = [self._product(b, q) for b, q in self.pairs()]
            return Response.json(200, {"products": products, "num_products": len(products)}, clock)
        if path.endswith("/candles") and path.startswith("/api/v3/brokerage/market/products/"):
            market_id = path.split("/")[-2]
            interval = self.interval_of(request.param("granularity"))
            if interval is None:
                return Response.json(400, {"error": "INVALID_ARGUMENT", "message": "granularity is invalid"})
            if (error := self.recorded_error(market_id, interval)) is not None:
                return error
            if not self.listed(market_id):
                return Response.json(404, {"error": "NOT_FOUND", "error_details": "ProductID is invalid", "message": "ProductID is invalid"},
                                     None, **{"X-Standin-Missing": f"coinbase does not list {market_id}"})  # fmt: skip
            start, end = request.param("start"), request.param("end")
            limit = min(int(request.param("limit", default=str(self.max_limit))), self.max_limit)
            clock, rows, missing = self.page(market_id, interval, int(start) * 1000 if start else None,
                                             int(end) * 1000 - 1 if end else None, limit)  # fmt: skip
            return Response.json(200, {"candles": self.ordered(rows)}, clock, **self.missing_headers(missing))
        if path.startswith("/api/v3/brokerage/market/products/") or path.startswith("/api/v3/brokerage/products/"):
            market_id = path.rstrip("/").split("/")[-1]
            pair = self.split_id(market_id)
            return Response.json(200, self._product(*pair), clock) if pair else Response.json(404, {"error": "NOT_FOUND"})
        if path.startswith("/api/v3/brokerage/time"):
            return Response.json(200, {"iso": clock.isoformat(), "epochSeconds": str(int(clock.timestamp()))}, clock)
        raise NotServed(f"Coinbase path {path} is not served by the stand-in")

    def _product(self, base, quote):
        market_id = self.market_id(base, quote)
        return {"product_id": market_id, "price": "1", "price_percentage_change_24h": "0", "volume_24h": "0",
                "volume_percentage_change_24h": "0", "base_increment": "0.00000001", "quote_increment": "0.01",
                "quote_min_size": "1", "quote_max_size": "150000000", "base_min_size": "0.00000001", "base_max_size": "3400",
                "base_name": base, "quote_name": quote, "watched": False, "is_disabled": False, "new": False, "status": "online",
                "cancel_only": False, "limit_only": False, "post_only": False, "trading_disabled": False, "auction_mode": False,
                "product_type": "SPOT", "quote_currency_id": quote, "base_currency_id": base, "fcm_trading_session_details": None,
                "mid_market_price": "", "alias": "", "alias_to": [], "base_display_symbol": base, "quote_display_symbol": quote,
                "view_only": False, "price_increment": "0.01", "display_name": f"{base}-{quote}", "product_venue": "CBE"}  # fmt: skip


class CoinbaseExchange(Exchange):
    """Coinbase Exchange (formerly Pro) public REST (``api.exchange.coinbase.com``)."""

    vendor = "coinbaseexchange"
    hosts = ("api.exchange.coinbase.com", "api.pro.coinbase.com")
    timeframes = {"60": "1m", "300": "5m", "900": "15m", "3600": "1h", "21600": "6h", "86400": "1d"}
    max_limit = default_limit = 300
    newest_first = True
    separator = "-"

    def candle_rows(self, rec):
        return [(int(c[0]) * 1000, c) for c in json.loads(rec.body)]

    def make_candle(self, b, interval):
        return [b.time_ms // 1000, round(b.low, 8), round(b.high, 8), round(b.open, 8), round(b.close, 8), round(b.volume, 8)]

    def throttled(self, request, why):
        return Response.json(429, {"message": "Public rate limit exceeded"})

    def handle(self, request: Request) -> Response:
        path = request.path
        clock = self.world_clock()
        if path == "/currencies":
            assets = sorted({a for pair in self.pairs() for a in pair})
            data = [{"id": a, "name": a, "min_size": "0.00000001", "status": "online", "message": "", "max_precision": "0.00000001",
                     "convertible_to": [], "details": {"type": "crypto", "symbol": "", "network_confirmations": 0, "sort_order": 0,
                     "crypto_address_link": "", "crypto_transaction_link": "", "push_payment_methods": []}, "supported_networks": []}
                    for a in assets]  # fmt: skip
            return Response.json(200, data, clock)
        if path == "/products":
            data = [{"id": self.market_id(b, q), "base_currency": b, "quote_currency": q, "quote_increment": "0.01",
                     "base_increment": "0.00000001", "display_name": f"{b}/{q}", "min_market_funds": "1", "margin_enabled": False,
                     "post_only": False, "limit_only": False, "cancel_only": False, "status": "online", "status_message": "",
                     "trading_disabled": False, "fx_stablecoin": False, "max_slippage_percentage": "0.02", "auction_mode": False,
                     "high_bid_limit_percentage": ""} for b, q in self.pairs()]  # fmt: skip
            return Response.json(200, data, clock)
        if path.startswith("/products/") and path.endswith("/candles"):
            market_id = path.split("/")[2]
            interval = self.interval_of(request.param("granularity"))
            if interval is None:
                return Response.json(400, {"message": "Unsupported granularity"})
            if (error := self.recorded_error(market_id, interval)) is not None:
                return error
            if not self.listed(market_id):
                return Response.json(
                    404, {"message": "NotFound"}, None, **{"X-Standin-Missing": f"coinbaseexchange does not list {market_id}"}
                )

            def ms(v):
                return None if not v else int(datetime.fromisoformat(v.replace("Z", "+00:00")).timestamp() * 1000)

            clock, rows, missing = self.page(
                market_id, interval, ms(request.param("start")), ms(request.param("end")), self.max_limit
            )
            return Response.json(200, self.ordered(rows), clock, **self.missing_headers(missing))
        if path == "/time":
            return Response.json(200, {"iso": clock.isoformat(), "epoch": clock.timestamp()}, clock)
        raise NotServed(f"Coinbase Exchange path {path} is not served by the stand-in")


class Kraken(Exchange):
    """Kraken public REST (``api.kraken.com``): Assets, AssetPairs, OHLC, Ticker.

    OHLC serves only the latest 720 committed candles of an interval, whatever ``since`` asks, plus
    the current one (Kraken's documentation: "Returns up to 720 of the most recent entries" and
    "the last entry in the OHLC array is for the current, not-yet-committed frame and will always be
    present, regardless of the value of since").
    """

    vendor = "kraken"
    hosts = ("api.kraken.com",)
    timeframes = {"1": "1m", "5": "5m", "15": "15m", "30": "30m", "60": "1h", "1440": "1d", "10080": "1wk"}
    max_limit = default_limit = 720
    #: Kraken's own asset codes for the common assets (XBT for BTC, ...), as AssetPairs spells them.
    CODES = {"BTC": "XBT", "DOGE": "XDG"}

    def market_id(self, base, quote):
        return f"{self.CODES.get(base, base)}{self.CODES.get(quote, quote)}"

    def candle_rows(self, rec):
        result = json.loads(rec.body)["result"]
        rows = next(v for k, v in result.items() if k != "last")
        return [(int(c[0]) * 1000, c) for c in rows]

    def make_candle(self, b, interval):
        return [b.time_ms // 1000, _num(b.open), _num(b.high), _num(b.low), _num(b.close), _num((b.high + b.low + b.close) / 3),
                _num(b.volume), int(b.volume) + 1]  # fmt: skip

    def throttled(self, request, why):
        return Response.json(200, {"error": ["EAPI:Rate limit exceeded"]})

    def handle(self, request: Request) -> Response:
        path = request.path
        clock = self.world_clock()
        if path == "/0/public/Assets":
            assets = sorted({self.CODES.get(a, a) for pair in self.pairs() for a in pair})
            result = {
                a: {"aclass": "currency", "altname": a, "decimals": 10, "display_decimals": 5, "status": "enabled"}
                for a in assets
            }
            return Response.json(200, {"error": [], "result": result}, clock)
        if path == "/0/public/AssetPairs":
            result = {}
            for b, q in self.pairs():
                market_id = self.market_id(b, q)
                result[market_id] = {"altname": market_id, "wsname": f"{b}/{q}", "aclass_base": "currency",
                                     "base": self.CODES.get(b, b), "aclass_quote": "currency", "quote": self.CODES.get(q, q),
                                     "lot": "unit", "cost_decimals": 5, "pair_decimals": 1, "lot_decimals": 8, "lot_multiplier": 1,
                                     "leverage_buy": [], "leverage_sell": [], "fees": [[0, 0.4]], "fees_maker": [[0, 0.25]],
                                     "fee_volume_currency": "ZUSD", "margin_call": 80, "margin_stop": 40, "ordermin": "0.0001",
                                     "costmin": "0.5", "tick_size": "0.1", "status": "online"}  # fmt: skip
            return Response.json(200, {"error": [], "result": result}, clock)
        if path == "/0/public/OHLC":
            market_id, interval = request.param("pair"), self.interval_of(request.param("interval", default="1"))
            if interval is None:
                return Response.json(200, {"error": ["EGeneral:Invalid arguments"]})
            if (error := self.recorded_error(market_id, interval)) is not None:
                return error
            if not market_id or not self.listed(market_id):
                return Response.json(
                    200,
                    {"error": ["EQuery:Unknown asset pair"]},
                    None,
                    **{"X-Standin-Missing": f"kraken does not list {market_id}"},
                )
            clock, rows, missing = self.page(market_id, interval, None, None, self.max_limit + 1)  # latest 720 + current
            since = request.param("since")
            if since:
                rows = [r for r in rows if r[0] >= int(since) * 1000] or rows[-1:]
            last = rows[-1][0] // 1000 if rows else int(clock.timestamp())
            return Response.json(
                200,
                {"error": [], "result": {market_id: self.ordered(rows), "last": last}},
                clock,
                **self.missing_headers(missing),
            )
        raise NotServed(f"Kraken path {path} is not served by the stand-in")


class OKX(Exchange):
    """OKX v5 public REST (``www.okx.com``): instruments, candles and history-candles, tickers."""

    vendor = "okx"
    hosts = ("www.okx.com", "aws.okx.com", "my.okx.com")
    timeframes = {
        "1m": "1m",
        "5m": "5m",
        "15m": "15m",
        "30m": "30m",
        "1H": "1h",
        "1Dutc": "1d",
        "1D": "1d",
        "1Wutc": "1wk",
        "1W": "1wk",
        "1Mutc": "1mo",
        "1M": "1mo",
    }
    max_limit = default_limit = 300
    newest_first = True
    separator = "-"

    #: instType -> contract type
    KINDS = {"SWAP": "swap", "FUTURES": "future"}

    def candle_rows(self, rec):
        return [(int(c[0]), c) for c in json.loads(rec.body)["data"]]

    def make_candle(self, b, interval):
        return [str(b.time_ms), _num(b.open), _num(b.high), _num(b.low), _num(b.close), _num(b.volume), _num(b.volume * b.close),
                _num(b.volume * b.close), "1"]  # fmt: skip

    def contract(self, market_id):
        """OKX spells contracts ``BASE-QUOTE-SWAP`` and ``BASE-QUOTE-YYMMDD`` (expiring 08:00 UTC);
        a ``-USD-`` contract is inverse (settled in the base coin), others linear (settled in the quote)."""
        parts = market_id.split("-")
        if len(parts) != 3 or not (parts[2] == "SWAP" or (parts[2].isdigit() and len(parts[2]) == 6)):
            return None
        base, quote, tail = parts
        expiry = None
        if tail != "SWAP":
            expiry = int(datetime.strptime(tail + "08", "%y%m%d%H").replace(tzinfo=timezone.utc).timestamp() * 1000)
        settle = base if quote == "USD" else quote
        return {
            "type": "swap" if expiry is None else "future",
            "base": base,
            "quote": quote,
            "settle": settle,
            "expiry_ms": expiry,
        }

    def _contract_instrument(self, market_id: str, c: dict) -> dict:
        """An OKX v5 instrument of a contract, fields as OKX lists them (``ctVal`` left empty: the stand-in
        does not know a contract's size, and ccxt reads OKX candles' volume in coins, ``volCcy``)."""
        family = f"{c['base']}-{c['quote']}"
        return {"instType": "SWAP" if c["type"] == "swap" else "FUTURES", "instId": market_id, "uly": family,
                "instFamily": family, "baseCcy": "", "quoteCcy": "", "settleCcy": c["settle"], "ctVal": "", "ctMult": "1",
                "ctValCcy": "", "ctType": "inverse" if c["settle"] == c["base"] else "linear", "optType": "", "stk": "",
                "listTime": "1573557408000", "expTime": "" if c["expiry_ms"] is None else str(c["expiry_ms"]), "lever": "100",
                "tickSz": "0.1", "lotSz": "1", "minSz": "1", "alias": "", "state": "live", "maxLmtSz": "100000000",
                "maxMktSz": "10000", "ruleType": "normal", "category": "1"}  # fmt: skip

    def throttled(self, request, why):
        return Response.json(429, {"msg": "Too Many Requests", "code": "50011"})

    def handle(self, request: Request) -> Response:
        path = request.path
        clock = self.world_clock()
        if path == "/api/v5/public/instruments":
            kind = request.param("instType", default="SPOT")
            if kind in ("SWAP", "FUTURES"):
                data = [self._contract_instrument(i, c) for i, c in self.contracts().items() if c["type"] == self.KINDS[kind]]
                return Response.json(200, {"code": "0", "msg": "", "data": data}, clock)
            if kind != "SPOT":
                return Response.json(200, {"code": "0", "msg": "", "data": []}, clock)
            data = [{"instType": "SPOT", "instId": self.market_id(b, q), "uly": "", "instFamily": "", "baseCcy": b, "quoteCcy": q,
                     "settleCcy": "", "ctVal": "", "ctMult": "", "ctValCcy": "", "optType": "", "stk": "", "listTime": "1548133413000",
                     "expTime": "", "lever": "10", "tickSz": "0.1", "lotSz": "0.00000001", "minSz": "0.00001", "ctType": "",
                     "alias": "", "state": "live", "maxLmtSz": "9999999999", "maxMktSz": "1000000", "maxTwapSz": "", "maxIcebergSz": "",
                     "maxTriggerSz": "", "maxStopSz": "", "ruleType": "normal"} for b, q in self.pairs()]  # fmt: skip
            return Response.json(200, {"code": "0", "msg": "", "data": data}, clock)
        if path in ("/api/v5/market/candles", "/api/v5/market/history-candles"):
            market_id, interval = request.param("instId"), self.interval_of(request.param("bar", default="1m"))
            if interval is None:
                return Response.json(200, {"code": "51000", "msg": "Parameter bar error", "data": []})
            if (error := self.recorded_error(market_id, interval)) is not None:
                return error
            if not market_id or not self.listed(market_id):
                return Response.json(200, {"code": "51001", "msg": "Instrument ID does not exist", "data": []}, None,
                                     **{"X-Standin-Missing": f"okx does not list {market_id}"})  # fmt: skip
            cap = 100 if path.endswith("history-candles") else self.max_limit
            limit = min(int(request.param("limit", default="100")), cap)
            after, before = request.param("after"), request.param("before")  # after: older than; before: newer than
            end = int(after) - 1 if after else None
            start = int(before) + 1 if before else None
            clock, rows, missing = self.page(
                market_id, interval, start, end, 10**6 if start is not None and end is None else limit
            )
            rows = rows[-limit:]  # newest first: OKX returns the newest `limit` candles of the range
            return Response.json(
                200, {"code": "0", "msg": "", "data": self.ordered(rows)}, clock, **self.missing_headers(missing)
            )
        if path == "/api/v5/public/time":
            return Response.json(200, {"code": "0", "msg": "", "data": [{"ts": str(int(clock.timestamp() * 1000))}]}, clock)
        raise NotServed(f"OKX path {path} is not served by the stand-in")


EXCHANGES = (Binance, KuCoin, Coinbase, CoinbaseExchange, Kraken, OKX)
