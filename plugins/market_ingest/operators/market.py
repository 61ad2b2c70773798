"""Operators of a market-data DAG: plan, extract, publish to the lake, load TimescaleDB, publish
to Kinesis, report.

Every operator's ``execute`` returns something small (paths and counts) because it lands in XCom;
bars travel through the lake only. Heavy libraries are imported inside ``execute``.

Operators read no configuration file: the DAG factory hands each one what it needs as arguments
(:func:`market_ingest.dag_factory.task_arguments`: the source's settings, symbols, lake URL,
streams, connection ids, thresholds), so each can be built and tested on its own.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from market_ingest import kinds, outcomes
from market_ingest.errors import ConfigurationError, MarketDataError
from market_ingest.run import backfill_without_conf, batch_symbols, select, whole_universe_notice

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


@contextmanager
def failing_fast(window: tuple[datetime, datetime] | None = None) -> Iterator[None]:
    """Raise what a retry cannot fix as ``AirflowFailException``, so no retry is spent on it.

    Permanent :class:`~market_ingest.errors.MarketDataError` s (configuration, unservable window,
    missing bucket or stream, serialisation) and an ``OverflowError`` from out-of-range dates fail
    at once; retryable errors propagate. ``window`` is added to errors that do not name one, so
    every message says source, symbol and window.
    """
    try:
        yield
    except MarketDataError as exc:
        if window:
            exc.in_window(*window)
        if not exc.retryable:
            raise AirflowFailException(str(exc)) from exc
        raise
    except OverflowError as exc:
        raise AirflowFailException(f"a date is out of range: {exc}") from exc


#: XCom key under which a failed extract try leaves ``{"error", "try_number", "tries"}`` for the report.
FAILURE_KEY = "failure"
#: characters of an exception's message kept for the report (messages carry no credential:
#: :mod:`market_ingest.errors` redacts them)
FAILURE_CHARS = 300


def data_interval(context: Context) -> tuple[datetime, datetime]:
    """The run's data interval, as plain aware ``datetime`` objects in UTC.

    Airflow hands scheduled and backfill runs ``pendulum`` datetimes; their difference is a
    ``pendulum.Interval`` that cannot be divided by a ``timedelta``
    (``AttributeError: 'datetime.timedelta' object has no attribute '_to_microseconds'``, which
    failed the plan of every scheduled ccxt run), so both ends are converted here, once.

    A run triggered without a logical date (the REST API's default in Airflow 3, and the UI's
    trigger form when it is left empty) has none in its context: it gets the last complete
    interval of its DAG's schedule before the run was triggered (``run_after``), as Airflow gives a
    manual run that has a logical date (``CronDataIntervalTimetable.infer_manual_data_interval``).

    :raises KeyError: neither a data interval nor a DAG run with ``run_after`` in the context.
    """
    start, end = context.get("data_interval_start"), context.get("data_interval_end")
    if start is None or end is None:
        import pendulum
        from airflow.timetables.interval import CronDataIntervalTimetable

        schedule = context["dag"].timetable
        run_after = pendulum.instance(context["dag_run"].run_after)
        timetable = CronDataIntervalTimetable(schedule.expression, schedule.timezone)
        interval = timetable.infer_manual_data_interval(run_after=run_after)
        start, end = interval.start, interval.end
    return _plain_utc(start), _plain_utc(end)


def _plain_utc(t: datetime) -> datetime:
    """``t`` (aware; a ``pendulum.DateTime`` too) as a stdlib ``datetime`` in UTC, to the microsecond."""
    u = t.astimezone(timezone.utc)
    return datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, tzinfo=timezone.utc)


def _drain_parked(cur, lake_url: str, source: str, interval: str, source_config: dict[str, Any], log) -> list:
    """Write the ledger rows runs of ``(source, interval)`` parked in the lake while the warehouse
    was down (:func:`market_ingest.coverage.drain`), on ``cur``; return the parked objects, to
    delete once the transaction commits (:func:`_forget_parked`)."""
    from market_ingest import coverage
    from market_ingest.lake import lake_root

    drained = coverage.drain(cur, lake_root(lake_url), source=source, interval=interval, source_config=source_config)
    for path, states in drained:
        log.warning("Wrote the ledger rows of a run whose load had failed, parked in %s: %s", path, states)
    return [path for path, _ in drained]


def _forget_parked(paths: list, log) -> None:
    """Delete parked ledger objects once their rows are committed; one left behind is written again, to the same rows."""
    from market_ingest import coverage

    try:
        coverage.forget(paths)
    except Exception as exc:
        log.warning(
            "Could not delete parked ledger objects %s (their rows are written; a later drain rewrites them): %s", paths, exc
        )


class MarketPlanOperator(BaseOperator):
    """Resolve the run's window and symbols and split the symbols into extract batches.

    The window is the data interval, or the Params override, clamped to end no later than now
    and to start no earlier than the interval's ``start_date``. A manual run that would make more
    vendor requests than the source's ``max_requests_per_manual_run`` is refused here, before any
    request, with both figures named.

    :param source: configured source name.
    :param interval: canonical interval, or ``quote`` for quote snapshots.
    :param source_config: the source's settings (``SourceConfig`` as a JSON dict): its kind,
        symbol spelling, start dates, batch sizes and request cap.
    :param symbols: the configured universes' symbols, in order (a run's Params may narrow them).
    :param timescale_conn_id: the warehouse, where deferred symbols are kept (kinds that defer).
    :param dataset: ``bars`` or ``quotes``.
    :return: ``[{"batch": i, "symbols": [...], "start": iso, "end": iso, "since": {...}}]``, one
        entry per extract task; the window is resolved here once and every task takes it from here.
    :raises AirflowFailException: on an invalid Params override (bad symbol, inverted or
        out-of-range window, too many requests) or a window the vendor cannot serve.
    """

    template_fields: Sequence[str] = ("source", "interval")

    def __init__(
        self,
        *,
        source: str,
        interval: str,
        source_config: dict[str, Any],
        symbols: list[str],
        timescale_conn_id: str,
        dataset: str = "bars",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.interval = interval
        self.source_config = source_config
        self.symbols = symbols
        self.timescale_conn_id = timescale_conn_id
        self.dataset = dataset

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from market_ingest.config import SourceConfig
        from market_ingest.intervals import Window
        from market_ingest.sources import planned_requests

        src = SourceConfig.model_validate(self.source_config)
        ic = src.quotes if self.dataset == "quotes" else src.intervals[self.interval]
        universe = list(self.symbols)
        now = datetime.now(timezone.utc)
        with failing_fast():
            sel = select(
                self.source,
                universe,
                *data_interval(context),
                dict(context["params"]),
                symbol_pattern=src.symbols_like,
                earliest=ic.start_date,
                now=now,
            )
            for note in sel.clamped:
                self.log.warning("%s", note)
            requests = planned_requests(
                src, self.source, self.interval, sel.symbols, Window(sel.start, sel.end), now, self.dataset
            )
            cap = src.max_requests_per_manual_run
            if sel.manual and requests > cap:
                raise ConfigurationError(
                    self.source,
                    f"this manual run would make up to {requests} requests ({len(sel.symbols)} symbols over "
                    f"[{sel.start.isoformat()}, {sel.end.isoformat()})), more than the {cap} allowed per manual run "
                    f"(sources.{self.source}.max_requests_per_manual_run); narrow the symbols or the window, or backfill "
                    "with airflow backfill create",
                )
        if backfill_without_conf(context):
            self.log.warning("%s", whole_universe_notice(len(sel.symbols)))
        self.log.info(
            "%s %s: %d symbols over [%s, %s)%s, up to %d vendor requests",
            self.source,
            self.interval,
            len(sel.symbols),
            sel.start.isoformat(),
            sel.end.isoformat(),
            " (manual override)" if sel.manual else "",
            requests,
        )
        symbols, since = list(sel.symbols), {}
        if self.dataset == "bars" and kinds.kind(src.kind).defers:
            from market_ingest import backlog
            from market_ingest.hooks.timescale import TimescaleHook

            warehouse = TimescaleHook(timescale_conn_id=self.timescale_conn_id)
            with failing_fast():
                warehouse.check_schema()
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


class MarketRepairPlanOperator(BaseOperator):
    """The plan of a repair: the coverage ledger's ``partial``, ``missing`` and ``failed`` days of
    one (source, interval) that the vendor still serves, as extract batches
    (:func:`market_ingest.repair.plan_repairs`), fewest attempts first, within a request budget.

    Marks ``unrecoverable`` in the ledger, in the same transaction as it reads them, the days
    beyond the vendor's lookback and those asked ``max_attempts`` times, and logs what it
    scheduled, what it gave up on and what waits for the next run (also pushed to XCom as ``repair``).

    :param source: configured source name.
    :param interval: canonical interval.
    :param source_config: the source's settings (``SourceConfig`` as a JSON dict).
    :param timescale_conn_id: the warehouse holding ``market.coverage``.
    :param max_requests: vendor requests this plan may spend (``repair.max_requests_per_source``).
    :param max_days_back: days back the ledger is read (``repair.max_days_back``).
    :param max_attempts: attempts after which a day is given up (``repair.max_attempts``).
    :param lake_url: the lake's root: ledger rows parked there by runs whose load failed while the
        warehouse was down are written first (:func:`market_ingest.coverage.drain`), so the plan
        sees those days as ``failed``.
    :return: ``[{"batch": i, "symbols": [...], "start": iso, "end": iso, "since": {}}]`` (as
        :class:`MarketPlanOperator`'s; empty when there is nothing to repair, and then the rest of
        the repair is skipped).
    """

    template_fields: Sequence[str] = ("source", "interval")

    def __init__(
        self,
        *,
        source: str,
        interval: str,
        source_config: dict[str, Any],
        timescale_conn_id: str,
        max_requests: int,
        max_days_back: int,
        max_attempts: int,
        lake_url: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.interval = interval
        self.source_config = source_config
        self.timescale_conn_id = timescale_conn_id
        self.max_requests = max_requests
        self.max_days_back = max_days_back
        self.max_attempts = max_attempts
        self.lake_url = lake_url

    def execute(self, context: Context) -> list[dict[str, Any]]:
        from contextlib import closing

        from market_ingest.config import SourceConfig
        from market_ingest.hooks.timescale import TimescaleHook
        from market_ingest.repair import plan_repairs

        src = SourceConfig.model_validate(self.source_config)
        hook = TimescaleHook(timescale_conn_id=self.timescale_conn_id)
        with failing_fast():
            hook.check_schema()
        parked: list = []
        with closing(hook.get_conn()) as conn, conn.transaction(), conn.cursor() as cur:
            if self.lake_url:
                parked = _drain_parked(cur, self.lake_url, self.source, self.interval, self.source_config, self.log)
            plan = plan_repairs(
                cur,
                source=self.source,
                interval=self.interval,
                src=src,
                now=datetime.now(timezone.utc),
                run_id=context["run_id"],
                max_requests=self.max_requests,
                max_days_back=self.max_days_back,
                max_attempts=self.max_attempts,
                batch_size=src.intervals[self.interval].batch_size or src.batch_size,
            )
        _forget_parked(parked, self.log)
        summary = plan.summary()
        self.log.info(
            "%s %s: %d repairable symbol-days; asking again %d windows in %d batches (%d requests of %d); "
            "unrecoverable (beyond the vendor's lookback): %s; given up after %d attempts: %s; left for the next run: %s",
            self.source,
            self.interval,
            plan.days,
            summary["windows"],
            len(plan.batches),
            plan.requests,
            self.max_requests,
            plan.unrecoverable or "none",
            self.max_attempts,
            plan.gave_up or "none",
            plan.left or "none",
        )
        if "ti" in context:
            context["ti"].xcom_push(key="repair", value=summary)
        return plan.batches


class MarketExtractOperator(BaseOperator):
    """Fetch one batch of symbols, normalise, validate and stage it as Parquet in the lake.

    Runs in the source's pool. Checks the lake's bucket first, so a missing one costs no vendor
    request. A symbol the vendor does not know, or that has no bar in the window, is recorded in
    the outcomes and skipped. Rate limits and network failures fail the task instance so Airflow
    retries it; permanent errors (a window the vendor cannot serve, configuration) fail at once.

    :param source: configured source name.
    :param interval: canonical interval.
    :param batch: ``{"batch": i, "symbols": [...], "start": iso, "end": iso}`` from the plan (templated).
    :param source_config: the source's settings (``SourceConfig`` as a JSON dict), for its hook.
    :param lake_url: the lake's root (``s3://<conn_id>@bucket/prefix`` or ``file:///...``) where batches are staged.
    :param timescale_conn_id: the warehouse (deferred symbols; Alpha Vantage's shared daily budget).
    :param compression: Parquet compression of the staged objects.
    :param extended_hours: intraday: keep bars outside the regular sessions.
    :param dataset: ``bars`` or ``quotes`` (snapshots stamped at the window's end).
    :return: ``{"batch": i, "staged": [{"path", "rows", "partitions": {partition: [row groups]}}], "rows": n,
        "outcomes": [...], "ingested_at": iso, "rejects": {"path", "rows"} or None}`` (one staged
        object per batch, keyed by the run; bars that failed validation go to the lake's
        ``_rejects/`` area with their reason, :func:`market_ingest.lake.rejects_object`).
    """

    template_fields: Sequence[str] = ("source", "interval", "batch")

    def __init__(
        self,
        *,
        source: str,
        interval: str,
        batch: Any,
        source_config: dict[str, Any],
        lake_url: str,
        timescale_conn_id: str,
        compression: str = "zstd",
        extended_hours: bool = False,
        dataset: str = "bars",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.interval = interval
        self.batch = batch
        self.source_config = source_config
        self.lake_url = lake_url
        self.timescale_conn_id = timescale_conn_id
        self.compression = compression
        self.extended_hours = extended_hours
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        try:
            return self._extract(context)
        except Exception as exc:
            # For the run report: what stopped this batch, on which try. The report cannot read
            # another task's exception; an XCom pushed before failing stays (a retry clears it
            # when it starts, so the last try's failure is the one the report sees).
            ti = context.get("ti")  # absent when a test calls execute() directly
            cause = exc.__cause__ if isinstance(exc, AirflowFailException) and exc.__cause__ else exc
            try:
                if ti is not None:
                    failure = {"error": f"{type(cause).__name__}: {str(cause)[:FAILURE_CHARS]}"}
                    ti.xcom_push(key=FAILURE_KEY, value={**failure, "try_number": ti.try_number, "tries": ti.max_tries + 1})
            except Exception as push_error:  # the task fails with its own exception whatever happens here
                self.log.warning("Could not keep this failure for the run report: %s", push_error)
            raise

    def _extract(self, context: Context) -> dict[str, Any]:
        from market_ingest.config import SourceConfig
        from market_ingest.lake import check_lake, lake_root, stage
        from market_ingest.sources import bar_hook

        src = SourceConfig.model_validate(self.source_config)
        start = datetime.fromisoformat(self.batch["start"])
        end = datetime.fromisoformat(self.batch["end"])
        root = lake_root(self.lake_url)
        with failing_fast():
            check_lake(root)
        symbols, now = list(self.batch["symbols"]), datetime.now(timezone.utc)
        since = {s: datetime.fromisoformat(t) for s, t in (self.batch.get("since") or {}).items()}
        with failing_fast((start, end)):
            hook = bar_hook(self.source, src, timescale_conn_id=self.timescale_conn_id)
            hook.check_reachable()  # an unreachable vendor fails the try in seconds, naming host and connection
            rejected: list = []
            if self.dataset == "quotes":
                bars, results = hook.fetch_quotes(symbols, as_of=end, ingested_at=now)
            else:
                bars, results = self._fetch_bars(hook, src, symbols, since, start, end, now, rejected)
        if self.dataset == "bars" and kinds.kind(src.kind).defers:
            self._update_backlog(results, since, start, end)
        interval = None if self.dataset == "quotes" else self.interval
        with failing_fast():
            staged = stage(bars, root, self.source, interval, context["run_id"], self.batch["batch"], self.compression)
            rejects = self._write_rejects(rejected, root, context["run_id"])
        for o in results:
            self.log.info(
                "%-12s %-15s rows=%-6d %s %s %s",
                o.symbol,
                o.status,
                o.rows,
                o.reason,
                o.dropped or "",
                f"nulled {o.nulled}" if o.nulled else "",
            )
        return {
            "batch": self.batch["batch"],
            "staged": staged,
            "rows": bars.num_rows,
            "outcomes": [o.as_dict() for o in results],
            "ingested_at": now.isoformat(),
            "rejects": rejects,
        }

    def _write_rejects(self, rejected: list, root, run_id: str) -> dict | None:
        """Write the batch's bars that failed validation to the lake's ``_rejects/`` area; return
        ``{"path", "rows"}`` or ``None`` when there were none."""
        if not rejected:
            return None
        import pyarrow as pa

        from market_ingest.lake import rejects_object, write_parquet

        table = pa.concat_tables(rejected, promote_options="permissive")
        table = table.append_column("run_id", pa.array([run_id] * table.num_rows, pa.string()))
        path = rejects_object(root, self.source, self.interval, run_id, self.batch["batch"])
        write_parquet(table, path)
        self.log.warning("%d bars failed validation; written with their reasons to %s", table.num_rows, path)
        return {"path": str(path), "rows": table.num_rows}

    def _fetch_bars(self, hook, src, symbols, since, start, end, now, rejected=None):
        """One ``fetch_bars`` per distinct window start (deferred symbols reach back to their
        deferral), asking nothing for a symbol whose market has no session in its window
        (:func:`~market_ingest.calendars.closed_throughout`): it is ``no_data``, and says so."""
        import pyarrow as pa

        from market_ingest.calendars import closed_throughout
        from market_ingest.errors import ConfigurationError
        from market_ingest.intervals import Window
        from market_ingest.schema import empty_bars

        groups: dict[datetime, list[str]] = {}
        by_symbol: dict[str, outcomes.SymbolOutcome] = {}
        closed: dict[tuple[str, datetime], bool] = {}  # most symbols share a market and a window
        for sym in symbols:
            sym_start = min(since.get(sym, start), start)
            market = src.market_of(sym)
            if (market, sym_start) not in closed:
                try:
                    closed[market, sym_start] = closed_throughout(
                        market, self.interval, Window(sym_start, end), extended_hours=self.extended_hours
                    )
                except ValueError as exc:
                    raise ConfigurationError(self.source, f"{exc} (sources.{self.source}.market)") from exc
            if closed[market, sym_start]:
                reason = f"no {market} session in the window (weekend or holiday): the vendor was not asked"
                by_symbol[sym] = outcomes.SymbolOutcome(sym, outcomes.NO_DATA, reason=reason, asked=False)
                continue
            groups.setdefault(sym_start, []).append(sym)
        tables = [empty_bars()]
        for group_start, group in sorted(groups.items()):
            table, outs = hook.fetch_bars(
                group,
                self.interval,
                Window(group_start, end),
                ingested_at=now,
                extended_hours=self.extended_hours,
                rejects=rejected,
                concurrency=src.symbols_in_flight,
                bounds=src.bounds.bounds(),
            )
            tables.append(table)
            by_symbol.update({o.symbol: o for o in outs})
        results = [by_symbol[s] for s in symbols]
        return pa.concat_tables(tables), results

    def _update_backlog(self, results, since, start, end) -> None:
        from market_ingest import backlog
        from market_ingest.hooks.timescale import TimescaleHook

        warehouse = TimescaleHook(timescale_conn_id=self.timescale_conn_id)
        deferred = [o for o in results if o.status == outcomes.DEFERRED]
        if deferred:
            backlog.defer(warehouse, self.source, self.interval, [o.symbol for o in deferred], start, end, deferred[0].reason)
        fetched = [o.symbol for o in results if o.status in (outcomes.OK, outcomes.NO_DATA)]
        if fetched:
            settled = backlog.settle(warehouse, self.source, self.interval, fetched, end)
            if settled:
                self.log.info("Settled %d deferred windows", settled)


class LakePublishOperator(BaseOperator):
    """Merge the run's staged bars into the lake: one object per partition (UTC date), read-merge-write.

    A run replaces only the bars it extracted, and only where the stored bar is not newer; see
    :mod:`market_ingest.lake`. A missing bucket fails at once.

    :param source: configured source name.
    :param interval: canonical interval.
    :param extracts: the extract tasks' results (templated; mapped XCom).
    :param lake_url: the lake's root (``url``, or ``quotes_url`` for quotes).
    :param compression: Parquet compression of the objects written.
    :param dataset: ``bars`` or ``quotes`` (no interval partition).
    :return: ``{"objects": [{"path", "partition", "rows", "run_rows", "kept_newer"}], "rows_by_symbol":
        {symbol: n}, "staged": [staged object URLs, in publishing order], "fingerprint": str,
        "run_dir": staging folder of the run}``; the sinks read ``staged``.
    """

    template_fields: Sequence[str] = ("source", "interval", "extracts")

    def __init__(
        self,
        *,
        source: str,
        interval: str,
        extracts: Any,
        lake_url: str,
        compression: str = "zstd",
        dataset: str = "bars",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.source = source
        self.interval = interval
        self.extracts = extracts
        self.lake_url = lake_url
        self.compression = compression
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        import hashlib
        import json

        from market_ingest.lake import lake_root, publish, staging_run_dir

        results = [e for e in _materialise(self.extracts) if e]
        staged = [{**s, "ingested_at": e.get("ingested_at")} for e in results for s in e.get("staged", [])]
        quotes = self.dataset == "quotes"
        interval = None if quotes else self.interval
        root = lake_root(self.lake_url)
        with failing_fast():
            objects = publish(staged, root, self.source, interval, compression=self.compression, dataset=self.dataset)
        counts: Counter[str] = Counter()
        for obj in objects:
            counts.update(obj.pop("rows_by_symbol"))
            self.log.info(
                "Merged %d rows into %s (%d rows; %d stored bars were newer and kept)",
                obj["run_rows"],
                obj["path"],
                obj["rows"],
                obj["kept_newer"],
            )
        ordered = sorted(staged, key=lambda s: s["path"])
        fingerprint = hashlib.sha256(
            json.dumps([[s["path"], s["ingested_at"], s["rows"]] for s in ordered]).encode()
        ).hexdigest()[:32]
        run_dir = staging_run_dir(root, self.source, interval, context["run_id"])
        return {
            "objects": objects,
            "rows_by_symbol": dict(counts),
            "staged": [s["path"] for s in ordered],
            "fingerprint": fingerprint,
            "run_dir": str(run_dir),
        }


def _counting(batches: Any, counts: Counter) -> Any:
    """Yield ``batches`` unchanged, adding their rows per symbol to ``counts``."""
    import pyarrow.compute as pc

    for batch in batches:
        if batch.num_rows:
            vc = pc.value_counts(batch["symbol"])
            counts.update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
        yield batch


class TimescaleLoadOperator(BaseOperator):
    """Upsert the run's staged bars into TimescaleDB (``market.bars``) and write the coverage ledger,
    in one transaction.

    Streams the staged objects one at a time; a stored row extracted later than the run's is kept
    (see :meth:`~market_ingest.hooks.timescale.TimescaleHook.upsert`). For bars, the same
    transaction writes ``market.coverage`` for every (symbol, UTC day) the run asked for
    (:func:`market_ingest.coverage.record`: expected bars from the symbol's market calendar, bars
    stored, state and reason), and once committed those rows are mirrored to the lake
    (:func:`market_ingest.lake.coverage_object`). Before them it writes the ledger rows earlier
    runs of the pair parked in the lake because their own load failed with the warehouse down
    (:func:`market_ingest.coverage.drain`), and deletes those objects once committed.

    Once the load has committed, each of the task's ``outlets`` (the DAG gives it its
    :func:`~market_ingest.assets.bars_asset`) gets an Asset event whose ``extra`` says what came in:
    ``{"window": {"start", "end"} (ISO, UTC), "symbols": [loaded, sorted], "rows": n, "applied": m}``.

    :param lake: the lake publish result (templated).
    :param plan: the plan task's batches (templated): the run's window and symbols.
    :param extracts: the extract tasks' results (templated; mapped XCom): each symbol's outcome,
        for the ledger (a symbol of a batch whose task did not succeed is ``failed``).
    :param timescale_conn_id: connection id of the warehouse.
    :param dataset: ``bars`` (``market.bars``) or ``quotes`` (``market.quotes``, no ledger).
    :param source: configured source name.
    :param interval: canonical interval.
    :param source_config: the source's settings (``SourceConfig`` as a JSON dict): its market and
        kind. The ledger is written for bars when ``plan``, ``source``, ``interval`` and this are given.
    :param lake_url: the lake's root, for the ledger's mirror; none: no mirror.
    :return: ``{"rows": n, "applied": m, "skipped": k, "rows_by_symbol": {...}, "hypertable": bool,
        "coverage": {state: days}, "flags": {flag: bars}}`` (``coverage`` counts the ledger rows
        written, every state present; ``flags`` the anomaly flags of the loaded span,
        :mod:`market_ingest.anomalies`).
    """

    template_fields: Sequence[str] = ("lake", "plan", "extracts")

    def __init__(
        self,
        *,
        lake: Any,
        timescale_conn_id: str,
        dataset: str = "bars",
        plan: Any = None,
        extracts: Any = None,
        source: str | None = None,
        interval: str | None = None,
        source_config: dict[str, Any] | None = None,
        lake_url: str | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.lake = lake
        self.plan = plan
        self.extracts = extracts
        self.timescale_conn_id = timescale_conn_id
        self.dataset = dataset
        self.source = source
        self.interval = interval
        self.source_config = source_config
        self.lake_url = lake_url

    def execute(self, context: Context) -> dict[str, Any]:
        from market_ingest.hooks.timescale import TimescaleHook
        from market_ingest.lake import iter_staged
        from market_ingest.schema import DATASETS

        hook = TimescaleHook(timescale_conn_id=self.timescale_conn_id)
        with failing_fast():
            hook.check_schema()
        table = DATASETS[self.dataset].table
        counts: Counter[str] = Counter()
        ledger: list[dict] = []
        flags: list[dict] = []
        write_ledger = self._ledger_writer(context, ledger, flags)
        self._parked: list = []
        with failing_fast():
            stats = hook.upsert(
                _counting(iter_staged((self.lake or {}).get("staged", []), self.dataset), counts),
                self.dataset,
                then=write_ledger,
            )
        _forget_parked(self._parked, self.log)
        self.log.info(
            "Upserted %d of %d rows into %s (%d not written: identical to the stored row, or a newer extraction is stored)",
            stats["applied"],
            stats["rows"],
            table,
            stats["skipped"],
        )
        result = {**stats, "rows_by_symbol": dict(counts), "hypertable": hook.is_hypertable(table)}
        if write_ledger:
            from market_ingest import coverage
            from market_ingest.anomalies import FLAGS

            result["coverage"] = coverage.counts(ledger)
            result["flags"] = {f: n for f in FLAGS if (n := sum(1 for x in flags if x["flag"] == f))}
            self.log.info("Coverage ledger: %d days written %s", len(ledger), result["coverage"])
            for x in flags:
                self.log.warning("Flagged %s %s %s: %s", x["symbol"], x["time"].isoformat(), x["flag"], x["detail"])
            self._mirror(ledger, context["run_id"])
        batches = self.plan or []
        window = {"start": min(b["start"] for b in batches), "end": max(b["end"] for b in batches)} if batches else None
        for outlet in self.outlets:
            context["outlet_events"][outlet].extra = {
                "window": window,
                "symbols": sorted(counts),
                "rows": stats["rows"],
                "applied": stats["applied"],
            }
        return result

    def _ledger_writer(self, context: Context, into: list[dict], flags: list[dict]):
        """The ``then`` of the upsert: ledger rows of every planned symbol, appended to ``into``,
        and the anomaly flags of the loaded span, appended to ``flags``; ``None`` when there is no
        ledger to write (quotes, or no plan, source, interval or settings)."""
        if self.dataset != "bars" or not (self.plan and self.source and self.interval and self.source_config):
            return None
        from market_ingest import coverage

        extracts, run_id = _materialise(self.extracts), context["run_id"]

        def write(cur) -> None:
            if self.lake_url:  # earlier runs' gaps first: this run's rows, written after, win where they overlap
                self._parked = _drain_parked(cur, self.lake_url, self.source, self.interval, self.source_config, self.log)
            rows, flagged = coverage.record_run(
                cur,
                source=self.source,
                interval=self.interval,
                source_config=self.source_config,
                plan=self.plan,
                extracts=extracts,
                run_id=run_id,
            )
            into.extend(rows)
            flags.extend(flagged)

        return write

    def _mirror(self, rows: list[dict], run_id: str) -> None:
        """Write the run's ledger rows to the lake (replacing the run's earlier mirror)."""
        if not self.lake_url or not rows:
            return
        import pyarrow as pa

        from market_ingest.coverage import MIRRORED
        from market_ingest.lake import coverage_object, lake_root, write_parquet

        now = datetime.now(timezone.utc)
        table = pa.Table.from_pylist([{**r, "updated_at": now} for r in rows])
        path = coverage_object(lake_root(self.lake_url), self.source, self.interval, run_id)
        with failing_fast():
            write_parquet(table.select([*MIRRORED, "updated_at"]), path)
        self.log.info("Coverage ledger mirrored to %s", path)


class KinesisPublishOperator(BaseOperator):
    """Publish the run's staged bars to Kinesis, streamed, resuming after a failed try.

    Records are built lazily from the staged objects (one bar per record, or
    ``kinesis.bars_per_record`` bars of one symbol per JSON Lines record) and sent in
    ``PutRecords`` calls; which ones the stream acknowledged is saved beside the run's staging
    (``<run_dir>/_published/kinesis-<stream>.json``), so a retried task sends only the rest. A
    missing stream fails at once, naming it and the connection.

    :param lake: the lake publish result (templated).
    :param stream: the Kinesis stream (``kinesis.stream``, or ``kinesis.quotes_stream`` for quotes).
    :param aws_conn_id: the AWS connection reaching it.
    :param bars_per_record: 1: one JSON record per bar; N > 1: up to N bars of one symbol per record (JSON Lines).
    :param spread_keys: ``{"<source>:<symbol>": N}``: hot series dealt over N partition keys
        (:mod:`market_ingest.kinesis`).
    :param max_records_per_call: records per ``PutRecords`` call (Kinesis allows 500).
    :param max_bytes_per_call: bytes per ``PutRecords`` call (Kinesis allows 5 MiB).
    :param max_attempts: attempts per call while entries keep failing (throttled shards).
    :param dataset: ``bars`` or ``quotes``.
    :return: ``{"records", "sent", "skipped", "calls", "retried", "bars_by_symbol": {...}}``.
    """

    template_fields: Sequence[str] = ("lake",)

    def __init__(
        self,
        *,
        lake: Any,
        stream: str,
        aws_conn_id: str,
        bars_per_record: int = 1,
        spread_keys: dict[str, int] | None = None,
        max_records_per_call: int = 500,
        max_bytes_per_call: int = 5 * 1024 * 1024,
        max_attempts: int = 8,
        dataset: str = "bars",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.lake = lake
        self.stream = stream
        self.aws_conn_id = aws_conn_id
        self.bars_per_record = bars_per_record
        self.spread_keys = dict(spread_keys or {})
        self.max_records_per_call = max_records_per_call
        self.max_bytes_per_call = max_bytes_per_call
        self.max_attempts = max_attempts
        self.dataset = dataset

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow.providers.amazon.aws.hooks.kinesis import KinesisHook

        from market_ingest.kinesis import PublishProgress, build_records, check_stream, put_records
        from market_ingest.lake import iter_staged, lake_root

        lake = self.lake or {}
        stream = self.stream
        client = KinesisHook(aws_conn_id=self.aws_conn_id).conn
        progress_path = lake_root(lake["run_dir"]) / "_published" / f"kinesis-{stream}.json" if lake.get("run_dir") else None
        counts: Counter[str] = Counter()
        with failing_fast():
            check_stream(client, stream, self.aws_conn_id)
            # Progress counts records: it only holds for the same packing and keys.
            layout = (
                f"{self.bars_per_record}:{sorted(self.spread_keys.items())}" if self.spread_keys else str(self.bars_per_record)
            )
            progress = PublishProgress.load(progress_path, f"{lake.get('fingerprint')}:{layout}")
            if progress.acknowledged:
                self.log.info(
                    "Resuming: %d records were acknowledged by an earlier try and are not sent again", progress.acknowledged
                )
            records = build_records(
                _counting(iter_staged(lake.get("staged", []), self.dataset, max_rows=16_384), counts),
                self.dataset,
                bars_per_record=self.bars_per_record,
                spread_keys=self.spread_keys,
            )
            stats = put_records(
                client,
                stream,
                records,
                max_records=self.max_records_per_call,
                max_bytes=self.max_bytes_per_call,
                max_attempts=self.max_attempts,
                progress=progress,
            )
        self.log.info(
            "Published %d bars as %d records to %s in %d calls (%d sent now, %d acknowledged earlier, %d re-sent)",
            sum(counts.values()),
            stats["records"],
            stream,
            stats["calls"],
            stats["sent"],
            stats["skipped"],
            stats["retried"],
        )
        return {**stats, "bars_by_symbol": dict(counts)}


class LakeCompactOperator(BaseOperator):
    """Fold what earlier versions left in the lake into its current layout: a task of ``market_setup``.

    Runs :func:`market_ingest.lake.compact` for every configured (source, interval) and each
    source's quotes: daily and coarser bars written by date before month and year partitions,
    and several objects per partition from the per-window layout before that, are merged into
    the partition objects and then deleted. On a lake written by this version it only lists the
    partition folders (one ``LIST`` per folder) and changes nothing. Safe while runs publish.

    :param lake_url: the bars lake root (``lake.url``).
    :param quotes_url: the quotes lake root (``lake.quotes_url``).
    :param pairs: ``[[source, interval], ...]`` of the bars DAGs.
    :param quote_sources: sources with quote snapshots.
    :param compression: Parquet compression of the objects rewritten.
    :return: ``{"<source>/<interval or quotes>": {"objects_folded", "rows_folded", "partitions_written"}}``.
    """

    def __init__(
        self,
        *,
        lake_url: str,
        quotes_url: str,
        pairs: list[list[str]],
        quote_sources: list[str],
        compression: str = "zstd",
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.lake_url, self.quotes_url = lake_url, quotes_url
        self.pairs, self.quote_sources = pairs, quote_sources
        self.compression = compression

    def execute(self, context: Context) -> dict[str, Any]:
        from market_ingest.lake import check_lake, compact, lake_root

        bars, quotes = lake_root(self.lake_url), lake_root(self.quotes_url)
        with failing_fast():
            check_lake(bars)
            check_lake(quotes)
        work = [(bars, s, i, "bars") for s, i in self.pairs] + [(quotes, s, None, "quotes") for s in self.quote_sources]
        done = {}
        for root, source, interval, dataset in work:
            stats = compact(root, source, interval, dataset, self.compression)
            done[f"{source}/{interval or 'quotes'}"] = stats
            if stats["objects_folded"]:
                self.log.info("%s %s: %s", source, interval or "quotes", stats)
        self.log.info(
            "Compacted %d series: %d objects of earlier layouts folded in",
            len(done),
            sum(v["objects_folded"] for v in done.values()),
        )
        return done


class WarehouseSetupOperator(BaseOperator):
    """Apply the warehouse's pending migrations: the one task of the ``market_setup`` DAG.

    Run once per deployment and after every upgrade; the pipeline's tasks only check the schema
    version (:meth:`~market_ingest.hooks.timescale.TimescaleHook.check_schema`) and fail, naming
    this DAG, when it is behind.

    Then sets each bar table's columnstore and retention policies from the pipeline config
    (TimescaleDB only; :meth:`~market_ingest.hooks.timescale.TimescaleHook.apply_policies`).

    :param timescale_conn_id: connection id of the warehouse.
    :param columnstore_after_seconds: interval -> age (seconds) at which chunks convert to the
        columnstore, for every canonical interval (``TimescaleConfig.columnstore_delays``).
    :param retention_seconds: interval -> age (seconds) after which bars are dropped; absent: kept.
    :param restatement_window_seconds: how far back the rollups' refresh reaches (seconds).
    :return: ``{"applied": [versions applied now], "version": schema version, "hypertable": bool,
        "policies": {table: {...}}}``.
    """

    def __init__(
        self,
        *,
        timescale_conn_id: str,
        columnstore_after_seconds: dict[str, int],
        retention_seconds: dict[str, int] | None = None,
        restatement_window_seconds: int = 60 * 86400,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.timescale_conn_id = timescale_conn_id
        self.restatement_window_seconds = restatement_window_seconds
        self.columnstore_after_seconds = columnstore_after_seconds
        self.retention_seconds = retention_seconds or {}

    def execute(self, context: Context) -> dict[str, Any]:
        from datetime import timedelta

        from market_ingest.hooks.timescale import TimescaleHook

        hook = TimescaleHook(timescale_conn_id=self.timescale_conn_id)
        applied = hook.migrate()
        version = hook.schema_version()
        self.log.info("Warehouse schema at version %s (applied now: %s)", version, applied or "none")
        delays = {i: timedelta(seconds=v) for i, v in self.columnstore_after_seconds.items()}
        policies = hook.apply_policies(
            delays,
            {i: timedelta(seconds=v) for i, v in self.retention_seconds.items()},
            timedelta(seconds=self.restatement_window_seconds),
        )
        return {"applied": applied, "version": version, "hypertable": hook.is_hypertable(), "policies": policies}


class RunReportOperator(BaseOperator):
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

    :param plan: the plan result (templated): every symbol the run meant to ingest.
    :param extracts: the extract results (templated); a missing batch counts as failed.
    :param lake: the lake publish result (templated).
    :param timescale: the TimescaleDB load result (templated).
    :param kinesis: the Kinesis publish result (templated).
    :param max_failed_share: the run fails (and alerts) above this share of failed symbols (0..1).
    :param max_unserved_share: the run fails (and alerts) above this share of symbols the vendor
        did not serve (:func:`market_ingest.outcomes.unserved`; 0..1); ``None``: never (repairs).
    :param alerts: where the ``failed_share_exceeded`` and ``unserved_share_exceeded`` events go
        (the ``alerts`` section as a dict, see :func:`market_ingest.alerts.emit`).
    :param timescale_conn_id: the warehouse. When the run planned bars but ``load_timescale`` did
        not succeed, the report writes the coverage ledger itself: every planned symbol-day without
        its bars is ``failed``, naming the task (:func:`market_ingest.coverage.record_run`), so the
        repair finds it. If the warehouse is what failed, the rows are parked in the lake and the
        pair's next load or repair writes them (:func:`market_ingest.coverage.drain`).
    :param source: configured source name (for that ledger).
    :param interval: canonical interval.
    :param source_config: the source's settings (``SourceConfig`` as a JSON dict).
    :param dataset: ``bars`` (ledger written as above) or ``quotes`` (no ledger).
    :param run_note_conn_id: http connection to the Airflow API server; the report writes its
        window and bars per sink as the run's note there (:mod:`market_ingest.run_note`), also
        when the run fails. A missing connection or an API error is logged, never raised.
        ``None``: no note.
    :param extract_task_id: the mapped extract task (``<group>.extract`` in ``market_repair``),
        whose failed batches left their exception and try under the XCom key :data:`FAILURE_KEY`.
    :param lake_url: the lake's root: where the ledger rows of a run whose load failed are parked
        while the warehouse cannot take them (:func:`market_ingest.coverage.park`).
    """

    template_fields: Sequence[str] = ("plan", "extracts", "lake", "timescale", "kinesis")

    def __init__(
        self,
        *,
        plan: Any,
        extracts: Any,
        lake: Any,
        timescale: Any,
        kinesis: Any,
        alerts: dict[str, Any],
        max_failed_share: float = 0.2,
        max_unserved_share: float | None = 0.5,
        timescale_conn_id: str | None = None,
        source: str | None = None,
        interval: str | None = None,
        source_config: dict[str, Any] | None = None,
        dataset: str = "bars",
        run_note_conn_id: str | None = None,
        extract_task_id: str = "extract",
        lake_url: str | None = None,
        **kwargs,
    ) -> None:
        kwargs.setdefault("trigger_rule", "all_done")
        super().__init__(**kwargs)
        self.lake_url = lake_url
        self.run_note_conn_id = run_note_conn_id
        self.extract_task_id = extract_task_id
        self.timescale_conn_id = timescale_conn_id
        self.source = source
        self.interval = interval
        self.source_config = source_config
        self.dataset = dataset
        self.plan = plan
        self.extracts = extracts
        self.lake = lake
        self.timescale = timescale
        self.kinesis = kinesis
        self.alerts = alerts
        self.max_failed_share = max_failed_share
        self.max_unserved_share = max_unserved_share

    def execute(self, context: Context) -> dict[str, Any]:
        extracts = _materialise(self.extracts)
        report = build_report(self.plan, extracts, self.lake, self.timescale, self.kinesis, self._failures(context, extracts))
        if self.plan and self.timescale is None and self.dataset == "bars" and self.timescale_conn_id and self.source:
            report["coverage"] = self._record_not_loaded(report, extracts, context["run_id"])
        if not report["failed_tasks"] and (self.lake or {}).get("run_dir"):
            from market_ingest.lake import remove_staging

            try:
                report["staging_removed"] = remove_staging(self.lake["run_dir"])
            except Exception as exc:  # every sink has the bars; a leftover staging folder costs storage only
                self.log.warning("Could not delete the run's staging folder %s: %s", self.lake["run_dir"], exc)
        if backfill_without_conf(context):
            report["notices"].append(whole_universe_notice(report["symbols_total"]))
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
            if (ti := context.get("ti")) is not None:  # absent when a test calls execute() directly
                ti.xcom_push(key="return_value", value=report)
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

    def _alerted(self, kind: str, message: str, detail: dict, threshold: float, total: int, context: Context) -> str:
        """Emit event ``kind`` with ``detail``; return ``message``, saying so when it was not delivered."""
        from market_ingest.alerts import build_event, emit

        try:
            emit(build_event(kind, context, message, {**detail, "symbols_total": total, "threshold": threshold}), self.alerts)
        except RuntimeError as exc:  # the run fails either way; a retry would not fix the symbols
            message += f"; and the alert was not delivered: {exc}"
        return message

    def _failures(self, context: Context, extracts: list) -> dict[int, dict]:
        """``{batch: {"error", "try_number", "tries"}}`` of the extract batches that did not succeed
        and left their failure (a batch that never ran, upstream failed, left none)."""
        done = {e["batch"] for e in extracts if e}
        failed = [i for i, b in enumerate(self.plan or []) if b["batch"] not in done]
        if not failed or context.get("ti") is None:
            return {}
        pulled = context["ti"].xcom_pull(task_ids=self.extract_task_id, key=FAILURE_KEY, map_indexes=failed)
        if not isinstance(pulled, list):
            pulled = [pulled]
        return {self.plan[i]["batch"]: f for i, f in zip(failed, pulled) if f}

    def _record_not_loaded(self, report: dict, extracts: list, run_id: str) -> dict[str, int]:
        """Write the ledger of a run whose bars were not loaded; return its rows per state.

        Every planned day without its bars becomes ``failed``, the reason naming the sinks that do
        hold them (:func:`market_ingest.coverage.not_loaded_reason`). When the warehouse cannot take
        the rows (it is what failed), they are parked in the lake (:func:`market_ingest.coverage.park`)
        for the pair's next load or repair to write: ``{}`` is returned then.
        """
        from contextlib import closing

        from market_ingest import coverage
        from market_ingest.hooks.timescale import TimescaleHook

        reason = coverage.not_loaded_reason(report)
        run = {"source": self.source, "interval": self.interval, "plan": self.plan, "extracts": extracts, "run_id": run_id}
        try:
            hook = TimescaleHook(timescale_conn_id=self.timescale_conn_id)
            hook.check_schema()
            with closing(hook.get_conn()) as conn, conn.transaction(), conn.cursor() as cur:
                rows, _ = coverage.record_run(cur, source_config=self.source_config, not_loaded=reason, **run)
        except Exception as exc:  # the run fails below whatever happens here; keep the gap for the ledger
            if not self.lake_url:
                self.log.warning("The coverage ledger could not record this run's failure: %s", exc)
                return {}
            from market_ingest.lake import lake_root

            try:
                parked = coverage.park(lake_root(self.lake_url), reason=reason, **run)
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


def build_report(
    plan: list[dict] | None,
    extracts: list[dict],
    lake: dict | None,
    timescale: dict | None,
    kinesis: dict | None,
    failures: dict[int, dict] | None = None,
) -> dict[str, Any]:
    """Assemble the run report from the tasks' XCom results (``None`` where a task did not succeed).

    :param extracts: the mapped extract results by map index (``None`` for a batch whose task
        did not succeed); a symbol of such a batch is ``failed`` with the task named.
    :param failures: ``{batch: {"error", "try_number", "tries"}}`` that failed extract tries left
        (:data:`FAILURE_KEY`): the reason of each symbol of the batch then names the exception's
        class and message and the try, e.g. ``task extract[1] failed on try 3 of 3:
        VendorUnavailableError: ... (see its log)``.
    :return: ``{"symbols": {sym: {"status", "reason", "dropped", "nulled", "conflicts", "gaps", "note",
        "lake", "timescale", "kinesis"}}, "skipped": {sym: reason}, "failed_symbols": [...],
        "failed_tasks": ["extract[2]", "publish_kinesis", ...], "symbols_total", "failed",
        "failed_share", "unserved_symbols" (asked, and not known or answered with no bar:
        :func:`market_ingest.outcomes.unserved`), "unserved_share", "notices": [what the run's
        reader should know, e.g. a backfill without conf], "failure": why the run fails (``None``
        here; set by the report task), "window": {"start", "end"} (ISO UTC, the plan's span; ``None`` when
        nothing was planned), "lake_objects": [...], "rejects": [{"path", "rows"}] (bars that failed
        validation, per batch), "coverage": {state: days written to the ledger},
        "staging_removed": objects (added by the report task when every sink succeeded),
        "totals": {...}}``; ``lake``, ``timescale`` and
        ``kinesis`` count bars of the run.
    """
    extracted = {o["symbol"]: o for e in extracts if e for o in e.get("outcomes", [])}
    done_batches = {e["batch"] for e in extracts if e}
    failed_tasks = [] if plan is not None else ["plan"]
    symbols: dict[str, dict] = {}
    for batch in plan or []:
        if batch["batch"] not in done_batches:
            failed_tasks.append(f"extract[{batch['batch']}]")
        failure = (failures or {}).get(batch["batch"])
        why = (
            f"task extract[{batch['batch']}] failed on try {failure['try_number']} of {failure['tries']}: "
            f"{failure['error']} (see its log)"
            if failure
            else f"task extract[{batch['batch']}] did not succeed (see its log)"
        )
        for sym in batch["symbols"]:
            o = extracted.get(sym) or {"status": outcomes.FAILED, "reason": why}
            symbols[sym] = {
                "status": o["status"],
                "reason": o.get("reason", ""),
                "dropped": o.get("dropped", {}),
                "nulled": o.get("nulled", {}),
                "conflicts": o.get("conflicts", {}),
                "gaps": o.get("gaps", []),
                "note": o.get("note", ""),
                "lake": (lake or {}).get("rows_by_symbol", {}).get(sym, 0),
                "timescale": (timescale or {}).get("rows_by_symbol", {}).get(sym, 0),
                "kinesis": (kinesis or {}).get("bars_by_symbol", {}).get(sym, 0),
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
        "window": {"start": min(b["start"] for b in plan), "end": max(b["end"] for b in plan)} if plan else None,
        "lake_objects": [o["path"] for o in (lake or {}).get("objects", [])],
        "rejects": [e["rejects"] for e in extracts if e and e.get("rejects")],
        "coverage": (timescale or {}).get("coverage", {}),
        "flags": (timescale or {}).get("flags", {}),
        "totals": {
            "lake": sum(v["lake"] for v in symbols.values()),
            "timescale": sum(v["timescale"] for v in symbols.values()),
            "kinesis": sum(v["kinesis"] for v in symbols.values()),
            "sinks_ok": sinks_ok,
        },
    }


def format_report(report: dict[str, Any], dag_id: str, run_id: str) -> list[str]:
    """The report as aligned text lines for a log or a terminal."""
    lines = [
        f"Run report {dag_id} / {run_id}",
        *([f"FAILED: {report['failure']}"] if report.get("failure") else []),
        *report.get("notices", []),
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
        lines.append(f"bars that failed validation ({rejects['rows']}), with their reasons: {rejects['path']}")
    if report.get("coverage"):
        days = ", ".join(f"{state} {n}" for state, n in report["coverage"].items() if n)
        lines.append(f"coverage ledger (symbol-days): {days or 'nothing expected in the window'}")
    if report.get("flags"):
        lines.append(f"bars flagged as anomalies (loaded; see market.bar_flags): {report['flags']}")
    if report.get("failed_tasks"):
        lines.append(f"tasks that did not succeed: {', '.join(report['failed_tasks'])}")
    return lines
