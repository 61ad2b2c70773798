"""What every operator of a market-data DAG shares: the series it works on, the run's data
interval, failing fast on what a retry cannot fix, and reading mapped XCom.

Operators read no configuration file: the DAG factory hands each one a :class:`Series` (and its
own few settings; :func:`market_ingest.dag_factory.task_arguments`), so each can be built and
tested on its own. Every ``execute`` returns something small (paths and counts, typed in
:mod:`market_ingest.contracts`) because it lands in XCom; bars travel through the lake only.
Heavy libraries are imported inside ``execute``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from market_ingest.contracts import Dataset
from market_ingest.errors import MarketDataError

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context

    from market_ingest.config import IntervalConfig, SourceConfig, SplitsFrom

#: XCom key under which a failed extract try leaves a :class:`~market_ingest.contracts.FailureXCom` for the report.
FAILURE_KEY = "failure"
#: characters of an exception's message kept for the report (messages carry no credential:
#: :mod:`market_ingest.errors` redacts them)
FAILURE_CHARS = 300


@dataclass(frozen=True)
class Series:
    """The series a DAG ingests and where it goes: what every task of it is given.

    :param source: the configured source name (``yahoo``, ``binance_2``).
    :param interval: canonical interval (``1m`` .. ``1mo``), or ``quote`` for quote snapshots.
    :param dataset: :class:`~market_ingest.contracts.Dataset`.
    :param source_config: the source's settings, ``SourceConfig`` in JSON form (JSON-safe, so the
        serialised DAG can hold it); read through :attr:`settings`.
    :param timescale_conn_id: the warehouse's connection id.
    :param lake_url: the lake's root for this dataset (``s3://<conn_id>@bucket/prefix`` or ``file:///...``).
    :param splits_from: for a source whose vendor states no splits (``splits_from``: kind ``ibkr``),
        where it takes them, in JSON form (``{"source", "source_config", "symbols"}``); read
        through :attr:`splits`.
    """

    source: str
    interval: str
    dataset: Dataset
    source_config: dict[str, Any]
    timescale_conn_id: str
    lake_url: str
    splits_from: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "dataset", Dataset(self.dataset))  # "bars" as given by hand, too

    @cached_property
    def settings(self) -> SourceConfig:
        """The source's settings, validated once per task (the first time a task reads them)."""
        from market_ingest.config import SourceConfig

        return SourceConfig.model_validate(self.source_config)

    @cached_property
    def splits(self) -> SplitsFrom | None:
        """Where the source takes its splits (:class:`~market_ingest.config.SplitsFrom`), or ``None``."""
        from market_ingest.config import SourceConfig, SplitsFrom

        if not self.splits_from:
            return None
        f = self.splits_from
        return SplitsFrom(f["source"], SourceConfig.model_validate(f["source_config"]), dict(f["symbols"]))

    @property
    def interval_config(self) -> IntervalConfig:
        """The settings of this series' DAG (``intervals.<interval>``, or ``quotes``)."""
        return self.settings.interval_config(self.interval)

    @property
    def stored_interval(self) -> str | None:
        """The interval the rows are stored under: ``None`` for quotes (:meth:`Dataset.stored_interval`)."""
        return self.dataset.stored_interval(self.interval)


class SeriesOperator(BaseOperator):
    """An operator working on one :class:`Series`."""

    def __init__(self, *, series: Series, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.series = series

    @property
    def source(self) -> str:
        return self.series.source

    @property
    def interval(self) -> str:
        return self.series.interval


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


def materialise(values: Any) -> list:
    """A mapped task's XCom results as a list, read by index (``None`` for a map index that did
    not succeed).

    Iterating Airflow's lazy XCom sequence probes one offset past the end and logs an error for
    it; indexing up to ``len()`` does not.
    """
    if values is None:
        return []
    return [values[i] for i in range(len(values))]


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

        schedule: Any = context["dag"].timetable  # the DAG factory gives every DAG a CronDataIntervalTimetable
        run_after = pendulum.instance(context["dag_run"].run_after)
        timetable = CronDataIntervalTimetable(schedule.expression, schedule.timezone)
        interval = timetable.infer_manual_data_interval(run_after=run_after)
        start, end = interval.start, interval.end
    return _plain_utc(start), _plain_utc(end)


def _plain_utc(t: datetime) -> datetime:
    """``t`` (aware; a ``pendulum.DateTime`` too) as a stdlib ``datetime`` in UTC, to the microsecond."""
    u = t.astimezone(timezone.utc)
    return datetime(u.year, u.month, u.day, u.hour, u.minute, u.second, u.microsecond, tzinfo=timezone.utc)


def counting(batches: Iterable[pa.RecordBatch], counts: Counter[str]) -> Iterator[pa.RecordBatch]:
    """Yield ``batches`` unchanged, adding their rows per symbol to ``counts``."""
    import pyarrow.compute as pc

    for batch in batches:
        if batch.num_rows:
            vc = pc.value_counts(batch["symbol"])
            counts.update(dict(zip(vc.field("values").to_pylist(), vc.field("counts").to_pylist())))
        yield batch
