"""Interactive Brokers' Client Portal Web API (CPAPI v1): contract search, history bars, session.

Hosts: ``localhost:5000`` (the Client Portal Gateway a user runs and logs into with a browser)
and ``api.ibkr.com`` (the OAuth 1.0a form); every path is under ``/v1/api``. Behaviour, from IBKR's
Web API reference as generated clients carry it, Voy Zan's ``ibind`` (Apache-2.0) and measurements
published by its users (``/work/notes/research-ib.md``; recordings: ``include/recordings/PROVENANCE.md``):

* ``GET /iserver/secdef/search?symbol=AAPL`` (or ``POST`` ``{"symbol": "AAPL"}``: the server merges a
  JSON object body into the query for this vendor): a JSON list of
  contracts, ``[{"conid": "265598", "companyHeader": "APPLE INC - NASDAQ", "symbol": "AAPL",
  "description": "NASDAQ", "sections": [{"secType": "STK"}, ...]}, ...]``; an unknown symbol: ``[]``
  (unverified). The recording of AAPL is served; in synthetic mode any other symbol gets one NASDAQ
  listing whose conid encodes the symbol (:func:`conid_of`), so history of that conid is the
  synthetic market's for the symbol.
* ``GET /iserver/marketdata/history?conid=&period=&bar=&outsideRth=&startTime=&exchange=``:
  ``startTime`` (UTC, ``YYYYMMDD-HH:MM:SS``; default now) is the END of the window, measured against
  the live gateway; ``period`` (``{1-30}min``, ``{1-8}h``, ``{1-1000}d``, ``{1-792}w``, ``{1-182}m``,
  ``{1-15}y``) reaches back from it: intraday bars opening in ``[startTime - period, startTime)``;
  daily bars of the sessions dated before ``startTime``'s New York date, ``Nd`` counting sessions
  (:func:`bounds`); the newest 1000 at most. Bars: ``1min 5min 15min
  30min 1h 1d 1w 1m`` (IB has more: 2min, 3min, 10min, 2h, 3h, 4h, 8h: not served). The answer:
  ``{"symbol", "text", "priceFactor", "startTime" (first bar's open), "timePeriod", "barLength",
  "mdAvailability", "outsideRth", "volumeFactor", "data": [{"o","c","h","l","v","t"}], "points"
  (bars - 1, as recorded), ...}``; ``t`` is the bar's open (daily: the session's 09:30 New York), ``v``
  in lots of 100 shares. A window without bars: ``{"error": "No data."}``.
* ``POST /tickle``: ``{"session": ..., "ssoExpires": ..., "iserver": {"authStatus": {"authenticated": true,
  "connected": true, "competing": false, ...}}}``; ``GET``/``POST /iserver/auth/status``: the
  ``authStatus`` object; ``POST /iserver/reauthenticate``: ``{"message": "triggered"}``, and
  ``POST /iserver/auth/ssodh/init`` (OAuth's way): both open the brokerage session again.
* Not authenticated (``POST /_standin/limits {"ibkr": {"authenticated": false}}``: the brokerage
  session ended, the login holds): every other ``/iserver/...`` path answers 401 (``/tickle`` still
  answers, ``authenticated: false``) until a reauthenticate; not logged in at all
  (``{"logged_in": false}``: nobody logged the gateway in): every path answers 401, ``/tickle`` too.
* Pacing (IBKR's Web API documentation, "Pacing Limitations"): at most ``concurrent`` (5) history
  requests in flight, ``per_second`` (10) requests a second through the CP Gateway and 50 through
  ``api.ibkr.com``; an excess answers 429 ``{"error": "Too many requests"}`` (the status is the
  documentation's, the body's text is ibind's and generated clients' "Too many requests": unverified
  as a body); with ``penalty_s`` set (IB: "may be put in a penalty box for 10 minutes"; default 0,
  off, so tests do not wait), every request for that long after a violation answers 429 too.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from standin import synthetic
from standin.core import NotServed, Request, Response
from standin.recordings import DAY_MS, INTERVAL_MS, Recording

VENDOR = "ibkr"
HOSTS = ("localhost:5000", "127.0.0.1:5000", "api.ibkr.com")
PREFIX = "/v1/api"
IB_BARS = {"1min": "1m", "5min": "5m", "15min": "15m", "30min": "30m", "1h": "1h", "1d": "1d", "1w": "1wk", "1m": "1mo"}
OTHER_BARS = ("2min", "3min", "10min", "2h", "3h", "4h", "8h")
MAX_POINTS = 1000
PERIOD = re.compile(r"^(\d+)(min|h|d|w|m|y)$")
PERIOD_MAX = {"min": 30, "h": 8, "d": 1000, "w": 792, "m": 182, "y": 15}
NY = ZoneInfo("America/New_York")
#: conids IB gives well-known listings (ibind's recorded answers); others: :func:`conid_of`.
KNOWN = {265598: "AAPL", 756733: "SPY", 272093: "MSFT", 208813720: "GOOG", 107113386: "META", 4815: "BBVA", 11905: "SCHW"}
_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789."
_ENCODED = 10**13  # encoded conids lie above IB's (9 digits)
DEFAULT_CONCURRENT = 5
DEFAULT_PER_SECOND = 10  # the CP Gateway's; api.ibkr.com allows 50 a second per username
OAUTH_PER_SECOND = 50

MSG_NO_DATA = "No data."
MSG_TOO_MANY = "Too many requests"


def conid_of(symbol: str) -> int:
    """The conid the stand-in gives ``symbol``: IB's for :data:`KNOWN` listings, else one encoding it."""
    symbol = symbol.upper()
    for conid, known in KNOWN.items():
        if known == symbol:
            return conid
    n = 0
    for ch in symbol[:8]:
        n = n * len(_ALPHABET) + _ALPHABET.index(ch) + 1 if ch in _ALPHABET else n * len(_ALPHABET)
    return _ENCODED + n


def symbol_of(conid: int) -> str | None:
    """The symbol behind a conid :func:`conid_of` gave, ``None`` for a conid it never gives."""
    if conid in KNOWN:
        return KNOWN[conid]
    if conid <= _ENCODED:
        return None
    n, out = conid - _ENCODED, []
    while n:
        n, r = divmod(n - 1, len(_ALPHABET))
        out.append(_ALPHABET[r])
    return "".join(reversed(out)) or None


def _stamp(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y%m%d-%H:%M:%S")


def _parse_start(value: str) -> datetime:
    return datetime.strptime(value.strip(), "%Y%m%d-%H:%M:%S").replace(tzinfo=timezone.utc)


def _months_back(t: datetime, months: int) -> datetime:
    y, m = divmod(t.year * 12 + t.month - 1 - months, 12)
    d = min(t.day, 28)
    return t.replace(year=y, month=m + 1, day=d)


def window(period: str, end: datetime) -> datetime:
    """The start of ``period`` reaching back from ``end`` (calendar spans)."""
    m = PERIOD.match(period)
    assert m is not None
    n, unit = int(m.group(1)), m.group(2)
    if unit == "min":
        return end - timedelta(minutes=n)
    if unit == "h":
        return end - timedelta(hours=n)
    if unit == "d":
        return end - timedelta(days=n)
    if unit == "w":
        return end - timedelta(weeks=n)
    if unit == "m":
        return _months_back(end, n)
    return _months_back(end, 12 * n)


def _key(t_ms: int, interval: str) -> int:
    """What a bar is windowed by: its open, or for days and longer 00:00 UTC of its session date."""
    return _day_ms(t_ms) if interval in ("1d", "1wk", "1mo") else t_ms


def _weekdays_back(last: date, n: int) -> date:
    """The first of the ``n`` weekdays ending with ``last`` (``last`` counted when a weekday)."""
    d, seen = last, 0
    while True:
        if d.weekday() < 5:
            seen += 1
            if seen >= n:
                return d
        d -= timedelta(days=1)


def bounds(interval: str, period: str, start_time: datetime | None, now: datetime) -> tuple[int, int]:
    """``[lo, hi)`` of the bars a history request answers, in :func:`_key` terms (epoch ms).

    Intraday: bars opening in ``[startTime - period, startTime)``; without ``startTime``, up to now
    (the bar still open included). Days and longer, as measured against the live gateway (2026-08-05,
    SPY): sessions dated before the New York date of ``startTime`` (``20231109-00:00:00`` is Nov 8 in
    New York, and the answer ended with Nov 7; midnight UTC of Aug 5 ended with Aug 3; no ``startTime``
    reached today); a period in days counts sessions, the ``startTime`` date's own included (100d
    anchored there: 99 bars, Jun 20 .. Nov 7; holidays are not known here, weekdays are counted).
    """
    if interval not in ("1d", "1wk", "1mo"):
        end = start_time or now
        hi = int(end.timestamp() * 1000) + (0 if start_time else 1)
        return int(window(period, end).timestamp() * 1000), hi
    last = (start_time or now).astimezone(NY).date()
    cutoff = last if start_time else last + timedelta(days=1)
    m = PERIOD.match(period)
    assert m is not None
    if m.group(2) == "d":
        first = _weekdays_back(last, int(m.group(1)))
    else:
        first = window(period, datetime(last.year, last.month, last.day, tzinfo=timezone.utc)).date()
    day = lambda d: int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)  # noqa: E731
    return day(first), day(cutoff)


def _two_complement(x: int) -> bytes:
    """``x`` as Java's ``BigInteger.toByteArray`` writes it (big-endian, a leading zero byte when
    the top bit is set), which IB's live session token is keyed with."""
    return x.to_bytes(x.bit_length() // 8 + 1, "big")


def session_open_ms(day: date) -> int:
    """Epoch ms of 09:30 New York on ``day``: the ``t`` of a US daily bar."""
    return int(datetime(day.year, day.month, day.day, 9, 30, tzinfo=NY).timestamp() * 1000)


def extent(rec: Recording) -> tuple[int, int] | None:
    """First bar's open to last bar's end, epoch ms, of a recorded history body; daily and longer
    bars from 00:00 UTC of their session date (the other vendors' and the synthetic market's dates)."""
    try:
        doc = json.loads(rec.body)
        stamps = sorted(int(r["t"]) for r in doc["data"])
    except (ValueError, KeyError, TypeError):
        return None
    if not stamps:
        return None
    interval = rec.interval or "1d"
    if interval in ("1d", "1wk", "1mo"):
        first, last = (_day_ms(s) for s in (stamps[0], stamps[-1]))
        return first, last + INTERVAL_MS.get(interval, DAY_MS)
    return stamps[0], stamps[-1] + INTERVAL_MS[interval]


def _day_ms(t_ms: int) -> int:
    """00:00 UTC of the New York session date of a bar opening at ``t_ms`` (``t`` at 00:00 UTC: its own date)."""
    t = datetime.fromtimestamp(t_ms / 1000, timezone.utc)
    d = t.date() if not (t.hour or t.minute or t.second) else t.astimezone(NY).date()
    return int(datetime(d.year, d.month, d.day, tzinfo=timezone.utc).timestamp() * 1000)


class Pacing:
    """History requests in flight (at most ``concurrent``) and requests per second per host family
    (``per_second``: ``{"gateway": 10, "oauth": 50}``), with an optional penalty box of ``penalty_s``
    seconds after a violation; a limit ``None``: none."""

    def __init__(self, concurrent: int | None, per_second: dict[str, int | None], penalty_s: float = 0.0):
        self.concurrent, self.per_second, self.penalty_s = concurrent, per_second, penalty_s
        self.lock = threading.Lock()
        self.in_flight = 0
        self.recent: dict[str, deque[float]] = {family: deque() for family in per_second}
        self.boxed_until = 0.0

    def admit(self, history: bool, family: str = "gateway") -> bool:
        """Count one request; False: answer 429. A history request admitted must be :meth:`done`."""
        with self.lock:
            now = time.monotonic()
            if now < self.boxed_until:
                return False
            recent, limit = self.recent[family], self.per_second[family]
            while recent and recent[0] <= now - 1.0:
                recent.popleft()
            over = limit is not None and len(recent) >= limit
            over = over or (history and self.concurrent is not None and self.in_flight >= self.concurrent)
            if over:
                if self.penalty_s:
                    self.boxed_until = now + self.penalty_s
                return False
            recent.append(now)
            if history:
                self.in_flight += 1
            return True

    def done(self) -> None:
        with self.lock:
            self.in_flight = max(0, self.in_flight - 1)


class Ibkr:
    """IB's Web API over the recordings and, in synthetic mode, any US stock symbol."""

    vendor = VENDOR
    hosts = HOSTS

    def __init__(self, standin) -> None:
        self.standin = standin
        self.configure(None)

    def configure(self, conf: dict | None) -> None:
        """Apply ``POST /_standin/limits`` ``{"ibkr": {...}}``; ``None`` (absent) restores the defaults.

        Keys: ``concurrent`` (history requests in flight, default 5; ``null``: unlimited),
        ``per_second`` (requests a second over all paths through the gateway, ``localhost:5000``, default 10;
        ``null``: unlimited), ``per_second_oauth`` (the same through ``api.ibkr.com``, default 50),
        ``penalty_s`` (seconds every request answers 429 after a violation, default 0),
        ``hold_ms`` (how long a history request is held before its answer, default 0: lets tests
        have requests in flight together), ``authenticated`` (the brokerage session, default true;
        false: 401 on ``/iserver/...``, ``/tickle`` says ``authenticated: false``), ``logged_in`` (the
        gateway's own session, default true; false: 401 on every path, ``/tickle`` too, as ibind
        expects), ``no_data_status`` (HTTP status of ``{"error": "No data."}``, default 500:
        unverified), ``oauth`` (an OAuth 1.0a consumer ``api.ibkr.com`` accepts:
        ``{"consumer_key", "access_token", "prepend" (hex: the decrypted access token secret),
        "dh_prime" (hex)}``; every other request to that host must then be signed with the live session
        token it agreed; default none: a live session token request answers 401, the other paths
        answer unsigned requests).
        """
        conf = conf or {}
        self.oauth = conf.get("oauth")
        self.live_session_token: str | None = None
        self.pacing = Pacing(
            conf.get("concurrent", DEFAULT_CONCURRENT),
            {"gateway": conf.get("per_second", DEFAULT_PER_SECOND), "oauth": conf.get("per_second_oauth", OAUTH_PER_SECOND)},
            float(conf.get("penalty_s", 0)),
        )
        self.hold_s = float(conf.get("hold_ms", 0)) / 1000
        self.authenticated = bool(conf.get("authenticated", True))
        self.logged_in = bool(conf.get("logged_in", True))
        self.no_data_status = int(conf.get("no_data_status", 500))

    def throttled(self, request: Request, why: str) -> Response:
        return Response.json(429, {"error": MSG_TOO_MANY})

    def fault_body(self, status: int) -> Response:
        if status == 401:
            return Response.json(401, {"error": "not authenticated", "statusCode": 401})
        if status == 429:
            return Response.json(429, {"error": MSG_TOO_MANY})
        return Response.json(status, {"error": "Service Unavailable" if status >= 500 else "Bad Request", "statusCode": status})

    def handle(self, request: Request) -> Response:
        path = request.path.rstrip("/")
        if not path.startswith(PREFIX):
            raise NotServed(f"IB path {request.path} is not under {PREFIX}")
        path = path[len(PREFIX) :]
        history = path == "/iserver/marketdata/history"
        if not self.pacing.admit(history, "oauth" if request.host == "api.ibkr.com" else "gateway"):
            return Response.json(429, {"error": MSG_TOO_MANY})
        try:
            if history and self.hold_s:
                time.sleep(self.hold_s)
            return self._route(request, path)
        finally:
            if history:
                self.pacing.done()

    def _route(self, request: Request, path: str) -> Response:
        if request.host == "api.ibkr.com":
            if path == "/oauth/live_session_token":
                return self._live_session_token(request)
            if self.oauth and not self._signed(request):  # without a consumer configured: answered unsigned
                return Response.json(401, {"error": "invalid consumer or signature", "statusCode": 401})
        if not self.logged_in:  # the gateway's own session (browser login / OAuth token) is gone: 401 everywhere
            return Response.json(401, {"error": "not authenticated", "statusCode": 401})
        if path == "/tickle":
            return Response.json(200, self._tickle())
        if path == "/iserver/auth/status":
            return Response.json(200, self._auth_status())
        if path == "/iserver/reauthenticate":  # the login holds: the brokerage session opens again
            self.authenticated = True
            return Response.json(200, {"message": "triggered"})
        if path == "/iserver/auth/ssodh/init":
            self.authenticated = True
            return Response.json(200, {"authenticated": True, "competing": False, "connected": True, "message": "", "fail": ""})
        if path.startswith("/iserver") and not self.authenticated:
            return Response.json(401, {"error": "not authenticated", "statusCode": 401})
        if path == "/iserver/secdef/search":
            return self._search((request.query.get("symbol") or "").strip().upper())
        if path == "/iserver/marketdata/history":
            return self._history(request.query)
        raise NotServed(f"IB path {PREFIX}{path} is not served by the stand-in")

    # -- OAuth 1.0a (api.ibkr.com) -----------------------------------------------------------
    def _oauth_header(self, request: Request) -> dict[str, str]:
        """The ``Authorization: OAuth realm="...", key="value", ...`` header's pairs."""
        header = request.headers.get("authorization", "")
        if not header.startswith("OAuth "):
            return {}
        return {k: v for k, v in re.findall(r'(\w+)="([^"]*)"', header)}

    def _live_session_token(self, request: Request) -> Response:
        """``POST /oauth/live_session_token``: IB's side of the Diffie-Hellman exchange (IBKR's
        Web API OAuth 1.0a guide, as ibind computes the client's side): ``B = 2^b mod p``, the
        shared ``K = A^b mod p`` (``A``: the ``diffie_hellman_challenge``), the live session token
        ``HMAC-SHA1(K as a big-endian two's-complement byte array, prepend)``, and its signature
        ``HMAC-SHA1(token, consumer key)`` in hex. The consumer key and access token are checked;
        the RSA-SHA256 signature of the request is not (the stand-in holds no public key)."""
        import base64
        import hashlib
        import hmac
        import secrets

        pairs, consumer = self._oauth_header(request), self.oauth
        if (
            not consumer
            or pairs.get("oauth_consumer_key") != consumer["consumer_key"]
            or pairs.get("oauth_token") != consumer["access_token"]
        ):
            return Response.json(401, {"error": "invalid consumer", "statusCode": 401})
        if pairs.get("oauth_signature_method") != "RSA-SHA256" or not pairs.get("diffie_hellman_challenge"):
            return Response.json(400, {"error": "live session token request without RSA-SHA256 signature or DH challenge"})
        prime = int(consumer["dh_prime"], 16)
        b = secrets.randbits(256)
        shared = pow(int(pairs["diffie_hellman_challenge"], 16), b, prime)
        token = hmac.new(_two_complement(shared), bytes.fromhex(consumer["prepend"]), hashlib.sha1).digest()
        self.live_session_token = base64.b64encode(token).decode()
        signature = hmac.new(token, consumer["consumer_key"].encode(), hashlib.sha1).hexdigest()
        expires = int((self.standin.now() + timedelta(hours=24)).timestamp() * 1000)
        doc = {
            "diffie_hellman_response": format(pow(2, b, prime), "x"),
            "live_session_token_signature": signature,
            "live_session_token_expiration": expires,
        }
        return Response.json(200, doc)

    def _signed(self, request: Request) -> bool:
        """A request to ``api.ibkr.com`` after the token: signed HMAC-SHA256 by the configured
        consumer (its key and token checked; the signature itself is not recomputed)."""
        pairs = self._oauth_header(request)
        return bool(
            self.oauth
            and self.live_session_token
            and pairs.get("oauth_consumer_key") == self.oauth["consumer_key"]
            and pairs.get("oauth_token") == self.oauth["access_token"]
            and pairs.get("oauth_signature_method") == "HMAC-SHA256"
            and pairs.get("oauth_signature")
        )

    # -- session ------------------------------------------------------------------------------
    def _auth_status(self) -> dict:
        """The ``authStatus`` of ibind's recorded answer (``ibkr_auth_status_ibind.json``), with this session's state."""
        return {
            "MAC": "F4:03:43:CD:BD:C0",
            "authenticated": self.authenticated,
            "competing": False,
            "connected": True,
            "fail": "",
            "hardware_info": "1c4558e8|F4:03:43:CD:BD:C0",
            "message": "",
            "serverInfo": {"serverName": "JifC11113", "serverVersion": "Build 10.25.0m, Nov 17, 2023 11:29:27 AM"},
        }

    def _tickle(self) -> dict:
        """ibind's recorded ``/tickle`` answer (``ibkr_tickle_ibind.json``: ``hmds`` says ``no bridge`` even
        when authenticated), with this session's state."""
        status = {k: v for k, v in self._auth_status().items() if k != "fail"}
        return {
            "collission": False,
            "hmds": {"error": "no bridge"},
            "iserver": {"authStatus": status},
            "session": "ce109cbeb462a76dc3f6f4182c830cc1",
            "ssoExpires": 585695,
            "userId": 99996016,
        }

    # -- /iserver/secdef/search ----------------------------------------------------------------
    def _search(self, symbol: str) -> Response:
        recs = self.standin.library.of(VENDOR, "secdef_search", symbol)
        if recs:
            rec = max(recs, key=lambda r: r.recorded_ms)
            return Response(rec.status, rec.body, rec.content_type)
        if not symbol or not self.standin.synthetic or any(ch not in _ALPHABET for ch in symbol) or len(symbol) > 8:
            return Response.json(200, [], **{"X-Standin-Missing": f"no recording of secdef search {symbol}"})
        conid = conid_of(symbol)
        return Response.json(
            200,
            [
                {
                    "conid": str(conid),
                    "companyHeader": f"{symbol} - NASDAQ",
                    "companyName": symbol,
                    "symbol": symbol,
                    "description": "NASDAQ",
                    "restricted": None,
                    "fop": None,
                    "opt": None,
                    "war": None,
                    "sections": [{"secType": "STK"}],
                }
            ],
        )

    # -- /iserver/marketdata/history -----------------------------------------------------------
    def _history(self, q: dict[str, str]) -> Response:
        try:
            conid = int(q.get("conid", ""))
        except ValueError:
            return Response.json(400, {"error": "conid is required and must be a number"})
        bar = q.get("bar", "")
        if bar in OTHER_BARS:
            raise NotServed(f"IB bar {bar} is not served by the stand-in")
        interval = IB_BARS.get(bar)
        if interval is None:
            return Response.json(400, {"error": f"Invalid bar: {bar!r}"})
        period = q.get("period") or "1w"
        m = PERIOD.match(period)
        if m is None or not 1 <= int(m.group(1)) <= PERIOD_MAX[m.group(2)]:
            return Response.json(400, {"error": f"Invalid period: {period!r}"})
        try:
            given = _parse_start(q["startTime"]) if q.get("startTime") else None
        except ValueError:
            return Response.json(400, {"error": f"Invalid startTime: {q['startTime']!r} (YYYYMMDD-HH:MM:SS)"})
        outside = (q.get("outsideRth") or "false").lower() == "true"
        lo, hi = bounds(interval, period, given, self.standin.now())
        symbol = symbol_of(conid)
        recs = self.standin.library.of(VENDOR, "history", str(conid), interval)
        rec = self.standin.library.best(VENDOR, "history", str(conid), interval, lo, hi) if recs else None
        if rec is not None and rec.status == 200:
            return self._cut(rec, lo, hi, period)
        if symbol is None or (conid not in KNOWN and not self.standin.synthetic):
            return Response.json(400, {"error": "No security definition has been found for the request"})
        if not self.standin.synthetic:
            return Response.json(
                self.no_data_status, {"error": MSG_NO_DATA}, **{"X-Standin-Missing": f"no recording of {conid} {bar}"}
            )
        return self._synthetic(symbol, interval, lo, hi, period, outside)

    def _answer(self, rows: list[dict], head: dict, period: str, clock: datetime | None) -> Response:
        rows = sorted(rows, key=lambda r: r["t"])[-MAX_POINTS:]
        if not rows:
            return Response.json(self.no_data_status, {"error": MSG_NO_DATA})
        doc = dict(head)
        doc.update(
            startTime=_stamp(rows[0]["t"]),
            timePeriod=period,
            high=f"{round(max(r['h'] for r in rows) * 100)}/{round(sum(r['v'] for r in rows), 2)}/0",
            low=f"{round(min(r['l'] for r in rows) * 100)}/{round(sum(r['v'] for r in rows), 2)}/0",
            data=rows,
            points=len(rows) - 1,
        )
        return Response(200, json.dumps(doc, separators=(",", ":")), "application/json", clock)

    def _cut(self, rec: Recording, lo: int, hi: int, period: str) -> Response:
        doc = json.loads(rec.body)
        rows = [r for r in doc.get("data", []) if lo <= _key(r["t"], rec.interval or "1d") < hi]
        head = {k: v for k, v in doc.items() if k not in ("data",)}
        return self._answer(rows, head, period, rec.requested_at)

    def _synthetic(self, symbol: str, interval: str, lo: int, hi: int, period: str, outside: bool) -> Response:
        clock = self.standin.now()
        now_ms = int(clock.timestamp() * 1000)
        session = synthetic.equity_session(symbol)
        bars = synthetic.bars(self.standin.seed, symbol, interval, lo, min(hi, now_ms + 1), session, now_ms, extended=outside)
        rows = []
        for b in bars:
            if interval == "1d":
                t = session_open_ms(datetime.fromtimestamp(b.time_ms / 1000, timezone.utc).date())
            else:
                t = b.time_ms  # weeks and months: 00:00 UTC of their first day, as recorded for months
            if not lo <= _key(t, interval) < hi:
                continue
            rows.append(
                {
                    "o": round(b.open, 4),
                    "c": round(b.close, 4),
                    "h": round(b.high, 4),
                    "l": round(b.low, 4),
                    "v": round(b.volume / 100, 2),
                    "t": t,
                }
            )
        head = {
            "serverId": "standin",
            "symbol": symbol,
            "text": symbol,
            "priceFactor": 100,
            "barLength": INTERVAL_MS[interval] // 1000 if interval != "1mo" else 2678400,
            "mdAvailability": "S",
            "mktDataDelay": 0,
            "outsideRth": outside,
            "tradingDayDuration": 390,
            "volumeFactor": 1,
            "priceDisplayRule": 1,
            "priceDisplayValue": "2",
            "negativeCapable": False,
            "messageVersion": 2,
            "travelTime": 1,
        }
        return self._answer(rows, head, period, clock)
