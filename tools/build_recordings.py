"""Build the recordings in ``include/recordings/`` (served by the vendor stand-in) from ``../shared/fixtures/``.

Each recorded response in the shared fixtures becomes its body byte for byte (``<name>.json``)
and a sidecar ``<name>.meta.yaml`` naming vendor, endpoint, symbol, interval, the vendor's clock
when it answered (the ``Date`` of the recording, where known), the window asked and the request
as it was sent (URL from PROVENANCE.md). The provenance lines of every fixture used are copied to
``include/recordings/PROVENANCE.md`` so the repository stands on its own.

Run from the repository root::

    python tools/build_recordings.py [--fixtures ../shared/fixtures]

The output is committed; this script only needs to run again when a fixture is added upstream.
Anyone can also add a recording by hand: drop a body and its sidecar into ``include/recordings/<vendor>/``
(format in ``standin/recordings.py``).
"""

from __future__ import annotations

import argparse
import email.utils
import json
import re
from datetime import datetime, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import yaml

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "include" / "recordings"

# Yahoo chart responses that yfinance 1.x can consume (it uses the v8 chart API only; the
# v7 CSV download endpoint it used before 0.2 is retired, so those fixtures are not replayed).
YAHOO_CHART_PREFIX = "yahoo/yahoo_chart_"

#: heading of the PROVENANCE.md section for recordings added by hand; kept across rebuilds
BY_HAND = "## Recordings dropped in as they are"

_REQUEST_RE = re.compile(r"^- request: GET (?P<url>\S+)\s+->\s+HTTP (?P<code>\d{3}), recorded \[?'?(?P<date>[^'\]]+)'?\]?\s*$")


def _provenance_sections(text: str) -> dict[str, str]:
    """Split PROVENANCE.md into ``{fixture relative path: section text}``."""
    sections: dict[str, str] = {}
    for block in re.split(r"\n(?=### `)", text):
        m = re.match(r"### `([^`]+)`", block)
        if m:
            sections[m.group(1)] = block.strip()
    return sections


def _iso(date: str | None) -> str | None:
    """An HTTP date as ISO 8601 UTC (``2021-10-22T23:12:30Z``), ``None`` when unknown."""
    return email.utils.parsedate_to_datetime(date).strftime("%Y-%m-%dT%H:%M:%SZ") if date else None


def _write(out_dir: Path, stem: str, body: str, url: str, date: str | None, status: int = 200, **meta) -> Path:
    """Write ``<stem>.json`` (the body as recorded) and its sidecar ``<stem>.meta.yaml``; return the body's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    sidecar = {**meta}
    if date:
        sidecar["requested_at"] = _iso(date)
    if status != 200:
        sidecar["status"] = status
    sidecar.update(request=f"GET {url}", provenance="include/recordings/PROVENANCE.md")
    path = out_dir / f"{stem}.json"
    path.write_text(body)
    (out_dir / f"{stem}.meta.yaml").write_text(yaml.safe_dump(sidecar, sort_keys=False, width=1 << 20))
    return path


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
    """One recording per entry of :data:`ALPHA_VANTAGE`; return their provenance sections."""
    out_dir = OUT / "alpha_vantage"
    out_dir.mkdir(parents=True, exist_ok=True)
    provenance = []
    for rel, query, date in ALPHA_VANTAGE:
        params = dict(p.split("=", 1) for p in query.split("&"))
        interval = {"TIME_SERIES_DAILY": {"interval": "1d"}}.get(params["function"], {})
        path = _write(
            out_dir, Path(rel).stem, (fixtures / rel).read_text(), f"https://www.alphavantage.co/query?{query}", date,
            vendor="alpha_vantage", endpoint=params["function"], symbol=params["symbol"], **interval,
        )  # fmt: skip
        provenance += [sections[rel].replace(f"### `{rel}`", f"### `alpha_vantage/{path.name}` (from `{rel}`)"), ""]
    return provenance


# Exchange responses replayed through ccxt: (fixture, folder = ccxt exchange id, request URL, Date).
# The URL is the window the body covers (the replay matcher serves any request inside it; ccxt then
# keeps the candles from its ``since``, at most ``limit``), not always the request first made; the
# provenance of each fixture gives that. Date is None where the recording time is unknown: replay
# then takes the end of the body's last candle as the exchange's "now" (standin/recordings.py), so
# every recorded candle counts as closed.
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


def _kucoin_all_tickers_body() -> str:
    """``GET /api/v1/market/allTickers`` (what ccxt's ``fetch_tickers`` calls) DERIVED from :data:`KUCOIN_STATS`.

    Not a recording: KuCoin's all-tickers answer carries the same per-symbol fields as the recorded
    stats body, with ``time`` moved to the envelope and ``symbolName`` added (KuCoin API
    documentation, "Get All Tickers"). Only BTC-USDT is in it.
    """
    ticker = {k: v for k, v in KUCOIN_STATS.items() if k != "time"} | {"symbolName": "BTC-USDT"}
    return json.dumps({"code": "200000", "data": {"time": KUCOIN_STATS["time"], "ticker": [ticker]}})


#: exchange timeframe spelling -> canonical interval, for the sidecars
_TIMEFRAMES = {"1m": "1m", "1hour": "1h", "ONE_HOUR": "1h", "3600": "1h"}


def _exchange_meta(folder: str, url: str) -> dict:
    """Sidecar fields of an exchange request URL: endpoint, market id, interval."""
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    if "exchangeInfo" in parts.path:
        return {"vendor": folder, "endpoint": "markets"}
    symbol = q.get("symbol") or parts.path.split("/")[-2]
    interval = _TIMEFRAMES[q.get("interval") or q.get("type") or q.get("granularity")]
    return {"vendor": folder, "endpoint": "candles", "symbol": symbol, "interval": interval}


def build_exchanges(fixtures: Path, sections: dict[str, str]) -> list[str]:
    """One recording per entry of :data:`EXCHANGES` and the derived KuCoin tickers; return their provenance."""
    provenance = []
    for rel, folder, url, date in EXCHANGES:
        path = _write(OUT / folder, Path(rel).stem, (fixtures / rel).read_text(), url, date, **_exchange_meta(folder, url))
        provenance += [
            sections[rel].replace(f"### `{rel}`", f"### `{folder}/{path.name}` (from `{rel}`)"),
            f"- served for: GET {url}" + (f", Date {date}" if date else ", no Date (time not recorded)"),
            "",
        ]
    _write(
        OUT / "kucoin", "derived_allTickers_BTC-USDT_2024-03-08", _kucoin_all_tickers_body(),
        "https://api.kucoin.com/api/v1/market/allTickers", "Fri, 08 Mar 2024 11:35:10 GMT", vendor="kucoin", endpoint="tickers",
    )  # fmt: skip
    provenance += [
        "### `kucoin/derived_allTickers_BTC-USDT_2024-03-08.json` (DERIVED, not a recording)",
        "- from: KuCoin GET /api/v1/market/stats?symbol=BTC-USDT as recorded in ccxt/ccxt "
        "`ts/src/test/static/response/kucoin.json` (methods.fetchTicker[0].httpResponse), commit "
        "012012e91dc8bcc508c5ba63b4058ffd8b727128; BTC 67,400 at 2024-03-08 11:35:10 UTC (real).",
        "- reshaped into the all-tickers envelope ccxt's fetch_tickers reads; values unchanged.",
        "",
    ]
    return provenance


def build(fixtures: Path) -> list[Path]:
    """Write every recording (Yahoo charts, Alpha Vantage, exchanges) and PROVENANCE.md; return the Yahoo bodies written."""
    sections = _provenance_sections((fixtures / "PROVENANCE.md").read_text())
    out_dir = OUT / "yahoo"
    written: list[Path] = []
    provenance = [
        "# Provenance of the recordings",
        "",
        "Built by `python tools/build_recordings.py` from `../shared/fixtures/` (see its PROVENANCE.md).",
        "Each recording is one real response body byte for byte (`<name>.json`) with a sidecar",
        "`<name>.meta.yaml` naming vendor, endpoint, symbol, interval, the vendor's clock when it answered",
        "(`requested_at`, the recording's `Date`; absent where unknown) and the request it answered. The",
        "vendor stand-in (`standin/`) serves each for any request whose symbol, interval and range it covers.",
        "yfinance's cookie/crumb handshake and Yahoo's quoteSummary 404 are part of the stand-in's Yahoo",
        "protocol, not recordings.",
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
        url = req.group("url")
        q = dict(parse_qsl(urlsplit(url).query))
        window = [
            _iso(email.utils.format_datetime(datetime.fromtimestamp(int(q[k]), timezone.utc), usegmt=True))
            for k in ("period1", "period2")
        ]
        path = _write(
            out_dir, Path(rel).stem, (fixtures / rel).read_text(), url, date, int(req.group("code")),
            vendor="yahoo", endpoint="chart", symbol=urlsplit(url).path.rsplit("/", 1)[1], interval=q["interval"], window=window,
        )  # fmt: skip
        written.append(path)
        provenance += [section.replace(f"### `{rel}`", f"### `yahoo/{path.name}` (from `{rel}`)"), ""]
    provenance += [
        "## Alpha Vantage",
        "",
        "Dates are upstream commit times (no Date header was kept); request URIs",
        "spell out outputsize=compact, the documented default the recorded request relied on.",
        "",
    ]
    provenance += build_alpha_vantage(fixtures, sections)
    provenance += [
        "## Crypto exchanges",
        "",
        "Each sidecar's request is the window its body covers; see tools/build_recordings.py EXCHANGES.",
        "KuCoin's, Coinbase's and Coinbase Exchange's market lists were not recorded: the stand-in lists",
        "its spot pairs in each exchange's format. Binance's comes from its recorded exchangeInfo.",
        "",
    ]
    provenance += build_exchanges(fixtures, sections)
    # Recordings added by hand (any client's answer with its sidecar) keep their provenance section.
    previous = (OUT / "PROVENANCE.md").read_text() if (OUT / "PROVENANCE.md").exists() else ""
    by_hand = previous[previous.index(BY_HAND) :] if BY_HAND in previous else ""
    (OUT / "PROVENANCE.md").write_text("\n".join(provenance) + ("\n" + by_hand if by_hand else ""))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fixtures", type=Path, default=ROOT.parent / "shared" / "fixtures")
    args = parser.parse_args()
    for path in build(args.fixtures):
        print(path.relative_to(ROOT))


if __name__ == "__main__":
    main()
