"""Benchmark: one symbol-year of 1-minute bars (525,600) through extract to every sink.

``make bench-stream`` (or ``.venv/bin/python bench/stream.py``; ``--days 2`` for a short check).
Starts PostgreSQL, moto (S3, Kinesis) and the vendor stand-in on loopback, offline, then runs the
four tasks of a ``market_binance_1m`` run over ``[2023-01-01, 2024-01-01)`` (``--days``: that many
days from 2023-01-01) for BTC/USDT, each in its own Python process as Airflow's LocalExecutor runs
tasks, passing each task's XCom result to the next:

1. ``extract``: the real ``MarketExtractOperator`` and ``ExchangeHook``: 526 ``fetch_ohlcv`` pages
   of 1,000 candles, parsed by ccxt's own ``parse_ohlcvs`` from Binance kline arrays, cleaned
   (duplicates, window, validation) and staged as Parquet, one object per UTC date. The binance
   connection points at the stand-in (the extract's reachability check reaches it, not
   api.binance.com), but the klines come from a deterministic random walk in-process, so the
   vendor's time is not part of the figure;
2. ``publish_lake``: read-merge-write of 365 partition objects;
3. ``load_timescale``: COPY into a temporary table and the newest-wins upsert, one transaction;
4. ``publish_kinesis``: records built lazily and sent with ``PutRecords``
   (``--bars-per-record``: 500 by default, JSON Lines; 1 sends one record per bar).

It then reads every sink back and checks each of the 525,600 bars is there exactly once, prints
wall time and peak RSS per task (``wait4`` of the task's process) and the total, and appends them
to bench/RESULTS.md with the command line. Goal (issue "Nothing lost, nothing wrong", item 8):
under 60 s in all and under 500 MB peak RSS in every task.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
UTC = timezone.utc
START, END = datetime(2023, 1, 1, tzinfo=UTC), datetime(2024, 1, 1, tzinfo=UTC)
SYMBOL = "BTC/USDT"
BARS = 525_600  # the whole year's minutes; --days sets END and BARS for a shorter run (_span)
STEPS = ("extract", "publish_lake", "load_timescale", "publish_kinesis")
RUN_ID = "manual__bench_stream"
VENDOR = {"parse_seconds": 0.0}


def _span(days: int | None) -> None:
    """Run over ``days`` days from START instead of the year (END, BARS: one bar a minute)."""
    global END, BARS
    if days:
        END, BARS = START + timedelta(days=days), days * 1440


def synthetic_binance():
    """``ccxt.binance`` whose ``fetch_ohlcv`` answers from a deterministic random walk instead of HTTP.

    Each page is a list of Binance kline arrays (12 fields as in the recorded ``binance_spot_klines``
    response, numbers as numbers), parsed by ccxt's ``parse_ohlcvs`` like a live answer. Generating
    a page costs about 2 ms; ccxt's parsing (timed into ``VENDOR``) is the real per-candle cost.
    """
    import ccxt
    import numpy as np

    end_ms = int(END.timestamp() * 1000)

    class SyntheticBinance(ccxt.binance):
        def fetch_ohlcv(self, symbol, timeframe="1m", since=None, limit=None, params=None):
            n = max(0, min(limit or 500, (end_ms - since) // 60_000))
            rng = np.random.default_rng(since)
            t = since + 60_000 * np.arange(n, dtype=np.int64)
            o = 16_000 + (t - t[0]) / 1e7 + rng.uniform(-50, 50, n)
            c = o + rng.uniform(-20, 20, n)
            h, lo, v = np.maximum(o, c) + rng.uniform(0, 10, n), np.minimum(o, c) - rng.uniform(0, 10, n), rng.uniform(1, 100, n)
            cols = [np.round(x, 2).tolist() for x in (o, h, lo, c)] + [np.round(v, 5).tolist()]
            klines = [[ti, *row, ti + 59_999, 0, 500, 0, 0, 0] for ti, *row in zip(t.tolist(), *cols)]
            started = time.perf_counter()
            try:
                return self.parse_ohlcvs(klines, self.market(symbol), timeframe, since, limit)
            finally:
                VENDOR["parse_seconds"] += time.perf_counter() - started

    return SyntheticBinance


def run_step(step: str, state_path: Path) -> None:
    """Child process: run one operator's ``execute`` and write its result beside the state."""
    import ccxt

    from market_ingest.config import load_config
    from market_ingest.dag_factory import task_arguments
    from market_ingest.operators.extract import MarketExtractOperator
    from market_ingest.operators.kinesis import KinesisPublishOperator
    from market_ingest.operators.lake import LakePublishOperator
    from market_ingest.operators.warehouse import TimescaleLoadOperator

    args = task_arguments(load_config(), "binance", "1m")  # what the DAG market_binance_1m gives its tasks
    state = json.loads(state_path.read_text())
    context = {"run_id": RUN_ID, "params": {}, "data_interval_start": START, "data_interval_end": END}
    if step == "extract":
        ccxt.binance = synthetic_binance()
        batch = {"batch": 0, "symbols": [SYMBOL], "start": START.isoformat(), "end": END.isoformat(), "since": {}}
        task = MarketExtractOperator(task_id="extract", batch=batch, **args["extract"])
    elif step == "publish_lake":
        task = LakePublishOperator(task_id="publish_lake", extracts=[state["extract"]], **args["publish_lake"])
    elif step == "load_timescale":
        task = TimescaleLoadOperator(task_id="load_timescale", lake=state["publish_lake"], **args["load_timescale"])
    else:
        task = KinesisPublishOperator(task_id="publish_kinesis", lake=state["publish_lake"], **args["publish_kinesis"])
    started = time.perf_counter()
    if os.environ.get("BENCH_PROFILE"):  # --profile: a pyinstrument report per task
        from pyinstrument import Profiler

        with Profiler(interval=0.005) as profiler:
            result = task.execute(context)
        report = profiler.output_text(unicode=False, color=False, show_all=False)
        state_path.with_suffix(f".{step}.profile.txt").write_text(report)
    else:
        result = task.execute(context)
    timing = {"execute_seconds": time.perf_counter() - started, "ccxt_parse_seconds": VENDOR["parse_seconds"]}
    state_path.with_suffix(f".{step}.json").write_text(json.dumps({"result": result, "timing": timing}, default=str))


def _markets_file(work: Path) -> Path:
    """Binance's BTC/USDT market from the recorded exchangeInfo (served by the stand-in), as a ccxt markets file."""
    import ccxt

    from market_ingest.routing import route_urls
    from standin.server import StandIn, StandInServer

    server = StandInServer(StandIn(ROOT / "include" / "recordings")).start()
    try:
        client = ccxt.binance({"options": {"fetchMarkets": {"types": ["spot"]}}})
        client.urls["api"] = route_urls(client.urls["api"], server.url)
        market = client.load_markets()[SYMBOL]
    finally:
        server.shutdown()
    path = work / "markets.json"
    path.write_text(json.dumps([market]))
    return path


def _config(work: Path, markets: Path, bars_per_record: int) -> Path:
    import yaml

    raw = yaml.safe_load((ROOT / "include" / "pipeline.yaml").read_text())
    raw["sources"]["binance"]["markets_file"] = str(markets)
    raw["sources"]["binance"].pop("options", None)
    raw["kinesis"]["bars_per_record"] = bars_per_record
    path = work / "pipeline.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _check_sinks(services) -> dict[str, int]:
    """Bars of the series in each sink: PostgreSQL rows, lake rows in every object (no
    deduplication) and distinct keys, Kinesis bars and distinct record ids."""
    import psycopg

    from demo.services import lake_tables, stream_data
    from market_ingest.config import load_config

    cfg = load_config()
    with psycopg.connect(services.pg_conninfo()) as conn:
        pg, pg_distinct = conn.execute(
            "SELECT count(*), count(DISTINCT time) FROM market.bars WHERE source='binance' AND symbol=%s AND interval='1m' "
            "AND time >= %s AND time < %s",
            (SYMBOL, START, END),
        ).fetchone()
    (bucket,) = cfg.lake.buckets[:1]
    prefix = cfg.lake.url.split(f"{bucket}/", 1)[1]
    times = []
    for _, table in lake_tables(services, bucket, f"{prefix}/bars/source=binance/interval=1m/", columns=["time"]):
        times += table["time"].to_pylist()
    ids: list[str] = []
    for record in stream_data(services, cfg.kinesis.stream):
        ids += [json.loads(line)["record_id"] for line in record.split(b"\n")]
    return {
        "postgres": pg,
        "postgres_duplicates": pg - pg_distinct,
        "lake": len(set(times)),
        "lake_duplicates": len(times) - len(set(times)),
        "kinesis": len(set(ids)),
        "kinesis_duplicates": len(ids) - len(set(ids)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--bars-per-record", type=int, default=500, help="kinesis.bars_per_record (1: one record per bar)")
    parser.add_argument("--days", type=int, help="days of 1m bars from 2023-01-01 (default: the year, 525,600 bars)")
    parser.add_argument("--step", choices=STEPS, help=argparse.SUPPRESS)
    parser.add_argument("--state", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--no-record", action="store_true", help="do not append to bench/RESULTS.md")
    parser.add_argument(
        "--profile", action="store_true", help="write a pyinstrument report per task to .bench/stream/ (pip install pyinstrument)"
    )
    args = parser.parse_args()
    from demo.services import unwind_on_signals

    unwind_on_signals()  # a killed benchmark stops the servers it started
    _span(args.days)
    if args.step:
        run_step(args.step, args.state)
        return 0

    import shutil

    from demo.services import create_sinks, embedded_services, vendor_env

    work = ROOT / ".bench" / "stream"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    markets = _markets_file(work)
    config = _config(work, markets, args.bars_per_record)
    os.environ["MARKET_INGEST_CONFIG"] = str(config)
    if args.profile:
        os.environ["BENCH_PROFILE"] = "1"
    os.environ.setdefault("AIRFLOW_HOME", str(work / "airflow"))
    os.environ["AIRFLOW__CORE__LOAD_EXAMPLES"] = "False"
    from market_ingest.config import load_config

    cfg = load_config()
    figures: dict[str, dict] = {}
    with embedded_services(work / "services") as services:
        os.environ.update(services.airflow_env(cfg.timescale.conn_id, cfg.kinesis.aws_conn_id))
        os.environ.update(vendor_env(services.vendors_url, cfg))  # every vendor connection through the stand-in
        create_sinks(services, cfg)
        state_path = work / "state.json"
        state: dict = {}
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "plugins"), str(ROOT)])}
        started = time.monotonic()
        # As the DAG runs them: extract, then publish_lake, then both sinks at once.
        for group in (["extract"], ["publish_lake"], ["load_timescale", "publish_kinesis"]):
            state_path.write_text(json.dumps(state))
            procs = {}
            for step in group:
                command = [sys.executable, __file__, "--step", step, "--state", str(state_path)]
                command += ["--days", str(args.days)] if args.days else []
                log = open(work / f"{step}.log", "wb")  # noqa: SIM115 - closed with the process
                procs[step] = (time.monotonic(), subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log), log)
            for step, (began, proc, log) in procs.items():
                _, status, usage = os.wait4(proc.pid, 0)
                log.close()
                if os.waitstatus_to_exitcode(status) != 0:
                    print(f"{step} failed; see {work / f'{step}.log'}")
                    return 1
                out = json.loads(state_path.with_suffix(f".{step}.json").read_text())
                state[step] = out["result"]
                figures[step] = {"wall_seconds": time.monotonic() - began, "peak_rss_mb": usage.ru_maxrss / 1024, **out["timing"]}
                f = figures[step]
                print(
                    f"{step:<16} process {f['wall_seconds']:6.1f} s   execute {f['execute_seconds']:6.1f} s   "
                    f"peak RSS {f['peak_rss_mb']:6.0f} MB",
                    flush=True,
                )
        run_wall = time.monotonic() - started
        sinks = _check_sinks(services)
    execute = (
        figures["extract"]["execute_seconds"]
        + figures["publish_lake"]["execute_seconds"]
        + max(figures["load_timescale"]["execute_seconds"], figures["publish_kinesis"]["execute_seconds"])
    )
    peak = max(f["peak_rss_mb"] for f in figures.values())
    kinesis = state["publish_kinesis"]
    print(
        f"run: {execute:.1f} s in the tasks' execute on the critical path ({BARS / execute:,.0f} bars/s), "
        f"{run_wall:.1f} s wall with the 4 processes' start-up; ccxt parsing "
        f"{figures['extract']['ccxt_parse_seconds']:.1f} s of the extract"
    )
    print(f"largest task peak RSS {peak:.0f} MB")
    print(
        f"kinesis: {kinesis['records']} records in {kinesis['calls']} PutRecords calls ({args.bars_per_record} bars per record)"
    )
    print(f"sinks: {sinks}")
    ok = sinks["postgres"] == sinks["lake"] == sinks["kinesis"] == BARS and not any(
        sinks[k] for k in ("postgres_duplicates", "lake_duplicates", "kinesis_duplicates")
    )
    goal = ok and execute < 60 and peak < 500
    verdict = "PASS" if goal else ("FAIL (sinks)" if not ok else "FAIL (goal: < 60 s and < 500 MB per task)")
    print(verdict)
    if not args.no_record:
        _record(args, figures, run_wall, execute, peak, kinesis, sinks, verdict)
    return 0 if ok else 1


def _record(args, figures, run_wall, execute, peak, kinesis, sinks, verdict) -> None:
    command = "python bench/stream.py" + (f" --bars-per-record {args.bars_per_record}" if args.bars_per_record != 500 else "")
    command += f" --days {args.days}" if args.days else ""
    lines = [f"\n## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC, stream\n", f"`{command}`\n"]
    lines += [
        f"- {step}: execute {f['execute_seconds']:.1f} s (process {f['wall_seconds']:.1f} s), peak RSS {f['peak_rss_mb']:.0f} MB"
        for step, f in figures.items()
    ]
    lines += [
        f"- run: {execute:.1f} s in execute on the critical path (extract + publish_lake + the slower sink), "
        f"{BARS / execute:,.0f} bars/s; {run_wall:.1f} s wall with the 4 processes' start-up; "
        f"ccxt parsing {figures['extract']['ccxt_parse_seconds']:.1f} s of the extract",
        f"- largest task peak RSS {peak:.0f} MB",
        f"- kinesis: {kinesis['records']} records in {kinesis['calls']} PutRecords calls ({args.bars_per_record} bars per record)",
        f"- read back: postgres {sinks['postgres']} (duplicates {sinks['postgres_duplicates']}), lake {sinks['lake']} "
        f"(duplicates {sinks['lake_duplicates']}), kinesis {sinks['kinesis']} (duplicates {sinks['kinesis_duplicates']})",
        f"- {verdict}\n",
    ]
    with (ROOT / "bench" / "RESULTS.md").open("a") as fh:
        fh.write("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
