"""The report task: the run's outcome per symbol and sink, its note, its alerts, and its state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from market_ingest.contracts import Batch, ExtractResult, FailureXCom, read_plan
from market_ingest.operators.base import FAILURE_KEY, SeriesOperator, materialise
from market_ingest.report import build_report, format_report
from market_ingest.run import backfill_without_conf, whole_universe_notice

if TYPE_CHECKING:
    from airflow.sdk import Context


class RunReportOperator(SeriesOperator):
    """Summarise the run: rows per symbol and sink, skipped symbols with reasons.

    Runs whatever upstream did (``trigger_rule="all_done"``). Prints the report to the task log
    and returns it (small) to XCom. Fails (and so fails the run, being its only leaf) when the plan
    or a sink did not succeed, when the share of failed symbols exceeds the configured
    ``report.max_failed_share``, or when the share of symbols the vendor did not serve (unknown,
    or no bar while their market was open) exceeds ``report.max_unserved_share``; in the last two
    cases it first emits a ``failed_share_exceeded`` or ``unserved_share_exceeded`` event
    (:mod:`market_ingest.alerts`) naming the symbols. Why it fails is the report's ``failure``
    and the first line of the run's note. A backfill run created without conf says in its note
    that it took every configured symbol, and why (:func:`market_ingest.run.whole_universe_notice`).

    :param series: the source, interval, dataset (bars: ledger written as below; quotes: no
        ledger), settings, warehouse and lake (:class:`~market_ingest.operators.base.Series`).
        When the run planned bars but ``load_timescale`` did not succeed, the report writes the
        coverage ledger itself: every planned symbol-day without its bars is ``failed``, naming the
        task (:func:`market_ingest.coverage.record_run`), so the repair finds it. If the warehouse
        is what failed, the rows are parked in the lake (:func:`market_ingest.coverage.park`) and
        the pair's next load or repair writes them (:func:`market_ingest.coverage.drain`).
    :param plan: the plan result (templated): every symbol the run meant to ingest.
    :param extracts: the extract results (templated); a missing batch counts as failed.
    :param lake: the lake publish result (templated).
    :param timescale: the TimescaleDB load result (templated).
    :param kinesis: the Kinesis publish result (templated).
    :param reconcile: the reconcile task's :class:`~market_ingest.contracts.ReconcileResult`
        (templated): the report and the run's note count the pairs and bars compared and the
        disagreements.
    :param reconciles: the DAG has a ``reconcile`` task; without its result the run fails naming it.
    :param max_failed_share: the run fails (and alerts) above this share of failed symbols (0..1).
    :param max_unserved_share: the run fails (and alerts) above this share of symbols the vendor
        did not serve (:func:`market_ingest.outcomes.unserved`; 0..1); ``None``: never (repairs).
    :param alerts: where the ``failed_share_exceeded`` and ``unserved_share_exceeded`` events go
        (the ``alerts`` section as a dict, see :func:`market_ingest.alerts.emit`).
    :param run_note_conn_id: http connection to the Airflow API server; the report writes its
        window and bars per sink as the run's note there (:mod:`market_ingest.run_note`), also
        when the run fails. A missing connection or an API error is logged, never raised.
        ``None``: no note.
    :param extract_task_id: the mapped extract task (``<group>.extract`` in ``market_repair``),
        whose failed batches left their exception and try under the XCom key
        :data:`~market_ingest.operators.base.FAILURE_KEY`.
    :return: the report (:func:`market_ingest.report.build_report`), also pushed when the run fails.
    """

    template_fields: Sequence[str] = ("plan", "extracts", "lake", "timescale", "kinesis", "reconcile")

    def __init__(
        self,
        *,
        plan: Any,
        extracts: Any,
        lake: Any,
        timescale: Any,
        kinesis: Any,
        alerts: dict[str, Any],
        reconcile: Any = None,
        reconciles: bool = False,
        max_failed_share: float = 0.2,
        max_unserved_share: float | None = 0.5,
        run_note_conn_id: str | None = None,
        extract_task_id: str = "extract",
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.run_note_conn_id = run_note_conn_id
        self.extract_task_id = extract_task_id
        self.plan = plan
        self.extracts = extracts
        self.lake = lake
        self.timescale = timescale
        self.kinesis = kinesis
        self.reconcile = reconcile
        self.reconciles = reconciles
        self.alerts = alerts
        self.max_failed_share = max_failed_share
        self.max_unserved_share = max_unserved_share

    def execute(self, context: Context) -> dict[str, Any]:
        extracts = materialise(self.extracts)
        batches = None if self.plan is None else read_plan(self.plan)
        report = build_report(
            batches, extracts, self.lake, self.timescale, self.kinesis, self._failures(context, batches, extracts)
        )
        if self.reconcile is not None:
            report["reconciliation"] = self.reconcile
        elif self.reconciles and batches and "load_timescale" not in report["failed_tasks"]:
            report["failed_tasks"].append("reconcile")
        if batches and self.timescale is None and self.series.dataset.has_ledger:
            report["coverage"] = self._record_not_loaded(report, batches, extracts, context["run_id"])
        if not report["failed_tasks"] and (self.lake or {}).get("run_dir"):
            from market_ingest.lake import remove_staging

            try:
                report["staging_removed"] = remove_staging(self.lake["run_dir"])
            except Exception as exc:  # every sink has the bars; a leftover staging folder costs storage only
                self.log.warning("Could not delete the run's staging folder %s: %s", self.lake["run_dir"], exc)
        if backfill_without_conf(context):
            report["notices"].append(whole_universe_notice(report["symbols_total"]))
        self._announce_actions(extracts, report, context)
        report["failure"] = self._failure(report, context)
        for line in format_report(report, context["dag"].dag_id, context["run_id"]):
            self.log.info("%s", line)
        if self.run_note_conn_id:
            from market_ingest.run_note import format_note, write_note

            why = write_note(self.run_note_conn_id, context["dag"].dag_id, context["run_id"], format_note(report))
            if why:
                self.log.info("Run note not written: %s", why)
        if report["failure"]:
            # A failed run's report stays in XCom too (a failed task returns nothing): the
            # reasons per symbol are what its reader needs most.
            context["ti"].xcom_push(key="return_value", value=report)
            raise AirflowFailException(report["failure"])
        return report

    def _failure(self, report: dict[str, Any], context: Context) -> str | None:
        """Why the run fails, or ``None``: the plan or a sink did not succeed, too many symbols
        failed, or too many were not served (those two after their alert, whose delivery failure
        the message adds)."""
        # The report is the run's only leaf and runs whatever happened upstream, so the run's
        # state is this task's state: it must fail whenever the plan or a sink did not succeed.
        if self.plan is None:
            return "task plan did not succeed: nothing was ingested (see the plan task's log)"
        broken = [t for t in report["failed_tasks"] if not t.startswith("extract[")]
        if broken:
            return f"tasks {broken} did not succeed (see their logs); the rows above show what did land" + (
                f"; extract tasks that failed: {[t for t in report['failed_tasks'] if t.startswith('extract[')]}"
                if len(broken) < len(report["failed_tasks"])
                else ""
            )
        from market_ingest.alerts import FAILED_SHARE_EXCEEDED, UNSERVED_SHARE_EXCEEDED

        total = report["symbols_total"]
        if total and report["failed_share"] > self.max_failed_share:
            message = (
                f"{report['failed']} of {total} symbols failed "
                f"({report['failed_share']:.0%} > {self.max_failed_share:.0%}): {report['failed_symbols']}"
            )
            detail = {"failed_symbols": report["failed_symbols"], "failed_share": report["failed_share"]}
            return self._alerted(FAILED_SHARE_EXCEEDED, message, detail, self.max_failed_share, total, context)
        if total and self.max_unserved_share is not None and report["unserved_share"] > self.max_unserved_share:
            unserved = report["unserved_symbols"]
            message = (
                f"the vendor served no bar for {len(unserved)} of {total} symbols "
                f"({report['unserved_share']:.0%} > {self.max_unserved_share:.0%}): it does not know them, or answered "
                f"nothing while their market was open; check the universe's spelling and the source: "
                f"{unserved[:20]}{f' and {len(unserved) - 20} more' if len(unserved) > 20 else ''}"
            )
            detail = {"unserved_symbols": unserved, "unserved_share": report["unserved_share"]}
            return self._alerted(UNSERVED_SHARE_EXCEEDED, message, detail, self.max_unserved_share, total, context)
        return None

    def _announce_actions(self, extracts: list[ExtractResult | None], report: dict[str, Any], context: Context) -> None:
        """Emit one ``corporate_actions_first_seen`` event listing the actions the run's extracts saw
        first (they change adjusted series: ``market.bars_adjusted``); an undelivered event is a
        notice of the report, not a failure (the actions are in the lake and the warehouse)."""
        new = [a for e in extracts if e for a in e.get("new_actions") or []]
        if not new:
            return
        from market_ingest.alerts import CORPORATE_ACTIONS_FIRST_SEEN, build_event, emit

        shown = ", ".join(f"{a['symbol']} {a['kind']} {a['ex_date']} {a['ratio'] or a['amount']}" for a in new[:10])
        message = f"{len(new)} corporate actions first seen by {self.source}: {shown}" + (" ..." if len(new) > 10 else "")
        report["notices"].append(message)
        try:
            emit(
                build_event(CORPORATE_ACTIONS_FIRST_SEEN, context, message, {"source": self.source, "actions": new}), self.alerts
            )
        except RuntimeError as exc:
            report["notices"].append(f"the corporate_actions_first_seen event was not delivered: {exc}")

    def _alerted(self, kind: str, message: str, detail: dict, threshold: float, total: int, context: Context) -> str:
        """Emit event ``kind`` with ``detail``; return ``message``, saying so when it was not delivered."""
        from market_ingest.alerts import build_event, emit

        try:
            emit(build_event(kind, context, message, {**detail, "symbols_total": total, "threshold": threshold}), self.alerts)
        except RuntimeError as exc:  # the run fails either way; a retry would not fix the symbols
            message += f"; and the alert was not delivered: {exc}"
        return message

    def _failures(
        self, context: Context, batches: list[Batch] | None, extracts: list[ExtractResult | None]
    ) -> dict[int, FailureXCom]:
        """The failures the extract batches that did not succeed left, by batch (a batch that
        never ran, upstream failed, left none)."""
        done = {e["batch"] for e in extracts if e}
        failed = [i for i, b in enumerate(batches or []) if b.index not in done]
        if not failed or not batches:
            return {}
        pulled = context["ti"].xcom_pull(task_ids=self.extract_task_id, key=FAILURE_KEY, map_indexes=failed)
        if not isinstance(pulled, list):
            pulled = [pulled]
        return {batches[i].index: f for i, f in zip(failed, pulled) if f}

    def _record_not_loaded(
        self, report: dict[str, Any], batches: list[Batch], extracts: list[ExtractResult | None], run_id: str
    ) -> dict[str, int]:
        """Write the ledger of a run whose bars were not loaded; return its rows per state.

        Every planned day without its bars becomes ``failed``, the reason naming the sinks that do
        hold them (:func:`market_ingest.coverage.not_loaded_reason`). When the warehouse cannot take
        the rows (it is what failed), they are parked in the lake (:func:`market_ingest.coverage.park`)
        for the pair's next load or repair to write: ``{}`` is returned then.
        """
        from contextlib import closing

        from market_ingest import coverage
        from market_ingest.hooks.timescale import TimescaleHook

        reason, series = coverage.not_loaded_reason(report), self.series
        source, interval = self.source, self.interval
        try:
            hook = TimescaleHook(timescale_conn_id=series.timescale_conn_id)
            hook.check_schema()
            with closing(hook.get_conn()) as conn, conn.transaction(), conn.cursor() as cur:
                rows, _ = coverage.record_run(
                    cur,
                    source=source,
                    interval=interval,
                    settings=series.settings,
                    batches=batches,
                    extracts=extracts,
                    run_id=run_id,
                    not_loaded=reason,
                )
        except Exception as exc:  # the run fails below whatever happens here; keep the gap for the ledger
            if not series.lake_url:
                self.log.warning("The coverage ledger could not record this run's failure: %s", exc)
                return {}
            from market_ingest.lake import lake_root

            try:
                parked = coverage.park(
                    lake_root(series.lake_url),
                    source=source,
                    interval=interval,
                    batches=batches,
                    extracts=extracts,
                    run_id=run_id,
                    reason=reason,
                )
            except Exception as lake_exc:
                self.log.warning(
                    "The coverage ledger could not record this run's failure: %s; nor could it be parked in the lake: %s",
                    exc,
                    lake_exc,
                )
                return {}
            self.log.warning(
                "The warehouse could not take this run's ledger rows (%s); parked in %s: the next load or repair of "
                "%s %s writes them (every planned day without its bars: failed)",
                exc,
                parked,
                self.source,
                self.interval,
            )
            report["ledger_parked"] = parked
            return {}
        return coverage.counts(rows)
