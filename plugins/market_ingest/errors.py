"""Error kinds shared by every source, so operators can decide retry or fail-fast in one place.

Each error names the source and symbol(s) and the reason; none carries a credential (callers pass
redacted text only).
"""

from __future__ import annotations


class MarketDataError(Exception):
    """Base class. ``retryable`` says whether an Airflow retry can heal it."""

    retryable = False

    def __init__(self, source: str, reason: str, symbol: str | None = None) -> None:
        self.source = source
        self.symbol = symbol
        self.reason = reason
        where = f"{source}:{symbol}" if symbol else source
        super().__init__(f"{where}: {reason}")


class RateLimitedError(MarketDataError):
    """The vendor throttled us (HTTP 429 or a throttle body). Retry after a backoff."""

    retryable = True


class VendorUnavailableError(MarketDataError):
    """Network failure, timeout or 5xx from the vendor. Retry after a backoff."""

    retryable = True


class WindowNotServableError(MarketDataError):
    """The vendor cannot serve the requested window (for example beyond its lookback cap).

    Permanent: retrying gives the same answer. Fails the task at once.
    """


class ConfigurationError(MarketDataError):
    """The pipeline configuration or a run's parameters are wrong. Fails the task at once."""
