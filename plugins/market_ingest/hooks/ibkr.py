"""Interactive Brokers' Client Portal Web API through ``ibind``: bars of US stock listings.

Connection ``market_ibkr`` (type ``ibkr``), in one of two modes:

* **Gateway** (``oauth`` off): Host is the Client Portal Gateway's base URL
  (``https://localhost:5000/v1/api``), a process the user runs beside the workers and logs into
  in a browser (or through a tool such as IBeam that logs it in again each day); extra ``cacert``:
  path of the CA certificate its TLS certificate is checked against (empty: not checked, the
  gateway ships a self-signed one). The gateway holds the session: the connection holds no secret.
* **OAuth 1.0a** (``oauth`` on): every request goes to ``https://api.ibkr.com/v1/api`` signed by
  ``ibind`` with the consumer's keys: extra ``consumer_key``, ``access_token``, ``encryption_key``
  and ``signature_key`` (PEM text), ``dh_prime``, ``realm``; the password is the access token
  secret. No gateway runs anywhere. The private keys and the secret are masked in task logs.

Every request goes through ``ibind``'s ``IbkrClient`` on a session that keeps IB's clock
(``Date``) and spaces it by the task's share of IB's rate: the connection's ``requests_per_second``
(IBKR's limit for the session: 10 through a gateway, 50 with OAuth) divided by the pool's slots,
since every task of the source shares one session. The pool ``ibkr`` (4 slots) keeps the history
requests in flight below IBKR's five. A task first tickles the session and, when it is not authenticated, asks it to
reauthenticate once; it tickles again whenever a minute has passed. Answers are classified before
parsing (:func:`market_ingest.vendors.ibkr.bodies.classify`).

IB sends trade prices adjusted for splits as of the request; the split history comes from the
source named by ``splits_from`` (:meth:`IbkrHook.corporate_actions`), and the extract step stores
the bars as traded.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from market_ingest.calendars import market_of
from market_ingest.errors import (
    ConfigurationError,
    MarketDataError,
    NoDataError,
    RateLimitedError,
    UnexpectedBodyError,
    UnknownSymbolError,
    VendorUnavailableError,
)
from market_ingest.extract import SharedExtract
from market_ingest.hooks import as_flag, connection_extra, safe_to_send_credentials
from market_ingest.intervals import Window
from market_ingest.vendors import ibkr as ib
from market_ingest.vendors.ibkr import bodies

if TYPE_CHECKING:
    import pyarrow as pa

    from market_ingest import outcomes
    from market_ingest.actions import ActionsAnswer
    from market_ingest.config import SourceConfig
    from market_ingest.extract import Answer

log = logging.getLogger(__name__)

#: Waits after a 429 before the request is given up as rate limited (seconds, one per retry):
#: IB's pacing is per second, so a few short waits clear a burst; a penalty box (10 minutes) is
#: left to the task's retry.
PACING_WAITS = (1.0, 2.0, 4.0, 8.0)
#: Seconds a session that was not authenticated gets to come back after ``/iserver/reauthenticate``
#: (OAuth: ``ssodh/init``), its status asked every :data:`REAUTH_POLL` seconds (IB paces the
#: session endpoints at about one request a second per session).
REAUTH_WAIT = 10.0
REAUTH_POLL = 2.0
#: The US listings' exchange timezone (session dates of daily bars) and currency.
US_TZ = "America/New_York"


class IbkrHook(SharedExtract, BaseHook):
    """Fetch bars from Interactive Brokers' Client Portal Web API.

    :param ibkr_conn_id: connection id (see the module's docstring for its two modes).
    :param source: the configured source name written into every row and message.
    :param splits: ``symbol -> ActionsAnswer``: the split history of an IB symbol from another
        source (:meth:`for_source` wires the ``splits_from`` source's hook); ``None``: none known,
        and :meth:`corporate_actions` raises.
    """

    conn_name_attr = "ibkr_conn_id"
    default_conn_name = "market_ibkr"
    conn_type = "ibkr"
    hook_name = "Interactive Brokers (Client Portal Web API)"

    def __init__(
        self,
        ibkr_conn_id: str = default_conn_name,
        source: str = ib.SOURCE,
        splits: Callable[[str], ActionsAnswer] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.ibkr_conn_id = ibkr_conn_id
        self.source = source
        self.splits = splits
        self.outside_rth = False
        #: tasks sharing IB's session rate (the source's pool slots): each takes its share
        self.share = 1
        self._conids: dict[str, int] = {}
        self._tickled = 0.0  # time.monotonic() of the latest tickle
        self._lock = threading.Lock()
        #: the market (calendar) of a symbol: the source's configured one when built for a source
        self.market_of: Callable[[str], str] = market_of

    @classmethod
    def for_source(cls, name: str, src: SourceConfig, *, timescale_conn_id: str) -> IbkrHook:
        """The hook serving source ``name`` configured as ``src`` (``outsideRth`` when one of its
        intervals keeps extended hours). Its :attr:`splits` are wired by
        :func:`market_ingest.sources.bar_hook` from the ``splits_from`` source."""
        hook = cls(ibkr_conn_id=src.connection_id(name), source=name)
        hook.market_of = src.market_of
        hook.outside_rth = any(ic.extended_hours for ic in src.intervals.values())
        hook.share = src.pool_slots
        return hook

    # -- connection -------------------------------------------------------------------------
    @cached_property
    def _settings(self) -> dict[str, Any]:
        """The connection, checked: ``oauth``, ``url``, ``cacert``, ``per_second`` and, with OAuth, its fields.

        :raises ConfigurationError: naming the connection and the field (never its value).
        """
        from airflow.sdk.log import mask_secret

        conn = self.get_connection(self.ibkr_conn_id)
        extra = connection_extra(conn)
        oauth = as_flag(extra.get("oauth"))
        where = f"connection {self.ibkr_conn_id}"
        settings: dict[str, Any] = {"oauth": oauth}
        if oauth:
            fields = {
                "consumer_key": _text(extra.get("consumer_key")),
                "access_token": _text(extra.get("access_token")),
                "access_token_secret": _text(conn.password),
                "encryption_key": _pem(extra.get("encryption_key")),
                "signature_key": _pem(extra.get("signature_key")),
                "dh_prime": _text(extra.get("dh_prime")),
            }
            for secret in ("access_token_secret", "encryption_key", "signature_key", "access_token"):
                value = fields[secret]
                if value:
                    mask_secret(value)
                    for line in value.splitlines():  # a key's lines, should one be logged alone
                        if len(line) >= 16 and not line.startswith("-----"):
                            mask_secret(line)
            missing = [k for k, v in fields.items() if not v]
            if missing:
                raise ConfigurationError(
                    self.source, f"{where}: OAuth needs {', '.join(missing)} (password: the access token secret)"
                )
            settings["oauth_fields"] = {**fields, "realm": _text(extra.get("realm")) or "limited_poa"}
            settings["url"] = _base_url(conn) or ib.OAUTH_URL
            default_rate = ib.OAUTH_REQUESTS_PER_SECOND
        else:
            settings["url"] = _base_url(conn) or ib.DEFAULT_GATEWAY_URL
            default_rate = ib.GATEWAY_REQUESTS_PER_SECOND
        url = settings["url"]
        if not safe_to_send_credentials(url):
            raise ConfigurationError(
                self.source, f"{where}: host {url!r} must be an https:// URL (plain http only to 127.0.0.1 or localhost)"
            )
        settings["cacert"] = str(extra["cacert"]) if extra.get("cacert") else False
        try:
            rate = float(extra.get("requests_per_second") or default_rate)
        except (TypeError, ValueError):
            raise ConfigurationError(self.source, f"{where}: requests_per_second must be a number") from None
        if rate <= 0:
            raise ConfigurationError(self.source, f"{where}: requests_per_second must be positive")
        settings["per_second"] = rate / max(1, self.share)  # the session's rate, shared by the pool's tasks
        return settings

    def endpoint(self) -> tuple[str, str | None]:
        """The session status URL (under the gateway's or OAuth host) and the connection id."""
        return f"{self._settings['url']}/iserver/auth/status", self.ibkr_conn_id

    @cached_property
    def client(self) -> Any:
        """``ibind``'s ``IbkrClient`` on a clocked, spaced session; with OAuth, its live session
        token taken and the brokerage session opened (``ibind``'s ``oauth_init``), no tickler
        thread (the hook tickles between requests)."""
        import requests
        from ibind import IbkrClient, ibind_logs_initialize

        from market_ingest.routing import clocked_session

        ibind_logs_initialize(log_to_console=False, log_to_file=False)
        logging.getLogger("ibind").setLevel(logging.INFO)
        # ibind's per-request lines (and, on an exception, a request's headers: OAuth's signature)
        # stay out of the task log; the hook logs what it asks itself.
        logging.getLogger("ibind_fh").propagate = False
        s = self._settings
        session_cls = clocked_session(None, requests.Session, s["per_second"])

        class Client(IbkrClient):
            def make_session(self) -> None:
                self._session = session_cls()

        # Everything ibind would otherwise read from IBIND_* variables is given here.
        kwargs: dict[str, Any] = {
            "url": s["url"] + "/",
            "cacert": s["cacert"],
            "timeout": 30,
            "max_retries": 1,
            "use_session": True,
            "auto_register_shutdown": False,  # Airflow's own SIGTERM handling stays
            "log_responses": False,
        }
        if not s["oauth"]:
            return Client(**kwargs)
        from ibind.oauth.oauth1a import OAuth1aConfig
        from ibind.support.errors import ExternalBrokerError

        config = OAuth1aConfig(
            **s["oauth_fields"],
            oauth_rest_url=s["url"] + "/",
            live_session_token_endpoint="oauth/live_session_token",
            dh_generator="2",
            encryption_key_fp=None,
            signature_key_fp=None,
            init_oauth=True,
            init_brokerage_session=True,
            maintain_oauth=False,
            shutdown_oauth=False,
        )
        try:
            return Client(use_oauth=True, oauth_config=config, **kwargs)
        except ExternalBrokerError as exc:  # IB answered the live session token or ssodh/init
            found = _classified(exc)
            if found is not None and found.code in (400, 401, 403):
                raise ConfigurationError(
                    self.source,
                    f"connection {self.ibkr_conn_id}: IBKR refused the OAuth consumer (HTTP {found.code}): {found.message}",
                ) from None
            raise VendorUnavailableError(self.source, f"OAuth session to {s['url']} not opened: {_reason(exc)}") from None
        except ImportError:
            raise ConfigurationError(self.source, "OAuth needs pycryptodome (ibind[oauth])") from None
        except (
            ValueError,
            TypeError,
            RuntimeError,
        ) as exc:  # a key that is no PEM key, a secret that is no base64, a token IB's signature refutes
            raise ConfigurationError(
                self.source,
                f"connection {self.ibkr_conn_id}: the OAuth keys, secret or DH prime do not open a session ({type(exc).__name__}): "
                "check that the PEM keys are whole and the access token secret is the one issued with the token",
            ) from None

    def _vendor_now(self) -> datetime:
        """IB's "now": the ``Date`` of its latest answer, never after the wall clock."""
        from market_ingest.routing import closed_bar_clock

        return closed_bar_clock(getattr(self.client._session, "clock", None))

    # -- requests ---------------------------------------------------------------------------
    def call(self, what: str, symbol: str | None, method: str, *args: Any, **kwargs: Any) -> bodies.Classified:
        """``self.client.<method>(*args, **kwargs)``, its answer classified; data comes back, every
        other kind raises. A 429 is waited out (:data:`PACING_WAITS`) before it raises.

        :raises RateLimitedError: 429 after every wait (pacing, or IB's penalty box).
        :raises NoDataError: IB has no bar in the span asked.
        :raises UnknownSymbolError: IB knows no such contract.
        :raises ConfigurationError: the account has no market-data permission for the listing.
        :raises VendorUnavailableError: no answer, a 5xx, or a session that is not authenticated.
        :raises UnexpectedBodyError: a body shape we do not know, its keys named.
        """
        from ibind.support.errors import ExternalBrokerError

        waits = list(PACING_WAITS)
        while True:
            log.debug("%s: %s (%s)", self.source, what, method)
            try:
                result = getattr(self.client, method)(*args, **kwargs)
                found = bodies.classify(json.dumps(result.data), 200)
            except ExternalBrokerError as exc:
                classified = _classified(exc)
                if classified is None:  # no HTTP answer (connection refused, reset, timed out)
                    raise VendorUnavailableError(self.source, f"{what}: no answer from {self._settings['url']}", symbol) from None
                found = classified
            except (TimeoutError, OSError) as exc:
                raise VendorUnavailableError(self.source, f"{what}: {type(exc).__name__}", symbol) from None
            if found.kind != bodies.PACING or not waits:
                break
            wait = waits.pop(0)
            log.info("%s: IB answered 429 (pacing) for %s; waiting %.0f s", self.source, what, wait)
            time.sleep(wait)
        if found.kind == bodies.DATA:
            return found
        message = f"{what}: {found.message}" + (f" (HTTP {found.code})" if found.code and found.code != 200 else "")
        if found.kind == bodies.NO_DATA:
            raise NoDataError(self.source, message, symbol)
        if found.kind == bodies.UNKNOWN_CONTRACT:
            raise UnknownSymbolError(self.source, message, symbol)
        if found.kind == bodies.NO_PERMISSION:
            raise ConfigurationError(self.source, f"{message}: the account has no market-data subscription for it", symbol)
        if found.kind == bodies.PACING:
            raise RateLimitedError(self.source, f"{message} after {len(PACING_WAITS)} waits", symbol)
        if found.kind == bodies.UNAUTHENTICATED:
            raise NotAuthenticatedError(self.source, f"{message}: the brokerage session is not authenticated", symbol)
        if found.kind == bodies.SERVER:
            raise VendorUnavailableError(self.source, message, symbol)
        raise UnexpectedBodyError(self.source, message, symbol)

    def keep_alive(self, force: bool = False) -> None:
        """``POST /tickle`` when :data:`~market_ingest.vendors.ibkr.TICKLE_SECONDS` have passed since
        the latest (or ``force``). When the brokerage session is not authenticated (or another
        session competes, or it is not connected), ask once to open it again (a gateway:
        ``/iserver/reauthenticate``; OAuth: ``/iserver/auth/ssodh/init``) and check its status every
        :data:`REAUTH_POLL` seconds for up to :data:`REAUTH_WAIT`.

        :raises VendorUnavailableError: the session stays unauthenticated (a gateway nobody logged
            into today: the message says what to do).
        :raises ConfigurationError: an OAuth consumer IBKR refuses (from :attr:`client`).
        """
        with self._lock:
            if not force and _monotonic() - self._tickled < ib.TICKLE_SECONDS:
                return
            self._tickled = _monotonic()
        _ = self.client  # opened first: an OAuth session that cannot open says why, not "not authenticated"
        try:
            status = self.call("tickle", None, "tickle").doc
        except MarketDataError as exc:  # a 401, a 429 on the session endpoints: asked again below
            log.info("%s: tickle answered %s", self.source, exc.reason)
            status = {}
        if _authenticated(status):
            return
        oauth = self._settings["oauth"]
        log.info("%s: the brokerage session is not authenticated; asking it to open again", self.source)
        try:
            if oauth:
                self.call("ssodh/init", None, "initialize_brokerage_session")
            else:
                self.call("reauthenticate", None, "reauthenticate")
        except MarketDataError:
            pass
        deadline = _monotonic() + REAUTH_WAIT
        while _monotonic() < deadline:
            time.sleep(REAUTH_POLL)
            try:
                if _authenticated({"iserver": {"authStatus": self.call("auth status", None, "authentication_status").doc}}):
                    return
            except MarketDataError:
                continue
        if oauth:
            raise NotAuthenticatedError(
                self.source,
                "the OAuth consumer's brokerage session is not authenticated after ssodh/init (another session of the "
                "user competing, or the consumer's access revoked)",
            )
        raise NotAuthenticatedError(
            self.source,
            f"the gateway at {self._settings['url']} is not authenticated: log it in (a browser at its URL, or IBeam) "
            "and clear the task",
        )

    def prepare(self, interval: str, window: Window) -> None:
        """Check the session before the first symbol (:meth:`keep_alive`)."""
        self.keep_alive(force=True)

    def conid(self, symbol: str) -> int:
        """The contract id of ``symbol``'s stock listing on a US exchange (``/iserver/secdef/search``;
        once per symbol and task): a listing elsewhere would be stored as USD on New York sessions.

        :raises UnknownSymbolError: IB lists no US stock of that symbol (the message names the listings seen).
        """
        if symbol not in self._conids:
            found = self.call(f"secdef search {symbol}", symbol, "search_contract_by_symbol", symbol, sec_type="STK")
            try:
                self._conids[symbol] = bodies.parse_search(found.doc, symbol, bodies.US_EXCHANGES)
            except ValueError as exc:
                raise UnknownSymbolError(self.source, str(exc), symbol) from None
        return self._conids[symbol]

    def answer(self, symbol: str, interval: str, window: Window, ingested_at: datetime) -> Answer:
        """IB's bars for ``symbol`` around ``window``: split-adjusted as of IB's answer (the extract
        step converts them to as traded with :meth:`corporate_actions`), volume in shares (IB's lots
        of 100 multiplied out), times the bars' opens in UTC (daily and longer: their New York
        session date).

        One contract search, then one history request per span of
        :func:`~market_ingest.vendors.ibkr.chunks` (:func:`~market_ingest.vendors.ibkr.history_request`); ``outsideRth`` when the source keeps
        extended hours at some interval (bars outside the regular sessions are then dropped or kept
        by the interval's own ``extended_hours``).

        :raises UnknownSymbolError, ConfigurationError, RateLimitedError, VendorUnavailableError,
            UnexpectedBodyError: as :meth:`call` raises them; a span without bars is no error unless
            every span of the window has none (``NoDataError``).
        """
        import pyarrow as pa

        from market_ingest.actions import SPLIT_ADJUSTED
        from market_ingest.calendars import ALWAYS_OPEN, FOREX, sessions
        from market_ingest.extract import Answer
        from market_ingest.intervals import INTRADAY_INTERVALS
        from market_ingest.schema import empty_bars

        conid = self.conid(symbol)
        outside = self.outside_rth and interval in INTRADAY_INTERVALS
        spans = list(reversed(ib.chunks(interval, window)))  # a stack: oldest on top
        tables, empty, requests = [], None, 1
        while spans:
            start, end = spans.pop()
            p = ib.history_request(conid, interval, start, end, outside)
            what = f"history {symbol} {p['bar']} {p['period']} to {p['start_time']:%Y%m%d-%H:%M:%S}"
            self.keep_alive()
            requests += 1
            try:
                try:
                    doc = self.call(what, symbol, "marketdata_history_by_conid", **p).doc
                except NotAuthenticatedError:  # the session ended mid-run: open it again, ask once more
                    self.keep_alive(force=True)
                    requests += 1
                    doc = self.call(what, symbol, "marketdata_history_by_conid", **p).doc
            except NoDataError as exc:
                empty = exc  # a weekend or a holiday; the window may hold bars in another span
                continue
            if len(doc.get("data") or []) >= ib.MAX_POINTS and end - start > 2 * _shortest(interval):
                # IB cut the answer at its maximum: its oldest bars are missing; ask the halves
                middle = start + (end - start) / 2
                log.info("%s: %s answered %d bars, IB's maximum: asking it in two", self.source, what, ib.MAX_POINTS)
                spans += [(middle, end), (start, middle)]
                continue
            try:
                tables.append(
                    bodies.history_to_bars(
                        doc, symbol=symbol, interval=interval, ingested_at=ingested_at, source=self.source, tz=US_TZ
                    )
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise UnexpectedBodyError(self.source, f"{what}: a bar without {exc}", symbol) from None
        if not tables and empty is not None:
            raise empty
        table = pa.concat_tables(tables) if tables else empty_bars()
        market = self.market_of(symbol)
        return Answer(
            table,
            now=self._vendor_now(),
            sessions=(
                [(o, c) for _, o, c in sessions(market, window)]
                if interval in INTRADAY_INTERVALS and market not in (ALWAYS_OPEN, FOREX)
                else None
            ),
            requests=requests,
            basis=SPLIT_ADJUSTED,
            tz=US_TZ,
        )

    def corporate_actions(self, symbol: str) -> ActionsAnswer:
        """The splits (and dividends) of ``symbol`` from the ``splits_from`` source's vendor, stated
        for this source and symbol: IB's Web API states no split history.

        :raises ConfigurationError: the hook was built without a splits source.
        :raises MarketDataError: what the other source's hook raises.
        """
        from dataclasses import replace

        from market_ingest.actions import ActionsAnswer

        if self.splits is None:
            raise ConfigurationError(
                self.source, "no splits_from source: IB's split-adjusted prices cannot be stored as traded", symbol
            )
        answer = self.splits(symbol)
        return ActionsAnswer([replace(a, source=self.source, symbol=symbol) for a in answer.actions], answer.now, answer.tz)

    def fetch_quotes(
        self, symbols: list[str], as_of: datetime, ingested_at: datetime
    ) -> tuple[pa.Table, list[outcomes.SymbolOutcome]]:
        """Not served: IB's snapshots need a market-data subscription stream this product does not keep.

        :raises ConfigurationError: always (a ``quotes:`` section on an ``ibkr`` source).
        """
        raise ConfigurationError(self.source, "quote snapshots are not served for Interactive Brokers sources (remove quotes:)")


class NotAuthenticatedError(VendorUnavailableError):
    """The brokerage session is not authenticated (401, ``no bridge``, a tickle saying so): retried."""


def _monotonic() -> float:
    """``time.monotonic()``, by a name tests can move without moving every clock."""
    return time.monotonic()


def _shortest(interval: str) -> timedelta:
    """The span below which a history request is not split further: a day, or one bar of longer intervals."""
    from market_ingest.intervals import INTERVAL_LENGTH

    return max(timedelta(days=1), INTERVAL_LENGTH.get(interval, timedelta(days=31)))


def _classified(exc: BaseException) -> bodies.Classified | None:
    """The HTTP answer behind an ``ibind`` error, classified: the first ``response`` along its
    causes (ibind wraps its own errors again), else its ``status_code`` and the answer's text at
    the end of its message (``... :: <status> :: <reason> :: <text>``); ``None`` without an answer."""
    seen: BaseException | None = exc
    while seen is not None:
        response = getattr(seen, "response", None)
        if response is not None:
            return bodies.classify(response.text, response.status_code)
        seen = seen.__cause__ or seen.__context__
    chain: BaseException | None = exc
    while chain is not None:
        status = getattr(chain, "status_code", None)
        if status:
            text = str(chain).rsplit(" :: ", 1)[-1] if " :: " in str(chain) else ""
            return bodies.classify(text, int(status))
        chain = chain.__cause__ or chain.__context__
    return None


def _reason(exc: BaseException) -> str:
    """An ibind error's message without its base URL's query strings (ibind names the URL, never headers)."""
    from market_ingest.routing import without_queries

    return without_queries(str(exc))[:300]


def _text(value: Any) -> str:
    """A connection field as text, without the spaces and line breaks a form paste adds around it."""
    return str(value).strip() if value is not None else ""


def _pem(value: Any) -> str:
    """A PEM key as pycryptodome reads it: a form's single-line field drops its line breaks
    (``-----BEGIN RSA PRIVATE KEY----- MIIE... -----END RSA PRIVATE KEY-----``), which are put back."""
    import re

    text = _text(value)
    found = re.fullmatch(r"(-----BEGIN [A-Z ]+-----)\s*(.*?)\s*(-----END [A-Z ]+-----)", text, re.S)
    if not found:
        return text
    body = re.sub(r"\s+", "", found.group(2))
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "\n".join([found.group(1), *lines, found.group(3)])


def _base_url(conn: Any) -> str:
    """The connection's base URL: its host when that is a URL (the form's Gateway URL, a JSON
    connection), else rebuilt from the parts an ``AIRFLOW_CONN_*`` URI splits it into
    (``ibkr://localhost:5000/v1/api``: host, port and schema) as https; ``""`` without a host."""
    host = (conn.host or "").rstrip("/")
    if not host or "://" in host:
        return host
    port = f":{conn.port}" if conn.port else ""
    path = f"/{conn.schema.strip('/')}" if conn.schema else ""
    return f"https://{host}{port}{path}"


def _authenticated(status: Any) -> bool:
    """Whether a ``/tickle`` answer says the brokerage session is authenticated, connected and not
    competing with another session of the user (as ibind reads it)."""
    auth = (status.get("iserver") or {}).get("authStatus") if isinstance(status, dict) else None
    return bool(
        isinstance(auth, dict) and auth.get("authenticated") and auth.get("connected", True) and not auth.get("competing")
    )
