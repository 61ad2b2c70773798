"""Benchmark: a vendor pool is the vendor's rate limit, measured under the real scheduler.

``make bench`` (or ``.venv/bin/python bench/pool_rate.py``). Starts PostgreSQL and moto (the
sinks), the vendor stand-in in synthetic mode (``standin/``) on loopback, and Airflow
(``--executor local``: ``airflow standalone``; ``--executor celery``: two schedulers and two Celery
workers on a Redis broker, so the pool's tasks run in different workers); triggers two DAGs
that share the ``alpha_vantage`` pool (``market_alpha_vantage_1d`` and
``market_alpha_vantage_quote``) over SYMBOLS symbols each; waits; stops everything; prints:

* peak concurrency: the most extract tasks of the pool running at once (from the task
  instances' start and end times in the metadata DB), against the pool's slots;
* throttled requests: requests the stand-in answered with Alpha Vantage's burst body;
* achieved / allowed rate: requests divided by the time from the first to the last request,
  against the stand-in's limit.

The stand-in enforces ``--limit`` requests per ``--window`` seconds over a sliding window, like
Alpha Vantage's per-minute limit, and answers an excess request with the recorded burst body
(tests/fixtures/alpha_vantage/av_ERROR_Note_5calls_per_minute_2018-11.json). Data requests get
synthetic daily series and quotes for any symbol. The pipeline's side of the
limit is configuration only: pool ``alpha_vantage`` with ``--slots`` slots, each extract task
spacing its requests by ``slots / (limit / window) / headroom`` seconds (connection extra
``requests_per_second``), so slots x per-task rate = headroom x the vendor's rate.

Results are appended to bench/RESULTS.md with the command line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT / "plugins"), str(ROOT)]
DAGS = ("market_alpha_vantage_1d", "market_alpha_vantage_quote")
POOL = "alpha_vantage"


def peak_concurrency(intervals: list[tuple[datetime, datetime]]) -> int:
    """Most intervals open at once; an interval ending when another starts does not overlap it."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals], key=lambda x: (x[0], x[1]))
    peak = cur = 0
    for _, step in events:
        cur += step
        peak = max(peak, cur)
    return peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--symbols", type=int, default=30, help="symbols per DAG (two DAGs)")
    parser.add_argument("--batch-size", type=int, default=15, help="symbols per extract task")
    parser.add_argument("--slots", type=int, default=2, help="slots of the shared pool")
    parser.add_argument("--limit", type=int, default=10, help="vendor limit: requests per window")
    parser.add_argument("--window", type=float, default=10.0, help="vendor limit window, seconds")
    parser.add_argument("--headroom", type=float, default=0.95, help="share of the vendor rate the pool may use")
    parser.add_argument(
        "--pool-slots",
        type=int,
        default=None,
        help="control run: give the pool this many slots while tasks still pace for --slots "
        "(more slots than the rate allows: the stand-in must throttle)",
    )
    parser.add_argument("--executor", choices=("local", "celery"), default="local", help="the Airflow layout (demo/stack.py)")
    parser.add_argument("--work", type=Path, default=ROOT / ".bench")
    args = parser.parse_args()
    from demo.services import unwind_on_signals

    unwind_on_signals()  # a killed benchmark stops the servers it started

    import shutil
    from contextlib import nullcontext

    import yaml

    from demo.services import create_sinks, embedded_services, redis_server
    from demo.stack import parse_utc, prepare, start
    from standin.core import RateLimit
    from standin.server import StandIn, StandInServer

    work = args.work
    shutil.rmtree(work / "airflow", ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    rate = args.limit / args.window
    per_task = rate * args.headroom / args.slots
    raw = yaml.safe_load((ROOT / "include" / "pipeline.yaml").read_text())
    av = raw["sources"]["alpha_vantage"]
    pool_slots = args.pool_slots or args.slots
    # The bench's manual runs are sized past the free key's 25-request cap on purpose.
    av.update(pool_slots=pool_slots, batch_size=args.batch_size, max_requests_per_manual_run=100_000)
    raw["retry"]["rate_limited_delay_seconds"] = 30  # a throttled task (a failed bench) retries soon
    (work / "pipeline.yaml").write_text(yaml.safe_dump(raw))
    os.environ["MARKET_INGEST_CONFIG"] = str(work / "pipeline.yaml")
    from market_ingest.config import load_config

    cfg = load_config()
    (work / "pools.json").write_text(json.dumps(cfg.pools(), indent=2))
    symbols = [f"S{i:03d}" for i in range(args.symbols)]

    standin = StandIn(None, synthetic=True)
    standin.limits["alpha_vantage"] = RateLimit(args.limit, args.window)
    vendor = StandInServer(standin).start()
    url = f"{vendor.url}/www.alphavantage.co/query"
    print(
        f"vendor stand-in {url}: {args.limit} requests per {args.window:g}s ({rate:.2f}/s); pool {POOL}: "
        f"{pool_slots} slots x {per_task:.3f} requests/s per task; {len(DAGS)} DAGs x {args.symbols} symbols, "
        f"batches of {args.batch_size}",
        flush=True,
    )
    celery = args.executor == "celery"
    with embedded_services(work, vendors=False) as svc, redis_server(work / "redis") if celery else nullcontext() as broker:
        env = svc.airflow_env(cfg.timescale.conn_id, cfg.kinesis.aws_conn_id)
        env["AIRFLOW_CONN_MARKET_ALPHA_VANTAGE"] = json.dumps(
            {
                "conn_type": "alpha_vantage",
                "host": url,
                "password": "bench-key",
                "extra": {"requests_per_second": per_task, "daily_budget": 1_000_000},
            }
        )
        env["MARKET_INGEST_CONFIG"] = str(work / "pipeline.yaml")
        create_sinks(svc, cfg)
        stack = prepare(
            work / "airflow",
            svc.metadata_db("airflow_bench"),
            env,
            pools_file=work / "pools.json",
            executor=args.executor,
            broker_url=broker,
        )
        try:
            start(stack, list(DAGS))
            print(f"Airflow ({args.executor} layout) ready; triggering", flush=True)
            for dag_id in DAGS:
                stack.unpause(dag_id)
            runs = {
                DAGS[0]: stack.trigger(
                    DAGS[0],
                    "2023-11-11T00:00:00Z",
                    {"symbols": symbols, "start": "2023-11-06T00:00:00Z", "end": "2023-11-11T00:00:00Z"},
                ),
                DAGS[1]: stack.trigger(
                    DAGS[1],
                    "2018-10-06T00:00:00Z",
                    {"symbols": symbols, "start": "2018-10-04T21:30:00Z", "end": "2018-10-05T21:30:00Z"},
                ),
            }
            states, intervals, workers = {}, [], set()
            for dag_id, run_id in runs.items():
                (run,) = stack.wait_for_runs(dag_id, [run_id], timeout=1800)
                states[dag_id] = run["state"]
                pooled = [t for t in stack.task_instances(dag_id, run_id) if t["pool"] == POOL]
                intervals += [
                    (parse_utc(t["start_date"]), parse_utc(t["end_date"])) for t in pooled if t["start_date"] and t["end_date"]
                ]
                workers |= {_worker_of(stack, t) for t in pooled} if celery else set()
        finally:
            stack.stop()
    vendor.shutdown()

    log = [r for r in standin.log if r["vendor"] == "alpha_vantage"]
    served = [r["t"] for r in log if not r["throttled"]]
    throttled = sum(1 for r in log if r["throttled"])
    span = (served[-1] - served[0]) if len(served) > 1 else float("nan")
    achieved = (len(served) - 1) / span if span else float("nan")  # requests per second between first and last
    peak = peak_concurrency(intervals)
    ok = peak <= pool_slots and throttled == 0 and achieved / rate >= 0.8 and set(states.values()) == {"success"}
    ok = ok and (len(workers) > 1 or not celery)
    lines = [
        f"runs: {states}",
        f"executor: {args.executor}"
        + (f"; the pool's tasks ran on {len(workers)} Celery workers ({', '.join(sorted(workers))})" if celery else ""),
        f"extract tasks in pool {POOL}: {len(intervals)}; peak concurrently running: {peak} (slots {pool_slots})",
        f"requests: {len(log)}; throttled: {throttled}",
        f"achieved rate: {achieved:.3f}/s over {span:.1f}s; allowed {rate:.3f}/s; achieved/allowed: {achieved / rate:.1%}",
        "PASS"
        if ok
        else "FAIL: need peak <= slots, 0 throttled, achieved/allowed >= 80%, both runs successful (celery: on 2 workers)",
    ]
    print("\n".join(lines))
    from bench.results import record

    record(lines, indent="- ")
    return 0 if ok else 1


def _worker_of(stack, ti: dict) -> str:
    """The Celery worker (``worker-<n>``) whose log shows it executing task instance ``ti`` (a REST
    dict; its latest try), by the task instance id in the workload the worker logs."""
    wanted = f"ti=TaskInstanceDTO(id=UUID('{ti['id']}')"
    found = stack.workers_logging(wanted)
    return found[0] if len(found) == 1 else "unknown"


if __name__ == "__main__":
    sys.exit(main())
