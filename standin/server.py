"""The stand-in HTTP server: every vendor on one loopback port, reached as a URL prefix.

A client reaches vendor URL ``https://api.binance.com/api/v3/klines?...`` at
``http://127.0.0.1:<port>/api.binance.com/api/v3/klines?...`` (``/https://api.binance.com/...``
works too). Hooks get that prefix from their Airflow connection, exactly as they would get a
proxy's or a vendor sandbox's base URL.

Control endpoints (tests and benchmarks), under ``/_standin/``:

* ``GET /_standin/health``: ``{"vendors": [...], "recordings": n, "synthetic": bool, "inferred_clocks": {...}}``
  (``inferred_clocks``: recording body -> the vendor clock inferred for it, for recordings without
  ``requested_at``; :mod:`standin.recordings`);
* ``GET /_standin/log``: every request served, ``[{"t", "vendor", "path", "query", "status", "throttled",
  "fault", "seconds"}]`` (``apikey`` removed; ``seconds``: how long the stand-in held the request), and ``DELETE /_standin/log`` clears it;
* ``POST /_standin/limits`` ``{"alpha_vantage": {"limit": 5, "window_s": 60, "daily": 25, "ban_after": null}}``:
  rate limits per vendor (``{}`` clears them), answered as each vendor answers an excess; Twelve Data
  counts credits per API key, 8 a minute and 800 a day unless ``{"twelve_data": {"limit": .., "daily": ..}}``
  says otherwise (``null``: unlimited; :meth:`standin.twelve_data.TwelveData.configure`); Interactive Brokers
  allows 5 history requests in flight and 10 requests a second unless ``{"ibkr": {"concurrent": .., "per_second": ..,
  "penalty_s": .., "hold_ms": .., "authenticated": ..}}`` says otherwise (:meth:`standin.ibkr.Ibkr.configure`);
* ``POST /_standin/faults`` ``[{"vendor": "binance", "kind": "status", "status": 503, "count": 2, "match": "klines"}]``:
  injected failures (kinds: ``status``, ``timeout``, ``truncate``, ``empty``, ``throttled``, ``banned``;
  ``share`` below 1 hits that share of matching requests at random), and ``{"latency_ms": 50}``
  via ``POST /_standin/latency``.
"""

from __future__ import annotations

import json
import random
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

from standin.alpha_vantage import AlphaVantage
from standin.alpha_vantage import extent as av_extent
from standin.core import Fault, NotServed, RateLimit, Request, Response
from standin.exchanges import EXCHANGES
from standin.ibkr import Ibkr
from standin.ibkr import extent as ibkr_extent
from standin.recordings import Library
from standin.twelve_data import TwelveData
from standin.twelve_data import extent as td_extent
from standin.yahoo import Yahoo
from standin.yahoo import extent as yahoo_extent

#: Spot pairs every exchange lists besides the recorded ones (``crypto_majors`` and ``crypto_majors_usd``).
DEFAULT_PAIRS = (
    ("BTC", "USDT"), ("ETH", "USDT"), ("SOL", "USDT"), ("XRP", "USDT"), ("BNB", "USDT"), ("ADA", "USDT"), ("DOGE", "USDT"),
    ("TRX", "USDT"), ("LINK", "USDT"), ("AVAX", "USDT"), ("DOT", "USDT"), ("LTC", "USDT"),
    ("BTC", "USD"), ("ETH", "USD"), ("SOL", "USD"), ("XRP", "USD"), ("ADA", "USD"), ("DOGE", "USD"), ("LINK", "USD"),
    ("AVAX", "USD"), ("DOT", "USD"), ("LTC", "USD"),
)  # fmt: skip


class StandIn:
    """Vendor protocols over one recordings library, optionally with a synthetic market behind it.

    :param recordings: ``include/recordings`` (or ``None`` for none).
    :param synthetic: answer requests no recording covers with deterministic synthetic bars.
    :param seed: the synthetic market's seed.
    :param pairs: spot pairs every exchange lists (besides the recorded ones).
    :param clock: the synthetic market's "now" (default: the wall clock at each request).
    :param watch: re-read the recordings folder when its sidecars change (tests that add
        recordings while the stand-in runs).
    """

    def __init__(
        self,
        recordings: Path | str | None,
        *,
        synthetic: bool = False,
        seed: int = 7,
        pairs: tuple[tuple[str, str], ...] = DEFAULT_PAIRS,
        clock: datetime | None = None,
        watch: bool = False,
    ) -> None:
        self.synthetic, self.seed, self.pairs, self.clock = synthetic, seed, pairs, clock
        exchanges = [cls(self) for cls in EXCHANGES]
        self._extents = {
            "yahoo": yahoo_extent,
            "alpha_vantage": av_extent,
            "twelve_data": td_extent,
            "ibkr": ibkr_extent,
            **{ex.vendor: ex.extent for ex in exchanges},
        }
        self._root, self._watch, self._seen = recordings, watch, None
        self._library = Library(recordings, self._extents)
        self.twelve_data = TwelveData(self)
        self.ibkr = Ibkr(self)
        self.vendors = [Yahoo(self), AlphaVantage(self), self.twelve_data, self.ibkr, *exchanges]
        self.by_host = {host: v for v in self.vendors for host in v.hosts}
        self.limits: dict[str, RateLimit] = {}
        self.faults: list[Fault] = []
        self._draw = random.Random(seed)  # which requests a fault with a share < 1 hits
        self.latency_s = 0.0
        self.log: list[dict] = []
        self.lock = threading.Lock()

    @property
    def library(self) -> Library:
        """The recordings; re-read first when ``watch`` and a sidecar was added, removed or changed."""
        if self._watch and self._root:
            seen = sorted((p.name, p.stat().st_mtime_ns) for p in Path(self._root).rglob("*.meta.yaml"))
            if seen != self._seen:
                self._library, self._seen = Library(self._root, self._extents), seen
        return self._library

    def now(self) -> datetime:
        """The synthetic market's clock."""
        return self.clock or datetime.now(timezone.utc)

    def answer(self, request: Request) -> Response | None:
        """The vendor's answer to ``request``; ``None`` means: hold the connection, then drop it (timeout fault)."""
        vendor = self.by_host.get(request.host)
        if vendor is None:
            return Response.json(404, {"error": f"the stand-in does not serve host {request.host!r}"})
        began = time.monotonic()
        if self.latency_s:
            time.sleep(self.latency_s)
        throttled = None
        limit = self.limits.get(vendor.vendor)
        if limit is not None:
            throttled = limit.admit()
        fault = None
        with self.lock:
            for f in self.faults:
                if f.applies(vendor.vendor, request) and (f.share >= 1 or self._draw.random() < f.share):
                    f.count -= 1
                    fault = f
                    break
        if fault is not None and fault.kind in ("throttled", "banned"):
            throttled = "burst" if fault.kind == "throttled" else "banned"
        if throttled:
            response = vendor.throttled(request, throttled)
        elif fault is not None and fault.kind == "timeout":
            time.sleep(fault.seconds)
            response = None
        elif fault is not None and fault.kind == "status":
            response = vendor.fault_body(fault.status)
        else:
            try:
                response = vendor.handle(request)
            except NotServed as exc:
                response = Response.json(404, {"error": str(exc)})
            if fault is not None and fault.kind == "truncate":
                body = response.payload()
                response.body = body[: len(body) // 2]
            elif fault is not None and fault.kind == "empty":
                response = Response.json(200, _empty_like(response), response.clock)
        query = {k: v for k, v in request.query.items() if k.lower() != "apikey"}
        with self.lock:
            self.log.append(
                {
                    "t": time.time(),
                    "vendor": vendor.vendor,
                    "path": request.path,
                    "query": query,
                    "status": response.status if response else None,
                    "throttled": throttled,
                    "fault": fault.kind if fault else None,
                    "seconds": time.monotonic() - began,
                }
            )
        return response

    def control(self, method: str, path: str, body: bytes) -> Response:
        """The ``/_standin/`` endpoints (module docstring)."""
        if path == "/_standin/health":
            return Response.json(
                200,
                {
                    "vendors": [v.vendor for v in self.vendors],
                    "recordings": len(self.library.recordings),
                    "synthetic": self.synthetic,
                    "inferred_clocks": {
                        f"{r.vendor}/{r.path.name}": r.requested_at.isoformat().replace("+00:00", "Z")
                        for r in self.library.recordings
                        if r.clock_inferred
                    },
                },
            )
        if path == "/_standin/log":
            with self.lock:
                if method == "DELETE":
                    self.log.clear()
                return Response.json(200, list(self.log))
        doc = json.loads(body or b"null")
        if path == "/_standin/limits" and method == "POST":
            self.limits = {
                v: RateLimit(int(c["limit"]), float(c.get("window_s", 60)), c.get("daily"), c.get("ban_after"))
                for v, c in doc.items()
                if v not in ("twelve_data", "ibkr")
            }
            self.twelve_data.configure(doc.get("twelve_data"))  # credits per API key: standin.twelve_data
            self.ibkr.configure(doc.get("ibkr"))  # concurrent history requests, per second, session: standin.ibkr
            return Response.json(200, {"limits": sorted(self.limits)})
        if path == "/_standin/faults" and method == "POST":
            with self.lock:
                self.faults = [Fault(**f) for f in doc]
            return Response.json(200, {"faults": len(self.faults)})
        if path == "/_standin/latency" and method == "POST":
            self.latency_s = float(doc.get("latency_ms", 0)) / 1000
            return Response.json(200, {"latency_ms": self.latency_s * 1000})
        return Response.json(404, {"error": f"no control endpoint {method} {path}"})


def _empty_like(response: Response):
    """The same envelope with no candles/bars (the "empty page" fault)."""
    try:
        doc = json.loads(response.payload())
    except ValueError:
        return []
    if isinstance(doc, list):
        return []
    if isinstance(doc.get("data"), list):
        return {**doc, "data": []}
    if "candles" in doc:
        return {**doc, "candles": []}
    return doc


def parse_target(raw_path: str) -> tuple[str, str, dict[str, str]]:
    """``(host, path, query)`` of a stand-in request path.

    Accepts ``/host/path?q``, ``/https://host/path?q`` and the percent-encoded whole URL some
    proxy clients send (``/https%3A%2F%2Fhost%2Fpath%3Fq``).
    """
    target = raw_path[1:]
    if target.lower().startswith(("http%3a", "https%3a")):
        target = unquote(target)
    for scheme in ("https://", "http://"):
        if target.lower().startswith(scheme):
            target = target[len(scheme) :]
    parts = urlsplit("https://" + target)
    return parts.netloc.lower(), parts.path or "/", dict(parse_qsl(parts.query, keep_blank_values=True))


class _Handler(BaseHTTPRequestHandler):
    server: StandInServer
    protocol_version = "HTTP/1.1"

    def _serve(self, method: str) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if self.path.startswith("/_standin/"):
            response = self.server.standin.control(method, urlsplit(self.path).path, body)
        else:
            host, path, query = parse_target(self.path)
            if body and host in Ibkr.hosts:  # IB's POST forms send their parameters as a JSON object
                try:
                    sent = json.loads(body)
                except ValueError:
                    sent = None
                if isinstance(sent, dict):
                    query = {**{k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in sent.items()}, **query}
            request = Request(method, host, path, query, {k.lower(): v for k, v in self.headers.items()})
            response = self.server.standin.answer(request)
        if response is None:
            self.close_connection = True
            return
        payload = response.payload()
        self.send_response_only(response.status)  # not send_response: its own Date would precede ours
        for k, v in response.all_headers().items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # noqa: N802 (http.server's names)
        self._serve("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._serve("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._serve("DELETE")

    def log_message(self, *args) -> None:
        pass


class StandInServer(ThreadingHTTPServer):
    """A :class:`StandIn` served on ``<host>:<port>`` (default loopback; port 0: any free port);
    ``url`` is the prefix. Docker Compose binds ``0.0.0.0`` so other containers reach it."""

    daemon_threads = True

    def __init__(self, standin: StandIn, port: int = 0, host: str = "127.0.0.1") -> None:
        super().__init__((host, port), _Handler)
        self.standin = standin

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``: prefix of every vendor URL, as seen from this machine."""
        return f"http://127.0.0.1:{self.server_port}"

    def start(self) -> StandInServer:
        """Serve on a daemon thread; return self."""
        threading.Thread(target=self.serve_forever, name="standin", daemon=True).start()
        return self
