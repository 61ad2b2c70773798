"""The ccxt side of :class:`~market_ingest.hooks.exchange.ExchangeHook`: the connection's
settings, one ccxt instance with its markets, and every ccxt call retried, its errors translated.

Errors (ccxt's hierarchy, ``ccxt.base.errors``): ``RateLimitExceeded``, ``RequestTimeout`` and
``ExchangeNotAvailable`` are retried inside the task with exponential backoff and jitter, starting
at twice the exchange's ``rateLimit`` (at least 1 s); if they persist the task fails retryably.
``DDoSProtection`` (Binance answers HTTP 418 with code -1003 when it bans an IP, and 429 before
that) is not retried in the task: hammering a ban extends it; Airflow's retry comes later.
``BadSymbol`` skips the symbol as ``unknown_symbol``; ``AuthenticationError`` (and its
``PermissionDenied``/``AccountSuspended``) fails at once as a configuration error. ccxt's messages
quote the request's whole URL and the answer's body; ours keep the method, host, path, status and
reason (``binance GET https://api.binance.com/api/v3/klines 503 Service Unavailable (an HTML
page)``), never the query string, which carries the API key or signature on private endpoints.

Connection (optional; public market data needs none): type ``ccxt``, id ``market_<source>``;
login = API key, password = secret (both masked in logs), extra
``{"sandbox": false, "options": {...}, "passphrase": "...", "retry_attempts": 4}``. The exchange id
itself is in the pipeline config (``sources.<name>.exchange``), so a DAG runs without a connection.

ccxt is imported inside methods: never at DAG parse time (it costs ~0.7 s and 67 MB).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from airflow.sdk import BaseHook

from market_ingest.errors import ConfigurationError, RateLimitedError, VendorUnavailableError
from market_ingest.hooks import as_flag, connection_extra
from market_ingest.routing import without_queries
from market_ingest.vendors.ccxt import DEFAULT_RETRY_ATTEMPTS, banned_until


class CcxtClient(BaseHook):
    """The base of :class:`~market_ingest.hooks.exchange.ExchangeHook`: what it asks of ccxt.

    Subclasses set ``exchange`` (ccxt id), ``exchange_conn_id`` (optional connection), ``source``
    (the configured name, in every message), ``options`` (ccxt options) and ``markets_file``.
    """

    exchange: str
    exchange_conn_id: str | None
    source: str
    options: dict
    markets_file: str | None

    @cached_property
    def _settings(self) -> dict[str, Any]:
        """Key, secret, passphrase (masked), sandbox, ccxt options and retry attempts from the connection; ``{}`` without one."""
        if not self.exchange_conn_id:
            return {}
        try:
            conn = self.get_connection(self.exchange_conn_id)
        except Exception:  # AirflowNotFoundException: public market data needs no connection
            self.log.info("Connection %s not defined; public endpoints only", self.exchange_conn_id)
            return {}
        from airflow.sdk.log import mask_secret

        from market_ingest.routing import base_url_of

        extra = connection_extra(conn)  # an emptied form field (null) takes the default
        try:
            base_url = base_url_of(conn.host)
        except ValueError as exc:
            raise ConfigurationError(self.source, f"connection {self.exchange_conn_id}: {exc}") from None
        settings: dict[str, Any] = {
            "base_url": base_url,
            "options": extra.get("options") or {},
            "sandbox": as_flag(extra.get("sandbox")),
            "retry_attempts": int(extra.get("retry_attempts", DEFAULT_RETRY_ATTEMPTS)),
        }
        for field, value in (("apiKey", conn.login), ("secret", conn.password), ("password", extra.get("passphrase"))):
            if value:
                mask_secret(value)
                settings[field] = value
        return settings

    @cached_property
    def client(self):
        """The ccxt exchange instance, markets loaded.

        :raises ConfigurationError: unknown exchange id, or markets cannot be read from the file.
        """
        cls = self._ccxt_class()
        s = self._settings
        config: dict[str, Any] = {
            "enableRateLimit": True,
            "enableLastJsonResponse": True,  # tells a body that is not JSON from an empty page (fetch_bars)
            "timeout": 30_000,
            "options": {**self.options, **s.get("options", {})},
            **{k: s[k] for k in ("apiKey", "secret", "password") if k in s},
        }
        client = cls(config)
        if s.get("sandbox"):
            client.set_sandbox_mode(True)
        if s.get("base_url"):  # a URL-prefix gateway (the stand-in servers): route the API table through it
            from market_ingest.routing import route_urls

            client.urls["api"] = route_urls(client.urls["api"], s["base_url"])
        markets = self._markets_file()
        if markets is not None:
            client.set_markets(markets)
        else:
            self._call(self._load_markets, client, what="load_markets")
        return client

    def _load_markets(self, client) -> None:
        """``client.load_markets(reload=True)``, refusing an answer with no market at all.

        ccxt reads a markets body cut mid-transfer (not JSON) as an exchange listing nothing, and
        every symbol of the batch would then be reported ``unknown_symbol`` (seen with the stand-in's
        cut body, as for candles in the soak benchmark). An exchange always lists markets, so an
        empty answer is a network fault, asked again by :meth:`_call`. Older ccxt (4.5.64, what
        MWAA's Airflow 3.3.1 constraints allow) fails on the same body inside its parser, with a
        ``TypeError`` (KuCoin: ``len(None)``): the same fault, the same retry.

        :raises ccxt.NetworkError: the exchange's answer held no market, or ccxt could not parse it.
        """
        import ccxt

        try:
            client.load_markets(reload=True)
        except (TypeError, KeyError, IndexError) as exc:
            raise ccxt.NetworkError(f"{self.exchange} answered load_markets with a body ccxt cannot parse: {exc!r}") from exc
        if not client.markets:
            raise ccxt.NetworkError(f"{self.exchange} answered load_markets with no market (a body that is not JSON?)")

    def _markets_file(self) -> list[dict] | None:
        if not self.markets_file:
            return None
        from market_ingest.config import INCLUDE_DIR

        path = Path(self.markets_file) if Path(self.markets_file).is_absolute() else INCLUDE_DIR / self.markets_file
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise ConfigurationError(self.source, f"cannot read markets from {path}: {exc}") from None

    def vendor_now(self) -> datetime:
        """The exchange's "now": the ``Date`` of its latest answer, never after our clock
        (:func:`~market_ingest.routing.closed_bar_clock`); our clock before the first answer."""
        from market_ingest.routing import closed_bar_clock, response_clock

        client = self.__dict__.get("client")
        return closed_bar_clock(response_clock(getattr(client, "last_response_headers", None)))

    def _call(self, fn: Callable, *args, what: str, symbol: str | None = None):
        """Call a ccxt method, retrying transient network errors (every ``ccxt.NetworkError`` but a
        ``DDoSProtection`` ban: timeouts, 5xx, throttling, dropped connections); translate ccxt errors to ours.

        :raises RateLimitedError: throttled past the retries, or ``DDoSProtection`` (a ban: not retried here).
        :raises VendorUnavailableError: timeouts or the exchange being down, past the retries.
        :raises ConfigurationError: authentication or permission refused; not retryable.
        :raises ccxt.BadSymbol, ccxt.ExchangeError: for the caller to decide per symbol.
        Our messages quote ccxt's without URL query strings or HTML pages (:func:`~market_ingest.routing.without_queries`).
        """
        import ccxt
        import tenacity

        # Read without building `client`: load_markets runs through here while `client` is being built.
        rate_limit_s = float(getattr(self.__dict__.get("client"), "rateLimit", 0) or 0) / 1000
        retrying = tenacity.Retrying(
            # Any NetworkError but a ban: a dropped connection is a bare NetworkError in ccxt, and
            # load_markets makes several requests, so one drop failed the whole batch's try (soak).
            retry=tenacity.retry_if_exception(
                lambda e: isinstance(e, ccxt.NetworkError) and not isinstance(e, ccxt.DDoSProtection)
            ),
            wait=tenacity.wait_exponential_jitter(initial=max(1.0, 2 * rate_limit_s), max=60),
            stop=tenacity.stop_after_attempt(self._settings.get("retry_attempts", DEFAULT_RETRY_ATTEMPTS)),
            reraise=True,
            before_sleep=lambda rs: self.log.warning(
                "%s %s: %s; retry %d after %.1f s",
                self.exchange,
                what,
                type(rs.outcome.exception() if rs.outcome else None).__name__,
                rs.attempt_number,
                rs.next_action.sleep if rs.next_action else 0.0,
            ),
        )
        where = f"{what} {symbol}" if symbol else what
        try:
            return retrying(fn, *args)
        except ccxt.DDoSProtection as exc:
            until = banned_until(str(exc))
            ban = f" (banned until {until.isoformat()})" if until else ""
            raise RateLimitedError(
                self.source, without_queries(f"{where}: the exchange refuses requests{ban}: {exc}"), symbol
            ) from None
        except ccxt.RateLimitExceeded as exc:
            raise RateLimitedError(self.source, without_queries(f"{where}: throttled after retries: {exc}"), symbol) from None
        except ccxt.AuthenticationError as exc:
            raise ConfigurationError(
                self.source,
                without_queries(
                    f"{where}: authentication refused ({type(exc).__name__}); check connection {self.exchange_conn_id}: {exc}"
                ),
            ) from None
        except ccxt.NetworkError as exc:
            raise VendorUnavailableError(self.source, without_queries(f"{where}: {type(exc).__name__}: {exc}"), symbol) from None

    def _ccxt_class(self) -> type:
        """ccxt's class for :attr:`exchange`.

        :raises ConfigurationError: ccxt has no exchange of that id.
        """
        import ccxt

        cls = getattr(ccxt, self.exchange, None)
        if cls is None or self.exchange not in ccxt.exchanges:
            raise ConfigurationError(self.source, f"ccxt {ccxt.__version__} has no exchange {self.exchange!r}")
        return cls
