"""Reaching a vendor through a base URL, and reading the vendor's clock from its answers.

A connection's *base URL* (its ``host`` field) puts a URL-prefix gateway in front of a vendor: a
corporate egress proxy of that kind, a vendor's sandbox, or the project's stand-in servers
(``standin/``). ``https://api.binance.com/api/v3/klines?...`` is then requested as
``<base>/api.binance.com/api/v3/klines?...``. Without a base URL every request goes to the vendor.

The vendor's clock is the ``Date`` header of its latest answer (RFC 9110 requires origin servers
with a clock to send it). The closed-bar rule uses the earlier of that and the local clock, so a
bar the vendor still considers open is never loaded as closed because our clock runs ahead.

An error names the answer behind it as :class:`Answered` does (``HTTP 503 Service Unavailable from
query2.finance.yahoo.com/v8/finance/chart/MSFT (text/html)``): status, host and path, never the
query string, which may carry an API key or a signature (:func:`without_queries`).

Stdlib only at import time.
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit


def base_url_of(host: str | None) -> str | None:
    """A connection ``host`` as a base URL (``http://127.0.0.1:8790``), or ``None`` when unset.

    :raises ValueError: when ``host`` is set but is not an ``http(s)://`` URL.
    """
    if not host:
        return None
    host = host.strip().rstrip("/")
    if not host.startswith(("http://", "https://")):
        raise ValueError(f"base URL {host!r} must start with http:// or https://")
    return host


def through(url: str, base: str | None) -> str:
    """``url`` requested through ``base``: ``https://host/path?q`` -> ``<base>/host/path?q``.

    URLs already under ``base``, relative URLs and ``base=None`` are returned unchanged.
    """
    if not base or url.startswith(base) or "://" not in url:
        return url
    parts = urlsplit(url)
    rest = url.split("://", 1)[1]
    return f"{base}/{rest}" if parts.netloc else url


def route_urls(urls: Any, base: str | None) -> Any:
    """Every absolute URL in a (nested) dict/list of URLs routed :func:`through` ``base``.

    Used on a ccxt exchange's ``urls["api"]``, the same table ccxt's sandbox mode swaps; URL
    templates such as ``https://{hostname}/api`` keep their placeholders.
    """
    if isinstance(urls, str):
        return through(urls, base) if urls.startswith(("http://", "https://")) else urls
    if isinstance(urls, dict):
        return {k: route_urls(v, base) for k, v in urls.items()}
    if isinstance(urls, list):
        return [route_urls(v, base) for v in urls]
    return urls


@dataclass(frozen=True)
class Answered:
    """An HTTP answer as an error message names it.

    :param status: the HTTP status (``503``).
    :param reason: its reason phrase (``Service Unavailable``).
    :param where: host and path of the URL answered (``query2.finance.yahoo.com/v8/finance/chart/MSFT``,
        or ``127.0.0.1:8790/query2.finance.yahoo.com/...`` through a base URL); never the query
        string, which may hold an API key.
    :param content_type: the ``Content-Type`` without parameters (``text/html``), or ``""``.
    """

    status: int
    reason: str
    where: str
    content_type: str = ""

    @classmethod
    def of(cls, response: Any) -> Answered:
        """The answer of a ``requests`` or ``curl_cffi`` response (``status_code``, ``reason``, ``url``, ``headers``)."""
        import http

        status = int(response.status_code)
        reason = response.reason or ""
        if not reason:
            try:
                reason = http.HTTPStatus(status).phrase
            except ValueError:
                reason = ""
        parts = urlsplit(str(response.url or ""))
        content_type = ((response.headers or {}).get("Content-Type") or "").split(";")[0].strip()
        host = (parts.hostname or "") + (f":{parts.port}" if parts.port else "")  # never user:password@
        return cls(status, reason, f"{host}{parts.path}", content_type)

    def __str__(self) -> str:
        kind = f" ({self.content_type})" if self.content_type else ""
        return f"HTTP {self.status} {self.reason} from {self.where}{kind}".replace("  ", " ")


#: A URL or an absolute path followed by its query string (or fragment).
_QUERY = re.compile(r"((?:\b[a-z][a-z0-9+.-]*://|(?<![\w/])/)[^\s?#\"'<>]*)[?#][^\s\"'<>]*", re.I)
#: The credentials of a URL (``//user:password@host``), which a gateway's base URL may carry.
_USERINFO = re.compile(r"(//)[^/\s@?#\"'<>]+@")
#: An HTML document in a message (an error page ccxt quotes after the status).
_HTML_PAGE = re.compile(r"<(?:!doctype|html)\b.*", re.I | re.S)


def without_queries(text: str) -> str:
    """``text`` with the query string and the credentials (``user:password@``) of every URL or
    absolute path in it removed, and a quoted HTML page replaced by ``(an HTML page)``.

    For messages a client library builds from a request (ccxt quotes the method, the whole URL and
    the body: ``binance GET https://api.binance.com/api/v3/klines?symbol=... 503 Service
    Unavailable <html>...``): a query may carry an API key or a signature, and a page says nothing
    the status does not.
    """
    return _HTML_PAGE.sub("(an HTML page)", _USERINFO.sub(r"\1", _QUERY.sub(r"\1", text)))


def response_clock(headers: Any) -> datetime | None:
    """The ``Date`` header of a response (any mapping with ``get``) as an aware UTC datetime, or ``None``."""
    value = headers.get("Date") or headers.get("date") if headers else None
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).astimezone(timezone.utc)
    except (TypeError, ValueError):
        return None


def closed_bar_clock(vendor_clock: datetime | None) -> datetime:
    """The clock the closed-bar rule uses: the earlier of the vendor's and ours."""
    now = datetime.now(timezone.utc)
    return min(now, vendor_clock) if vendor_clock else now


def clocked_session(base: str | None, session_cls: type, requests_per_second: float | None = None):
    """A session class (``requests.Session`` or ``curl_cffi.requests.Session``) that routes every
    request :func:`through` ``base``, keeps the vendor's clock of its latest answer in ``clock``,
    and tells each thread what its own latest answer was (``answered()``: an :class:`Answered`, or
    ``None`` before the first). A client that hides the status of an error page behind a parse
    error (yfinance reads Yahoo's 503 page as JSON) is then explained by that answer.

    :param requests_per_second: when set, requests of one session start at least
        ``1 / requests_per_second`` seconds apart, whichever thread sends them (a task's share of
        the vendor's rate limit: the pool's slots times this rate is what the source may ask of the
        vendor); ``None``: no spacing.
    """
    spacing = 1.0 / requests_per_second if requests_per_second else 0.0

    class ClockedSession(session_cls):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.clock: datetime | None = None
            self._next_at = 0.0  # monotonic time at which the next request may start
            self._turns = threading.Lock()  # one per session: sessions do not space each other
            self._latest = threading.local()  # each thread's latest answer (threads share a session)

        def request(self, method, url, *args, **kwargs):
            if spacing:
                with self._turns:  # each request takes the next start time; the wait is outside the lock
                    now = time.monotonic()
                    start = max(now, self._next_at)
                    self._next_at = start + spacing
                if start > now:
                    time.sleep(start - now)
            response = super().request(method, through(url, base), *args, **kwargs)
            self.clock = response_clock(response.headers) or self.clock
            self._latest.answer = Answered.of(response)
            return response

        def answered(self) -> Answered | None:
            """The latest answer to a request of the calling thread, or ``None`` before the first."""
            return getattr(self._latest, "answer", None)

    ClockedSession.__name__ = f"Clocked{session_cls.__name__}"
    return ClockedSession


def check_reachable(url: str, source: str, conn_id: str | None, timeout: float = 10.0) -> None:
    """Send one ``HEAD`` request to ``url`` (through the proxy the environment names for it:
    ``HTTPS_PROXY``, ``NO_PROXY``) and wait at most ``timeout`` seconds in all for any HTTP answer.

    Any status counts as reachable (a 404 or 405 still proves a server answers), and so does a TLS
    certificate error (the clients may trust other roots). Name resolution failures, refused or
    reset connections, and no answer within ``timeout`` do not. Called once per extract task before
    its first request: without it, a machine with no route to the vendor spent the clients' own
    timeouts and retries (yfinance, ccxt, requests) on every symbol, and ``make demo LIVE=1``
    offline was still running after 10 minutes, with no message. Name resolution counts against
    ``timeout`` too (the request runs in a daemon thread).

    :param url: the URL the first request goes to (after a base URL's routing).
    :param source: the source name, for the message.
    :param conn_id: the connection that configures the endpoint (``None``: none), for the message.
    :raises VendorUnavailableError: naming the host and port, the proxy if any, the connection
        and the reason (retryable: Airflow's retries try again later).
    """
    import http.client
    import ssl
    import threading
    import urllib.error
    import urllib.request

    from market_ingest.errors import VendorUnavailableError

    parts = urlsplit(url)
    host, port = parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)
    proxy = urllib.request.getproxies().get(parts.scheme)
    via = f" through proxy {proxy}" if proxy and not urllib.request.proxy_bypass(host) else ""
    outcome: list[BaseException | None] = []

    def ask() -> None:
        request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "market-ingest reachability check"})
        try:
            urllib.request.urlopen(request, timeout=timeout).close()
            outcome.append(None)
        except urllib.error.HTTPError:
            outcome.append(None)  # any status: the server answered
        except urllib.error.URLError as exc:
            reason = exc.reason
            outcome.append(None if isinstance(reason, ssl.SSLError) else reason if isinstance(reason, BaseException) else exc)
        except (OSError, http.client.HTTPException) as exc:  # a read timeout, a connection dropped unanswered
            outcome.append(exc)

    worker = threading.Thread(target=ask, name=f"reach-{host}", daemon=True)
    worker.start()
    worker.join(timeout)
    reason = outcome[0] if outcome else TimeoutError(f"no HTTP answer within {timeout:g} s")
    if reason is None:
        return
    where = f"connection {conn_id}" if conn_id else "no connection configured"
    raise VendorUnavailableError(
        source,
        f"cannot reach {host}:{port}{via} ({where}): {type(reason).__name__}: {reason}; "
        "check the machine's network access, its proxy settings, or the connection's host (base URL)",
    )
