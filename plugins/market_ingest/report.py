"""The run report: what a run of a market-data DAG did, per symbol and sink, built from its tasks'
results, and its text form for the task log and a terminal.

Pure functions of the tasks' results (:mod:`market_ingest.contracts`): no Airflow, no I/O. The
report task (:class:`market_ingest.operators.report.RunReportOperator`) adds what needs the run:
failed tries' errors, the ledger of a run that was not loaded, the failure and the notices.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from market_ingest import outcomes
from market_ingest.contracts import (
    Batch,
    ExtractResult,
    FailureXCom,
    KinesisResult,
    LakeResult,
    LoadResult,
    plan_window,
    reconciliation_line,
    window_xcom,
)


def build_report(
    plan: Sequence[Batch] | None,
    extracts: Sequence[ExtractResult | None],
    lake: LakeResult | None,
    timescale: LoadResult | None,
    kinesis: KinesisResult | None,
    failures: Mapping[int, FailureXCom] | None = None,
) -> dict[str, Any]:
    """Assemble the run report from the tasks' results (``None`` where a task did not succeed).

    :param plan: the plan's batches; ``None`` when the plan task did not succeed.
    :param extracts: the mapped extract results by map index (``None`` for a batch whose task
        did not succeed); a symbol of such a batch is ``failed`` with the task named.
    :param failures: ``{batch: {"error", "try_number", "tries"}}`` that failed extract tries left
        (:data:`market_ingest.operators.base.FAILURE_KEY`): the reason of each symbol of the batch then names the exception's
        class and message and the try, e.g. ``task extract[1] failed on try 3 of 3:
        VendorUnavailableError: ... (see its log)``.
    :return: ``{"symbols": {sym: {"status", "reason", "dropped", "nulled", "conflicts", "gaps", "note",
        "lake", "timescale", "kinesis"}}, "skipped": {sym: reason}, "failed_symbols": [...],
        "failed_tasks": ["extract[2]", "publish_kinesis", ...], "symbols_total", "failed",
        "failed_share", "unserved_symbols" (asked, and not known or answered with no bar:
        :func:`market_ingest.outcomes.unserved`), "unserved_share", "notices": [what the run's
        reader should know, e.g. a backfill without conf], "failure": why the run fails (``None``
        here; set by the report task), "window": {"start", "end"} (ISO UTC, the plan's span; ``None`` when
        nothing was planned), "lake_objects": [...], "rejects": [{"path", "rows", "run_id", "batch"}] (bars that failed
        validation, per batch, in the lake's rejects table), "coverage": {state: days written to the ledger},
        "staging_removed": objects (added by the report task when every sink succeeded),
        "totals": {...}}``; ``lake``, ``timescale`` and
        ``kinesis`` count bars of the run.
    """
    extracted: dict[str, Any] = {o["symbol"]: o for e in extracts if e for o in e.get("outcomes", [])}
    in_lake = lake["rows_by_symbol"] if lake else {}
    in_warehouse = timescale["rows_by_symbol"] if timescale else {}
    in_kinesis = kinesis["bars_by_symbol"] if kinesis else {}
    done_batches = {e["batch"] for e in extracts if e}
    failed_tasks = [] if plan is not None else ["plan"]
    symbols: dict[str, dict] = {}
    for batch in plan or []:
        if batch.index not in done_batches:
            failed_tasks.append(f"extract[{batch.index}]")
        failure = (failures or {}).get(batch.index)
        why = (
            f"task extract[{batch.index}] failed on try {failure['try_number']} of {failure['tries']}: "
            f"{failure['error']} (see its log)"
            if failure
            else f"task extract[{batch.index}] did not succeed (see its log)"
        )
        for sym in batch.symbols:
            o = extracted.get(sym) or {"status": outcomes.FAILED, "reason": why}
            symbols[sym] = {
                "status": o["status"],
                "reason": o.get("reason", ""),
                "dropped": o.get("dropped", {}),
                "nulled": o.get("nulled", {}),
                "conflicts": o.get("conflicts", {}),
                "gaps": o.get("gaps", []),
                "note": o.get("note", ""),
                "lake": in_lake.get(sym, 0),
                "timescale": in_warehouse.get(sym, 0),
                "kinesis": in_kinesis.get(sym, 0),
            }
    sinks_ok = {"lake": lake is not None, "timescale": timescale is not None, "kinesis": kinesis is not None}
    task_of = {"lake": "publish_lake", "timescale": "load_timescale", "kinesis": "publish_kinesis"}
    if plan:  # an empty plan (a repair with nothing to do) skips the sinks
        failed_tasks += [task_of[sink] for sink, ok in sinks_ok.items() if not ok]
    failed = sorted(s for s, v in symbols.items() if v["status"] == outcomes.FAILED)
    unserved = sorted(s for s, v in symbols.items() if outcomes.unserved({**(extracted.get(s) or {}), "status": v["status"]}))
    total = len(symbols)
    return {
        "symbols": symbols,
        "skipped": {s: f"{v['status']}: {v['reason']}" for s, v in symbols.items() if v["status"] in outcomes.SKIPPED_STATUSES},
        "failed_symbols": failed,
        "failed_tasks": failed_tasks,
        "symbols_total": total,
        "failed": len(failed),
        "failed_share": (len(failed) / total) if total else 0.0,
        "unserved_symbols": unserved,
        "unserved_share": (len(unserved) / total) if total else 0.0,
        "notices": [],
        "failure": None,
        "window": window_xcom(plan_window(plan or [])),
        "lake_objects": [o["path"] for o in lake["objects"]] if lake else [],
        "rejects": [e["rejects"] for e in extracts if e and e.get("rejects")],
        "coverage": timescale.get("coverage", {}) if timescale else {},
        "flags": timescale.get("flags", {}) if timescale else {},
        "totals": {
            "lake": sum(v["lake"] for v in symbols.values()),
            "timescale": sum(v["timescale"] for v in symbols.values()),
            "kinesis": sum(v["kinesis"] for v in symbols.values()),
            "sinks_ok": sinks_ok,
        },
    }


def format_report(report: Mapping[str, Any], dag_id: str, run_id: str) -> list[str]:
    """The report as aligned text lines for a log or a terminal."""
    lines = [
        f"Run report {dag_id} / {run_id}",
        *([f"FAILED: {report['failure']}"] if report.get("failure") else []),
        *report.get("notices", []),
        "bars per symbol and sink (a quote run: snapshots):",
        f"{'symbol':<12} {'status':<15} {'lake':>7} {'timescale':>9} {'kinesis':>8}  reason",
    ]
    for sym, v in sorted(report["symbols"].items()):
        lines.append(f"{sym:<12} {v['status']:<15} {v['lake']:>7} {v['timescale']:>9} {v['kinesis']:>8}  {v['reason']}")
        if v.get("dropped"):
            lines.append(f"{'':<12} dropped {v['dropped']}")
        if v.get("nulled"):
            lines.append(f"{'':<12} set to null (NaN or infinite) {v['nulled']}")
        if v.get("conflicts"):
            lines.append(f"{'':<12} answered twice with different values {v['conflicts']}")
        for start, end in v.get("gaps", []):
            lines.append(f"{'':<12} gap [{start}, {end})")
        if v.get("note"):
            lines.append(f"{'':<12} {v['note']}")
    t = report["totals"]
    lines.append(f"{'total':<12} {'':<15} {t['lake']:>7} {t['timescale']:>9} {t['kinesis']:>8}")
    for path in report["lake_objects"]:
        lines.append(f"lake object: {path}")
    for rejects in report.get("rejects", []):
        where = f" (run_id {rejects['run_id']!r}, batch {rejects['batch']})" if "batch" in rejects else ""
        lines.append(f"bars that failed validation ({rejects['rows']}), with their reasons: {rejects['path']}{where}")
    if report.get("coverage"):
        days = ", ".join(f"{state} {n}" for state, n in report["coverage"].items() if n)
        lines.append(f"coverage ledger (symbol-days): {days or 'no session of the market calendar in the window'}")
    if report.get("flags"):
        lines.append(f"bars flagged as anomalies (loaded; see market.bar_flags): {report['flags']}")
    if report.get("reconciliation"):
        lines.append(f"cross-source check: {reconciliation_line(report['reconciliation'])}")
    if report.get("failed_tasks"):
        lines.append(f"tasks that did not succeed: {', '.join(report['failed_tasks'])}")
    return lines
