"""Deterministic synthetic bars for any symbol and window: a seeded random walk within sessions.

The same (seed, symbol, interval, bar open) always gives the same bar, whatever window or page
asked for it, so paged requests, reruns and backfills see one consistent history:

* daily anchor prices follow a geometric random walk over UTC days from 2000-01-01 (daily sigma
  2 %), started at a symbol-specific price between 10 and 1,000;
* intraday bars walk from one day's anchor to the next (a Brownian bridge of the day's bars), so
  intraday and daily series of a symbol agree on each day's open;
* ``1wk`` and ``1mo`` bars aggregate the daily bars of their week (Monday) or month;
* volume is log-normal around a symbol-specific level, in units of the asset.

Sessions: ``crypto`` trades every minute of every day. Equity sessions are weekdays only, within
regular hours in the exchange's timezone (US 09:30-16:00 New York; ``.L`` 08:00-16:30 London;
``.DE``/``.F`` 09:00-17:30 Berlin; ``.PA``/``.AS`` 09:00-17:30 Paris); holidays are not modelled.
An intraday bar exists when its open lies inside the session.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

from standin.recordings import DAY_MS, INTERVAL_MS

EPOCH_DAY = datetime(2000, 1, 1, tzinfo=timezone.utc)
MAX_DAYS = 40 * 366  # 2000 .. 2040


@dataclass(frozen=True)
class Session:
    """Trading hours of a market: ``tz`` name, open and close as minutes after local midnight, and
    the extended (pre-/post-market) hours around them where the market has them."""

    tz: str
    open_min: int
    close_min: int
    weekdays_only: bool = True
    pre_min: int | None = None
    post_min: int | None = None

    @property
    def always(self) -> bool:
        """True for markets open around the clock (crypto)."""
        return not self.weekdays_only and self.open_min == 0 and self.close_min == 1440


CRYPTO = Session("UTC", 0, 1440, weekdays_only=False)
US = Session("America/New_York", 570, 960, pre_min=240, post_min=1200)  # extended hours 04:00-20:00
SUFFIX_SESSIONS = {
    ".L": Session("Europe/London", 480, 990),
    ".DE": Session("Europe/Berlin", 540, 1050),
    ".F": Session("Europe/Berlin", 540, 1050),
    ".PA": Session("Europe/Paris", 540, 1050),
    ".AS": Session("Europe/Amsterdam", 540, 1050),
    ".T": Session("Asia/Tokyo", 540, 930),
}


def equity_session(symbol: str) -> Session:
    """The session of an equity symbol from its Yahoo suffix (``BP.L``), US hours without one."""
    for suffix, session in SUFFIX_SESSIONS.items():
        if symbol.upper().endswith(suffix):
            return session
    return US


@dataclass(frozen=True)
class Bar:
    """One synthetic bar: open time (epoch ms UTC), prices, volume in units."""

    time_ms: int
    open: float
    high: float
    low: float
    close: float
    volume: float


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest(), "little")


@lru_cache(maxsize=4096)
def _anchors(seed: int, symbol: str):
    """Daily anchor prices (day index -> price at 00:00 UTC) and the symbol's volume level."""
    import numpy as np

    rng = np.random.default_rng(_seed(seed, symbol, "anchors"))
    start = 10 ** rng.uniform(1, 3)
    steps = rng.normal(0.0003, 0.02, MAX_DAYS)
    prices = start * np.exp(np.concatenate([[0.0], np.cumsum(steps)]))
    return prices, 10 ** rng.uniform(3, 7)


@lru_cache(maxsize=8192)
def _day(seed: int, symbol: str, interval: str, day: int):
    """Every bar of one UTC day on the interval's grid: arrays (open, high, low, close, volume)."""
    import numpy as np

    prices, level = _anchors(seed, symbol)
    n = DAY_MS // INTERVAL_MS[interval]
    rng = np.random.default_rng(_seed(seed, symbol, interval, day))
    a, b = math.log(prices[day]), math.log(prices[day + 1])
    walk = np.concatenate([[0.0], np.cumsum(rng.normal(0, 0.02 / math.sqrt(n), n))])
    path = a + walk - (walk[-1] - (b - a)) * np.linspace(0, 1, n + 1)  # bridge: ends at the next anchor
    px = np.exp(path)
    opens, closes = px[:-1], px[1:]
    wick = np.abs(rng.normal(0, 0.004 / math.sqrt(n) + 0.0005, (2, n)))
    highs = np.maximum(opens, closes) * (1 + wick[0])
    lows = np.minimum(opens, closes) * (1 - wick[1])
    volume = np.round(level / n * rng.lognormal(0, 0.5, n), 4)
    return opens, highs, lows, closes, volume


def _in_session(t_ms: int, session: Session, daily: bool, extended: bool = False) -> bool:
    if session.always:
        return True
    if daily:  # a daily bar is a date: its UTC date is the trading day
        return datetime.fromtimestamp(t_ms / 1000, timezone.utc).weekday() < 5 if session.weekdays_only else True
    local = datetime.fromtimestamp(t_ms / 1000, ZoneInfo(session.tz))
    if session.weekdays_only and local.weekday() >= 5:
        return False
    minute = local.hour * 60 + local.minute
    if extended and session.pre_min is not None:
        return session.pre_min <= minute < (session.post_min or session.close_min)
    return session.open_min <= minute < session.close_min


def bars(
    seed: int,
    symbol: str,
    interval: str,
    start_ms: int,
    end_ms: int,
    session: Session,
    now_ms: int | None = None,
    extended: bool = False,
) -> list[Bar]:
    """Bars of ``symbol`` opening in ``[start_ms, end_ms)``, oldest first.

    :param seed: the stand-in's seed; the same seed gives the same market.
    :param symbol: any string: each symbol has its own price level and path.
    :param interval: canonical interval.
    :param session: when the market trades (:data:`CRYPTO`, :func:`equity_session`).
    :param now_ms: no bar opening after it is returned (the bar open at ``now_ms`` is, still open).
    :param extended: intraday bars of the pre- and post-market hours too, where the session has them.
    :return: at most ``(end - start) / interval`` bars; none before 2000-01-01.
    """
    base = int(EPOCH_DAY.timestamp() * 1000)
    start_ms = max(start_ms, base)
    if now_ms is not None:
        end_ms = min(end_ms, now_ms + 1)
    if end_ms <= start_ms:
        return []
    if interval in ("1wk", "1mo"):
        return _aggregate(seed, symbol, interval, start_ms, end_ms, session, now_ms)
    daily = interval == "1d"
    step = INTERVAL_MS[interval]
    first = start_ms + (-(start_ms - base) % step)
    out: list[Bar] = []
    prices, level = _anchors(seed, symbol)
    t = first
    while t < end_ms:
        day = (t - base) // DAY_MS
        if day + 1 >= len(prices):
            break
        if not _in_session(t, session, daily, extended):
            t += step
            continue
        if daily:
            import numpy as np

            o, c = float(prices[day]), float(prices[day + 1])
            rng = np.random.default_rng(_seed(seed, symbol, "1d", day))
            w = np.abs(rng.normal(0, 0.006, 2))
            out.append(Bar(t, o, max(o, c) * (1 + w[0]), min(o, c) * (1 - w[1]), c, round(level * rng.lognormal(0, 0.4), 2)))
        else:
            opens, highs, lows, closes, volume = _day(seed, symbol, interval, day)
            i = ((t - base) % DAY_MS) // step
            out.append(Bar(t, float(opens[i]), float(highs[i]), float(lows[i]), float(closes[i]), float(volume[i])))
        t += step
    return out


def _aggregate(seed, symbol, interval, start_ms, end_ms, session, now_ms) -> list[Bar]:
    """Weekly (Monday 00:00 UTC) or monthly (1st 00:00 UTC) bars from the daily bars."""

    def period_start(t: datetime) -> datetime:
        d = t.replace(hour=0, minute=0, second=0, microsecond=0)
        return d - timedelta(days=d.weekday()) if interval == "1wk" else d.replace(day=1)

    def next_period(t: datetime) -> datetime:
        if interval == "1wk":
            return t + timedelta(days=7)
        return (t.replace(day=28) + timedelta(days=4)).replace(day=1)

    t = period_start(datetime.fromtimestamp(start_ms / 1000, timezone.utc))
    if int(t.timestamp() * 1000) < start_ms:
        t = next_period(t)
    out = []
    while int(t.timestamp() * 1000) < end_ms:
        nxt = next_period(t)
        days = bars(seed, symbol, "1d", int(t.timestamp() * 1000), int(nxt.timestamp() * 1000), session, now_ms)
        if days:
            out.append(
                Bar(
                    int(t.timestamp() * 1000),
                    days[0].open,
                    max(d.high for d in days),
                    min(d.low for d in days),
                    days[-1].close,
                    round(sum(d.volume for d in days), 4),
                )
            )
        t = nxt
    return out
