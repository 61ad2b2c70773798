"""Benchmark: every configured universe under the real scheduler, 20 scheduled intervals, with faults.

``make bench-soak`` (or ``.venv/bin/python bench/soak.py``). Starts PostgreSQL (warehouse and
Airflow's metadata), moto (S3, Kinesis) and the vendor stand-in in synthetic mode on loopback,
then ``airflow standalone`` (scheduler with the LocalExecutor) with scheduling on. Every series of
``include/pipeline.yaml`` in :data:`SERIES` gets ``catchup: true`` and a ``start_date`` ``--runs``
periods back, so the scheduler itself creates ``--runs`` consecutive scheduled runs per DAG once
they are unpaused (one at a time per DAG, ``max_active_runs: 1`` as configured):

* Yahoo 1d, ``@daily``: nasdaq100, dax40, ftse100, cac40 (280 equities);
* Yahoo 1m, ``@hourly``: nasdaq100;
* Binance 1m ``@hourly`` and 1h ``@daily``, KuCoin 1h, Coinbase 1h, Kraken 1m: the crypto majors.

Alpha Vantage (25 requests a day on the free key) and the quote DAGs are left out.

The stand-in enforces a rate limit per vendor (:data:`LIMITS`; Binance's is the 1,200 requests
per minute of its recorded ``exchangeInfo``, the others are assumptions stated there; Yahoo's
connection gets ``requests_per_second`` so that the pool's slots together use 95% of it), holds
every request ``--latency-ms`` (a vendor's round trip), and injects faults:

* ``--fault-share`` (5%) of all requests: 4 in 5 of them answered 503 with the vendor's error
  page, 1 in 5 held 2 s then dropped without an answer (what a client sees of a gateway timeout);
* two Binance kline requests held 35 s, past ccxt's 30 s timeout;
* after a quarter of Yahoo's runs, a burst of six 429s from Yahoo; after half of Binance's, one
  Binance 418 ban; after three quarters of KuCoin's, one truncated KuCoin body (the output's
  "faults and throttles answered" says which hit).

``retry.rate_limited_delay_seconds`` is cut from 900 s to ``--rate-limited-delay`` (60 s): the
soak compresses 20 days of runs into minutes. It then prints, and appends to bench/RESULTS.md:

* runs per DAG and their states, wall time per run (median and max, start to end of the run);
* symbols, bars expected (the markets' calendars: :func:`market_ingest.calendars.expected_bars`)
  and loaded per sink (warehouse rows, lake rows by :func:`market_ingest.lake.read_lake`, Kinesis
  records), duplicates per sink, and bars lost: expected bars neither loaded nor reported with a
  reason in the coverage ledger (must be 0);
* bars per second over the soak, and the share of extract time the vendor held requests;
* the 280-symbol daily DAG's critical path: each task's median start and end from its run's
  start, its task time and its retries (:func:`critical_path`), so a slow run says which step
  or which gap between steps took the time;
* peak RSS of the scheduler (sampled) and of each task kind (``VmHWM`` of each task process),
  in the first and last fifth of the runs (flat memory: no growth from first to last).

Goal (issue 14): nothing lost, no duplicate, a 280-symbol daily run within its pool's rate limit
plus 60 s, memory flat across the runs.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
UTC = timezone.utc
#: The series soaked, ``{source: [interval, ...]}`` (all of them ``@daily`` or ``@hourly``).
SERIES = {"yahoo": ["1d", "1m"], "binance": ["1m", "1h"], "kucoin": ["1h"], "coinbase": ["1h"], "kraken": ["1m"]}
PERIODS = {"@daily": timedelta(days=1), "@hourly": timedelta(hours=1)}
#: The stand-in's limit per vendor, ``(requests, window seconds)``. Binance: 1,200 per minute
#: (``rateLimits`` of the recorded exchangeInfo, counted per request here, not per weight).
#: Yahoo publishes none: 1,200 per minute is assumed, like Binance's. KuCoin's public pool (2,000
#: per 30 s on its docs' VIP0 tier), Coinbase's public 10 per second and Kraken's about 1 per
#: second (counted over 2 s: ccxt spaces Kraken requests exactly 1 s apart, and a sliding 1 s
#: window throttled every second one on arrival jitter) are taken from the vendors' documentation
#: pages as ccxt cites them, not from a recorded answer.
LIMITS = {"yahoo": (1200, 60.0), "binance": (1200, 60.0), "kucoin": (2000, 30.0), "coinbase": (10, 1.0), "kraken": (2, 2.0)}
TASK_TITLE = b"airflow worker -- "


def _status_kib(pid: int | str, field: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Sampler(threading.Thread):
    """Every ``every`` seconds: the scheduler's RSS, and the peak RSS (``VmHWM``) of each task process.

    Task processes are found by the title Airflow's task runner gives them
    (``airflow worker -- <task instance id>``). ``tasks`` maps the id to the highest ``VmHWM``
    seen, in KiB; ``scheduler`` holds ``(monotonic time, RSS KiB)`` samples.
    """

    def __init__(self, scheduler_pids, every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.scheduler_pids, self.every = scheduler_pids, every
        self.tasks: dict[str, int] = {}
        self.scheduler: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        last_scheduler = 0.0
        while not self.stopped.wait(self.every):
            for entry in os.scandir("/proc"):
                if not entry.name.isdigit():
                    continue
                try:
                    title = Path(entry.path, "cmdline").read_bytes()
                except OSError:
                    continue
                if title.startswith(TASK_TITLE):
                    ti = title[len(TASK_TITLE) :].split(b"\0")[0].decode().strip()
                    hwm = _status_kib(entry.name, "VmHWM")
                    if hwm:
                        self.tasks[ti] = max(self.tasks.get(ti, 0), hwm)
            if time.monotonic() - last_scheduler >= 5:
                last_scheduler = time.monotonic()
                rss = sum(_status_kib(pid, "VmRSS") or 0 for pid in self.scheduler_pids())
                if rss:
                    self.scheduler.append((last_scheduler, rss))


def soak_config(
    raw: dict, runs: int, now: datetime, rate_limited_delay: int
) -> tuple[dict, dict[str, tuple[datetime, datetime]]]:
    """The shipped pipeline config cut to :data:`SERIES`, each with catchup over ``runs`` periods.

    :return: ``(config, {dag_id: (first data interval start, last data interval end)})``.
    """
    from market_ingest.dag_factory import dag_id

    spans = {}
    for source in list(raw["sources"]):
        src = raw["sources"][source]
        if source not in SERIES:
            del raw["sources"][source]
            continue
        src.pop("quotes", None)
        src["max_requests_per_manual_run"] = 100_000
        for interval in list(src["intervals"]):
            if interval not in SERIES[source]:
                del src["intervals"][interval]
                continue
            ic = src["intervals"][interval]
            period = PERIODS[ic["schedule"]]
            end = datetime.fromtimestamp(now.timestamp() // period.total_seconds() * period.total_seconds(), UTC)
            start = end - runs * period
            ic.update(catchup=True, start_date=start.isoformat())
            spans[dag_id(source, interval)] = (start, end)
    raw["retry"]["rate_limited_delay_seconds"] = rate_limited_delay
    return raw, spans


def expected_bars(cfg, source: str, interval: str, span: tuple[datetime, datetime]) -> dict[str, int]:
    """``{symbol: bars its market's calendar has in span}`` for every symbol of the series."""
    from market_ingest.calendars import expected_bars as calendar_bars
    from market_ingest.config import load_universe
    from market_ingest.intervals import Window

    src = cfg.sources[source]
    universes = src.intervals[interval].universes or src.universes
    symbols = dict.fromkeys(s for u in universes for s in load_universe(u))
    return {s: len(calendar_bars(src.market_of(s), interval, Window(*span), now=span[1])) for s in symbols}


def in_span(runs: list[dict], end: datetime) -> list[dict]:
    """The runs whose data interval ends by ``end``: the soak's; an hour or a day that passes while
    it runs gets a run of its own, which runs too but is not counted."""
    from demo.stack import parse_utc

    return [r for r in runs if parse_utc(r["data_interval_end"]) <= end]


def median(values) -> float:
    values = list(values)
    return statistics.median(values) if values else float("nan")


def median_mib(kib) -> str:
    """The median of RSS samples given in KiB, as ``"<n> MiB"``; ``"none sampled"`` when there are none
    (a task kind that ran no try in that fifth of the soak)."""
    kib = list(kib)
    return f"{statistics.median(kib) / 1024:.0f} MiB" if kib else "none sampled"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20, help="scheduled runs per DAG (consecutive data intervals)")
    parser.add_argument("--fault-share", type=float, default=0.05, help="share of requests answered 503 or dropped")
    parser.add_argument("--latency-ms", type=float, default=100, help="the stand-in holds every request this long")
    parser.add_argument("--rate-limited-delay", type=int, default=60, help="retry delay after a 429 or ban, seconds")
    parser.add_argument("--timeout", type=float, default=5400, help="give up after this many seconds")
    parser.add_argument("--only", nargs="*", help="dag ids to soak (default: every series of SERIES)")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench" / "soak")
    args = parser.parse_args()
    from demo.services import unwind_on_signals

    unwind_on_signals()  # a killed benchmark stops the servers it started

    import shutil

    import yaml

    from demo.services import create_sinks, embedded_services, vendor_env
    from demo.stack import prepare, start
    from standin.core import Fault, RateLimit
    from standin.server import StandIn, StandInServer

    work = args.work
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    began = datetime.now(UTC)
    raw, spans = soak_config(
        yaml.safe_load((ROOT / "include" / "pipeline.yaml").read_text()), args.runs, began, args.rate_limited_delay
    )
    if args.only:
        spans = {d: s for d, s in spans.items() if d in args.only}
    (work / "pipeline.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    os.environ["MARKET_INGEST_CONFIG"] = str(work / "pipeline.yaml")
    from market_ingest.config import load_config
    from market_ingest.dag_factory import dag_id as dag_id_of

    cfg = load_config()
    (work / "pools.json").write_text(json.dumps(cfg.pools(), indent=2))
    series = {dag_id_of(s, i): (s, i) for s, i in cfg.dag_pairs() if dag_id_of(s, i) in spans}

    standin = StandIn(None, synthetic=True)
    standin.limits = {v: RateLimit(n, w) for v, (n, w) in LIMITS.items()}
    standin.latency_s = args.latency_ms / 1000
    many = 10**9
    standin.faults = [
        Fault("binance", "timeout", count=2, seconds=35, match="klines"),
        Fault("*", "status", status=503, count=many, share=args.fault_share * 0.8),
        Fault("*", "timeout", seconds=2, count=many, share=args.fault_share * 0.2 / (1 - args.fault_share * 0.8)),
    ]
    later = [  # (share of that vendor's runs finished, fault put first in the list)
        (0.25, Fault("yahoo", "throttled", count=6, match="/chart/")),
        (0.50, Fault("binance", "banned", count=1, match="klines")),
        (0.75, Fault("kucoin", "truncate", count=1, match="candles")),
    ]
    vendor = StandInServer(standin).start()
    print(
        f"soak: {len(series)} DAGs x {args.runs} scheduled runs; stand-in {vendor.url}: limits {LIMITS}, "
        f"latency {args.latency_ms:g} ms, {args.fault_share:.0%} of requests 503 or dropped",
        flush=True,
    )
    dags: dict[str, list[dict]] = {}
    with embedded_services(work, vendors=False) as svc:
        env = {
            **svc.airflow_env(cfg.timescale.conn_id, cfg.kinesis.aws_conn_id),
            **vendor_env(vendor.url, cfg),
            "MARKET_INGEST_CONFIG": str(work / "pipeline.yaml"),
            "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
        }
        # Yahoo's pacing: the pool's slots together use 95% of the stand-in's limit.
        yahoo = json.loads(env["AIRFLOW_CONN_MARKET_YAHOO"])
        yahoo["extra"] = {"requests_per_second": 0.95 * LIMITS["yahoo"][0] / LIMITS["yahoo"][1] / cfg.sources["yahoo"].pool_slots}
        env["AIRFLOW_CONN_MARKET_YAHOO"] = json.dumps(yahoo)
        os.environ.update(env)  # this process reads the sinks back through the same connections
        create_sinks(svc, cfg, shards=4)
        stack = prepare(work / "airflow", svc.metadata_db("airflow_soak"), env, pools_file=work / "pools.json")
        sampler = Sampler(lambda: stack.scheduler_pids())
        try:
            start(stack, list(series))
            sampler.start()
            t0 = time.monotonic()
            for dag_id in series:
                stack.unpause(dag_id)
            print(f"airflow standalone ready; {len(series)} DAGs unpaused", flush=True)
            total, done = len(series) * args.runs, 0
            while True:
                dags = {d: in_span(stack.runs(d), spans[d][1]) for d in series}
                finished = {d: sum(1 for r in runs if r["state"] in ("success", "failed")) for d, runs in dags.items()}
                done = sum(finished.values())
                for share, fault in list(later):
                    mine = [d for d in series if series[d][0] == fault.vendor]
                    if not mine or sum(finished[d] for d in mine) >= share * args.runs * len(mine):
                        later.remove((share, fault))
                        with standin.lock:
                            standin.faults.insert(0, fault)
                        print(f"  {done}/{total} runs finished: injecting {fault.kind} on {fault.vendor}", flush=True)
                if done >= total:
                    break
                if time.monotonic() - t0 > args.timeout:
                    print(f"timeout: {done}/{total} runs finished after {args.timeout:.0f}s", flush=True)
                    break
                stack._check_alive()
                time.sleep(10)
            wall = time.monotonic() - t0
            sampler.stopped.set()
            instances = {(d, r["dag_run_id"]): stack.task_instances(d, r["dag_run_id"]) for d, runs in dags.items() for r in runs}
            reports = {}
            for (d, run_id), tis in instances.items():
                if any(t["task_id"] == "report" and t["state"] == "success" for t in tis):
                    reports[d, run_id] = stack.xcom(d, run_id, "report")
        finally:
            sampler.stopped.set()
            stack.stop()
        vendor.shutdown()
        figures = measure(cfg, svc, series, spans, dags, instances, reports, standin, sampler, wall)
    lines = report_lines(args, figures)
    print("\n".join(lines))
    from bench.results import record

    record(lines, indent="    ")
    return 0 if figures["ok"] else 1


def measure(cfg, svc, series, spans, dags, instances, reports, standin, sampler, wall) -> dict:
    """Every figure of the soak from the runs, the sinks and the samples (see the module docstring)."""
    import psycopg

    from demo.services import stream_data
    from demo.stack import parse_utc
    from market_ingest.lake import lake_root, read_lake

    per_dag = {}
    kinesis = Counter()
    kinesis_ids: dict[tuple[str, str], set] = defaultdict(set)
    ends = {series[d]: spans[d][1] for d in series}
    for data in stream_data(svc, cfg.kinesis.stream):
        for line in data.split(b"\n"):
            bar = json.loads(line)
            key = bar["source"], bar["interval"]
            if key in ends and parse_utc(bar["time"]) < ends[key]:  # not the runs scheduled after the soak's span
                kinesis[key] += 1
                kinesis_ids[key].add(bar["record_id"])
    root = lake_root(cfg.lake.url)
    with psycopg.connect(svc.pg_conninfo()) as conn:
        for dag_id, (source, interval) in series.items():
            start, end = spans[dag_id]
            expected = expected_bars(cfg, source, interval, (start, end))
            stored = dict(
                conn.execute(
                    "SELECT symbol, count(DISTINCT time) FROM market.bars WHERE source = %s AND interval = %s "
                    "AND time >= %s AND time < %s GROUP BY symbol",
                    (source, interval, start, end),
                ).fetchall()
            )
            rows, distinct = conn.execute(
                "SELECT count(*), count(DISTINCT (symbol, time)) FROM market.bars WHERE source = %s AND interval = %s "
                "AND time >= %s AND time < %s",
                (source, interval, start, end),
            ).fetchone()
            reported, by_state = Counter(), Counter()
            for symbol, state, reason, short in conn.execute(
                "SELECT symbol, state, reason, greatest(expected - loaded, 0) FROM market.coverage "
                "WHERE source = %s AND interval = %s AND day >= %s AND day <= %s",
                (source, interval, start.date(), end.date()),
            ):
                by_state[state] += 1
                if short and reason:
                    reported[symbol] += short
            # Lost: expected bars neither stored nor reported (with a reason) as missing in the ledger.
            lost = sum(max(n - stored.get(sym, 0) - reported[sym], 0) for sym, n in expected.items())
            lake = read_lake(root, source, interval, start, end)
            lake_keys = len(set(zip(lake["symbol"].to_pylist(), lake["time"].to_pylist())))
            runs = dags[dag_id]
            walls = [
                (parse_utc(r["end_date"]) - parse_utc(r["start_date"])).total_seconds()
                for r in runs
                if r["start_date"] and r["end_date"]
            ]
            run_reports = [reports.get((dag_id, r["dag_run_id"])) for r in runs]
            steps = critical_path(runs, instances, dag_id)
            per_dag[dag_id] = {
                "runs": len(runs),
                "states": dict(Counter(r["state"] for r in runs)),
                "symbols": len(expected),
                "failed_symbols": sum(rep["failed"] for rep in run_reports if rep),
                "expected": sum(expected.values()),
                "warehouse": rows,
                "warehouse_dup": rows - distinct,
                "lake": lake.num_rows,
                "lake_dup": lake.num_rows - lake_keys,
                "kinesis": kinesis[source, interval],
                "kinesis_dup": kinesis[source, interval] - len(kinesis_ids[source, interval]),
                "reported": sum(reported.values()),
                "lost": lost,
                "ledger": dict(by_state),
                "wall_median": median(walls),
                "wall_max": max(walls, default=float("nan")),
                "walls": walls,
                "steps": steps,
            }
    # Memory per task kind, first and last fifth of each DAG's runs (oldest logical date first).
    kinds: dict[str, dict[str, list[int]]] = defaultdict(lambda: {"first": [], "last": [], "all": []})
    extract_seconds = 0.0
    for dag_id, runs in dags.items():
        fifth = max(1, len(runs) // 5)
        for i, r in enumerate(runs):
            for t in instances[dag_id, r["dag_run_id"]]:
                if t["task_id"] == "extract" and t.get("duration"):
                    extract_seconds += t["duration"]
                hwm = sampler.tasks.get(t["id"])
                if hwm is None:
                    continue
                k = kinds[t["task_id"]]
                k["all"].append(hwm)
                if i < fifth:
                    k["first"].append(hwm)
                if i >= len(runs) - fifth:
                    k["last"].append(hwm)
    held = sum(r.get("seconds", 0) for r in standin.log)
    requests = Counter(r["vendor"] for r in standin.log)
    faults = Counter((r["vendor"], r["fault"] or r["throttled"]) for r in standin.log if r["fault"] or r["throttled"])
    sched = sampler.scheduler
    yahoo_1d = per_dag.get("market_yahoo_1d")
    yahoo_rate = LIMITS["yahoo"][0] / LIMITS["yahoo"][1]
    # Yahoo requests per symbol asked: the chart request of the window, yfinance's timezone probe,
    # retries, and (through a URL-prefix gateway only) a cookie fetch from fc.yahoo.com before each
    # chart request: yfinance keeps the cookie only for a domain containing "yahoo".
    yahoo = [r for r in standin.log if r["vendor"] == "yahoo"]
    per_symbol = len(yahoo) / max(1, sum(1 for r in yahoo if "period1" in r["query"]))
    floor = (yahoo_1d["symbols"] * per_symbol / yahoo_rate + 60) if yahoo_1d else None
    loaded = sum(d["warehouse"] for d in per_dag.values())
    ok = all(d["lost"] == 0 and d["warehouse_dup"] == 0 and d["lake_dup"] == 0 for d in per_dag.values()) and all(
        d["lake"] == d["warehouse"] and len(d["walls"]) == d["runs"] for d in per_dag.values()
    )
    return {
        "per_dag": per_dag,
        "kinds": kinds,
        "wall": wall,
        "loaded": loaded,
        "extract_seconds": extract_seconds,
        "held": held,
        "requests": requests,
        "faults": faults,
        "scheduler": sched,
        "yahoo_floor": floor,
        "yahoo_per_symbol": per_symbol,
        "ok": ok,
    }


def critical_path(runs: list[dict], instances: dict, dag_id: str) -> dict[str, dict[str, float]]:
    """Each task's place in its runs: ``{task_id: {"start": s, "end": s, "busy": s, "retries": n}}``,
    medians over the finished runs of the seconds from the run's start to the task's first start and
    to its last end (a mapped task: over its map indexes), of the seconds its instances ran
    (``busy``, summed over map indexes), and the retries taken in total. Ordered by start. Each
    figure is a median of its own over the runs, so the steps are not one run's timeline (a gap
    between two steps' medians is not one run's gap), but they say which step takes the time and
    roughly where the run waits between steps."""
    from demo.stack import parse_utc

    per: dict[str, dict[str, list[float]]] = defaultdict(lambda: {"start": [], "end": [], "busy": [], "retries": []})
    for r in runs:
        if not (r["start_date"] and r["end_date"]):
            continue
        began = parse_utc(r["start_date"])
        by_task: dict[str, list[dict]] = defaultdict(list)
        for t in instances[dag_id, r["dag_run_id"]]:
            if t.get("start_date") and t.get("end_date"):
                by_task[t["task_id"]].append(t)
        for task_id, tis in by_task.items():
            p = per[task_id]
            p["start"].append(min((parse_utc(t["start_date"]) - began).total_seconds() for t in tis))
            p["end"].append(max((parse_utc(t["end_date"]) - began).total_seconds() for t in tis))
            p["busy"].append(sum(t.get("duration") or 0.0 for t in tis))
            p["retries"].append(sum(max((t.get("try_number") or 1) - 1, 0) for t in tis))
    steps = {
        task_id: {"start": median(p["start"]), "end": median(p["end"]), "busy": median(p["busy"]), "retries": sum(p["retries"])}
        for task_id, p in per.items()
    }
    return dict(sorted(steps.items(), key=lambda kv: kv[1]["start"]))


def report_lines(args, f: dict) -> list[str]:
    """The figures as text lines (printed and recorded)."""
    lines = [
        f"{'dag':<26}{'runs':>5} {'states':<22}{'symbols':>8}{'failed':>7}{'expected':>9}{'warehouse':>10}{'lake':>8}"
        f"{'kinesis':>8}{'dup w/l/k':>11}{'reported':>9}{'lost':>5}{'run s med':>10}{'max':>6}"
    ]
    for dag_id, d in f["per_dag"].items():
        states = ",".join(f"{k} {v}" for k, v in sorted(d["states"].items()))
        dup = f"{d['warehouse_dup']}/{d['lake_dup']}/{d['kinesis_dup']}"
        lines.append(
            f"{dag_id:<26}{d['runs']:>5} {states:<22}{d['symbols']:>8}{d['failed_symbols']:>7}{d['expected']:>9}"
            f"{d['warehouse']:>10}{d['lake']:>8}{d['kinesis']:>8}{dup:>11}{d['reported']:>9}{d['lost']:>5}"
            f"{d['wall_median']:>10.0f}{d['wall_max']:>6.0f}"
        )
        lines.append(f"{'':<26}ledger (symbol-days): {d['ledger']}")
    lines.append(
        f"soak wall time {f['wall']:.0f} s; {f['loaded']:,} bars loaded into the warehouse: {f['loaded'] / f['wall']:.0f} bars/s"
    )
    lines.append(
        f"vendor requests {sum(f['requests'].values()):,} {dict(f['requests'])}; faults and throttles answered {dict(f['faults'])}"
    )
    share = f["held"] / f["extract_seconds"] if f["extract_seconds"] else float("nan")
    lines.append(
        f"the vendor held requests {f['held']:.0f} s of {f['extract_seconds']:.0f} s of extract task time ({share:.0%}; "
        f"latency {args.latency_ms:g} ms per request)"
    )
    if f["yahoo_floor"] is not None:
        yd = f["per_dag"]["market_yahoo_1d"]
        lines.append(
            f"market_yahoo_1d (280 symbols): run wall time median {yd['wall_median']:.0f} s, max {yd['wall_max']:.0f} s; "
            f"goal: {yd['symbols']} symbols x {f['yahoo_per_symbol']:.2f} requests at Yahoo's "
            f"{LIMITS['yahoo'][0]}/{LIMITS['yahoo'][1]:g}s + 60 s = {f['yahoo_floor']:.0f} s"
        )
        lines.append(
            "market_yahoo_1d critical path, medians over its runs (s from the run's start: first start - last end, "
            "task time, retries in all runs): "
            + "; ".join(
                f"{task} {s['start']:.1f}-{s['end']:.1f} ({s['busy']:.1f} s, {s['retries']} retries)"
                for task, s in yd["steps"].items()
            )
        )
    sched = f["scheduler"]
    if sched:
        n = max(1, len(sched) // 5)
        lines.append(
            f"scheduler RSS: first fifth of the soak max {max(r for _, r in sched[:n]) / 1024:.0f} MiB, "
            f"last fifth max {max(r for _, r in sched[-n:]) / 1024:.0f} MiB, peak {max(r for _, r in sched) / 1024:.0f} MiB"
        )
    for kind, k in sorted(f["kinds"].items()):
        lines.append(
            f"task {kind:<16} peak RSS median {median_mib(k['all'])}, max {max(k['all']) / 1024:.0f} MiB "
            f"({len(k['all'])} tries sampled); first fifth of runs median {median_mib(k['first'])}, "
            f"last fifth {median_mib(k['last'])}"
        )
    lines.append(
        "PASS" if f["ok"] else "FAIL: need 0 lost, 0 duplicates in warehouse and lake, lake = warehouse, every run finished"
    )
    return lines


if __name__ == "__main__":
    sys.exit(main())
