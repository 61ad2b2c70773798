"""Alpha Vantage REST API: bars and quotes, with its quota and error bodies handled.

Connection ``market_alpha_vantage`` (type ``alpha_vantage``): the API key in the password field;
host optional (defaults to ``https://www.alphavantage.co/query``; set it for a proxy). Extra:
``{"premium": false, "requests_per_second": 1, "daily_budget": 25}``.

Every request: reserve one unit of the shared daily budget (:mod:`market_ingest.quota`), wait for
the request spacing, GET, then classify the body before any parsing
(:func:`market_ingest.vendors.alpha_vantage.bodies.classify`). The key is a query parameter and is echoed
by the quota body: nothing that leaves this module (logs, exceptions, outcomes) carries it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from market_ingest import outcomes
from market_ingest.errors import (
    ConfigurationError,
    QuotaExhaustedError,
    RateLimitedError,
    UnexpectedBodyError,
    UnknownSymbolError,
    VendorUnavailableError,
)
from market_ingest.extract import SharedExtract, each_symbol
from market_ingest.hooks import as_flag, connection_extra
from market_ingest.intervals import Window
from market_ingest.vendors import alpha_vantage as av
from market_ingest.vendors.alpha_vantage import bodies

if TYPE_CHECKING:
    import pyarrow as pa

    from market_ingest.actions import ActionsAnswer
    from market_ingest.config import SourceConfig
    from market_ingest.extract import Answer
    from market_ingest.quota import QuotaStore


class _RedactApiKey(logging.Filter):
    """Rewrites records of HTTP client loggers (urllib3 logs each URL at DEBUG) without ``apikey=``."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "apikey=" in message.lower():
            record.msg, record.args = bodies.redact(message, None), ()
        return True


def _guard_http_logs() -> None:
    for name in ("urllib3.connectionpool", "requests"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _RedactApiKey) for f in logger.filters):
            logger.addFilter(_RedactApiKey())


class AlphaVantageHook(SharedExtract, BaseHook):
    """Fetch bars and quotes from Alpha Vantage.

    :param alpha_vantage_conn_id: connection id (API key in the password field).
    :param quota: shared daily budget store; ``None`` counts in this process only.
    :param source: the configured source name this hook serves, written into every row and
        message. The daily budget belongs to the API key, so it is kept per connection
        (:attr:`budget_key`): two sources on one connection share it.
    """

    conn_name_attr = "alpha_vantage_conn_id"
    default_conn_name = "market_alpha_vantage"
    conn_type = "alpha_vantage"
    hook_name = "Alpha Vantage"

    def __init__(
        self,
        alpha_vantage_conn_id: str = default_conn_name,
        quota: QuotaStore | None = None,
        source: str = av.SOURCE,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.alpha_vantage_conn_id = alpha_vantage_conn_id
        self.source = source
        self.quota = quota
        self._local_count = 0

    @classmethod
    def for_source(cls, name: str, src: SourceConfig, *, timescale_conn_id: str) -> AlphaVantageHook:
        """The hook serving source ``name`` configured as ``src``, its daily budget kept in the
        warehouse ``timescale_conn_id`` (``market.vendor_quota``, shared by every task on the key)."""
        from market_ingest.hooks.timescale import TimescaleHook
        from market_ingest.quota import PostgresQuotaStore

        warehouse = TimescaleHook(timescale_conn_id=timescale_conn_id)
        warehouse.check_schema()  # the shared daily budget lives in market.vendor_quota
        return cls(alpha_vantage_conn_id=src.connection_id(name), quota=PostgresQuotaStore(warehouse), source=name)

    @property
    def budget_key(self) -> str:
        """The key of this hook's daily budget in the quota store (``market.vendor_quota.vendor``):
        ``alpha_vantage:<connection id>``, since a budget belongs to the API key the connection holds."""
        return f"alpha_vantage:{self.alpha_vantage_conn_id}"

    def endpoint(self) -> tuple[str, str | None]:
        """The query URL (the connection's host, else :data:`DEFAULT_URL`) and the connection id."""
        return self._settings["url"], self.alpha_vantage_conn_id

    @cached_property
    def _settings(self) -> dict[str, Any]:
        conn = self.get_connection(self.alpha_vantage_conn_id)
        if not conn.password:
            raise ConfigurationError(self.source, f"connection {self.alpha_vantage_conn_id} has no API key (password field)")
        extra = connection_extra(conn)  # an emptied form field (null) takes the default
        from airflow.sdk.log import mask_secret

        mask_secret(conn.password)  # Airflow's masker then redacts it from every task log line
        _guard_http_logs()
        return {
            "key": conn.password,
            "url": (conn.host if conn.host and "://" in conn.host else av.DEFAULT_URL),
            "premium": as_flag(extra.get("premium")),
            "requests_per_second": float(extra.get("requests_per_second", av.DEFAULT_REQUESTS_PER_SECOND)),
            "budget": int(extra.get("daily_budget", av.DEFAULT_DAILY_BUDGET)),
        }

    @cached_property
    def session(self):
        """A ``requests`` session that spaces its requests by the connection's
        ``requests_per_second`` (default 1: the free key's per-second limit) and keeps Alpha
        Vantage's clock (``Date``) of its latest answer (:func:`~market_ingest.routing.clocked_session`)."""
        import requests

        from market_ingest.routing import clocked_session

        return clocked_session(None, requests.Session, self._settings["requests_per_second"])()

    def _vendor_now(self) -> datetime:
        """Alpha Vantage's "now", for choosing ``outputsize``, the quota's day and closing bars: the
        ``Date`` of its latest answer, never after the wall clock (the wall clock before the first)."""
        from market_ingest.routing import closed_bar_clock

        return closed_bar_clock(self.session.clock)

    def query(self, params: dict[str, str]) -> bodies.Classified:
        """One GET, classified. Data comes back; every other kind raises.

        :raises QuotaExhaustedError: the shared budget or the vendor's daily quota is spent.
        :raises RateLimitedError: the per-second/per-minute throttle answered (retry later).
        :raises ConfigurationError: the function needs a premium plan (the message says which).
        :raises UnknownSymbolError: an ``Error Message`` body (bad symbol or call).
        :raises UnexpectedBodyError: a body shape we do not know, its keys named.
        :raises VendorUnavailableError: no answer, or a 5xx page (named by status, host and path:
            ``HTTP 503 Service Unavailable from www.alphavantage.co/query (text/html)``).
        No message carries the API key.
        """
        from market_ingest.quota import utc_today
        from market_ingest.routing import Answered

        s = self._settings
        day = utc_today(self._vendor_now())  # the vendor's day once an answer told its clock, else ours
        if self.quota is not None:
            if not self.quota.take(self.budget_key, day, s["budget"]):
                raise QuotaExhaustedError(self.source, f"daily request budget for {day} is spent; deferring until 00:00 UTC")
        elif self._local_count >= s["budget"]:
            raise QuotaExhaustedError(self.source, f"daily request budget ({s['budget']}) is spent in this task")
        self._local_count += 1
        symbol = params.get("symbol") or params.get("from_symbol")
        what = f"{params.get('function')} {symbol or ''}".strip()
        try:
            response = self.session.get(s["url"], params={**params, "apikey": s["key"]}, timeout=30)
        except Exception as exc:
            raise VendorUnavailableError(
                self.source, bodies.redact(f"{what}: {type(exc).__name__}: {exc}", s["key"]), symbol
            ) from None
        if response.status_code >= 500:  # an error page: named by status, host and path (the query holds the key)
            raise VendorUnavailableError(self.source, f"{Answered.of(response)} for {what}", symbol)
        result = bodies.classify(response.text, s["key"])
        if result.kind == bodies.DATA:
            return result
        if result.kind == bodies.DAILY_QUOTA:
            if self.quota is not None:  # spent on the vendor's day: the Date of this very answer
                self.quota.mark_exhausted(self.budget_key, utc_today(self._vendor_now()))
            raise QuotaExhaustedError(self.source, f"{what}: daily quota spent: {result.message}")
        if result.kind == bodies.BURST:
            raise RateLimitedError(self.source, f"{what}: throttled: {result.message}", symbol)
        if result.kind == bodies.PREMIUM:
            raise ConfigurationError(
                self.source,
                f'{params.get("function")} needs a premium Alpha Vantage plan; set "premium": true '
                f"on connection {self.alpha_vantage_conn_id} only if the key has one ({result.message[:120]})",
            )
        if result.kind == bodies.ERROR_MESSAGE:
            raise UnknownSymbolError(self.source, f"{what}: {result.message}", params.get("symbol"))
        raise UnexpectedBodyError(self.source, f"{what}: {result.message}", symbol)

    def series_params(self, symbol: str, interval: str, window: Window) -> list[dict[str, str]]:
        """The requests serving ``window`` for ``symbol`` at Alpha Vantage's time, on this
        connection's plan (:func:`market_ingest.vendors.alpha_vantage.series_params`)."""
        return av.series_params(
            symbol, interval, window, self._vendor_now(), premium=self._settings["premium"], source=self.source
        )

    def answer(self, symbol: str, interval: str, window: Window, ingested_at: datetime) -> Answer:
        """Alpha Vantage's bars for ``symbol`` around ``window``, canonical schema.

        One request per month of an old intraday window, else one (:meth:`series_params`);
        intraday listings are asked with ``extended_hours=true`` and the regular US session
        (09:30-16:00 US/Eastern) comes back in ``sessions``. Times are the bar's start, UTC: Alpha
        Vantage stamps intraday bars by their start in US/Eastern (README, "Alpha Vantage").

        :return: the :class:`~market_ingest.extract.Answer`; prices in the pair's market or the
            listing's currency (:func:`~market_ingest.vendors.alpha_vantage.listing_currency`).
        :raises QuotaExhaustedError: the daily budget or quota is spent (this and later symbols are deferred).
        :raises UnknownSymbolError: an ``Error Message`` answer (bad symbol or call).
        :raises RateLimitedError: throttled; the task is retried.
        :raises ConfigurationError: premium function on a free key (fails fast), or a pair Alpha
            Vantage cannot price (this symbol fails).
        """
        from market_ingest.extract import Answer

        pair = av.pair_kind(symbol)
        # CSV answers carry no meta: listings are US/Eastern, FX and crypto UTC.
        rows, tz, market = [], ("UTC" if pair else "US/Eastern"), (pair[2] if pair else None)
        currency = market or av.listing_currency(symbol)  # a pair's market; a listing's exchange currency
        params_list = self.series_params(symbol, interval, window)
        for params in params_list:
            got = self.query(params)
            if isinstance(got.doc, dict):
                part, tz = bodies.parse_series_json(got.doc, market=market)
            else:
                part = bodies.parse_series_csv(got.doc, tz)
            rows += part
        return Answer(
            bodies.rows_to_bars(
                rows, symbol=symbol, interval=interval, tz=tz, currency=currency, ingested_at=ingested_at, source=self.source
            ),
            now=self._vendor_now(),
            sessions=None if pair else av.regular_sessions(window),
            requests=len(params_list),
        )

    def corporate_actions(self, symbol: str) -> ActionsAnswer:
        """Every split and dividend Alpha Vantage states for ``symbol``: its ``SPLITS`` and
        ``DIVIDENDS`` answers (two requests of the daily budget; free functions), as traded.

        :return: the :class:`~market_ingest.actions.ActionsAnswer` (timezone US/Eastern: ex-dates
            are New York dates for US listings).
        :raises QuotaExhaustedError, RateLimitedError, UnknownSymbolError, VendorUnavailableError:
            as :meth:`query` raises them.
        """
        from market_ingest.actions import ActionsAnswer

        splits, dividends = (self.query({"function": f, "symbol": symbol, "datatype": "csv"}).doc for f in av.ACTIONS_FUNCTIONS)
        now = self._vendor_now()
        try:
            actions = bodies.parse_actions(
                splits, dividends, symbol=symbol, currency=av.listing_currency(symbol), clock=now, source=self.source
            )
        except ValueError as exc:
            raise UnexpectedBodyError(self.source, str(exc), symbol) from None
        return ActionsAnswer(actions, now, "US/Eastern")

    def fetch_quotes(
        self, symbols: list[str], as_of: datetime, ingested_at: datetime
    ) -> tuple[pa.Table, list[outcomes.SymbolOutcome]]:
        """``GLOBAL_QUOTE`` snapshots, one request per symbol, canonical quote schema.

        :param as_of: the snapshot time stamped into ``time`` (the run's data interval end: Alpha
            Vantage gives a trading day, not a quote time), so a rerun replaces the same rows.
        :return: ``(quotes, outcomes)`` with the same outcome rules as :meth:`fetch_bars`.
        """
        import pyarrow as pa

        from market_ingest.schema import QUOTE_SCHEMA, conform

        def one(symbol: str):
            quote = bodies.parse_quote(self.query({"function": "GLOBAL_QUOTE", "symbol": symbol}))
            row = {
                **quote.__dict__,
                "symbol": symbol,
                "time": as_of,
                "source": self.source,
                "currency": av.listing_currency(symbol),
                "ingested_at": ingested_at,
            }
            return outcomes.SymbolOutcome(symbol, outcomes.OK, rows=1), row

        rows, results = each_symbol(self.source, symbols, one)
        table = conform(pa.Table.from_pylist(rows), QUOTE_SCHEMA) if rows else QUOTE_SCHEMA.empty_table()
        return table, results
