"""``make demo``: run the Yahoo, Alpha Vantage and crypto exchange DAGs through Airflow into all three sinks, on recorded data.

Starts an embedded PostgreSQL, a moto server (S3 + Kinesis) and the vendor stand-in (serving
``include/recordings``) on loopback, then the real Airflow
scheduler (``--executor local``, the default: ``airflow standalone``, LocalExecutor; ``--executor
celery``: two schedulers, two Celery workers and a Redis broker, as the platforms run it; see
:mod:`demo.stack`; metadata in the database ``airflow_demo`` of the same PostgreSQL, recreated each
time; logs under ``.demo/airflow``) with the pools imported from ``include/pools.json`` and the
connections given as ``AIRFLOW_CONN_*`` variables. It triggers the manual runs below through the
REST API and one ``airflow backfill create`` over five logical dates, waits for all of them (a
progress line every 20 s: runs finished of the total, the slowest still running), prints each run's
run time (its start to its end in Airflow's metadata), stops every process it started, then reads
every sink back and prints, per series, the bars the recordings hold for the runs' windows
("recorded") next to the rows found in PostgreSQL, the lake and Kinesis, and the coverage ledger,
whose "expected" is what the market's calendar expects ("calendar-expected"), not what was recorded.
The summary is also written as JSON. ``--live`` uses the live vendor APIs.

Exit status: 0 when every sink holds exactly the recorded bars, 1 otherwise; 2 when ``--live``
finds a vendor unreachable (within about 10 s, naming host and connection; nothing is run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
#: PostgreSQL data, logs and the summary; ``MARKET_DEMO_WORK`` moves it (the signal test uses a temporary folder).
WORK = Path(os.environ.get("MARKET_DEMO_WORK") or ROOT / ".demo")
UTC = timezone.utc


def _d(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


# Manual runs: (dag id, logical date, run conf). A manual run ingests the last complete interval
# before its logical date unless the Params form's start/end override it, as a person would from
# the UI; 2025-02-01 is a Saturday (no bars).
RUNS = [
    ("market_yahoo_1m", _d(2024, 10, 2), {"symbols": ["AAPL"], "start": "2024-10-02T00:00:00Z", "end": "2024-10-03T00:00:00Z"}),
    ("market_yahoo_1m", _d(2025, 2, 1), {"symbols": ["AAPL"], "start": "2025-02-01T00:00:00Z", "end": "2025-02-02T00:00:00Z"}),
    # Alpha Vantage: IBM's compact daily series recorded 2023-11-10; one week through the Params form.
    (
        "market_alpha_vantage_1d",
        _d(2023, 11, 11),
        {"symbols": ["IBM"], "start": "2023-11-06T00:00:00Z", "end": "2023-11-11T00:00:00Z"},
    ),
    # One instrument from four vendors, reconciled after each load (market.cross_source_checks):
    # Apple's daily bars of 2020-08-31 .. 11-06 from Yahoo (recorded 2025, split-adjusted, converted
    # to as traded), Alpha Vantage (its full daily series, as traded), Twelve Data (adjust=none) and
    # Interactive Brokers (the stand-in as a logged-in Client Portal Gateway; split-adjusted,
    # converted to as traded with Yahoo's splits).
    ("market_yahoo_1d", _d(2020, 11, 7), {"symbols": ["AAPL"], "start": "2020-08-31T00:00:00Z", "end": "2020-11-07T00:00:00Z"}),
    (
        "market_alpha_vantage_1d",
        _d(2020, 11, 7),
        {"symbols": ["AAPL"], "start": "2020-08-31T00:00:00Z", "end": "2020-11-07T00:00:00Z"},
    ),
    (
        "market_twelvedata_1d",
        _d(2020, 11, 7),
        {"symbols": ["AAPL"], "start": "2020-08-31T00:00:00Z", "end": "2020-11-07T00:00:00Z"},
    ),
    ("market_ibkr_1d", _d(2020, 11, 7), {"symbols": ["AAPL"], "start": "2020-08-31T00:00:00Z", "end": "2020-11-07T00:00:00Z"}),
    # Twelve Data's /quote of AAPL (its documentation's example of 2021-09-16), stamped at the window's end.
    (
        "market_twelvedata_quote",
        _d(2021, 9, 17),
        {"symbols": ["AAPL"], "start": "2021-09-16T21:30:00Z", "end": "2021-09-17T21:30:00Z"},
    ),
    # A GLOBAL_QUOTE snapshot recorded for 2018-10-05, stamped at the window's end.
    (
        "market_alpha_vantage_quote",
        _d(2018, 10, 6),
        {"symbols": ["MSFT"], "start": "2018-10-04T21:30:00Z", "end": "2018-10-05T21:30:00Z"},
    ),
    # Crypto exchanges through ccxt. Binance's ten 1m candles were recorded during 23:12, whose candle
    # was still open: nine closed bars. KuCoin's and Coinbase's 1h candles, no recording time kept.
    (
        "market_binance_1m",
        _d(2021, 10, 22, 23, 13),
        {"symbols": ["BTC/USDT"], "start": "2021-10-22T23:03:00Z", "end": "2021-10-22T23:13:00Z"},
    ),
    (
        "market_kucoin_1h",
        _d(2024, 1, 30, 19),
        {"symbols": ["BTC/USDT"], "start": "2024-01-30T16:00:00Z", "end": "2024-01-30T19:00:00Z"},
    ),
    (
        "market_coinbase_1h",
        _d(2024, 4, 4, 2),
        {"symbols": ["BTC/USD"], "start": "2024-04-04T00:00:00Z", "end": "2024-04-04T02:00:00Z"},
    ),
    # One fetch_tickers snapshot, stamped with KuCoin's own ticker time (2024-03-08 11:35:10 UTC).
    (
        "market_kucoin_quote",
        _d(2024, 3, 8, 11, 45),
        {"symbols": ["BTC/USDT"], "start": "2024-03-08T11:30:00Z", "end": "2024-03-08T11:45:00Z"},
    ),
]

# Backfills: (dag id, first logical date, last logical date, run conf), one ``airflow backfill
# create`` each. Daily runs of 2021-07-19 .. 07-23 own those trading days (NVDA's 4:1 split is on 07-20).
BACKFILLS = [
    ("market_yahoo_1d", "2021-07-19", "2021-07-23", {"symbols": ["MSFT", "NVDA", "TSLA"]}),
]
DEMO_DAGS = sorted({r[0] for r in RUNS} | {b[0] for b in BACKFILLS})

# Open times (epoch seconds) of the candles in each exchange's recorded body, decoded by hand:
# Binance [ms, ...]; KuCoin {"data": [[sec, ...]]}; Coinbase Advanced Trade {"candles": [{"start": sec}]}.
EXCHANGE_OPEN_TIMES = {
    "binance": lambda body: [int(r[0]) // 1000 for r in body],
    "kucoin": lambda body: [int(r[0]) for r in body["data"]],
    "coinbase": lambda body: [int(c["start"]) for c in body["candles"]],
}
INTERVAL_SECONDS = {"1m": 60, "1h": 3600}
#: Seconds between two progress lines while the demo waits for its runs.
PROGRESS_EVERY = 20.0


def airflow_env() -> dict[str, str]:
    """Environment of the demo (every Airflow process inherits it; demo/stack.py adds the rest)."""
    return {"AIRFLOW_HOME": str(WORK / "airflow"), "AIRFLOW__LOGGING__LOGGING_LEVEL": "WARNING"}


def _recordings(vendor: str, **match) -> list[tuple[dict, object]]:
    """``(sidecar, parsed body)`` of every recording of ``vendor`` whose sidecar has the ``match`` fields."""
    import yaml

    found = []
    for sidecar in sorted((ROOT / "include" / "recordings" / vendor).glob("*.meta.yaml")):
        meta = yaml.safe_load(sidecar.read_text())
        if all(meta.get(k) == v for k, v in match.items()):
            body = sidecar.with_name(sidecar.name.removesuffix(".meta.yaml") + ".json")
            found.append((meta, json.loads(body.read_text())))
    return found


def _recorded_at(meta: dict) -> datetime:
    """The vendor's clock of a recording (its sidecar's ``requested_at``); now when unknown."""
    value = meta.get("requested_at")
    if not value:
        return datetime.now(UTC)
    return value if isinstance(value, datetime) else datetime.fromisoformat(str(value).replace("Z", "+00:00"))


def recorded_bars(dag_id: str, start: datetime, end: datetime, symbols: list[str]) -> dict[str, int]:
    """Bars the recordings hold for a run's window ``[start, end)``, per symbol, read straight from their bodies.

    Independent of the pipeline's code path: parses the raw JSON; counts bars with a close,
    opening in the window (daily bars by their exchange-local date) and closed at recording time.
    """
    from zoneinfo import ZoneInfo

    source, interval = dag_id.removeprefix("market_").rsplit("_", 1)
    if interval == "quote":
        return {sym: 1 for sym in symbols}  # one snapshot per symbol and run
    if source == "alpha_vantage":
        return _recorded_alpha_vantage(symbols, start, end)
    if source == "twelvedata":
        return _recorded_twelve_data(symbols, interval, start, end)
    if source == "ibkr":
        return _recorded_ibkr(symbols, interval, start, end)
    if source in EXCHANGE_OPEN_TIMES:
        return _recorded_exchange(source, interval, symbols, start, end)
    out = {}
    for sym in symbols:
        seen = set()
        for meta, body in _recordings("yahoo", symbol=sym, interval=interval):
            result = body["chart"]["result"][0]
            recorded = _recorded_at(meta)
            tz = ZoneInfo(result["meta"]["exchangeTimezoneName"])
            closes = result["indicators"]["quote"][0].get("close", [])
            for ts, close in zip(result.get("timestamp", []), closes):
                t = datetime.fromtimestamp(ts, UTC)
                if close is None:
                    continue
                if interval == "1d":
                    t = datetime.combine(t.astimezone(tz).date(), datetime.min.time(), UTC)
                    closed = t + timedelta(days=1) <= recorded
                else:
                    closed = t + timedelta(minutes=1) <= recorded
                if start <= t < end and closed:
                    seen.add(t)
        out[sym] = len(seen)
    return out


def _recorded_alpha_vantage(symbols: list[str], start: datetime, end: datetime) -> dict[str, int]:
    """Daily bars per symbol in ``[start, end)`` read from the Alpha Vantage recordings' JSON."""
    out = {}
    for _, doc in _recordings("alpha_vantage", endpoint="TIME_SERIES_DAILY"):
        sym = doc["Meta Data"]["2. Symbol"]
        if sym in symbols:
            days = [datetime.fromisoformat(k).replace(tzinfo=UTC) for k in doc["Time Series (Daily)"]]
            out[sym] = sum(start <= day < end for day in days)
    return out


def _recorded_twelve_data(symbols: list[str], interval: str, start: datetime, end: datetime) -> dict[str, int]:
    """Bars per symbol in ``[start, end)`` read from the Twelve Data recordings' JSON (daily stamps
    are dates; intraday ones the exchange's wall clock)."""
    from zoneinfo import ZoneInfo

    out = {}
    for sym in symbols:
        seen = set()
        for _, doc in _recordings("twelve_data", endpoint="time_series", symbol=sym, interval=interval):
            tz = ZoneInfo(doc["meta"].get("exchange_timezone") or "UTC")
            for value in doc["values"]:
                stamp = value["datetime"]
                if len(stamp) == 10:
                    t = datetime.fromisoformat(stamp).replace(tzinfo=UTC)
                else:
                    t = datetime.fromisoformat(stamp).replace(tzinfo=tz).astimezone(UTC)
                if start <= t < end:
                    seen.add(t)
        out[sym] = len(seen)
    return out


def _recorded_ibkr(symbols: list[str], interval: str, start: datetime, end: datetime) -> dict[str, int]:
    """Bars per symbol in ``[start, end)`` read from the Interactive Brokers history recordings' JSON
    (daily bars by their New York session date; sidecars name the contract id, bodies the symbol)."""
    from zoneinfo import ZoneInfo

    new_york = ZoneInfo("America/New_York")
    out = {}
    for sym in symbols:
        seen = set()
        for _, doc in _recordings("ibkr", endpoint="history", interval=interval):
            if doc.get("symbol") != sym:
                continue
            for bar in doc.get("data", []):
                t = datetime.fromtimestamp(bar["t"] / 1000, UTC)
                if interval == "1d":
                    t = datetime.combine(t.astimezone(new_york).date(), datetime.min.time(), UTC)
                if start <= t < end:
                    seen.add(t)
        out[sym] = len(seen)
    return out


def _recorded_exchange(source: str, interval: str, symbols: list[str], start: datetime, end: datetime) -> dict[str, int]:
    """Candles in ``[start, end)`` closed by the recording's clock (now when unknown), per symbol.

    The sidecars name each symbol by the exchange's own market id (``BTCUSDT``, ``BTC-USDT``).
    """
    out = {}
    for sym in symbols:
        opens = set()
        for market_id in {sym.replace("/", ""), sym.replace("/", "-")}:
            for meta, body in _recordings(source, endpoint="candles", symbol=market_id, interval=interval):
                recorded = _recorded_at(meta)
                for t in EXCHANGE_OPEN_TIMES[source](body):
                    opened = datetime.fromtimestamp(t, UTC)
                    if start <= opened < end and opened + timedelta(seconds=INTERVAL_SECONDS[interval]) <= recorded:
                        opens.add(opened)
        out[sym] = len(opens)
    return out


def run_dags(stack, live: bool) -> list[dict]:
    """Trigger every demo run and backfill on the running scheduler, wait for all; return per-run results.

    Manual runs of different DAGs run at the same time, each extract task in its vendor's pool; a
    backfill's runs follow one another (``max_active_runs``). While they run, a line every
    :data:`PROGRESS_EVERY` seconds says how many finished of the total and which is the slowest still
    running; once all are done, one line per run with its run time (the DAG run's ``start_date`` to
    ``end_date`` in Airflow's metadata: time queued before it started is not counted).
    """
    from demo.stack import run_seconds, run_window

    for dag_id in DEMO_DAGS:
        stack.unpause(dag_id)
    t0 = time.monotonic()
    # Manual runs first, then the backfill (the order the README's table gives).
    conf_of: dict[tuple[str, str], dict] = {}
    for dag_id, logical_date, conf in RUNS:
        conf_of[dag_id, stack.trigger(dag_id, logical_date.isoformat(), conf)] = conf
    print(f"  triggered {len(RUNS)} manual runs of {len({d for d, _, _ in RUNS})} DAGs", flush=True)
    for dag_id, first, last, conf in BACKFILLS:
        print(
            f"  $ airflow backfill create --dag-id {dag_id} --from-date {first} --to-date {last} "
            f"--dag-run-conf '{json.dumps(conf)}'",
            flush=True,
        )
        conf_of.update({(dag_id, r["dag_run_id"]): conf for r in stack.create_backfill(dag_id, first, last, conf)})
    run_ids: dict[str, list[str]] = {}
    for dag_id, run_id in conf_of:
        run_ids.setdefault(dag_id, []).append(run_id)
    print(
        f"  waiting for {len(conf_of)} runs ({len(RUNS)} manual, {len(conf_of) - len(RUNS)} backfill); "
        f"progress every {PROGRESS_EVERY:.0f}s:",
        flush=True,
    )
    finished = stack.wait_for_all(
        run_ids,
        timeout=1800,
        report=lambda line: print(f"  [{time.monotonic() - t0:4.0f}s] {line}", flush=True),
        every=PROGRESS_EVERY,
    )
    for dag_id, first, last, _ in BACKFILLS:  # and the scheduler has marked the backfill completed
        stack.wait_for_backfill(dag_id, first, last)
    print(f"  all {len(finished)} runs finished {time.monotonic() - t0:.0f}s after the first trigger", flush=True)
    print("\nRuns (window in UTC; run time: the run's start to its end in Airflow's metadata, in seconds):")
    print(f"  {'dag id':<27} {'run type':<8} {'window':<34} {'symbols':<16} {'state':<8} {'run time':>8}", flush=True)
    results = []
    for run in sorted(finished, key=lambda r: (r["dag_id"], r["logical_date"])):
        dag_id, run_id = run["dag_id"], run["dag_run_id"]
        conf = conf_of[dag_id, run_id]
        start, end = run_window(run, conf)
        seconds = run_seconds(run)
        ran = "-" if seconds is None else f"{seconds:.0f}s"
        window = f"{start:%Y-%m-%d %H:%M}..{end:%Y-%m-%d %H:%M}"
        print(
            f"  {dag_id:<27} {run['run_type']:<8} {window:<34} {', '.join(conf.get('symbols') or []):<16} "
            f"{run['state']:<8} {ran:>8}",
            flush=True,
        )
        report = stack.xcom(dag_id, run_id, "report") if run["state"] == "success" else {}
        results.append(
            {
                "dag_id": dag_id,
                "run_id": run_id,
                "run_type": run["run_type"],
                "logical_date": run["logical_date"],
                "window": [start.isoformat(), end.isoformat()],
                "conf": conf,
                "state": run["state"],
                "run_seconds": seconds,
                "skipped": (report or {}).get("skipped", {}),
                "recorded": None if live else recorded_bars(dag_id, start, end, conf["symbols"]),
            }
        )
    return results


def read_sinks(services, cfg) -> dict:
    """Rows per (interval, symbol) in PostgreSQL, the lake's bars and quotes tables and Kinesis,
    plus the data files of the tables' current versions."""
    import psycopg

    with psycopg.connect(services.pg_conninfo()) as conn:
        pg_rows = conn.execute(
            "SELECT source, interval, symbol, count(*) FROM market.bars GROUP BY 1, 2, 3 "
            "UNION ALL SELECT source, 'quote', symbol, count(*) FROM market.quotes GROUP BY 1, 2, 3"
        ).fetchall()
        from market_ingest import coverage

        coverage_lines = coverage.format_summary(coverage.summary(conn), coverage.incomplete(conn, limit=20))
        reconciliation = [
            dict(zip(("instrument", "interval", "source_a", "source_b", "bars", "disagreements"), row, strict=True))
            for row in conn.execute(RECONCILIATION_SQL).fetchall()
        ]
        pg_duplicates = conn.execute(
            "SELECT count(*) FROM (SELECT 1 FROM market.bars GROUP BY source, symbol, interval, time HAVING count(*) > 1) d"
        ).fetchone()[0]
    from market_ingest import lake as lakes

    lake: Counter = Counter()
    lake_bar_keys: Counter = Counter()
    files: list[str] = []
    for url, name in ((cfg.lake.url, "bars"), (cfg.lake.quotes_url, "quotes")):
        # The tables' current versions (a glob over their folders would also read replaced files).
        dt = lakes.open_table(lakes.lake_root(url), dataset=name)
        if dt is None:
            continue
        files += dt.file_uris()
        table = dt.to_pyarrow_table()
        intervals = table["interval"].to_pylist() if name == "bars" else ["quote"] * table.num_rows
        lake.update(zip(table["source"].to_pylist(), intervals, table["symbol"].to_pylist()))
        if name == "bars":
            lake_bar_keys.update(
                zip(table["source"].to_pylist(), table["symbol"].to_pylist(), intervals, table["time"].to_pylist())
            )
    from demo.services import read_stream

    records = read_stream(services, cfg.kinesis.stream) + read_stream(services, cfg.kinesis.quotes_stream)
    kin_ids: dict = {}
    for r in records:
        kin_ids.setdefault((r["source"], r.get("interval", "quote"), r["symbol"]), set()).add(r["record_id"])
    return {
        "postgres": {f"{src}/{i}/{s}": n for src, i, s, n in pg_rows},
        "lake": {f"{src}/{i}/{s}": n for (src, i, s), n in lake.items()},
        "kinesis_records": len(records),
        "kinesis_distinct": {f"{src}/{i}/{s}": len(ids) for (src, i, s), ids in kin_ids.items()},
        "lake_objects": files,
        "coverage": coverage_lines,
        "reconciliation": reconciliation,
        # (source, symbol, interval, time) held more than once: every publish merges on that
        # key, so any count here is a defect.
        "duplicate_bars": {"postgres": pg_duplicates, "lake": sum(1 for n in lake_bar_keys.values() if n > 1)},
    }


#: The bar pairs the demo's runs must have compared (instrument, interval, source a, source b: bars):
#: Apple's 49 sessions of 2020-08-31 .. 11-06 from each pair of its four vendors.
RECONCILED = {
    ("AAPL", "1d", "alpha_vantage", "ibkr"): 49,
    ("AAPL", "1d", "alpha_vantage", "twelvedata"): 49,
    ("AAPL", "1d", "alpha_vantage", "yahoo"): 49,
    ("AAPL", "1d", "ibkr", "twelvedata"): 49,
    ("AAPL", "1d", "ibkr", "yahoo"): 49,
    ("AAPL", "1d", "twelvedata", "yahoo"): 49,
}
#: Per instrument, interval and pair of its sources: the bars both hold (market.bars through
#: market.instruments) and how many of them market.cross_source_checks says disagree.
RECONCILIATION_SQL = """
SELECT a.instrument, ba.interval, a.source, b.source, count(*),
       count(c.instrument)
  FROM market.instruments a
  JOIN market.instruments b ON b.instrument = a.instrument AND a.source < b.source
  JOIN market.bars ba ON ba.source = a.source AND ba.symbol = a.symbol
  JOIN market.bars bb ON bb.source = b.source AND bb.symbol = b.symbol AND bb.interval = ba.interval AND bb.time = ba.time
  LEFT JOIN market.cross_source_checks c ON c.instrument = a.instrument AND c.interval = ba.interval AND c.time = ba.time
   AND c.source_a = a.source AND c.source_b = b.source
 GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4
"""


def unreachable_vendors(cfg, timeout: float = 10.0) -> list[str]:
    """The demo's sources whose vendor server takes no TCP connection, probed at once; one message each.

    Each message names the source, host, port and connection (``SharedExtract.check_reachable``);
    all probes together take at most about ``timeout`` seconds. Offline, ``make demo LIVE=1`` had
    run for more than 10 minutes without a message.
    """
    from concurrent.futures import ThreadPoolExecutor

    from market_ingest.dag_factory import dag_id
    from market_ingest.errors import MarketDataError
    from market_ingest.sources import bar_hook

    pairs = cfg.dag_pairs() + [(s, "quote") for s in cfg.quote_sources()]
    sources = sorted({source for source, interval in pairs if dag_id(source, interval) in DEMO_DAGS})

    def probe(name: str) -> str | None:
        try:
            bar_hook(name, cfg.sources[name], timescale_conn_id=cfg.timescale.conn_id).check_reachable(timeout)
        except MarketDataError as exc:
            return str(exc)
        return None

    with ThreadPoolExecutor(max_workers=len(sources) or 1) as pool:
        return [reason for reason in pool.map(probe, sources) if reason]


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the market-data demo end to end.")
    parser.add_argument("--live", action="store_true", help="use the live Yahoo API instead of the recordings")
    parser.add_argument(
        "--executor",
        choices=("local", "celery"),
        default="local",
        help="local: airflow standalone (LocalExecutor); celery: two schedulers, two Celery workers, a Redis broker",
    )
    args = parser.parse_args()
    started = time.monotonic()
    import warnings

    # Environment noise, not findings: no XDG runtime dir in a bare shell; starlette's notice to
    # Airflow's in-process API client.
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    warnings.filterwarnings("ignore", message="Using `httpx` with `starlette.testclient` is deprecated")
    WORK.mkdir(exist_ok=True)
    env = airflow_env()
    os.environ.update(env)
    sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
    from contextlib import nullcontext

    from demo.services import (
        DEMO_ALPHA_VANTAGE_CONN,
        create_sinks,
        embedded_services,
        redis_server,
        unwind_on_signals,
        vendor_env,
    )

    unwind_on_signals()  # a killed demo stops airflow standalone, the stand-in, moto and PostgreSQL
    from demo.stack import running_stack
    from market_ingest.config import load_config

    cfg = load_config()
    print("market-data demo: " + ("LIVE vendor APIs" if args.live else "vendor stand-in serving include/recordings"))
    home = Path(env["AIRFLOW_HOME"])
    shutil.rmtree(home, ignore_errors=True)  # fresh logs; the metadata database is recreated below
    celery = args.executor == "celery"
    with (
        embedded_services(WORK, vendors=not args.live) as services,
        redis_server(WORK / "redis") if celery else nullcontext() as broker,
    ):
        os.environ.update(services.airflow_env(cfg.timescale.conn_id, cfg.kinesis.aws_conn_id, cfg.timescale.reader_conn_id))
        if services.vendors_url:
            os.environ.update(vendor_env(services.vendors_url, cfg))  # every vendor connection through the stand-in
        elif "AIRFLOW_CONN_MARKET_ALPHA_VANTAGE" not in os.environ:
            os.environ["AIRFLOW_CONN_MARKET_ALPHA_VANTAGE"] = json.dumps(DEMO_ALPHA_VANTAGE_CONN)
        create_sinks(services, cfg)
        if args.live and (unreachable := unreachable_vendors(cfg)):
            print("market-data demo: live mode, but these vendors cannot be reached; Airflow was not started:")
            print("\n".join(f"  {reason}" for reason in unreachable))
            return 2
        print(
            f"* PostgreSQL on {services.pg_socket_dir}, moto (S3, Kinesis) on {services.aws_endpoint}"
            + (f", vendor stand-in on {services.vendors_url}" if services.vendors_url else "")
        )
        layout = (
            f"CeleryExecutor: API server, 2 schedulers, DAG processor, triggerer, 2 Celery workers, Redis broker on {broker}"
            if celery
            else "airflow standalone: scheduler, triggerer, DAG processor, API server"
        )
        print(f"* starting Airflow ({layout}; logs {home}/*.log) ...", flush=True)
        with running_stack(
            home, DEMO_DAGS, services.metadata_db("airflow_demo"), executor=args.executor, broker_url=broker
        ) as stack:
            print(f"* Airflow ready at {stack.api_url} after {time.monotonic() - started:.0f}s; running DAGs ...", flush=True)
            runs = run_dags(stack, args.live)
            print("* stopping Airflow ...", flush=True)
            restarts = len(stack.restarted)
            left = stack.stop()
            print(f"  stopped: {left} of its processes left running; scheduler restarts: {restarts}", flush=True)
        sinks = read_sinks(services, cfg)
    summary = summarise(runs, sinks, time.monotonic() - started)
    summary["airflow_processes_left"] = left
    summary["scheduler_restarts"] = restarts
    summary["ok"] = summary["ok"] and left == 0
    out = WORK / "summary.json"
    out.write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary)
    print(f"\nJSON summary: {out}")
    return 0 if summary["ok"] else 1


def summarise(runs: list[dict], sinks: dict, seconds: float) -> dict:
    """Join the recorded bars per (source, interval, symbol) with what each sink holds."""
    recorded: Counter = Counter()
    skipped = []
    for run in runs:
        source, interval = run["dag_id"].removeprefix("market_").rsplit("_", 1)
        for sym, n in (run["recorded"] or {}).items():
            recorded[f"{source}/{interval}/{sym}"] += n
    keys = sorted(set(recorded) | set(sinks["postgres"]) | set(sinks["lake"]))
    rows = []
    for key in keys:
        row = {
            "series": key,
            "recorded": recorded.get(key),
            "postgres": sinks["postgres"].get(key, 0),
            "lake": sinks["lake"].get(key, 0),
            "kinesis": sinks["kinesis_distinct"].get(key, 0),
        }
        rows.append(row)
        if row["recorded"] == 0:
            skipped.append(key)
    compared = {(r["instrument"], r["interval"], r["source_a"], r["source_b"]): r["bars"] for r in sinks["reconciliation"]}
    live = any(r["recorded"] is None for r in runs)
    ok = (
        (live or all(compared.get(pair) == n for pair, n in RECONCILED.items()))
        and all(r["state"].endswith("success") for r in runs)
        and all(r["recorded"] is None or r["postgres"] == r["lake"] == r["kinesis"] == r["recorded"] for r in rows)
        and not any(sinks["duplicate_bars"].values())
    )
    return {
        "ok": ok,
        "seconds": round(seconds, 1),
        "runs": runs,
        "series": rows,
        "no_bars": skipped,
        "duplicate_bars": sinks["duplicate_bars"],
        "lake_objects": sinks["lake_objects"],
        "kinesis_records_total": sinks["kinesis_records"],
        "coverage": sinks["coverage"],
        "reconciliation": sinks["reconciliation"],
    }


def print_summary(summary: dict) -> None:
    """The summary as text: bars per series and sink, lake objects, the coverage ledger, duplicates,
    skipped symbols, then the result line (``OK: ...`` or ``MISMATCH: ...``)."""
    from demo.coverage import LEDGER_LEGEND

    print("\nBars per series (a quote series: snapshots), per sink; kinesis counts distinct record ids:")
    print("  recorded = the bars the recordings hold for the runs' windows, which every sink must hold exactly")
    print(f"  {'source/interval/symbol':<28} {'recorded':>8} {'postgres':>9} {'lake':>6} {'kinesis':>8}")
    for r in summary["series"]:
        rec = "-" if r["recorded"] is None else r["recorded"]
        print(f"  {r['series']:<28} {rec:>8} {r['postgres']:>9} {r['lake']:>6} {r['kinesis']:>8}")
    print(f"\nLake objects ({len(summary['lake_objects'])} data files of the bars and quotes tables):")
    for key in summary["lake_objects"]:
        print(f"  {key}")
    print(f"Kinesis records published (bars and quote snapshots): {summary['kinesis_records_total']}")
    print(
        "\nCoverage ledger (market.coverage) per source and interval, then the latest days not complete; "
        "its expected is the calendar's, not the recorded bars above:"
    )
    print(f"  {LEDGER_LEGEND}")
    for line in summary["coverage"]:
        print(f"  {line}")
    print(
        "\nCross-source reconciliation (instruments several sources serve: bars both sources hold, and those whose "
        "as-traded closes differ beyond the tolerance, in market.cross_source_checks):"
    )
    print(f"  {'instrument':<10} {'interval':<8} {'sources':<28} {'bars compared':>13} {'disagreements':>13}")
    for r in summary["reconciliation"]:
        pair = f"{r['source_a']} / {r['source_b']}"
        print(f"  {r['instrument']:<10} {r['interval']:<8} {pair:<28} {r['bars']:>13} {r['disagreements']:>13}")
    if not summary["reconciliation"]:
        print("  none: no two sources of one instrument hold the same bars (a reconcile task did not run?)")
    dup = summary["duplicate_bars"]
    print(f"Bars held more than once per (source, symbol, interval, time): postgres {dup['postgres']}, lake {dup['lake']}")
    for run in summary["runs"]:
        for sym, reason in run.get("skipped", {}).items():
            print(f"Skipped: {run['dag_id']} {sym}: {reason}")
    print(
        f"\n{'OK' if summary['ok'] else 'MISMATCH'}: all sinks hold exactly the recorded bars"
        if summary["ok"]
        else "\nMISMATCH: a sink differs from the recordings (see above)"
    )
    print(f"Took {summary['seconds']}s")


if __name__ == "__main__":
    sys.exit(main())
