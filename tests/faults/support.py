"""Helpers of the fault and bad-input suite: derived recordings, a raw reader of the lake, a
config override, and operator contexts."""

from __future__ import annotations

import json
import math
import shutil
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

from tests.conftest import RECORDINGS

UTC = timezone.utc


def derived_yahoo_library(
    folder: Path, edits: dict[str, list[tuple[str, str, float]]], dropped: dict[str, list[str]] | None = None
) -> Path:
    """A recordings folder whose ``yahoo/`` holds the committed recordings, with values edited
    and sessions removed.

    :param edits: ``{recording file prefix: [(ISO date, field, value)]}``; ``field`` is an
        ``indicators.quote`` series (``open``, ``high``, ``low``, ``close``, ``volume``) or
        ``adjclose``; ``value`` may be ``nan`` or ``inf`` (Yahoo's JSON parser, Python's ``json``,
        reads ``NaN`` and ``Infinity``).
    :param dropped: ``{recording file prefix: [ISO date]}``: those sessions' bars taken out of the
        chart (its timestamp and every series), as if Yahoo had no bar for them.
    :return: the recordings folder (serve it with ``tests.conftest.serving``).
    """
    target = folder / "yahoo"
    shutil.copytree(RECORDINGS / "yahoo", target)
    for prefix, changes in edits.items():
        (path,) = sorted(target.glob(f"{prefix}*.json"))
        doc = json.loads(path.read_text())
        result = doc["chart"]["result"][0]
        offset = result["meta"]["gmtoffset"]
        days = [datetime.fromtimestamp(t + offset, UTC).date().isoformat() for t in result["timestamp"]]
        for day, field, value in changes:
            i = days.index(day)
            series = (
                result["indicators"]["adjclose"][0]["adjclose"]
                if field == "adjclose"
                else result["indicators"]["quote"][0][field]
            )
            series[i] = value
        path.write_text(json.dumps(doc, allow_nan=True))
    for prefix, gone in (dropped or {}).items():
        (path,) = sorted(target.glob(f"{prefix}*.json"))
        doc = json.loads(path.read_text())
        result = doc["chart"]["result"][0]
        offset = result["meta"]["gmtoffset"]
        keep = [datetime.fromtimestamp(t + offset, UTC).date().isoformat() not in gone for t in result["timestamp"]]
        assert keep.count(False) == len(gone), f"{path.name} does not hold every session of {gone}"
        result["timestamp"] = [t for t, k in zip(result["timestamp"], keep, strict=True) if k]
        for group in result["indicators"].values():
            for series in group:
                for name, values in series.items():
                    series[name] = [v for v, k in zip(values, keep, strict=True) if k]
        path.write_text(json.dumps(doc, allow_nan=True))
    return folder


def raw_lake_rows(services, bucket: str, prefix: str) -> list[dict]:
    """Every row of every Parquet object under ``s3://bucket/prefix`` (no deduplication), with its ``_key``."""
    from demo.services import lake_tables

    return [{**r, "_key": key} for key, table in lake_tables(services, bucket, prefix) for r in table.to_pylist()]


def key_counts(rows: list[dict]) -> Counter:
    """How many times each ``(symbol, date)`` occurs."""
    return Counter((r["symbol"], r["time"].date().isoformat()) for r in rows)


class TaskInstanceStub:
    """The task instance of a task run in the test's process: its try, and the XCom it pushes
    beside its return value (``pushed``); it pulls nothing, as a run whose other tasks left no XCom."""

    def __init__(self, try_number: int = 1, max_tries: int = 3) -> None:
        self.try_number, self.max_tries = try_number, max_tries
        self.pushed: dict[str, object] = {}

    def xcom_push(self, key: str, value: object) -> None:
        self.pushed[key] = value

    def xcom_pull(self, **kwargs: object) -> None:
        return None


def context(run_id: str, params: dict | None = None, start: datetime | None = None, end: datetime | None = None) -> dict:
    """The parts of an Airflow context the market operators read."""
    return {
        "ti": TaskInstanceStub(),
        "run_id": run_id,
        "params": params or {},
        "data_interval_start": start or datetime(2021, 7, 19, tzinfo=UTC),
        "data_interval_end": end or datetime(2021, 7, 20, tzinfo=UTC),
        "dag": SimpleNamespace(dag_id="market_test"),
    }


def is_finite(x) -> bool:
    return x is not None and math.isfinite(x)


def run_tasks(ctx: dict, source: str, interval: str, *, kinesis: bool = False, report: bool = False) -> dict:
    """A run's tasks in this process, as the DAG chains them: plan -> extract (each batch) ->
    publish_lake -> load_timescale, then publish_kinesis when ``kinesis`` (or ``report``) and the
    report task when ``report``, each built from the pipeline config (``tests.conftest.built``).

    :param ctx: the run's context (:func:`context`).
    :return: ``{"plan", "extracts", "lake", "timescale", "kinesis", "report"}``: each task's
        result (``None`` for tasks not run).
    :raises: what a task raises (the report's ``AirflowFailException`` when the run fails).
    """
    from market_ingest.operators.extract import MarketExtractOperator
    from market_ingest.operators.kinesis import KinesisPublishOperator
    from market_ingest.operators.lake import LakePublishOperator
    from market_ingest.operators.plan import MarketPlanOperator
    from market_ingest.operators.report import RunReportOperator
    from market_ingest.operators.warehouse import TimescaleLoadOperator
    from tests.conftest import built

    done: dict = dict.fromkeys(("plan", "extracts", "lake", "timescale", "kinesis", "report"))
    done["plan"] = plan = built(MarketPlanOperator, "plan", source, interval).execute(ctx)
    done["extracts"] = extracts = [built(MarketExtractOperator, "extract", source, interval, batch=b).execute(ctx) for b in plan]
    done["lake"] = lake = built(LakePublishOperator, "publish_lake", source, interval, extracts=extracts).execute(ctx)
    load = built(TimescaleLoadOperator, "load_timescale", source, interval, lake=lake, plan=plan, extracts=extracts)
    done["timescale"] = load.execute(ctx)
    if kinesis or report:
        done["kinesis"] = built(KinesisPublishOperator, "publish_kinesis", source, interval, lake=lake).execute(ctx)
    if report:
        task = built(
            RunReportOperator,
            "report",
            source,
            interval,
            **{k: done[k] for k in ("plan", "extracts", "lake", "timescale", "kinesis")},
        )
        done["report"] = task.execute(ctx)
    return done
