"""What the tasks of a market-data DAG hand each other, as named types.

Every task result travels through XCom as JSON, so each has two forms here: the ``TypedDict`` that
XCom holds (what the UI's XCom tab and ``xcom_pull`` show), and, where a task reads more than a
count from it, a frozen dataclass with ``to_xcom()`` and ``from_xcom()``: the only place the JSON
form is written or parsed.

- :class:`Dataset`: ``bars`` or ``quotes``, and what differs between them.
- :class:`Batch`: one extract task's symbols and window (``plan`` -> ``extract``). The plan
  resolves the window once; every reader takes it from the batches (:func:`plan_window`).
- :class:`ExtractResult`, :class:`LakeResult`, :class:`LoadResult`, :class:`KinesisResult`: what
  each sink task returns; :class:`ReconcileResult`: what the cross-source comparison found; the
  report reads them all.

Standard library only (and :mod:`market_ingest.intervals`): DAG files import this module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any, NotRequired, TypedDict

from market_ingest.intervals import Window


class Dataset(StrEnum):
    """What a DAG ingests: ``bars`` (OHLCV bars of one interval) or ``quotes`` (snapshots).

    A ``StrEnum``: equal to its name as a string, so it is JSON-safe in XCom and the serialised DAG.
    """

    BARS = "bars"
    QUOTES = "quotes"

    @property
    def has_ledger(self) -> bool:
        """True for bars: their loads write the coverage ledger and anomaly flags; quotes have neither."""
        return self is Dataset.BARS

    def stored_interval(self, interval: str) -> str | None:
        """The interval rows are stored and partitioned under: ``interval`` for bars, ``None`` for
        quotes (one ``market.quotes`` table, no interval partition in the lake)."""
        return interval if self is Dataset.BARS else None


class BatchXCom(TypedDict):
    """A :class:`Batch` as XCom holds it (ISO 8601 UTC times)."""

    batch: int
    symbols: list[str]
    start: str
    end: str
    since: dict[str, str]


@dataclass(frozen=True)
class Batch:
    """One extract task's work: a few symbols over one window.

    :param index: the batch number, from 0; the extract task's map index in plan order.
    :param symbols: canonical symbols, in universe order.
    :param window: ``[start, end)`` UTC, the run's window (a repair's batch: the days it repairs).
    :param since: deferred symbols (Alpha Vantage's spent daily budget) with the start of the
        window they still lack, earlier than ``window.start``.
    """

    index: int
    symbols: tuple[str, ...]
    window: Window
    since: Mapping[str, datetime] = field(default_factory=dict)

    def start_of(self, symbol: str) -> datetime:
        """Where ``symbol``'s window starts: its deferral's start when earlier than the batch's."""
        return min(self.since.get(symbol, self.window.start), self.window.start)

    def to_xcom(self) -> BatchXCom:
        return {
            "batch": self.index,
            "symbols": list(self.symbols),
            "start": self.window.start.isoformat(),
            "end": self.window.end.isoformat(),
            "since": {s: t.isoformat() for s, t in self.since.items()},
        }

    @classmethod
    def from_xcom(cls, x: Mapping[str, Any]) -> Batch:
        """The batch of ``x`` (:class:`BatchXCom`; ``since`` may be absent in older runs' XCom).

        :raises KeyError: a required key is missing. :raises ValueError: a time is not ISO 8601,
            or not after the start.
        """
        window = Window(datetime.fromisoformat(x["start"]), datetime.fromisoformat(x["end"]))
        since = {s: datetime.fromisoformat(t) for s, t in (x.get("since") or {}).items()}
        return cls(int(x["batch"]), tuple(x["symbols"]), window, since)


def read_plan(plan: Sequence[Mapping[str, Any]] | None) -> list[Batch]:
    """The plan task's XCom (a list of :class:`BatchXCom`) as batches; ``[]`` for none."""
    return [Batch.from_xcom(b) for b in plan or []]


def plan_window(batches: Sequence[Batch]) -> Window | None:
    """The span of a run's batches: the run's window (every batch of an ingestion run shares it; a
    repair's batches each hold their own days). ``None`` when nothing was planned."""
    if not batches:
        return None
    return Window(min(b.window.start for b in batches), max(b.window.end for b in batches))


def window_xcom(window: Window | None) -> dict[str, str] | None:
    """``{"start", "end"}`` ISO UTC, as the report, the run note and Asset events show a window."""
    return None if window is None else {"start": window.start.isoformat(), "end": window.end.isoformat()}


class OutcomeXCom(TypedDict):
    """:class:`market_ingest.outcomes.SymbolOutcome` as XCom holds it."""

    symbol: str
    status: str
    rows: int
    reason: str
    dropped: dict[str, int]
    gaps: list[list[str]]
    nulled: dict[str, int]
    conflicts: dict[str, Any]
    note: str
    asked: bool


class StagedObject(TypedDict):
    """A batch staged in the lake: its URL, rows and the row groups of each partition.

    A bars data file (:func:`market_ingest.lake.table.stage_bars`: one per period, in the bars
    table's folder, uncommitted) also has what committing it as it is takes: ``source`` (the
    rows'), ``period``, ``table_path`` (inside the table), ``size`` (bytes), ``stats`` (the Delta
    add action's statistics, JSON), ``first`` and ``last`` (its first and last bar's open, ISO
    UTC) and ``rows_by_symbol``. Quotes are staged as objects without them.
    """

    path: str
    rows: int
    partitions: dict[str, list[int]]
    source: NotRequired[str]
    period: NotRequired[str]
    table_path: NotRequired[str]
    size: NotRequired[int]
    stats: NotRequired[str]
    first: NotRequired[str]
    last: NotRequired[str]
    rows_by_symbol: NotRequired[dict[str, int]]


class RejectsObject(TypedDict):
    """Bars of a batch that failed validation, written with their reasons to the lake's rejects
    table (:mod:`market_ingest.lake.rejects`): ``path`` the table's URI, ``rows`` the batch's
    rejects, found there by ``run_id`` and ``batch``; ``version`` the table version written."""

    path: str
    rows: int
    run_id: NotRequired[str]
    batch: NotRequired[int]
    version: NotRequired[int]


class ActionXCom(TypedDict):
    """A corporate action first seen (:class:`market_ingest.actions.CorporateAction`; ``ex_date``
    ISO date; ``ratio`` for splits, ``amount`` in ``currency`` per share for cash actions)."""

    symbol: str
    kind: str
    ex_date: str
    ratio: float | None
    amount: float | None
    currency: str | None


class ExtractResult(TypedDict):
    """``extract``'s result: what one batch staged, and each symbol's outcome.

    ``ingested_at``: ISO UTC, when the vendor was asked (the bars' ``ingested_at``).
    ``actions``: the lake's corporate-action objects this batch asked the vendor again for (one per
    symbol, :class:`market_ingest.lake.actions.ActionsCache`), for the warehouse to upsert;
    ``new_actions``: the actions this batch saw first, of symbols whose history was already known
    (a symbol's first history is not news), for the report to announce.
    """

    batch: int
    staged: list[StagedObject]
    rows: int
    outcomes: list[OutcomeXCom]
    ingested_at: str
    rejects: RejectsObject | None
    actions: NotRequired[list[str]]
    new_actions: NotRequired[list[ActionXCom]]


class LakeObject(TypedDict):
    """One partition ``publish_lake`` merged the run's rows into: for bars, a partition folder of
    the bars Delta table and ``version``, the table version the run's one commit made (or read,
    when nothing changed); for quotes, the partition object."""

    path: str
    partition: str
    rows: int
    run_rows: int
    kept_newer: int
    version: NotRequired[int]


class LakeResult(TypedDict):
    """``publish_lake``'s result. ``staged``: the staged objects' URLs in publishing order, which
    the warehouse and Kinesis tasks read; ``fingerprint``: what Kinesis' resume progress is keyed on."""

    objects: list[LakeObject]
    rows_by_symbol: dict[str, int]
    staged: list[str]
    fingerprint: str
    run_dir: str


class LoadResult(TypedDict):
    """``load_timescale``'s result: rows upserted (``applied``) of ``rows`` read, per symbol; of
    ``applied``, ``copied`` straight into the table as new (:meth:`~market_ingest.hooks.timescale.TimescaleHook.upsert`);
    for bars, the ledger's symbol-days per state (``coverage``) and the anomaly flags per check;
    ``actions``: corporate actions inserted or changed in ``market.corporate_actions`` (present
    when the run's extracts refreshed any symbol's actions; 0 on a rerun)."""

    rows: int
    applied: int
    skipped: int
    copied: int
    rows_by_symbol: dict[str, int]
    hypertable: bool
    coverage: NotRequired[dict[str, int]]
    flags: NotRequired[dict[str, int]]
    actions: NotRequired[int]


class KinesisResult(TypedDict):
    """``publish_kinesis``'s result: records acknowledged, sent by this try, skipped (acknowledged
    by an earlier try), ``PutRecords`` calls, entries re-sent, and bars per symbol."""

    records: int
    sent: int
    skipped: int
    calls: int
    retried: int
    bars_by_symbol: dict[str, int]


class PairXCom(TypedDict):
    """One instrument's comparison of the run's source with one other source: bar pairs compared
    and how many of them disagree (:mod:`market_ingest.reconcile`)."""

    instrument: str
    other: str
    bars: int
    disagreements: int


class ReconcileResult(TypedDict):
    """``reconcile``'s result: pairs compared (an instrument and one other source sharing at
    least one bar of the window), bar pairs compared, disagreements stored in
    ``market.cross_source_checks`` (by reason: ``close``, ``volume``, ``close, volume``,
    ``currency``), and each pair's figures."""

    pairs: int
    bars: int
    disagreements: int
    by_reason: dict[str, int]
    per_pair: list[PairXCom]


def reconciliation_line(result: ReconcileResult) -> str:
    """One line of a :class:`ReconcileResult`, for the run's report and note: ``1 pairs, 49 bars
    compared, 1 disagreeing (close 1; see market.cross_source_checks)``."""
    line = f"{result['pairs']} pairs, {result['bars']} bars compared, {result['disagreements']} disagreeing"
    if result["disagreements"]:
        reasons = ", ".join(f"{r} {n}" for r, n in result["by_reason"].items())
        line += f" ({reasons}; see market.cross_source_checks)"
    return line


class FailureXCom(TypedDict):
    """What a failed extract try leaves for the report (XCom key ``failure``)."""

    error: str
    try_number: int
    tries: int
