"""Recorded vendor responses, indexed by what they mean rather than by the URL that fetched them.

A recording is two files side by side in ``include/recordings/<vendor>/``:

* the response body exactly as the vendor sent it (``<name>.json``, ``.csv`` or ``.txt``), saved by
  ``make record``, a browser, ``curl`` or any other client;
* a sidecar ``<name>.meta.yaml`` naming what the body is::

      vendor: binance                 # yahoo | alpha_vantage | twelve_data | ibkr | binance | kucoin | coinbase |
                                      # coinbaseexchange | kraken | okx
      endpoint: candles               # candles | chart | markets | tickers | <AV function> ...
      symbol: BTCUSDT                 # the vendor's own spelling (AAPL, BTCUSDT, BTC-USDT, XBTUSDT)
      interval: 1m                    # canonical interval (1m 5m 15m 30m 1h 1d 1wk 1mo), when it has one
      requested_at: 2021-10-22T23:12:30Z   # optional: the vendor's clock when it answered (its Date header)
      window: [2021-10-22T23:03:00Z, 2021-10-22T23:13:00Z]   # optional: the range asked for
      status: 200                     # optional, default 200
      holds: bars                     # optional: bars (default) | events: a Yahoo chart body holding
                                      # only a symbol's split/dividend events, served for events requests
      request: GET https://...        # optional, provenance only
      provenance: free text           # optional

Without ``window`` the covered range is read from the body (first bar's open to last bar's end).
Without ``requested_at`` (a body saved by a browser or another client keeps no ``Date``) the
vendor's clock is inferred from the body: its last bar's end (last bar's open plus one interval),
so every recorded bar counts as closed; the stand-in logs that and lists it in
``/_standin/health`` (``inferred_clocks``). A body without a time series (markets, quotes) keeps
no clock: the stand-in answers it with the current time. Nothing else is needed to add a
recording: drop both files into the folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

#: canonical interval -> length in milliseconds (1mo: 31 days, an upper bound used for coverage only).
INTERVAL_MS = {
    "1m": 60_000,
    "5m": 300_000,
    "15m": 900_000,
    "30m": 1_800_000,
    "1h": 3_600_000,
    "1d": 86_400_000,
    "1wk": 7 * 86_400_000,
    "1mo": 31 * 86_400_000,
}
DAILY_OR_LONGER = frozenset({"1d", "1wk", "1mo"})
DAY_MS = 86_400_000

log = logging.getLogger(__name__)


def parse_time(value) -> datetime:
    """A sidecar time (ISO 8601 string or YAML timestamp) as an aware UTC datetime."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(timezone.utc)


def ms(t: datetime) -> int:
    """Epoch milliseconds of an aware datetime."""
    return int(t.timestamp() * 1000)


class RecordingError(ValueError):
    """A sidecar that cannot be used; the message names the file and the field."""


@dataclass
class Recording:
    """One recorded response and what it means.

    :param vendor: vendor id (folder name); ``endpoint``, ``symbol`` (vendor spelling) and
        ``interval`` (canonical) as the sidecar states them.
    :param requested_at: the vendor's clock when it answered; the stand-in answers with this
        ``Date`` and treats the bar open at this instant as the open (incomplete) bar. From the
        sidecar, else inferred from the body (its last bar's end: ``clock_inferred``); ``None``
        for a body without a time series: the stand-in then answers with the current time.
    :param start_ms, end_ms: covered range, epoch ms, ``[start, end)``; ``None`` when the
        response carries no time series (markets, quotes).
    :param status: HTTP status the vendor answered.
    :param body: the response body, bytes as recorded.
    :param holds: what the body answers: ``bars`` (any time series or list), or ``events`` (a
        chart body stating a symbol's corporate actions and no bars; never served as bars).
    """

    path: Path
    vendor: str
    endpoint: str
    symbol: str | None
    interval: str | None
    requested_at: datetime | None
    status: int
    body: bytes
    content_type: str
    start_ms: int | None = None
    end_ms: int | None = None
    clock_inferred: bool = False
    holds: str = "bars"

    @property
    def recorded_ms(self) -> int:
        """``requested_at`` in epoch ms, 0 when unknown (for ordering recordings)."""
        return ms(self.requested_at) if self.requested_at else 0

    def covers(self, start_ms: int | None, end_ms: int | None) -> int:
        """How many milliseconds of ``[start_ms, end_ms)`` this recording covers (0: none).

        Daily and longer intervals compare whole UTC days, so a request starting at an exchange's
        local midnight (yfinance does, for exchanges east or west of UTC) is covered by a
        recording of the same trading days.
        """
        if self.start_ms is None or self.end_ms is None:
            return 1
        a = self.start_ms if start_ms is None else start_ms
        b = self.end_ms if end_ms is None else end_ms
        lo, hi = self.start_ms, self.end_ms
        if self.interval in DAILY_OR_LONGER:
            a, b = a - a % DAY_MS, b + (-b % DAY_MS)
            lo, hi = lo - lo % DAY_MS, hi + (-hi % DAY_MS)
        return max(0, min(b, hi) - max(a, lo))


#: What a recording's body may hold (sidecar ``holds``).
HOLDS = ("bars", "events")

_CONTENT_TYPES = {".json": "application/json", ".csv": "application/x-download", ".txt": "text/plain", ".html": "text/html"}


def load_recording(sidecar: Path, extents: dict | None = None) -> Recording:
    """Read one sidecar and its body.

    :param extents: ``{vendor: (recording) -> (start_ms, end_ms) | None}``, each vendor's reading of
        a body's time range (first bar's open, last bar's end), used when the sidecar gives no
        ``window`` or no ``requested_at``.
    :raises RecordingError: missing field, missing body, unknown interval or ``holds``.
    """
    import yaml

    meta = yaml.safe_load(sidecar.read_text()) or {}
    stem = sidecar.name.removesuffix(".meta.yaml")
    bodies = [p for p in sidecar.parent.glob(stem + ".*") if p.suffix not in (".yaml", ".yml")]  # a body is never YAML
    if meta.get("body"):
        bodies = [sidecar.parent / meta["body"]]
    if len(bodies) != 1 or not bodies[0].is_file():
        raise RecordingError(
            f"{sidecar}: expected exactly one body file {stem}.<ext> beside it, found {[p.name for p in bodies]}"
        )
    for field in ("vendor", "endpoint"):
        if not meta.get(field):
            raise RecordingError(f"{sidecar}: the sidecar needs {field!r}")
    interval = meta.get("interval")
    if interval is not None and interval not in INTERVAL_MS:
        raise RecordingError(f"{sidecar}: interval {interval!r} is not canonical ({' '.join(INTERVAL_MS)})")
    holds = meta.get("holds", "bars")
    if holds not in HOLDS:
        raise RecordingError(f"{sidecar}: holds {holds!r} is not one of {', '.join(HOLDS)}")
    body = bodies[0]
    rec = Recording(
        path=body,
        vendor=str(meta["vendor"]),
        endpoint=str(meta["endpoint"]),
        symbol=None if meta.get("symbol") is None else str(meta["symbol"]),
        interval=interval,
        requested_at=parse_time(meta["requested_at"]) if meta.get("requested_at") else None,
        status=int(meta.get("status", 200)),
        body=body.read_bytes(),
        content_type=meta.get("content_type") or _CONTENT_TYPES.get(body.suffix, "application/octet-stream"),
        holds=holds,
    )
    extent = (extents or {}).get(rec.vendor)
    found = extent(rec) if extent is not None and rec.status == 200 else None
    if meta.get("window"):
        start, end = meta["window"]
        rec.start_ms, rec.end_ms = ms(parse_time(start)), ms(parse_time(end))
    elif found:
        rec.start_ms, rec.end_ms = found
    if rec.requested_at is None and found:
        rec.requested_at, rec.clock_inferred = datetime.fromtimestamp(found[1] / 1000, timezone.utc), True
        log.warning(
            "%s: no requested_at; the vendor's clock is taken as %s, the end of its last bar",
            sidecar,
            rec.requested_at.isoformat().replace("+00:00", "Z"),
        )
    return rec


class Library:
    """Every recording under a folder, looked up by (vendor, endpoint, symbol, interval, range).

    :param root: ``include/recordings`` (searched recursively for ``*.meta.yaml``).
    :param extents: ``{vendor: (recording) -> (start_ms, end_ms) | None}`` readers of body ranges.
    """

    def __init__(self, root: Path | str | None, extents: dict | None = None) -> None:
        self.root = Path(root) if root else None
        self.recordings: list[Recording] = []
        if self.root is not None:
            if not self.root.is_dir():
                raise FileNotFoundError(f"recordings folder {self.root} does not exist")
            self.recordings = [load_recording(sidecar, extents) for sidecar in sorted(self.root.rglob("*.meta.yaml"))]

    def of(
        self, vendor: str, endpoint: str, symbol: str | None = None, interval: str | None = None, holds: str = "bars"
    ) -> list[Recording]:
        """Recordings of exactly this vendor, endpoint, symbol and interval (``None`` matches any)
        whose body holds ``holds`` (``bars`` by default, so :meth:`best` and :meth:`nearest` never
        pick an events-only body)."""
        return [
            r
            for r in self.recordings
            if r.vendor == vendor
            and r.endpoint == endpoint
            and (symbol is None or r.symbol == symbol)
            and (interval is None or r.interval == interval)
            and r.holds == holds
        ]

    def best(
        self, vendor: str, endpoint: str, symbol: str | None, interval: str | None, start_ms: int | None, end_ms: int | None
    ) -> Recording | None:
        """The recording covering most of ``[start_ms, end_ms)``; ties go to the newest recording.

        :return: ``None`` when no recording of that series overlaps the range.
        """
        scored = [(r.covers(start_ms, end_ms), r.recorded_ms, r) for r in self.of(vendor, endpoint, symbol, interval)]
        scored = [s for s in scored if s[0] > 0]
        return max(scored, key=lambda s: (s[0], s[1]))[2] if scored else None

    def nearest(
        self, vendor: str, endpoint: str, symbol: str | None, interval: str | None, start_ms: int, end_ms: int
    ) -> Recording | None:
        """The recording of that series whose range lies nearest ``[start_ms, end_ms)`` (0 when they overlap)."""

        def distance(r: Recording) -> int:
            if r.start_ms is None or r.end_ms is None:
                return 1 << 62
            return max(0, r.start_ms - end_ms, start_ms - r.end_ms)

        candidates = [r for r in self.of(vendor, endpoint, symbol, interval) if r.status == 200]
        return min(candidates, key=distance) if candidates else None
