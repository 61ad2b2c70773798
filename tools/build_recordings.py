"""Build the replay cassettes in ``include/recordings/`` from ``../shared/fixtures/``.

Each recorded response in the shared fixtures becomes one vcrpy cassette (YAML) holding the
request as it was sent (URL from PROVENANCE.md), the HTTP status, the ``Date`` header of the
recording and the body byte for byte. The provenance lines of every fixture used are copied to
``include/recordings/PROVENANCE.md`` so the repository stands on its own.

Run from the repository root::

    python tools/build_recordings.py [--fixtures ../shared/fixtures]

The output is committed; this script only needs to run again when a fixture is added upstream.
Anyone can also add a recording by hand: drop a vcrpy cassette into ``include/recordings/<source>/``.
"""

from __future__ import annotations

import argparse
import email.utils
import json
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "include" / "recordings"

# Yahoo chart responses that yfinance 1.x can consume (it uses the v8 chart API only; the
# v7 CSV download endpoint it used before 0.2 is retired, so those fixtures are not replayed).
YAHOO_CHART_PREFIX = "yahoo/yahoo_chart_"

_REQUEST_RE = re.compile(r"^- request: GET (?P<url>\S+)\s+->\s+HTTP (?P<code>\d{3}), recorded \[?'?(?P<date>[^'\]]+)'?\]?\s*$")


def _provenance_sections(text: str) -> dict[str, str]:
    """Split PROVENANCE.md into ``{fixture relative path: section text}``."""
    sections: dict[str, str] = {}
    for block in re.split(r"\n(?=### `)", text):
        m = re.match(r"### `([^`]+)`", block)
        if m:
            sections[m.group(1)] = block.strip()
    return sections


def _cassette(url: str, code: int, date: str, body: str, content_type: str) -> dict:
    reason = {200: "OK", 404: "Not Found"}.get(code, "")
    return {
        "version": 1,
        "interactions": [
            {
                "request": {"method": "GET", "uri": url, "body": None, "headers": {}},
                "response": {
                    "status": {"code": code, "message": reason},
                    "headers": {"Content-Type": [content_type], "Date": [date]},
                    "body": {"string": body},
                },
            }
        ],
    }


def _handshake_cassette() -> dict:
    """The cookie/crumb handshake yfinance performs before its first data request.

    Synthesised, not recorded: it carries no market data, and a live crumb is a per-session token
    that must not be committed. ``fc.yahoo.com`` answers 404 with a cookie in real life; here it
    answers 404 without one, and ``getcrumb`` answers a fixed token, which the replay matcher
    ignores on data requests.
    """
    date = "Thu, 01 Jan 1970 00:00:00 GMT"
    fc = _cassette("https://fc.yahoo.com/", 404, date, "", "text/html")
    crumb = _cassette("https://query1.finance.yahoo.com/v1/test/getcrumb", 200, date, "replay-crumb", "text/plain")
    # After any 4xx yfinance retries once with its other cookie strategy (csrf), which starts at
    # the consent page; a page without a csrfToken sends it back to the basic strategy.
    consent = _cassette("https://guce.yahoo.com/consent", 200, date, "<html><body></body></html>", "text/html")
    return {"version": 1, "interactions": fc["interactions"] + crumb["interactions"] + consent["interactions"]}


def _delisted_info_cassette(symbol: str) -> dict:
    """yfinance's fallback request when the timezone probe of a delisted symbol answers 404.

    Synthesised in Yahoo's error shape (the chart 404 for the same symbol is the real recording):
    yfinance asks ``quoteSummary`` for the exchange timezone before giving up on the symbol.
    """
    url = (
        f"https://query2.finance.yahoo.com/v10/finance/quoteSummary/{symbol}?modules=financialData%2CquoteType"
        f"%2CdefaultKeyStatistics%2CassetProfile%2CsummaryDetail&corsDomain=finance.yahoo.com&formatted=false"
        f"&symbol={symbol}&lang=en-US&region=US"
    )
    body = f'{{"quoteSummary":{{"result":null,"error":{{"code":"Not Found","description":"Quote not found for symbol: {symbol}"}}}}}}'
    return _cassette(url, 404, "Mon, 16 Sep 2024 12:14:23 GMT", body, "application/json")


# Alpha Vantage fixtures replayed by the demo: (fixture, request query, recorded-at). The upstream
# files keep no Date header; the date given is the upstream commit's, so the response is at most
# that recent. The recorded request omitted outputsize; compact is Alpha Vantage's documented default.
ALPHA_VANTAGE = [
    (
        "alphavantage/av_TIME_SERIES_DAILY_IBM_compact_2023-11-10.json",
        "function=TIME_SERIES_DAILY&symbol=IBM&outputsize=compact",
        "Sat, 11 Nov 2023 00:00:00 GMT",
    ),
    ("alphavantage/av_GLOBAL_QUOTE_MSFT_2018-10-05.json", "function=GLOBAL_QUOTE&symbol=MSFT", "Sun, 07 Oct 2018 00:00:00 GMT"),
]


def build_alpha_vantage(fixtures: Path, sections: dict[str, str]) -> list[str]:
    """One cassette per entry of :data:`ALPHA_VANTAGE`; return their provenance sections."""
    out_dir = OUT / "alpha_vantage"
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = []
    for rel, query, date in ALPHA_VANTAGE:
        body = (fixtures / rel).read_text()
        cassette = _cassette(f"https://www.alphavantage.co/query?{query}", 200, date, body, "application/json")
        path = out_dir / (Path(rel).stem + ".yaml")
        path.write_text(yaml.safe_dump(cassette, sort_keys=False, width=1 << 30))
        provenance += [sections[rel].replace(f"### `{rel}`", f"### `alpha_vantage/{path.name}` (from `{rel}`)"), ""]
    return provenance


# Exchange responses replayed through ccxt: (fixture, folder = ccxt exchange id, request URL, Date).
# The URL is the window the body covers (the replay matcher serves any request inside it; ccxt then
# keeps the candles from its ``since``, at most ``limit``), not always the request first made; the
# provenance of each fixture gives that. Date is None where the recording time is unknown: replay
# then takes the wall clock as the exchange's "now", so every recorded candle counts as closed.
EXCHANGES = [
    # serverTime in the body is 2021-10-22 22:41:05 UTC.
    (
        "binance/binance_spot_exchangeInfo_trimmed_2021-10-22.json",
        "binance",
        "https://api.binance.com/api/v3/exchangeInfo",
        "Fri, 22 Oct 2021 22:41:05 GMT",
    ),
    # The latest ten 1m candles (limit=10, no startTime). The 23:12 candle has 7 trades against
    # 375-769 in the nine before it: it was still open, so the response was taken during 23:12.
    # Any time in that minute gives the same replay; 23:12:30 is the middle of it.
    (
        "binance/binance_spot_klines_BTCUSDT_1m_2021-10-22.json",
        "binance",
        "https://api.binance.com/api/v3/klines?interval=1m&symbol=BTCUSDT&startTime=1634943780000&endTime=1634944379999",
        "Fri, 22 Oct 2021 23:12:30 GMT",
    ),
    # Three 1h candles 16:00-18:00 UTC, newest first; request time not recorded.
    (
        "kucoin/kucoin_market_candles_BTC-USDT_1hour_2024-01-30.json",
        "kucoin",
        "https://api.kucoin.com/api/v1/market/candles?symbol=BTC-USDT&type=1hour&startAt=1706630400&endAt=1706641200",
        None,
    ),
    # Advanced Trade public candles: two 1h candles 00:00-01:00 UTC, newest first.
    (
        "coinbase/coinbase_advtrade_candles_BTC-USD_1h_2024-04-04.json",
        "coinbase",
        "https://api.coinbase.com/api/v3/brokerage/market/products/BTC-USD/candles?granularity=ONE_HOUR&start=1712188800&end=1712196000",
        None,
    ),
    # Coinbase Exchange (ccxt id coinbaseexchange): one 1h candle at 11:00 UTC, [time, low, high, open, close, volume].
    (
        "coinbase/coinbase_exchange_products_BTC-USDT_candles_3600_2024-03-13.json",
        "coinbaseexchange",
        "https://api.exchange.coinbase.com/products/BTC-USDT/candles?granularity=3600&start=2024-03-13T11:00:00.000Z&end=2024-03-13T12:00:00.000Z",
        None,
    ),
]

#: ccxt market structures for exchanges whose market list was not recorded. The ids are the
#: exchanges' own (they appear in the recorded request URLs) and match ccxt's static test markets
#: (ccxt/ccxt ts/src/test/static/markets/<exchange>.json); only the fields ccxt reads for market
#: data are kept.
MARKETS = {
    "kucoin": [("BTC/USDT", "BTC-USDT"), ("ETH/USDT", "ETH-USDT")],
    "coinbase": [("BTC/USD", "BTC-USD"), ("ETH/USD", "ETH-USD")],
    "coinbaseexchange": [("BTC/USDT", "BTC-USDT"), ("BTC/USD", "BTC-USD")],
}


# KuCoin's ticker statistics for BTC-USDT as ccxt recorded them (GET /api/v1/market/stats?symbol=BTC-USDT,
# 2024-03-08 11:35:10 UTC; BTC 67.4k): ccxt/ccxt ts/src/test/static/response/kucoin.json,
# methods.fetchTicker[0].httpResponse, commit 012012e91dc8bcc508c5ba63b4058ffd8b727128.
KUCOIN_STATS = {
    "time": 1709897710012,
    "symbol": "BTC-USDT",
    "buy": "67399.9",
    "sell": "67400",
    "changeRate": "0.0089",
    "changePrice": "597.9",
    "high": "67978.8",
    "low": "66541.4",
    "vol": "6442.17728633",
    "volValue": "433203364.463489651",
    "last": "67400",
    "averagePrice": "66654.25518537",
    "takerFeeRate": "0.001",
    "makerFeeRate": "0.001",
    "takerCoefficient": "1",
    "makerCoefficient": "1",
}


def _kucoin_all_tickers_cassette() -> dict:
    """``GET /api/v1/market/allTickers`` (what ccxt's ``fetch_tickers`` calls) DERIVED from :data:`KUCOIN_STATS`.

    Not a recording: KuCoin's all-tickers answer carries the same per-symbol fields as the recorded
    stats body, with ``time`` moved to the envelope and ``symbolName`` added (KuCoin API
    documentation, "Get All Tickers"). Only BTC-USDT is in it.
    """
    ticker = {k: v for k, v in KUCOIN_STATS.items() if k != "time"} | {"symbolName": "BTC-USDT"}
    body = json.dumps({"code": "200000", "data": {"time": KUCOIN_STATS["time"], "ticker": [ticker]}})
    cassette = _cassette(
        "https://api.kucoin.com/api/v1/market/allTickers", 200, "Fri, 08 Mar 2024 11:35:10 GMT", body, "application/json"
    )
    return cassette


def _market(symbol: str, market_id: str) -> dict:
    base, quote = symbol.split("/")
    return {
        "id": market_id,
        "symbol": symbol,
        "base": base,
        "quote": quote,
        "baseId": base,
        "quoteId": quote,
        "type": "spot",
        "spot": True,
        "margin": False,
        "swap": False,
        "future": False,
        "option": False,
        "contract": False,
        "active": True,
        "linear": None,
        "inverse": None,
    }


def build_exchanges(fixtures: Path, sections: dict[str, str]) -> list[str]:
    """One cassette per entry of :data:`EXCHANGES`, the derived KuCoin tickers, and ``markets.json`` per :data:`MARKETS`."""
    provenance = []
    for rel, folder, url, date in EXCHANGES:
        out_dir = OUT / folder
        out_dir.mkdir(parents=True, exist_ok=True)
        body = (fixtures / rel).read_text()
        cassette = _cassette(url, 200, date or "", body, "application/json")
        if date is None:
            del cassette["interactions"][0]["response"]["headers"]["Date"]
        path = out_dir / (Path(rel).stem + ".yaml")
        path.write_text(yaml.safe_dump(cassette, sort_keys=False, width=1 << 30))
        provenance += [
            sections[rel].replace(f"### `{rel}`", f"### `{folder}/{path.name}` (from `{rel}`)"),
            f"- replayed as: GET {url}" + (f", Date {date}" if date else ", no Date (time not recorded)"),
            "",
        ]
    (OUT / "kucoin" / "_derived_allTickers_BTC-USDT_2024-03-08.yaml").write_text(
        yaml.safe_dump(_kucoin_all_tickers_cassette(), sort_keys=False, width=1 << 30)
    )
    provenance += [
        "### `kucoin/_derived_allTickers_BTC-USDT_2024-03-08.yaml` (DERIVED, not a recording)",
        "- from: KuCoin GET /api/v1/market/stats?symbol=BTC-USDT as recorded in ccxt/ccxt "
        "`ts/src/test/static/response/kucoin.json` (methods.fetchTicker[0].httpResponse), commit "
        "012012e91dc8bcc508c5ba63b4058ffd8b727128; BTC 67,400 at 2024-03-08 11:35:10 UTC (real).",
        "- reshaped into the all-tickers envelope ccxt's fetch_tickers reads; values unchanged.",
        "",
    ]
    for folder, markets in MARKETS.items():
        (OUT / folder).mkdir(parents=True, exist_ok=True)
        doc = [_market(sym, mid) for sym, mid in markets]
        (OUT / folder / "markets.json").write_text(json.dumps(doc, indent=1) + "\n")
    return provenance


def build(fixtures: Path) -> list[Path]:
    """Write one cassette per Yahoo chart fixture; return the paths written."""
    sections = _provenance_sections((fixtures / "PROVENANCE.md").read_text())
    out_dir = OUT / "yahoo"
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    provenance = [
        "# Provenance of the replay recordings",
        "",
        "Built by `python tools/build_recordings.py` from `../shared/fixtures/` (see its PROVENANCE.md).",
        "Each cassette holds one real response body byte for byte, the request URL it answered and the",
        "`Date` of the recording. The replay matcher serves a data request from a recording of the same",
        "symbol and interval whose `[period1, period2)` contains the requested window, and serves",
        "yfinance's timezone probe (`range=1d`) from any recording of that symbol: yfinance reads only",
        "`meta.exchangeTimezoneName` from it.",
        "",
        "`yahoo/_handshake.yaml` is synthesised (yfinance's cookie/crumb handshake; no market data).",
        "`yahoo/_synthesised_quoteSummary_SIX_404.yaml` is synthesised in Yahoo's error shape: the request",
        "yfinance makes for a symbol whose timezone probe answered 404 (the chart 404 is the real recording).",
        "",
    ]
    for rel, section in sorted(sections.items()):
        if not rel.startswith(YAHOO_CHART_PREFIX):
            continue
        req = next((m for line in section.splitlines() if (m := _REQUEST_RE.match(line.strip()))), None)
        if req is None:
            raise SystemExit(f"{rel}: no parsable '- request:' line in PROVENANCE.md")
        date = req.group("date").strip()
        email.utils.parsedate_to_datetime(date)  # fail here, not at replay, on a bad date
        body = (fixtures / rel).read_text()
        cassette = _cassette(req.group("url"), int(req.group("code")), date, body, "application/json")
        path = out_dir / (Path(rel).stem + ".yaml")
        path.write_text(yaml.safe_dump(cassette, sort_keys=False, width=1 << 30))
        written.append(path)
        provenance += [section.replace(f"### `{rel}`", f"### `yahoo/{path.name}` (from `{rel}`)"), ""]
    delisted = out_dir / "_synthesised_quoteSummary_SIX_404.yaml"
    delisted.write_text(yaml.safe_dump(_delisted_info_cassette("SIX"), sort_keys=False, width=1 << 30))
    written.append(delisted)
    hs = out_dir / "_handshake.yaml"
    hs.write_text(yaml.safe_dump(_handshake_cassette(), sort_keys=False))
    written.append(hs)
    provenance += [
        "## Alpha Vantage",
        "",
        "Dates are upstream commit times (no Date header was kept); request URIs",
        "spell out outputsize=compact, the documented default the recorded request relied on.",
        "",
    ]
    provenance += build_alpha_vantage(fixtures, sections)
    provenance += [
        "## Crypto exchanges (replayed through ccxt)",
        "",
        "Each cassette's URL is the window its body covers; see tools/build_recordings.py EXCHANGES.",
        "`<exchange>/markets.json` (kucoin, coinbase, coinbaseexchange) is not a recording: ccxt market",
        "structures written by the build script for the symbols recorded, with the exchanges' own market ids,",
        "because those exchanges' market lists were not recorded. Binance's comes from its recorded exchangeInfo.",
        "",
    ]
    provenance += build_exchanges(fixtures, sections)
    (OUT / "PROVENANCE.md").write_text("\n".join(provenance))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "fixtures")
    args = parser.parse_args()
    for path in build(args.fixtures):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
