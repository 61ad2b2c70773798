"""``make record``: capture live vendor responses into ``include/recordings/`` with their provenance.

For users with internet. Each response the vendor sends for the given source, symbols, interval
and window is saved as it came (``<name>.json``) with its sidecar (``<name>.meta.yaml``: vendor,
endpoint, symbol, interval, the vendor's ``Date``, the window asked, the request with any API key
removed), the format the vendor stand-in serves (``standin/recordings.py``). The requests are the
pipeline's own: yfinance's chart requests, ccxt's ``fetch_ohlcv`` pages, Alpha Vantage's series
requests as :class:`~market_ingest.hooks.alpha_vantage.AlphaVantageHook` plans them. Answers that
are not data (Alpha Vantage's quota or error bodies, HTTP errors) are reported and not saved.

Examples::

    make record ARGS="--source binance --symbols BTC/USDT,ETH/USDT --interval 1m --start 2026-11-20T00:00Z --end 2026-11-20T06:00Z"
    make record ARGS="--source yahoo --symbols AAPL,MSFT --interval 1d --start 2025-01-01 --end 2026-01-01"
    ALPHA_VANTAGE_API_KEY=... make record ARGS="--source alpha_vantage --symbols IBM --interval 1d --start 2026-10-01 --end 2026-11-01"

``--base-url`` sends every request through a URL-prefix gateway instead (how the tests record
from the stand-in's synthetic market).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]


def _utc(value: str) -> datetime:
    t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=timezone.utc)


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ") if t else None


def _vendor_url(url: str, base: str | None) -> str:
    """The vendor's own URL of a request sent through ``base`` (``<base>/host/path`` -> ``https://host/path``)."""
    if base and url.startswith(base):
        return "https://" + url[len(base) :].lstrip("/")
    return url


def _without_key(url: str) -> str:
    parts = urlsplit(url)
    query = [(k, v) for k, v in parse_qsl(parts.query, keep_blank_values=True) if k.lower() != "apikey"]
    return parts._replace(query=urlencode(query)).geturl()


def save(out: Path, vendor: str, name: str, body: str, **meta) -> Path:
    """Write ``<out>/<vendor>/<name>.json`` and its sidecar; return the body's path."""
    import yaml

    folder = out / vendor
    folder.mkdir(parents=True, exist_ok=True)
    name = re.sub(r"[^A-Za-z0-9=._-]+", "_", name)
    (folder / f"{name}.json").write_text(body)
    sidecar = {"vendor": vendor, **{k: v for k, v in meta.items() if v is not None}}
    (folder / f"{name}.meta.yaml").write_text(yaml.safe_dump(sidecar, sort_keys=False, width=1 << 20))
    return folder / f"{name}.json"


def record_ccxt(src, symbols: list[str], interval: str, start: datetime, end: datetime, base: str | None, out: Path):
    """Every ``fetch_ohlcv`` page ccxt requests for the window, as the exchange answered it."""
    import ccxt

    from market_ingest.intervals import Window
    from market_ingest.routing import response_clock, route_urls
    from market_ingest.vendors.ccxt import CCXT_TIMEFRAMES, candle_endpoint_params, iter_pages, ohlcv_limit

    client = getattr(ccxt, src.exchange)({"enableRateLimit": True, "options": src.options or {}})
    if base:
        client.urls["api"] = route_urls(client.urls["api"], base)
    client.load_markets()
    window, written = Window(start, end), []
    for symbol in symbols:
        market = client.market(symbol)

        def fetch(since, limit, symbol=symbol, market=market):
            params = candle_endpoint_params(src.exchange, since, window, interval)
            candles = client.fetch_ohlcv(symbol, CCXT_TIMEFRAMES[interval], since, limit, params)
            url = _vendor_url(client.last_request_url, base)
            when = response_clock(client.last_response_headers)
            written.append(
                save(
                    out,
                    src.exchange,
                    f"{src.exchange}_candles_{market['id']}_{interval}_{since}",
                    client.last_http_response,
                    endpoint="candles",
                    symbol=market["id"],
                    interval=interval,
                    requested_at=_iso(when),
                    request=f"GET {url}",
                    provenance=f"make record, ccxt {ccxt.__version__}",
                )  # fmt: skip
            )
            return candles

        for _ in iter_pages(fetch, window, interval, src.page_limit or ohlcv_limit(client.features, market)):
            pass
    return written


def record_yahoo(symbols: list[str], interval: str, start: datetime, end: datetime, base: str | None, out: Path):
    """Every chart response yfinance receives for the window (its timezone probe excepted)."""
    import yfinance as yf

    from market_ingest.intervals import INTRADAY_INTERVALS, Window
    from market_ingest.routing import clocked_session, response_clock
    from market_ingest.vendors.yahoo import YF_INTERVAL, split_window

    written: list[Path] = []

    def capturing(session_cls):
        class Capturing(clocked_session(base, session_cls)):
            def request(self, method, url, *args, **kwargs):
                response = super().request(method, url, *args, **kwargs)
                vendor = _vendor_url(response.url if hasattr(response, "url") else url, base)
                query = dict(parse_qsl(urlsplit(vendor).query))
                if "/v8/finance/chart/" in vendor and "period1" in query and response.status_code == 200:
                    symbol = urlsplit(vendor).path.rsplit("/", 1)[1]
                    window = [_iso(datetime.fromtimestamp(int(query[k]), timezone.utc)) for k in ("period1", "period2")]
                    written.append(
                        save(
                            out,
                            "yahoo",
                            f"yahoo_chart_{symbol}_{interval}_{query['period1']}",
                            response.text,
                            endpoint="chart",
                            symbol=symbol,
                            interval=interval,
                            requested_at=_iso(response_clock(response.headers)),
                            window=window,
                            request=f"GET {vendor}",
                            provenance=f"make record, yfinance {yf.__version__}",
                        )  # fmt: skip
                    )
                return response

        return Capturing

    if base:
        import requests

        session = capturing(requests.Session)()
    else:
        from curl_cffi import requests as curl_requests

        session = capturing(curl_requests.Session)(impersonate="chrome")
    yf.set_tz_cache_location(tempfile.mkdtemp(prefix="yfinance-record-"))
    for symbol in symbols:
        ticker = yf.Ticker(symbol, session=session)
        for piece in split_window(interval, Window(start, end)):
            a, b = piece.start, piece.end
            if interval not in INTRADAY_INTERVALS:
                a, b = a.date().isoformat(), b.date().isoformat()
            ticker.history(
                start=a,
                end=b,
                interval=YF_INTERVAL[interval],
                prepost=interval in INTRADAY_INTERVALS,
                auto_adjust=False,
                actions=True,
            )
    return written


def record_alpha_vantage(src, symbols: list[str], interval: str, start: datetime, end: datetime, base: str | None, out: Path):
    """Alpha Vantage's series answers, as the hook plans the requests; quota and error bodies are not saved."""
    import requests

    from market_ingest.hooks.alpha_vantage import AlphaVantageHook
    from market_ingest.intervals import Window
    from market_ingest.routing import response_clock
    from market_ingest.vendors.alpha_vantage import bodies as av
    from standin.alpha_vantage import series_symbol

    key = os.environ.get("ALPHA_VANTAGE_API_KEY")
    if not key:
        raise SystemExit("set ALPHA_VANTAGE_API_KEY (it is sent, never written)")
    url = f"{base}/www.alphavantage.co/query" if base else "https://www.alphavantage.co/query"
    hook, written = AlphaVantageHook(), []  # plans by the wall clock: no answer has come yet
    for symbol in symbols:
        for params in hook.series_params(symbol, interval, Window(start, end)):
            response = requests.get(url, params={**params, "apikey": key}, timeout=60)
            kind = av.classify(response.text, key).kind
            if response.status_code != 200 or kind != av.DATA:
                print(f"  not saved: {params['function']} {symbol}: HTTP {response.status_code}, {kind}", file=sys.stderr)
                continue
            written.append(
                save(
                    out,
                    "alpha_vantage",
                    f"av_{params['function']}_{symbol}_{params.get('month', params.get('outputsize', ''))}",
                    response.text,
                    endpoint=params["function"],
                    symbol=series_symbol(params),
                    requested_at=_iso(response_clock(response.headers)),
                    request=f"GET {_without_key('https://www.alphavantage.co/query?' + urlencode(params))}",
                    provenance="make record",
                )  # fmt: skip
            )
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", required=True, help="configured source name (include/pipeline.yaml)")
    parser.add_argument("--symbols", required=True, help="comma-separated, in the source's spelling")
    parser.add_argument("--interval", required=True, help="canonical interval: 1m 5m 15m 30m 1h 1d 1wk 1mo")
    parser.add_argument("--start", required=True, type=_utc, help="window start, ISO 8601 (UTC if no offset)")
    parser.add_argument("--end", required=True, type=_utc, help="window end (exclusive)")
    parser.add_argument("--out", type=Path, default=ROOT / "include" / "recordings")
    parser.add_argument("--base-url", default=None, help="send requests through this URL-prefix gateway")
    args = parser.parse_args(argv)

    from market_ingest.config import load_config
    from market_ingest.intervals import validate_interval

    validate_interval(args.interval)
    src = load_config().sources[args.source]
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    base = args.base_url.rstrip("/") if args.base_url else None
    if src.kind == "ccxt":
        written = record_ccxt(src, symbols, args.interval, args.start, args.end, base, args.out)
    elif src.kind == "yahoo":
        written = record_yahoo(symbols, args.interval, args.start, args.end, base, args.out)
    else:
        written = record_alpha_vantage(src, symbols, args.interval, args.start, args.end, base, args.out)
    for path in written:
        print(path)
    print(json.dumps({"recorded": len(written)}))
    return 0 if written else 1


if __name__ == "__main__":
    sys.exit(main())
