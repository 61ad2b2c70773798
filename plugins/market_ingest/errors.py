"""Error kinds shared by every source and sink, so operators decide retry or fail-fast in one place.

Each error names where it happened (source, symbol, the run's window, or the sink and its
connection) and the reason; none carries a credential (callers pass redacted text only).

Two families:

* retryable (:class:`RateLimitedError`, :class:`VendorUnavailableError`): an Airflow retry can
  heal them; the task fails and is retried with backoff;
* permanent (:class:`PermanentError` and its subclasses): a retry gives the same answer. The
  operators raise them as ``AirflowFailException``, and ``dag_factory.retry_policy`` fails them
  at once too, so no retry is spent.

Stdlib only: imported at DAG parse time by the retry policy.
"""

from __future__ import annotations

from datetime import datetime


class MarketDataError(Exception):
    """Base class. ``retryable`` says whether an Airflow retry can heal it.

    :param source: configured source name (``yahoo``, ``binance``) or a sink (``lake``, ``kinesis``).
    :param reason: what went wrong, redacted.
    :param symbol: the symbol concerned, when one is.
    :param window: the run's ``(start, end)`` window (UTC), when known; :meth:`in_window` adds it later.

    ``str(exc)`` is ``<source>:<symbol> [<start>, <end>): <reason>`` (parts omitted when unknown).
    """

    retryable = False

    def __init__(
        self, source: str, reason: str, symbol: str | None = None, window: tuple[datetime, datetime] | None = None
    ) -> None:
        self.source = source
        self.symbol = symbol
        self.reason = reason
        self.window = window
        super().__init__(source, reason, symbol, window)

    def __str__(self) -> str:
        where = f"{self.source}:{self.symbol}" if self.symbol else self.source
        if self.window:
            where += f" [{self.window[0].isoformat()}, {self.window[1].isoformat()})"
        return f"{where}: {self.reason}"

    def in_window(self, start: datetime, end: datetime) -> MarketDataError:
        """Set the run's window when the error does not carry one yet; returns ``self``."""
        if self.window is None:
            self.window = (start, end)
        return self


class SymbolError(MarketDataError):
    """Stops one symbol, not the task: the extract step (:mod:`market_ingest.extract`) records
    the symbol's ``status`` with the reason and goes on with the next symbol.

    A bar client raises it (or a subclass) for one symbol; ``symbol`` should be set.
    """

    status = "failed"


class UnknownSymbolError(SymbolError):
    """The vendor does not know the symbol (HTTP 404, ``BadSymbol``, Alpha Vantage's ``Error Message``)."""

    status = "unknown_symbol"


class NoDataError(SymbolError):
    """The vendor answered, with no bar for the window (weekend, holiday, halt, an illiquid pair)."""

    status = "no_data"


class QuotaExhaustedError(SymbolError):
    """The vendor's daily quota (or the shared budget for it) is spent: this symbol and every
    later one of the batch are ``deferred`` without a request, to be fetched on a later run."""

    status = "deferred"


class RateLimitedError(MarketDataError):
    """The vendor throttled us (HTTP 429 or a throttle body). Retry after a backoff."""

    retryable = True


class VendorUnavailableError(MarketDataError):
    """Network failure, timeout or 5xx from the vendor. Retry after a backoff."""

    retryable = True


class UnexpectedBodyError(MarketDataError):
    """A vendor body of a shape we do not know; the message names its keys. Fails the task: a
    vendor that changed its answers needs a person, not a retry."""


class SinkUnavailableError(MarketDataError):
    """A sink's server cannot be reached or does not answer in time (the warehouse's connect
    timeout). Retry after a backoff; the message names the connection and the host."""

    retryable = True


class PermanentError(MarketDataError):
    """A retry cannot heal it: fail the task at once, without spending retries."""


class WindowNotServableError(PermanentError):
    """The vendor cannot serve the requested window (for example beyond its lookback cap).

    Permanent: retrying gives the same answer. Fails the task at once.
    """


class ConfigurationError(PermanentError):
    """The pipeline configuration or a run's parameters are wrong. Fails the task at once."""


class SinkNotFoundError(PermanentError):
    """A sink's bucket or stream does not exist. Nothing creates it by accident: fails at once.

    The message names the resource and the Airflow connection used to reach it.
    """


class SerializationError(PermanentError):
    """A row cannot be written to a sink's format (for example a Kinesis record over 1 MiB)."""


class RebasePendingError(PermanentError):
    """Bars stored before the price basis existed could not be converted to as traded yet (their
    symbol's corporate actions were not asked since, or their source is not configured). A retry
    finds the same rows: what converts them is named in the message."""


class CorruptObjectError(PermanentError):
    """A lake object (a run's staged batch, or a partition) cannot be decoded as Parquet of its
    dataset: its bytes are damaged or it is not Parquet. A retry reads the same bytes, so it fails
    at once; the message names the object's URL and, for a staged object, the run."""


class StagedObjectGoneError(PermanentError):
    """A run's staged batch is no longer in the lake: the bars table's vacuum removes staged files
    no version references once older than its retention (a week), or someone deleted it. A retry
    finds it gone too: the message names it, its run, and that the run's extract tasks must be
    cleared to stage it again."""


class PriceBasisError(PermanentError):
    """Stored bars cannot be put on the price basis asked for (:mod:`market_ingest.actions`): rows
    stored before bar schema 2 whose basis is not as traded (Yahoo's: split-adjusted as of their
    extraction) and not yet re-based, or a symbol whose corporate actions the lake does not hold.
    Names the series and the fix; a retry reads the same rows."""
