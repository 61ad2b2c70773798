"""Operators of a market-data DAG: plan, extract, publish to the lake, load TimescaleDB, publish
to Kinesis, report.

Every operator's ``execute`` returns something small (paths and counts) because it lands in XCom;
bars travel through the lake only. Heavy libraries are imported inside ``execute``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from market_ingest import outcomes
from market_ingest.config import load_config, load_universe
from market_ingest.errors import MarketDataError
from market_ingest.run import batch_symbols, select
from market_ingest.sources import DEFERRING_KINDS

if TYPE_CHECKING:
    from airflow.sdk import Context


def _materialise(values: Any) -> list:
    """A mapped task's XCom results as a list, read by index.

    Iterating Airflow's lazy XCom sequence probes one offset past the end and logs an error for
    it; indexing up to ``len()`` does not.
    """
    if values is None:
        return []
    return [values[i] for i in range(len(values))]


def _fail_fast(exc: MarketDataError) -> None:
    """Re-raise permanent errors as ``AirflowFailException`` so no retry is spent on them."""
    if not exc.retryable:
        raise AirflowFailException(str(exc)) from exc
    raise exc


class MarketPlanOperator(BaseOperator):
    """Resolve the run's window and symbols and split the symbols into extract batches.

    :param source: configured source name.
    :param interval: canonical interval, or ``quote`` for quote snapshots.
    :param dataset: ``bars`` or ``quotes``.
    :return: ``[{"batch": i, "symbols": [...]}]``, one entry per extract task.
    :raises AirflowFailException: on an invalid Params override (bad symbol, inverted range).
    """

    template_fields: Sequence[str] = ("source", "interval")

    def __init__(self, *, source: str, interval: str, dataset: str = "bars", **kwargs) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.interval = interval
        self.dataset = dataset

    def execute(self, context: Context) -> list[dict[str, Any]]:
        cfg = load_config()
        src = cfg.sources[self.source]
        ic = src.quotes if self.dataset == "quotes" else src.intervals[self.interval]
        universe = [s for u in (ic.universes or src.universes) for s in load_universe(u)]
        try:
            sel = select(
                self.source, universe, context["data_interval_start"], context["data_interval_end"], dict(context["params"])
            )
        except MarketDataError as exc:
            _fail_fast(exc)
        self.log.info(
            "%s %s: %d symbols over [%s, %s)%s",
            self.source,
            self.interval,
            len(sel.symbols),
            sel.start.isoformat(),
            sel.end.isoformat(),
            " (manual override)" if sel.manual else "",
        )
        symbols, since = list(sel.symbols), {}
        if self.dataset == "bars" and src.kind in DEFERRING_KINDS:
            from market_ingest import backlog
            from market_ingest.hooks.timescale import TimescaleHook

            warehouse = TimescaleHook(timescale_conn_id=cfg.timescale.conn_id)
            warehouse.migrate()
            for sym, start in backlog.pending(warehouse, self.source, self.interval).items():
                if sym in symbols and start < sel.start:  # only symbols this run selects
                    since[sym] = start.isoformat()
            if since:
                self.log.info("Picking up %d deferred symbols: %s", len(since), since)
        size = ic.batch_size or src.batch_size
        return [
            {
                "batch": i,
                "symbols": b,
                "start": sel.start.isoformat(),
                "end": sel.end.isoformat(),
                "since": {s: since[s] for s in b if s in since},
            }
            for i, b in enumerate(batch_symbols(symbols, size))
        ]


class MarketExtractOperator(BaseOperator):
    """Fetch one batch of symbols, normalise, validate and stage it as Parquet in the lake.

    Runs in the source's pool. A symbol the vendor does not know, or that has no bar in the
    window, is recorded in the outcomes and skipped. Rate limits and network failures fail the
    task instance so Airflow retries it; a window the vendor cannot serve fails at once.

    :param source: configured source name.
    :param interval: canonical interval.
    :param batch: ``{"batch": i, "symbols": [...], "start": iso, "end": iso}`` from the plan (templated).
    :param replay_dir: recordings folder for offline replay; default ``$MARKET_INGEST_REPLAY_DIR/<kind>``.
    :param dataset: ``bars`` or ``quotes`` (snapshots stamped at the window's end).
    :return: ``{"batch": i, "path": staging URL or None, "rows": n, "outcomes": [...]}``.
    """

    template_fields: Sequence[str] = ("source", "interval", "batch")

    def __init__(
        self, *, source: str, interval: str, batch: Any, replay_dir: str | None = None, dataset: str = "bars", **kwargs
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.interval = interval
        self.batch = batch
        self.replay_dir = replay_dir
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        from market_ingest.lake import lake_root, staging_path, window_token, write_parquet
        from market_ingest.replay import replay_dir
        from market_ingest.sources import bar_hook

        cfg = load_config()
        src = cfg.sources[self.source]
        start = datetime.fromisoformat(self.batch["start"])
        end = datetime.fromisoformat(self.batch["end"])
        folder = self.replay_dir or (str(replay_dir() / src.recordings) if replay_dir() else None)
        hook = bar_hook(cfg, self.source, folder)
        if folder:
            self.log.info("Replaying recorded responses from %s", folder)
        symbols, now = list(self.batch["symbols"]), datetime.now(timezone.utc)
        since = {s: datetime.fromisoformat(t) for s, t in (self.batch.get("since") or {}).items()}
        try:
            if self.dataset == "quotes":
                bars, results = hook.fetch_quotes(symbols, as_of=end, ingested_at=now)
            else:
                bars, results = self._fetch_bars(hook, symbols, since, start, end, now)
        except MarketDataError as exc:
            _fail_fast(exc)
        if self.dataset == "bars" and src.kind in DEFERRING_KINDS:
            self._update_backlog(cfg, results, since, start, end)
        path = None
        if bars.num_rows:
            root = lake_root(cfg.lake.quotes_url if self.dataset == "quotes" else cfg.lake.url)
            path = staging_path(root, self.source, self.interval, window_token(start, end), self.batch["batch"])
            write_parquet(bars, path, cfg.lake.compression)
            path = str(path)
        for o in results:
            self.log.info("%-12s %-15s rows=%-6d %s %s", o.symbol, o.status, o.rows, o.reason, o.dropped or "")
        return {"batch": self.batch["batch"], "path": path, "rows": bars.num_rows, "outcomes": [o.as_dict() for o in results]}

    def _fetch_bars(self, hook, symbols, since, start, end, now):
        """One ``fetch_bars`` per distinct window start: deferred symbols reach back to their deferral."""
        import pyarrow as pa

        from market_ingest.intervals import Window

        groups: dict[datetime, list[str]] = {}
        for sym in symbols:
            groups.setdefault(min(since.get(sym, start), start), []).append(sym)
        tables, results, by_symbol = [], [], {}
        for group_start, group in sorted(groups.items()):
            table, outs = hook.fetch_bars(group, self.interval, Window(group_start, end), ingested_at=now)
            tables.append(table)
            by_symbol.update({o.symbol: o for o in outs})
        results = [by_symbol[s] for s in symbols]
        return pa.concat_tables(tables), results

    def _update_backlog(self, cfg, results, since, start, end) -> None:
        from market_ingest import backlog
        from market_ingest.hooks.timescale import TimescaleHook

        warehouse = TimescaleHook(timescale_conn_id=cfg.timescale.conn_id)
        deferred = [o for o in results if o.status == outcomes.DEFERRED]
        if deferred:
            backlog.defer(warehouse, self.source, self.interval, [o.symbol for o in deferred], start, end, deferred[0].reason)
        fetched = [o.symbol for o in results if o.status in (outcomes.OK, outcomes.NO_DATA)]
        if fetched:
            settled = backlog.settle(warehouse, self.source, self.interval, fetched, end)
            if settled:
                self.log.info("Settled %d deferred windows", settled)


class LakePublishOperator(BaseOperator):
    """Merge the run's staged batches into the lake: one object per UTC date, keyed by the window.

    :param source: configured source name.
    :param interval: canonical interval.
    :param extracts: the extract tasks' results (templated; mapped XCom).
    :param dataset: ``bars`` (lake ``url``) or ``quotes`` (lake ``quotes_url``, no interval partition).
    :return: ``{"objects": [{"path", "date", "rows"}], "rows_by_symbol": {symbol: n}}``.
    """

    template_fields: Sequence[str] = ("source", "interval", "extracts")

    def __init__(self, *, source: str, interval: str, extracts: Any, dataset: str = "bars", **kwargs) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.interval = interval
        self.extracts = extracts
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        from market_ingest.lake import lake_root, publish

        cfg = load_config()
        results = [e for e in _materialise(self.extracts) if e]
        staged = [e["path"] for e in results if e.get("path")]
        window = _window_of(context)
        quotes = self.dataset == "quotes"
        objects = publish(
            staged,
            lake_root(cfg.lake.quotes_url if quotes else cfg.lake.url),
            self.source,
            None if quotes else self.interval,
            *window,
            compression=cfg.lake.compression,
            dataset=self.dataset,
        )
        counts: Counter[str] = Counter()
        for obj in objects:
            counts.update(obj.pop("rows_by_symbol"))
            self.log.info("Wrote %s (%d rows)", obj["path"], obj["rows"])
        return {"objects": objects, "rows_by_symbol": dict(counts)}


def _window_of(context: Context) -> tuple[datetime, datetime]:
    """The run's window, resolved exactly as the plan resolved it."""
    sel = select("run", [], context["data_interval_start"], context["data_interval_end"], dict(context["params"]))
    return sel.start, sel.end


def _read_objects(lake: dict, dataset: str) -> Any:
    import pyarrow as pa

    from market_ingest.lake import read_parquet
    from market_ingest.schema import DATASETS

    tables = [read_parquet(o["path"], dataset) for o in (lake or {}).get("objects", [])]
    return pa.concat_tables(tables) if tables else DATASETS[dataset].schema.empty_table()


def _count_by_symbol(bars) -> dict[str, int]:
    return dict(Counter(bars["symbol"].to_pylist()))


class TimescaleLoadOperator(BaseOperator):
    """Upsert the run's lake objects into TimescaleDB (``market.bars``) in one transaction.

    :param lake: the lake publish result (templated).
    :param timescale_conn_id: connection id; default from the pipeline config.
    :param dataset: ``bars`` (``market.bars``) or ``quotes`` (``market.quotes``).
    :return: ``{"rows": n, "rows_by_symbol": {...}, "hypertable": bool}``.
    """

    template_fields: Sequence[str] = ("lake",)

    def __init__(self, *, lake: Any, timescale_conn_id: str | None = None, dataset: str = "bars", **kwargs) -> None:
        super().__init__(**kwargs)
        self.lake = lake
        self.timescale_conn_id = timescale_conn_id
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        from market_ingest.hooks.timescale import TimescaleHook

        hook = TimescaleHook(timescale_conn_id=self.timescale_conn_id or load_config().timescale.conn_id)
        hook.migrate()
        from market_ingest.schema import DATASETS

        table = DATASETS[self.dataset].table
        bars = _read_objects(self.lake, self.dataset)
        rows = hook.load(bars, self.dataset)
        self.log.info("Upserted %d rows into %s", rows, table)
        return {"rows": rows, "rows_by_symbol": _count_by_symbol(bars), "hypertable": hook.is_hypertable(table)}


class KinesisPublishOperator(BaseOperator):
    """Publish the run's lake objects to Kinesis, one record per bar.

    :param lake: the lake publish result (templated).
    :param dataset: ``bars`` (stream ``kinesis.stream``) or ``quotes`` (``kinesis.quotes_stream``).
    :return: ``{"records": n, "calls": k, "retried": r, "records_by_symbol": {...}}``.
    """

    template_fields: Sequence[str] = ("lake",)

    def __init__(self, *, lake: Any, dataset: str = "bars", **kwargs) -> None:
        super().__init__(**kwargs)
        self.lake = lake
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

        from market_ingest.kinesis import build_records, put_records

        k = load_config().kinesis
        bars = _read_objects(self.lake, self.dataset)
        records = build_records(bars, self.dataset)
        stream = k.quotes_stream if self.dataset == "quotes" else k.stream
        client = KinesisHook(aws_conn_id=k.aws_conn_id).conn
        stats = put_records(
            client,
            stream,
            records,
            max_records=k.max_records_per_call,
            max_bytes=k.max_bytes_per_call,
            max_attempts=k.max_attempts,
        )
        self.log.info(
            "Published %d records to %s in %d calls (%d re-sent)", stats["records"], stream, stats["calls"], stats["retried"]
        )
        return {**stats, "records_by_symbol": _count_by_symbol(bars)}


class RunReportOperator(BaseOperator):
    """Summarise the run: rows per symbol and sink, skipped symbols with reasons.

    Runs whatever upstream did (``trigger_rule="all_done"``). Prints the report to the task log
    and returns it (small) to XCom. Fails (and so fails the run, being its only leaf) when the plan
    or a sink did not succeed, or when the share of failed symbols exceeds the configured
    ``report.max_failed_share``; in that last case it first emits a ``failed_share_exceeded``
    event (:mod:`market_ingest.alerts`) listing the failed symbols.

    :param plan: the plan result (templated): every symbol the run meant to ingest.
    :param extracts: the extract results (templated); a missing batch counts as failed.
    :param lake: the lake publish result (templated).
    :param timescale: the TimescaleDB load result (templated).
    :param kinesis: the Kinesis publish result (templated).
    """

    template_fields: Sequence[str] = ("plan", "extracts", "lake", "timescale", "kinesis")

    def __init__(self, *, plan: Any, extracts: Any, lake: Any, timescale: Any, kinesis: Any, **kwargs) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.plan = plan
        self.extracts = extracts
        self.lake = lake
        self.timescale = timescale
        self.kinesis = kinesis

    def execute(self, context: Context) -> dict[str, Any]:
        report = build_report(self.plan or [], _materialise(self.extracts), self.lake, self.timescale, self.kinesis)
        for line in format_report(report, context["dag"].dag_id, context["run_id"]):
            self.log.info("%s", line)
        # The report is the run's only leaf and runs whatever happened upstream, so the run's
        # state is this task's state: it must fail whenever the plan or a sink did not succeed.
        if self.plan is None:
            raise AirflowFailException("plan did not succeed: nothing was ingested (see the plan task's log)")
        broken = [sink for sink, ok in report["totals"]["sinks_ok"].items() if not ok]
        if broken:
            raise AirflowFailException(f"sinks {broken} did not succeed; rows above show what did land")
        threshold = load_config().report.max_failed_share
        if report["symbols_total"] and report["failed_share"] > threshold:
            message = (
                f"{report['failed']} of {report['symbols_total']} symbols failed "
                f"({report['failed_share']:.0%} > {threshold:.0%}): {report['failed_symbols']}"
            )
            from market_ingest.alerts import FAILED_SHARE_EXCEEDED, build_event, emit

            try:
                emit(
                    build_event(
                        FAILED_SHARE_EXCEEDED,
                        context,
                        message,
                        {
                            "failed_symbols": report["failed_symbols"],
                            "symbols_total": report["symbols_total"],
                            "failed_share": report["failed_share"],
                            "threshold": threshold,
                        },
                    )
                )
            except RuntimeError as exc:  # the run fails either way; a retry would not fix the symbols
                message += f"; and the alert was not delivered: {exc}"
            raise AirflowFailException(message)
        return report


def build_report(
    plan: list[dict], extracts: list[dict], lake: dict | None, timescale: dict | None, kinesis: dict | None
) -> dict[str, Any]:
    """Assemble the run report from the tasks' XCom results (``None`` where a task did not succeed).

    :return: ``{"symbols": {sym: {"status", "reason", "dropped", "gaps", "lake", "timescale", "kinesis"}}, "skipped":
        {sym: reason}, "failed_symbols": [...], "symbols_total", "failed", "failed_share",
        "lake_objects": [...], "totals": {...}}``.
    """
    extracted = {o["symbol"]: o for e in extracts if e for o in e.get("outcomes", [])}
    symbols: dict[str, dict] = {}
    for batch in plan:
        for sym in batch["symbols"]:
            o = extracted.get(sym) or {"status": outcomes.FAILED, "reason": "extract task did not succeed"}
            symbols[sym] = {
                "status": o["status"],
                "reason": o.get("reason", ""),
                "dropped": o.get("dropped", {}),
                "gaps": o.get("gaps", []),
                "lake": (lake or {}).get("rows_by_symbol", {}).get(sym, 0),
                "timescale": (timescale or {}).get("rows_by_symbol", {}).get(sym, 0),
                "kinesis": (kinesis or {}).get("records_by_symbol", {}).get(sym, 0),
            }
    failed = sorted(s for s, v in symbols.items() if v["status"] == outcomes.FAILED)
    total = len(symbols)
    return {
        "symbols": symbols,
        "skipped": {s: f"{v['status']}: {v['reason']}" for s, v in symbols.items() if v["status"] in outcomes.SKIPPED_STATUSES},
        "failed_symbols": failed,
        "symbols_total": total,
        "failed": len(failed),
        "failed_share": (len(failed) / total) if total else 0.0,
        "lake_objects": [o["path"] for o in (lake or {}).get("objects", [])],
        "totals": {
            "lake": sum(v["lake"] for v in symbols.values()),
            "timescale": sum(v["timescale"] for v in symbols.values()),
            "kinesis": sum(v["kinesis"] for v in symbols.values()),
            "sinks_ok": {"lake": lake is not None, "timescale": timescale is not None, "kinesis": kinesis is not None},
        },
    }


def format_report(report: dict[str, Any], dag_id: str, run_id: str) -> list[str]:
    """The report as aligned text lines for a log or a terminal."""
    lines = [
        f"Run report {dag_id} / {run_id}",
        f"{'symbol':<12} {'status':<15} {'lake':>7} {'timescale':>9} {'kinesis':>8}  reason",
    ]
    for sym, v in sorted(report["symbols"].items()):
        lines.append(f"{sym:<12} {v['status']:<15} {v['lake']:>7} {v['timescale']:>9} {v['kinesis']:>8}  {v['reason']}")
        if v.get("dropped"):
            lines.append(f"{'':<12} dropped {v['dropped']}")
        for start, end in v.get("gaps", []):
            lines.append(f"{'':<12} gap [{start}, {end})")
    t = report["totals"]
    lines.append(f"{'total':<12} {'':<15} {t['lake']:>7} {t['timescale']:>9} {t['kinesis']:>8}")
    for path in report["lake_objects"]:
        lines.append(f"lake object: {path}")
    return lines
