"""Yahoo Finance through ``yfinance``: bars for a batch of symbols over one window.

Yahoo's facts, lookback caps, request planning and the parsing of yfinance's frames are in
:mod:`market_ingest.vendors.yahoo`; this hook holds the connection, the yfinance session, the
retries and the translation of yfinance's errors. yfinance facts (yfinance 1.7 source):

* yfinance hides exceptions and returns an empty frame by default; we set
  ``yf.config.debug.hide_exceptions = False`` so an empty answer is explained.
* ``auto_adjust=True`` is yfinance's default; we ask ``auto_adjust=False, actions=True`` so
  ``Close`` is Yahoo's close (adjusted for splits, not dividends), ``Adj Close`` is Yahoo's
  adjusted close, and dividends/splits of the window come along. Equities' prices are converted to
  as traded by the extract step with the split history of :meth:`YahooFinanceHook.corporate_actions`.
* Rate limiting surfaces as ``YFRateLimitError`` (HTTP 429).
* A window beyond Yahoo's lookback cap is raised as ``YFPricesMissingError`` ("must be within the
  last N days"); the hook clamps the window by the ``Date`` of that answer and asks once more.
"""

from __future__ import annotations

import os
import tempfile
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from market_ingest.actions import AS_TRADED
from market_ingest.errors import (
    ConfigurationError,
    NoDataError,
    RateLimitedError,
    SymbolError,
    UnknownSymbolError,
    VendorUnavailableError,
    WindowNotServableError,
)
from market_ingest.extract import SharedExtract
from market_ingest.hooks import connection_extra
from market_ingest.intervals import INTRADAY_INTERVALS, Window
from market_ingest.vendors.yahoo import (
    DEFAULT_RETRIES,
    DEFAULT_SYMBOL_ATTEMPTS,
    EVENTS_PARAMS,
    PRICE_BASIS,
    SOURCE,
    WITH_ACTIONS,
    YF_INTERVAL,
    clamp_window,
    normalise_history,
    parse_events,
    regular_sessions,
    split_window,
)

if TYPE_CHECKING:
    from market_ingest.actions import ActionsAnswer
    from market_ingest.config import SourceConfig
    from market_ingest.extract import Answer
    from market_ingest.routing import Answered

# yfinance reports an unknown or delisted symbol either as the 404 of its quoteSummary fallback or,
# after two such fallbacks in one process (a module-level counter), as YFTzMissingError.
UNKNOWN_REASON = "Yahoo does not know the symbol or it is delisted"


#: ``(pid, folder)``: the yfinance cache folder of this process (:func:`_process_cache_dir`).
_cache_dir: tuple[int, str] | None = None


def _process_cache_dir(yf) -> str:
    """The private folder of yfinance's caches (timezones, cookies: SQLite files) for this
    process: made on first use, removed when the process exits. :return: the folder.

    Before, each batch made one with ``mkdtemp`` and none was ever removed: a long-lived Celery
    worker (each task a process of its own) filled its ``/tmp``. A new folder per batch bought
    nothing: yfinance opens its cache databases once per process and keeps using the first
    location (``set_tz_cache_location`` closes the database, but the cache object stays bound to
    it). Airflow's task processes run only the exit handlers registered after their fork, hence
    one registration per process; a folder inherited from a forked parent is the parent's.
    """
    global _cache_dir
    import atexit

    if _cache_dir is None or _cache_dir[0] != os.getpid():
        _cache_dir = (os.getpid(), tempfile.mkdtemp(prefix="yfinance-cache-"))
        yf.set_tz_cache_location(_cache_dir[1])
        atexit.register(_remove_cache_dir)
    return _cache_dir[1]


def _remove_cache_dir() -> None:
    if _cache_dir is not None and _cache_dir[0] == os.getpid():
        import shutil

        shutil.rmtree(_cache_dir[1], ignore_errors=True)


class YahooFinanceHook(SharedExtract, BaseHook):
    """Fetch OHLCV bars from Yahoo Finance with ``yfinance``.

    Yahoo needs no credentials. The optional connection ``market_yahoo`` (type ``yahoo_finance``)
    may carry a base URL in ``host`` (a URL-prefix gateway: ``<host>/query2.finance.yahoo.com/...``,
    as the stand-in servers of the demo and tests are reached; see
    :mod:`market_ingest.routing`), and ``{"proxy": "http://...", "retries": 3,
    "requests_per_second": 4}`` in its extra: an HTTP proxy; how often yfinance asks again after a
    dropped connection or a timeout (``yf.config.network.retries``, waiting 1, 2, 4 ... s; default
    3; Yahoo's 5xx pages yfinance already asks once more for, with its other cookie strategy);
    ``symbol_attempts`` (default 3): tries per symbol while Yahoo still answers a 5xx page or a
    body that is not JSON or the connection drops; and the most requests per second one extract task sends (unset: no
    spacing). Yahoo publishes no limit; pool ``yahoo``'s slots times ``requests_per_second`` is the
    rate the source may use, and the threads of ``symbols_in_flight`` share the spacing.
    :meth:`answer` may be called from several threads at once (one yfinance session and its caches,
    shared as ``yf.download(threads=True)`` shares them). Constructing the hook costs nothing;
    yfinance is imported on first use.

    :param yahoo_conn_id: optional connection id.
    :param source: the configured source name this hook serves (``yahoo``, ``yahoo_ext``): written
        into every row and every message, so two sources of kind ``yahoo`` keep separate series.
    """

    conn_name_attr = "yahoo_conn_id"
    default_conn_name = "market_yahoo"
    conn_type = "yahoo_finance"
    hook_name = "Yahoo Finance"

    def __init__(self, yahoo_conn_id: str | None = default_conn_name, source: str = SOURCE, **kwargs) -> None:
        super().__init__(**kwargs)
        self.yahoo_conn_id = yahoo_conn_id
        self.source = source

    @classmethod
    def for_source(cls, name: str, src: SourceConfig, *, timescale_conn_id: str) -> YahooFinanceHook:
        """The hook serving source ``name`` configured as ``src`` (through its connection).

        :param timescale_conn_id: unused (Yahoo keeps no state in the warehouse).
        """
        return cls(yahoo_conn_id=src.connection_id(name), source=name)

    @cached_property
    def _connection(self) -> tuple[str | None, dict[str, Any]]:
        """``(base URL or None, extra)`` of the optional connection; ``(None, {})`` without one."""
        if not self.yahoo_conn_id:
            return None, {}
        try:
            conn = self.get_connection(self.yahoo_conn_id)
        except Exception:  # AirflowNotFoundException: the connection is optional
            self.log.info("Connection %s not defined; using yfinance defaults", self.yahoo_conn_id)
            return None, {}
        from market_ingest.routing import base_url_of

        try:
            return base_url_of(conn.host), connection_extra(conn)  # an emptied form field (null): default
        except ValueError as exc:
            raise ConfigurationError(self.source, f"connection {self.yahoo_conn_id}: {exc}") from None

    @property
    def extra(self) -> dict[str, Any]:
        """The connection's extra, or ``{}`` when the optional connection does not exist."""
        return self._connection[1]

    def endpoint(self) -> tuple[str, str | None]:
        """Yahoo's chart API (yfinance's ``_BASE_URL_``), through the connection's base URL if set."""
        from market_ingest.routing import through

        return through("https://query2.finance.yahoo.com/v8/finance/chart/", self._connection[0]), self.yahoo_conn_id

    def prepare(self, interval: str, window: Window) -> None:
        """Before the first symbol: a yfinance session for this batch (a fresh cookie, crumb and caches)."""
        self._yf, self._session = self._yfinance()

    def answer(self, symbol: str, interval: str, window: Window, ingested_at: datetime) -> Answer:
        """Yahoo's bars for ``symbol`` over ``window``, canonical schema, with Yahoo's clock and sessions.

        One HTTP request per request-sized piece of the window (:func:`split_window`), plus
        yfinance's one-off timezone probe per symbol. Intraday bars are always asked with pre- and
        post-market (``includePrePost``); the regular sessions Yahoo states (``tradingPeriods``)
        come back in ``sessions`` so the extract step can drop the others. Daily and longer bars
        are asked by date in the exchange's calendar.

        :return: the :class:`~market_ingest.extract.Answer`: prices in the listing currency Yahoo
            states (``meta.currency``), ``now`` the ``Date`` of Yahoo's latest answer.
        :raises NoDataError: Yahoo answered 200 with no bars (weekend, holiday, halt).
        :raises UnknownSymbolError: Yahoo does not know the symbol (HTTP 404 "symbol may be delisted",
            ``YFTickerMissingError``).
        :raises SymbolError: Yahoo answered an error naming another reason (an interval or range it
            does not serve): this symbol fails with that reason.
        :raises RateLimitedError: Yahoo answered 429; the task should be retried later.
        :raises VendorUnavailableError: network failure, or Yahoo's 5xx page still answered after
            ``symbol_attempts`` tries (named as ``HTTP 503 Service Unavailable from
            <host>/v8/finance/chart/<symbol> (text/html)``: no query string); the task should be retried.
        :raises WindowNotServableError: the window is beyond Yahoo's lookback cap (by Yahoo's clock).
        """
        import pandas as pd
        from yfinance.exceptions import YFRateLimitError, YFTickerMissingError

        from market_ingest.extract import Answer
        from market_ingest.routing import closed_bar_clock, without_queries

        if getattr(self, "_session", None) is None:
            self.prepare(interval, window)
        yf, session = self._yf, self._session
        try:
            frames, meta, sessions = self._asked_again_when_down(symbol, self._history, yf, session, symbol, interval, window)
        except WindowNotServableError:
            raise
        except YFRateLimitError as exc:
            raise RateLimitedError(self.source, f"Yahoo answered 429 Too Many Requests ({exc})", symbol) from None
        except YFTickerMissingError as exc:
            # yfinance says "possibly delisted" for any empty answer, a weekend included; Yahoo
            # answered 200 with no bars, so this is a data gap, not an unknown symbol.
            detail = str(exc).lstrip("$")
            if "no price data found" in detail:
                raise NoDataError(
                    self.source,
                    f"Yahoo returned no bars for the window (no session: weekend, holiday, halt) [yfinance: {detail}]",
                    symbol,
                ) from None
            reason = getattr(exc, "yahoo_reason", None)  # the error Yahoo's answer stated, if any
            if reason and "may be delisted" not in reason:
                # Yahoo refused this request (an interval or range it did not serve), not the symbol.
                raise SymbolError(self.source, f"Yahoo answered no bars: {reason}", symbol) from None
            raise UnknownSymbolError(self.source, f"{UNKNOWN_REASON} ({detail})", symbol) from None
        except Exception as exc:
            status_code = getattr(getattr(exc, "response", None), "status_code", None)
            if status_code == 404:
                raise UnknownSymbolError(self.source, f"{UNKNOWN_REASON} (HTTP 404 Not Found)", symbol) from None
            if status_code == 429:
                raise RateLimitedError(self.source, "Yahoo answered 429 Too Many Requests", symbol) from None
            down = _down_answer(exc, session)
            if down is not None:  # yfinance reads Yahoo's 5xx page as JSON: name the answer, not the parse error
                raise VendorUnavailableError(self.source, f"Yahoo answered {down}", symbol) from None
            if _is_network_error(exc):
                raise VendorUnavailableError(self.source, without_queries(f"{type(exc).__name__}: {exc}"), symbol) from exc
            raise  # the extract step records it as this symbol's failure
        frame = pd.concat(frames) if frames else pd.DataFrame()
        return Answer(
            normalise_history(frame, symbol, interval, meta.get("currency"), ingested_at, self.source),
            now=closed_bar_clock(session.clock),
            sessions=sessions,
            requests=len(frames),
            # Only symbols with corporate actions have prices Yahoo adjusted (FX, crypto, futures
            # and indexes are as traded): no actions request is made for the others.
            basis=PRICE_BASIS if meta.get("instrumentType") in WITH_ACTIONS else AS_TRADED,
            tz=meta.get("exchangeTimezoneName"),
        )

    def corporate_actions(self, symbol: str) -> ActionsAnswer:
        """Every split, dividend and capital gain Yahoo states for ``symbol``, as traded.

        One chart request over the symbol's whole history at a monthly interval
        (:data:`~market_ingest.vendors.yahoo.EVENTS_PARAMS`: Yahoo states events only for the
        window asked), read by :func:`~market_ingest.vendors.yahoo.parse_events`; through the
        batch's session (same routing, rate and clock as the bars).

        :return: the :class:`~market_ingest.actions.ActionsAnswer`, ``now`` the answer's ``Date``.
        :raises UnknownSymbolError: Yahoo answered 404.
        :raises RateLimitedError: Yahoo answered 429.
        :raises VendorUnavailableError: a 5xx answer or no answer (the task is retried).
        :raises SymbolError: any other answer, or a body that is not a chart answer.
        """
        from market_ingest.actions import ActionsAnswer
        from market_ingest.routing import response_clock, without_queries

        if getattr(self, "_session", None) is None:
            self._yf, self._session = self._yfinance()
        from yfinance.data import YfData

        session = self._session
        url = self.endpoint()[0] + symbol
        period2 = int(((session.clock or datetime.now(timezone.utc)) + timedelta(days=2)).timestamp())

        def ask():
            # yfinance's own client (its cookie, crumb and consent handling), as Ticker.history asks.
            response = YfData(session=session).get(url, params={**EVENTS_PARAMS, "period2": str(period2)}, timeout=30)
            if response.status_code >= 500:
                response.raise_for_status()  # an HTTPError carrying the answer: _is_down asks again
            return response

        try:
            response = self._asked_again_when_down(symbol, ask)
        except Exception as exc:
            status = getattr(getattr(exc, "response", None), "status_code", None)
            if status and status >= 500:
                what = f"Yahoo answered HTTP {status} to the request for {symbol}'s corporate actions"
                raise VendorUnavailableError(self.source, what, symbol) from None
            if _is_network_error(exc):
                raise VendorUnavailableError(self.source, without_queries(f"{type(exc).__name__}: {exc}"), symbol) from exc
            raise
        status = response.status_code
        what = f"Yahoo answered HTTP {status} to the request for {symbol}'s corporate actions"
        if status == 404:
            raise UnknownSymbolError(self.source, f"{UNKNOWN_REASON} ({what})", symbol)
        if status == 429:
            raise RateLimitedError(self.source, what, symbol)
        if status >= 500:
            raise VendorUnavailableError(self.source, what, symbol)
        if status != 200:
            raise SymbolError(self.source, what, symbol)
        now = response_clock(response.headers) or session.clock or datetime.now(timezone.utc)
        try:
            actions, tz = parse_events(response.json(), symbol, now, self.source)
        except ValueError as exc:  # JSONDecodeError included
            raise SymbolError(self.source, f"Yahoo's corporate actions cannot be read: {exc}", symbol) from None
        return ActionsAnswer(actions, now, tz)

    def _asked_again_when_down(self, symbol: str, fn, *args):
        """``fn(*args)``, asked again up to ``symbol_attempts`` times in all (connection extra,
        default 3; waits about 1, 2 s) while Yahoo answers with its 5xx page or a body that is not
        JSON (:func:`_is_down`), or the connection drops without an answer (:func:`_is_dropped`).
        yfinance retries a dropped connection itself (``retries``), except on the request it sends
        again with its other cookie strategy after a >= 400 answer (yfinance 1.7 ``YfData.get``):
        a 503 then a drop failed the extract task, a task retry and its backoff for one symbol's
        hiccup. A timeout is not asked again here (yfinance's retries already waited for it): a
        vendor that stopped answering fails the task after one symbol's tries, not three times that."""
        import tenacity
        from yfinance.data import YfData

        from market_ingest.routing import without_queries

        def before_sleep(rs: tenacity.RetryCallState) -> None:
            # yfinance memoises GET answers per URL (YfData.cache_get), the error page included:
            # without this the next try is answered from memory, not by Yahoo.
            YfData.cache_get.cache_clear()
            exc = rs.outcome.exception() if rs.outcome else None
            down = _down_answer(exc, getattr(self, "_session", None)) if exc else None
            self.log.warning(
                "%s:%s: %s; asking again after %.1f s (attempt %d)",
                self.source,
                symbol,
                f"Yahoo answered {down}" if down else without_queries(str(exc))[:200],  # a URL's query holds the crumb
                rs.next_action.sleep if rs.next_action else 0.0,
                rs.attempt_number + 1,
            )

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(lambda exc: _is_down(exc) or _is_dropped(exc)),
            wait=tenacity.wait_exponential_jitter(initial=1, max=8),
            stop=tenacity.stop_after_attempt(int(self.extra.get("symbol_attempts", DEFAULT_SYMBOL_ATTEMPTS))),
            reraise=True,
            before_sleep=before_sleep,
        )
        return retrying(fn, *args)

    def _yfinance(self):
        import warnings

        import yfinance as yf

        # yfinance 1.7 calls pandas APIs that pandas 3.1 deprecates (inplace=...), once per symbol;
        # the warning is about yfinance's code, says nothing about the data, and floods task logs.
        warnings.filterwarnings("ignore", message="The inplace keyword", module=r"yfinance(\.|$)")

        yf.config.debug.hide_exceptions = False
        base, extra = self._connection
        # A dropped connection fails the symbol, and with it the batch's task (VendorUnavailableError):
        # yfinance's own retry of transient network errors keeps one hiccup from costing 25 symbols.
        yf.config.network.retries = int(extra.get("retries", DEFAULT_RETRIES))
        # yfinance memoises every GET of a past window for the life of the process
        # (YfData.cache_get, an lru_cache): a rerun in the same process (dag.test, a long-lived
        # worker) would get the first answer again instead of the vendor's current one.
        from yfinance.data import YfData

        YfData.cache_get.cache_clear()
        # A private cache per process: no cookie or timezone state leaks between users of a machine.
        _process_cache_dir(yf)
        # yfinance opens these SQLite caches (timezones, cookies) on first use and switches each new
        # file to WAL. First opened from the symbols' threads at once, that switch can fail with
        # "OperationalError: database is locked", failing the symbol (seen in CI; 12 of 800 threads
        # over fresh caches in a local reproduction, none once opened first). So open them here, in
        # the thread that prepares the batch, before any symbol thread starts.
        from yfinance import cache

        cache.get_tz_cache().lookup("")
        cache.get_cookie_cache().lookup("")
        from market_ingest.routing import clocked_session

        rate = float(extra["requests_per_second"]) if extra.get("requests_per_second") else None
        if extra.get("proxy"):
            yf.config.network.proxy = extra["proxy"]
        if base:  # a URL-prefix gateway speaks plain HTTP: requests is enough
            import requests

            return yf, clocked_session(base, requests.Session, rate)()
        from curl_cffi import requests as curl_requests

        # yfinance's own choice for Yahoo (a browser's TLS fingerprint); ours only adds the clock.
        return yf, clocked_session(None, curl_requests.Session, rate)(impersonate="chrome")

    def _history(self, yf, session, symbol, interval, window):
        """yfinance's frames for ``window`` in request-sized pieces, the answer's meta and sessions.

        When Yahoo refuses the window as beyond its lookback, clamp it by Yahoo's clock (the
        refusal's ``Date``) and ask once more; :func:`clamp_window` raises when nothing is left.
        """
        from yfinance.exceptions import YFPricesMissingError

        try:
            return self._pieces(yf, session, symbol, interval, window)
        except YFPricesMissingError as exc:
            if "must be within the last" not in str(exc) or session.clock is None:
                raise
            clamped = clamp_window(interval, window, session.clock, self.source)
            self.log.info("%s: Yahoo serves %s bars from %s on; asking again", symbol, interval, clamped.start.isoformat())
            return self._pieces(yf, session, symbol, interval, clamped)

    def _pieces(self, yf, session, symbol, interval, window):
        """Frames of each request-sized piece; a piece without bars (a holiday week) is skipped,
        and yfinance's "no price data" is raised only when no piece had any."""
        from yfinance.exceptions import YFPricesMissingError

        frames, sessions, empty = [], [], None
        ticker = yf.Ticker(symbol, session=session)
        for piece in split_window(interval, window):
            start: datetime | str = piece.start
            end: datetime | str = piece.end
            if interval not in INTRADAY_INTERVALS:
                # Daily and longer bars are dated in the exchange's calendar: ask by date.
                start, end = piece.start.date().isoformat(), piece.end.date().isoformat()
                if start == end:
                    end = (piece.end.date() + timedelta(days=1)).isoformat()
            try:
                frame = ticker.history(
                    start=start,
                    end=end,
                    interval=YF_INTERVAL[interval],
                    auto_adjust=False,
                    actions=True,
                    prepost=interval in INTRADAY_INTERVALS,  # asked always, kept per extended_hours
                    repair=False,
                    keepna=False,
                )
            except YFPricesMissingError as exc:
                if "no price data found" not in str(exc):
                    raise
                empty = exc
                continue
            frames.append(frame)
            if interval in INTRADAY_INTERVALS:
                # Only intraday answers carry tradingPeriods. On a daily answer yfinance would fetch
                # a 5-day hourly chart to fill them in: a third chart request per symbol (the soak).
                sessions += regular_sessions(ticker.history_metadata)
        if not frames and empty is not None:
            raise empty
        # Named keys only: the lazy ``tradingPeriods`` of a daily answer costs another request.
        meta = ticker.history_metadata or {}
        return frames, {k: meta.get(k) for k in ("currency", "instrumentType", "exchangeTimezoneName")}, sessions


def _is_down(exc: BaseException) -> bool:
    """Yahoo's 5xx page (yfinance: ``YFDataException`` "YAHOO! FINANCE IS CURRENTLY DOWN!" after its
    own second try), an HTTP 5xx, or a body that is not JSON (an error page, a cut connection):
    worth asking again for the same symbol. Not 429s (the task backs off), not unknown symbols."""
    import json

    from yfinance.exceptions import YFDataException

    if isinstance(exc, YFDataException) and "CURRENTLY DOWN" in str(exc):
        return True
    status_code = getattr(getattr(exc, "response", None), "status_code", None)
    return bool(status_code and status_code >= 500) or isinstance(exc, json.JSONDecodeError)


def _down_answer(exc: BaseException, session) -> Answered | None:
    """The 5xx answer behind ``exc``, or ``None`` when ``exc`` is not Yahoo being down.

    yfinance does not raise Yahoo's 5xx page as a status: it reads the page as JSON
    (``JSONDecodeError: Expecting value`` from its timezone probe) or, for the chart, raises
    ``YFDataException("YAHOO! FINANCE IS CURRENTLY DOWN!")``; only ``raise_for_status`` paths carry
    the response. The page is then the latest answer of this thread's requests
    (:func:`~market_ingest.routing.clocked_session`).
    """
    from market_ingest.routing import Answered

    response = getattr(exc, "response", None)
    if getattr(response, "status_code", None):
        answered = Answered.of(response)
    elif _is_down(exc) and hasattr(session, "answered"):
        answered = session.answered()
    else:
        return None
    return answered if answered is not None and answered.status >= 500 else None


def _is_dropped(exc: BaseException) -> bool:
    """A connection closed or reset without an answer: a ``ConnectionError`` of requests (the
    gateway routing, :mod:`market_ingest.routing`) or of curl_cffi (yfinance's own session, the
    production setting: ``RECV_ERROR``, ``GOT_NOTHING``, ``SEND_ERROR``). Not a timeout (already
    waited for), and not a TLS, proxy or DNS failure (the same on the next try)."""
    import requests
    from curl_cffi.requests import exceptions as curl

    if isinstance(exc, requests.ConnectionError):
        return not isinstance(exc, (requests.Timeout, requests.exceptions.SSLError, requests.exceptions.ProxyError))
    if isinstance(exc, curl.ConnectionError):
        return not isinstance(exc, (curl.Timeout, curl.SSLError, curl.DNSError))
    return False


def _is_network_error(exc: BaseException) -> bool:
    import requests

    if isinstance(exc, (requests.ConnectionError, requests.Timeout)):
        return True
    try:
        from curl_cffi.requests.exceptions import RequestException as CurlRequestException
    except ImportError:  # pragma: no cover - curl_cffi is a yfinance dependency
        return False
    return isinstance(exc, CurlRequestException) and getattr(getattr(exc, "response", None), "status_code", None) is None
