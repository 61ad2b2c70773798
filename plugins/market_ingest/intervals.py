"""Canonical bar intervals and their arithmetic.

Canonical intervals are ``1m 5m 15m 30m 1h 1d 1wk 1mo`` (DESIGN.md, "Data contract"). This module is
imported at DAG parse time, so it depends on the standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

CANONICAL_INTERVALS: tuple[str, ...] = ("1m", "5m", "15m", "30m", "1h", "1d", "1wk", "1mo")

#: Fixed-length intervals. ``1mo`` has no fixed length; use :func:`bar_end` instead.
INTERVAL_LENGTH: dict[str, timedelta] = {
    "1m": timedelta(minutes=1),
    "5m": timedelta(minutes=5),
    "15m": timedelta(minutes=15),
    "30m": timedelta(minutes=30),
    "1h": timedelta(hours=1),
    "1d": timedelta(days=1),
    "1wk": timedelta(weeks=1),
}

INTRADAY_INTERVALS: frozenset[str] = frozenset({"1m", "5m", "15m", "30m", "1h"})


def validate_interval(interval: str) -> str:
    """Return ``interval`` unchanged if it is canonical.

    :raises ValueError: naming the interval and the canonical set, when it is not.
    """
    if interval not in CANONICAL_INTERVALS:
        raise ValueError(f"interval {interval!r} is not canonical; use one of {' '.join(CANONICAL_INTERVALS)}")
    return interval


def bar_end(start: datetime, interval: str) -> datetime:
    """Return the (exclusive) end of the bar that opens at ``start``.

    :param start: bar open time, timezone-aware (UTC).
    :param interval: canonical interval.
    :return: ``start`` plus one interval; calendar month for ``1mo``.
    """
    validate_interval(interval)
    if interval == "1mo":
        year, month = (start.year + 1, 1) if start.month == 12 else (start.year, start.month + 1)
        return start.replace(year=year, month=month)
    return start + INTERVAL_LENGTH[interval]


def bar_start(t: datetime, interval: str) -> datetime:
    """The open time of the bar of ``interval`` containing instant ``t`` (UTC grid from the epoch).

    Intraday and daily bars start at multiples of their length since 1970-01-01 00:00 UTC; ``1wk``
    on Mondays 00:00 UTC; ``1mo`` on the 1st 00:00 UTC.
    """
    validate_interval(interval)
    t = t.astimezone(timezone.utc)
    if interval == "1mo":
        return t.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    day = t.replace(hour=0, minute=0, second=0, microsecond=0)
    if interval == "1wk":
        return day - timedelta(days=day.weekday())
    epoch = datetime(1970, 1, 1, tzinfo=timezone.utc)
    return t - (t - epoch) % INTERVAL_LENGTH[interval]


def ensure_utc(value: datetime, what: str = "timestamp") -> datetime:
    """Return ``value`` converted to UTC.

    :raises ValueError: when ``value`` is naive: a naive time has no defined instant.
    """
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"{what} {value.isoformat()} is naive; market data times must carry a timezone")
    return value.astimezone(timezone.utc)


def utc_dates(start: datetime, end: datetime) -> list[str]:
    """The UTC dates (``YYYY-MM-DD``) that ``[start, end)`` touches, oldest first (empty when ``end <= start``)."""
    if end <= start:
        return []
    day, last = start.astimezone(timezone.utc).date(), (end.astimezone(timezone.utc) - timedelta(microseconds=1)).date()
    out = []
    while day <= last:
        out.append(day.isoformat())
        day += timedelta(days=1)
    return out


@dataclass(frozen=True)
class Window:
    """A half-open UTC window ``[start, end)`` of bar open times.

    :raises ValueError: when a bound is naive or ``end <= start``.
    """

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", ensure_utc(self.start, "window start"))
        object.__setattr__(self, "end", ensure_utc(self.end, "window end"))
        if self.end <= self.start:
            raise ValueError(f"window end {self.end.isoformat()} is not after start {self.start.isoformat()}")
