"""What every vendor protocol of the stand-in shares: requests, responses, limits and faults.

A :class:`Request` is what reached the stand-in, with the vendor's own host recovered from the
path (``/api.binance.com/api/v3/klines?...``, or ``/https://api.binance.com/...``). A vendor
protocol (:mod:`standin.yahoo`, :mod:`standin.alpha_vantage`, :mod:`standin.exchanges`) turns it
into a :class:`Response` from the recordings or the synthetic market.
"""

from __future__ import annotations

import email.utils
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any


@dataclass(frozen=True)
class Request:
    """One HTTP request as the vendor would have seen it.

    :param host: the vendor's host (``query2.finance.yahoo.com``), lower case.
    :param path: path on that host, without the query (``/v8/finance/chart/AAPL``).
    :param query: query parameters, last value wins.
    """

    method: str
    host: str
    path: str
    query: dict[str, str]
    headers: dict[str, str] = field(default_factory=dict)

    def param(self, *names: str, default: str | None = None) -> str | None:
        """The first of ``names`` present in the query."""
        for n in names:
            if n in self.query:
                return self.query[n]
        return default


@dataclass
class Response:
    """An HTTP answer; ``clock`` becomes the ``Date`` header (the vendor's time when it answered)."""

    status: int
    body: bytes | str
    content_type: str = "application/json"
    clock: datetime | None = None
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, doc: Any, clock: datetime | None = None, **headers: str) -> Response:
        """A JSON answer, compact like the vendors send it."""
        return cls(status, json.dumps(doc, separators=(",", ":")), "application/json", clock, dict(headers))

    def payload(self) -> bytes:
        """The body as bytes."""
        return self.body.encode() if isinstance(self.body, str) else self.body

    def all_headers(self) -> dict[str, str]:
        """Content-Type, Date (the clock, or now) and the extra headers."""
        clock = self.clock or datetime.now(timezone.utc)
        return {"Content-Type": self.content_type, "Date": email.utils.format_datetime(clock, usegmt=True), **self.headers}


class NotServed(Exception):
    """The stand-in does not speak this request (unknown host or path): answered 404, naming it."""


def http_date(t: datetime) -> str:
    """RFC 7231 date of an aware datetime."""
    return email.utils.format_datetime(t.astimezone(timezone.utc), usegmt=True)


class RateLimit:
    """``limit`` requests per sliding ``window_s`` seconds for one vendor, like the vendors count them.

    :param daily: a second budget that never refills (Alpha Vantage's daily quota), or ``None``.
    :param ban_after: answers of "throttled" after which the vendor bans (Binance's 418), or ``None``.
    """

    def __init__(self, limit: int, window_s: float, daily: int | None = None, ban_after: int | None = None) -> None:
        self.limit, self.window_s, self.daily, self.ban_after = limit, window_s, daily, ban_after
        self.recent: deque[float] = deque()
        self.used = 0
        self.throttled = 0
        self.lock = threading.Lock()

    def admit(self) -> str | None:
        """Count one request: ``None`` when admitted, else ``"burst"``, ``"daily"`` or ``"banned"``."""
        with self.lock:
            now = time.monotonic()
            if self.ban_after is not None and self.throttled >= self.ban_after:
                return "banned"
            if self.daily is not None and self.used >= self.daily:
                return "daily"
            while self.recent and self.recent[0] <= now - self.window_s:
                self.recent.popleft()
            if len(self.recent) >= self.limit:
                self.throttled += 1
                return "burst"
            self.recent.append(now)
            self.used += 1
            return None


@dataclass
class Fault:
    """An injected failure for requests of one vendor (``"*"``: any), applied ``count`` times.

    :param kind: ``status`` (answer ``status`` with the vendor's error body), ``timeout`` (hold the
        request ``seconds`` then close without answering), ``truncate`` (cut the body in half),
        ``empty`` (an empty page / series where the protocol has one), ``throttled`` (the vendor's
        own rate-limit answer, as if its limit were hit: Yahoo's 429, Binance's 429 -1003),
        ``banned`` (the vendor's ban answer where it has one: Binance's 418; others answer 429).
    :param match: substring the request path must contain (``klines``), or ``None`` for all.
    :param share: probability that a matching request gets the fault (``0.05``: about one in
        twenty, drawn from the stand-in's seeded generator); ``count`` still caps how many do.
    """

    vendor: str
    kind: str
    count: int = 1
    status: int = 503
    seconds: float = 35.0
    match: str | None = None
    share: float = 1.0

    def applies(self, vendor: str, request: Request) -> bool:
        """True when this fault still has uses and targets the request."""
        return self.count > 0 and self.vendor in ("*", vendor) and (self.match is None or self.match in request.path)
