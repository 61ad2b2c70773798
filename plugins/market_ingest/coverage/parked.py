"""The ledger of a run whose bars were not loaded, and the load's own ledger writer.

The run report still ledgers a run whose bars did not reach the warehouse: its days without
their bars become ``failed`` with :func:`not_loaded_reason`
(:func:`~market_ingest.coverage.record_run`). When the warehouse cannot take those rows either,
they are parked in the lake (:func:`park`) and written by the pair's next load or repair
(:func:`drain`, :func:`drain_parked`, then :func:`forget`).
:class:`LoadLedger` is what a load of bars runs inside its transaction: parked rows first, then
the run's rows and anomaly flags, mirrored to the lake after the commit.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timezone
from typing import TYPE_CHECKING, Any

from market_ingest.contracts import Batch, ExtractResult, read_plan
from market_ingest.coverage.recording import lock_series, record_run
from market_ingest.coverage.states import counts

if TYPE_CHECKING:
    import pyarrow as pa

    from market_ingest.config import SourceConfig

log = logging.getLogger(__name__)
UTC = timezone.utc


def not_loaded_reason(report: dict[str, Any]) -> str:
    """The ledger reason of a run whose bars did not reach the warehouse, naming the sinks that
    did hold them (``report``: :func:`market_ingest.report.build_report`'s dict), e.g.
    ``not in the warehouse: task load_timescale did not succeed (see its log); the run's bars are in
    the lake and Kinesis``."""
    ok = report["totals"]["sinks_ok"]
    tasks = [t for t in report["failed_tasks"] if t in ("publish_lake", "load_timescale")] or ["load_timescale"]
    held = [name for sink, name in (("lake", "the lake"), ("kinesis", "Kinesis")) if ok.get(sink)]
    return f"not in the warehouse: task {', '.join(tasks)} did not succeed (see its log)" + (
        f"; the run's bars are in {' and '.join(held)}" if held else "; nor in any other sink"
    )


def park(
    root,
    *,
    source: str,
    interval: str,
    batches: Sequence[Batch],
    extracts: Sequence[ExtractResult | None],
    run_id: str,
    reason: str,
) -> str:
    """Keep in the lake what :func:`record_run` would have written for a run whose bars were not
    loaded, when the warehouse cannot take it now (it is what failed): the ledger then records the
    gap once the warehouse is back, when the pair's next load or repair calls :func:`drain`.

    :param root: the lake root (``ObjectStoragePath``).
    :param extracts: the extract results; only each symbol's outcome is kept.
    :return: the parked object's URL (:func:`market_ingest.lake.parked_ledger_object`).
    """
    import json

    from market_ingest.lake import parked_ledger_object, write_object

    path = parked_ledger_object(root, source, interval, run_id)
    kept = [{"batch": e["batch"], "outcomes": e.get("outcomes", [])} if e else None for e in extracts]
    plan = [b.to_xcom() for b in batches]
    body = {"source": source, "interval": interval, "run_id": run_id, "reason": reason, "plan": plan, "extracts": kept}
    write_object(path, json.dumps(body).encode())
    return str(path)


def drain(cur, root, *, source: str, interval: str, settings: SourceConfig) -> list[tuple[Any, dict[str, int]]]:
    """Write the ledger rows of the runs :func:`park` left for ``(source, interval)``, on the
    cursor of a transaction that has the warehouse (a load's, a repair plan's): every planned day
    not holding its bars becomes ``failed`` with the parked reason, and a day loaded since is
    ``complete`` (the state follows the stored bars). Delete the returned objects once that
    transaction has committed (:func:`forget`).

    Under the pair's ledger lock (:func:`lock_series`), so two loads drain one after the other; an
    object another load drained and deleted meanwhile is skipped. Each object is written in its own
    savepoint: one that cannot be read or written (cut, from another version, a source's settings
    changed since) is logged at ERROR, naming it, and left in place; the load goes on.

    :return: ``[(parked object, {state: days written})]``, oldest run first.
    """
    import json

    from market_ingest.lake import parked_ledger_folder

    lock_series(cur, source, interval)
    folder = parked_ledger_folder(root, source, interval)
    if not folder.exists():
        return []
    drained = []
    for path in sorted(folder.iterdir(), key=str):
        if not str(path).endswith(".json"):
            continue
        try:
            parked = json.loads(path.read_bytes())
        except FileNotFoundError:
            continue  # drained and deleted by a load that held the lock before this one
        except (OSError, ValueError) as exc:
            log.error("%s %s: parked ledger rows %s cannot be read (%s); left in place", source, interval, path, exc)
            continue
        try:
            with cur.connection.transaction():  # a savepoint: one bad object costs only itself
                rows, _ = record_run(
                    cur,
                    source=source,
                    interval=interval,
                    settings=settings,
                    batches=read_plan(parked["plan"]),
                    extracts=parked["extracts"],
                    run_id=parked["run_id"],
                    not_loaded=parked["reason"],
                )
        except Exception as exc:
            log.error("%s %s: parked ledger rows %s could not be written (%s); left in place", source, interval, path, exc)
            continue
        drained.append((path, counts(rows)))
    return drained


def forget(paths) -> None:
    """Delete parked objects :func:`drain` wrote into the ledger, once its transaction has
    committed. One that cannot be deleted is logged and left: a later drain writes it again, to the
    same rows."""
    try:
        for path in paths:
            path.unlink(missing_ok=True)
    except Exception as exc:
        log.warning(
            "Could not delete parked ledger objects %s (their rows are written; a later drain rewrites them): %s", paths, exc
        )


def drain_parked(cur, lake_url: str, *, source: str, interval: str, settings: SourceConfig) -> list:
    """:func:`drain` of the lake at ``lake_url``, logging each object written; return the objects,
    to :func:`forget` once the transaction commits."""
    from market_ingest.lake import lake_root

    drained = drain(cur, lake_root(lake_url), source=source, interval=interval, settings=settings)
    for path, states in drained:
        log.warning("Wrote the ledger rows of a run whose load had failed, parked in %s: %s", path, states)
    return [path for path, _ in drained]


class LoadLedger:
    """The coverage ledger and anomaly flags of one load of bars, written by the load inside its
    own transaction (:meth:`write` is the upsert's ``then``), then mirrored to the lake.

    :param source: configured source name. :param interval: canonical interval.
    :param settings: the source's settings.
    :param batches: the run's plan. :param extracts: the extract results (``None`` for a batch whose
        task did not succeed).
    :param run_id: the DAG run. :param lake_url: the lake's root: ledger rows earlier runs of the
        pair parked there are written first (:func:`drain`), and the run's rows are mirrored there
        (:mod:`market_ingest.lake.mirror`); ``None``: neither.

    After :meth:`write`: ``rows`` (ledger rows written: a table, :func:`~market_ingest.coverage.record`), ``flags`` (anomaly flags written) and
    ``parked`` (parked objects drained, deleted by :meth:`committed`).
    """

    def __init__(
        self,
        *,
        source: str,
        interval: str,
        settings: SourceConfig,
        batches: Sequence[Batch],
        extracts: Sequence[ExtractResult | None],
        run_id: str,
        lake_url: str | None,
    ) -> None:
        self.source, self.interval, self.settings = source, interval, settings
        self.batches, self.extracts, self.run_id, self.lake_url = batches, extracts, run_id, lake_url
        from market_ingest.lake.mirror import schema

        self.rows: pa.Table = schema().empty_table()
        self.flags: list[dict] = []
        self.parked: list = []

    def write(self, cur) -> None:
        """Write the ledger rows and flags on ``cur`` (the load's transaction): earlier runs'
        parked rows first, so this run's rows, written after, win where they overlap."""
        source, interval, settings = self.source, self.interval, self.settings
        if self.lake_url:
            self.parked = drain_parked(cur, self.lake_url, source=source, interval=interval, settings=settings)
        self.rows, self.flags = record_run(
            cur,
            source=source,
            interval=interval,
            settings=settings,
            batches=self.batches,
            extracts=self.extracts,
            run_id=self.run_id,
        )

    def committed(self) -> str | None:
        """After the commit: delete the drained parked objects and merge the run's ledger rows into
        the lake's coverage table (:func:`market_ingest.lake.mirror_ledger`: each day once, a
        retried load replacing its earlier rows); return the table's URI and version (``None``:
        no lake or no rows).

        :raises market_ingest.errors.MarketDataError: the lake refused the mirror
            (:class:`~market_ingest.lake.DeltaCommitError`: retryable).
        """
        forget(self.parked)
        if not self.lake_url or not self.rows.num_rows:
            return None
        from market_ingest.lake import lake_root, mirror_ledger

        mirrored = mirror_ledger(lake_root(self.lake_url), self.rows)
        return f"{mirrored['path']} (version {mirrored['version']})"
