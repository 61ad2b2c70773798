"""Twelve Data REST API: bars and quotes, within its credit limits, with its error bodies handled.

Connection ``market_twelvedata`` (type ``twelvedata``): the API key in the password field; host
optional (defaults to ``https://api.twelvedata.com``; set it for a proxy). Extra:
``{"credits_per_minute": 8, "daily_credits": 800}`` (the Basic plan; ``daily_credits`` 0 on a
paid plan, which has no daily cap).

Plain REST through ``requests`` rather than the ``twelvedata`` client: the client builds the same
query strings, but hides the answer the pipeline reads (the HTTP status beside the body's
``code``, the ``Date`` header that is the vendor's clock), sends the key as a query parameter
(so it sits in every URL a library logs), and pulls pandas and its own chart dependencies into
every worker and MWAA's plugins.zip.

Every request: take one credit of the key's minute and of its UTC day, shared by every task
(:class:`~market_ingest.quota.PostgresQuotaStore`), waiting for the next minute when the minute's
are spent; GET with the key in the ``Authorization`` header (never in a URL); classify the body
before any parsing (:func:`market_ingest.vendors.twelvedata.bodies.classify`). Nothing that leaves
this module (logs, exceptions, outcomes) carries the key.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from market_ingest import outcomes
from market_ingest.calendars import market_of
from market_ingest.errors import (
    ConfigurationError,
    NoDataError,
    QuotaExhaustedError,
    RateLimitedError,
    UnexpectedBodyError,
    UnknownSymbolError,
    VendorUnavailableError,
)
from market_ingest.extract import SharedExtract, each_symbol
from market_ingest.hooks import connection_extra, safe_to_send_credentials
from market_ingest.intervals import Window
from market_ingest.vendors import twelvedata as td
from market_ingest.vendors.twelvedata import bodies

if TYPE_CHECKING:
    import pyarrow as pa

    from market_ingest.config import SourceConfig
    from market_ingest.extract import Answer
    from market_ingest.quota import PostgresQuotaStore

log = logging.getLogger(__name__)

#: Minutes a request waits, in all, for a minute's credits (ours, or the vendor's 429 for the minute)
#: before it is given up as rate limited and the task's retry takes it from there: other tasks on
#: the key may be spending them.
MAX_MINUTE_WAITS = 5


class TwelveDataHook(SharedExtract, BaseHook):
    """Fetch bars and quotes from Twelve Data.

    :param twelvedata_conn_id: connection id (API key in the password field).
    :param quota: the shared credit store (``market.vendor_quota`` per day,
        ``market.vendor_minute_credits`` per minute); ``None`` counts in this process only.
    :param source: the configured source name this hook serves, written into every row and
        message. Credits belong to the API key, so they are kept per connection
        (:attr:`budget_key`): two sources on one connection share them.
    """

    conn_name_attr = "twelvedata_conn_id"
    default_conn_name = "market_twelvedata"
    conn_type = "twelvedata"
    hook_name = "Twelve Data"

    def __init__(
        self,
        twelvedata_conn_id: str = default_conn_name,
        quota: PostgresQuotaStore | None = None,
        source: str = td.SOURCE,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.twelvedata_conn_id = twelvedata_conn_id
        self.source = source
        self.quota = quota
        self._local_day = 0
        self._local_minutes: dict[datetime, int] = {}
        #: the market (calendar) of a symbol: the source's configured one when built for a source
        self.market_of: Callable[[str], str] = market_of

    @classmethod
    def for_source(cls, name: str, src: SourceConfig, *, timescale_conn_id: str) -> TwelveDataHook:
        """The hook serving source ``name`` configured as ``src``, its credits kept in the warehouse
        ``timescale_conn_id`` (shared by every task on the key)."""
        from market_ingest.hooks.timescale import TimescaleHook
        from market_ingest.quota import PostgresQuotaStore

        warehouse = TimescaleHook(timescale_conn_id=timescale_conn_id)
        warehouse.check_schema()  # the shared credits live in market.vendor_quota and market.vendor_minute_credits
        hook = cls(twelvedata_conn_id=src.connection_id(name), quota=PostgresQuotaStore(warehouse), source=name)
        hook.market_of = src.market_of
        return hook

    @property
    def budget_key(self) -> str:
        """The key of this hook's credits in the quota store: ``twelvedata:<connection id>``, since
        credits belong to the API key the connection holds."""
        return f"twelvedata:{self.twelvedata_conn_id}"

    def endpoint(self) -> tuple[str, str | None]:
        """The ``/time_series`` URL (under the connection's host, else :data:`DEFAULT_URL`) and the connection id."""
        return f"{self._settings['url']}/time_series", self.twelvedata_conn_id

    @cached_property
    def _settings(self) -> dict[str, Any]:
        conn = self.get_connection(self.twelvedata_conn_id)
        if not conn.password:
            raise ConfigurationError(self.source, f"connection {self.twelvedata_conn_id} has no API key (password field)")
        extra = connection_extra(conn)  # an emptied form field (null) takes the default
        from airflow.sdk.log import mask_secret

        mask_secret(conn.password)  # Airflow's masker then redacts it from every task log line
        try:
            per_minute = int(extra.get("credits_per_minute", td.DEFAULT_CREDITS_PER_MINUTE))
            daily = int(extra.get("daily_credits", td.DEFAULT_DAILY_CREDITS))
        except (TypeError, ValueError):
            raise ConfigurationError(
                self.source, f"connection {self.twelvedata_conn_id}: credits_per_minute and daily_credits must be whole numbers"
            ) from None
        if per_minute < 1 or daily < 0:
            raise ConfigurationError(
                self.source,
                f"connection {self.twelvedata_conn_id}: credits_per_minute must be at least 1 and daily_credits at least 0 "
                f"(got {per_minute} and {daily})",
            )
        url = (conn.host or "").rstrip("/") or td.DEFAULT_URL
        if not safe_to_send_credentials(url):
            raise ConfigurationError(
                self.source,
                f"connection {self.twelvedata_conn_id}: host {url!r} must be an https:// URL (the API key travels "
                "with every request; plain http only to 127.0.0.1 or localhost)",
            )
        return {
            "key": conn.password,
            "url": url,
            "per_minute": per_minute,
            "daily": daily,
        }

    @cached_property
    def session(self):
        """A ``requests`` session that spaces this task's requests by the minute's credits (8 a
        minute: one every 7.5 s) and keeps Twelve Data's clock (``Date``) of its latest answer."""
        import requests

        from market_ingest.routing import clocked_session

        return clocked_session(None, requests.Session, self._settings["per_minute"] / 60.0)()

    def _vendor_now(self) -> datetime:
        """Twelve Data's "now": the ``Date`` of its latest answer, never after the wall clock."""
        from market_ingest.routing import closed_bar_clock

        return closed_bar_clock(self.session.clock)

    def _take_credit(self, what: str, symbol: str | None, deadline: float) -> None:
        """Take one credit of the key's current minute (the wall clock, which workers keep by NTP),
        waiting for the next minute while the minute's are spent by this or other tasks, then one
        of its UTC day (the vendor's clock, as the quota's day): a credit given up on the minute
        spends nothing of the day.

        :param deadline: ``time.monotonic()`` past which no wait starts (the request's, shared with
            its waits on the vendor's 429).
        :raises RateLimitedError: the minute's credits stayed spent until ``deadline``.
        :raises QuotaExhaustedError: the day's credits are spent (the symbol and those after it are deferred).
        """
        from market_ingest.quota import utc_today

        s = self._settings
        while True:
            now = datetime.now(timezone.utc)
            minute = now.replace(second=0, microsecond=0)
            if self.quota is not None:
                taken = self.quota.take_minute(self.budget_key, minute, s["per_minute"])
            else:
                taken = self._local_minutes.get(minute, 0) < s["per_minute"]
                if taken:
                    self._local_minutes = {minute: self._local_minutes.get(minute, 0) + 1}
            if taken:
                break
            if time.monotonic() + 60 > deadline:
                raise RateLimitedError(self.source, f"{what}: no API credit left in {MAX_MINUTE_WAITS} minutes", symbol)
            self._wait_next_minute(now, what)
        if s["daily"]:
            day = utc_today(self._vendor_now())
            if self.quota is not None:
                if not self.quota.take(self.budget_key, day, s["daily"]):
                    raise QuotaExhaustedError(
                        self.source, f"the day's {s['daily']} API credits for {day} are spent; deferring until 00:00 UTC"
                    )
            elif self._local_day >= s["daily"]:
                raise QuotaExhaustedError(self.source, f"the day's {s['daily']} API credits are spent in this task")
            self._local_day += 1

    def _wait_next_minute(self, now: datetime, what: str, why: str = "") -> None:
        """Sleep until half a second into the minute after ``now``; ``why`` the minute is spent (logged)."""
        wait = 60.5 - now.second - now.microsecond / 1e6
        why = why or f"the minute's {self._settings['per_minute']} API credits are spent"
        log.info("%s: %s; waiting %.1f s for %s", self.source, why, wait, what)
        time.sleep(wait)

    def query(self, path: str, params: dict[str, str]) -> bodies.Classified:
        """One GET of ``path`` (``/time_series``, ``/quote``), classified. Data comes back; every other kind raises.

        :raises QuotaExhaustedError: the day's credits are spent, ours or the vendor's (429 for the day).
        :raises RateLimitedError: the vendor answered 429 for the minute after each of
            :data:`MAX_MINUTE_WAITS` waits for the next minute, or the minute's credits stayed spent.
        :raises NoDataError: 400 "No data is available on the specified dates".
        :raises UnknownSymbolError: 404, the symbol is not found.
        :raises ConfigurationError: 401 (the key; no symbol named, so the task fails at once), 403
            (the plan; the symbol fails), 400 and 414 (a parameter refused; the symbol fails).
        :raises VendorUnavailableError: no answer, or a 5xx (named by status, host and path).
        :raises UnexpectedBodyError: a body shape we do not know, its keys named.
        No message carries the API key.
        """
        from market_ingest.routing import Answered

        s = self._settings
        symbol = params.get("symbol")
        what = f"{path.strip('/')} {symbol or ''} {params.get('interval', '')}".strip()
        deadline = time.monotonic() + MAX_MINUTE_WAITS * 60 + 1
        while True:
            self._take_credit(what, symbol, deadline)
            try:
                response = self.session.get(
                    f"{s['url']}{path}", params=params, headers={"Authorization": f"apikey {s['key']}"}, timeout=30
                )
            except Exception as exc:
                raise VendorUnavailableError(
                    self.source, bodies.redact(f"{what}: {type(exc).__name__}: {exc}", s["key"]), symbol
                ) from None
            result = bodies.classify(response.text, s["key"], response.status_code)
            if result.kind != bodies.MINUTE_CREDITS or time.monotonic() + 60 > deadline:
                break
            # Another client of the key spent the minute (a key shared beyond this deployment):
            # wait for the next minute here rather than fail the task and ask its done symbols again.
            self._wait_next_minute(datetime.now(timezone.utc), what, "Twelve Data answered 429 for the minute")
        if result.kind == bodies.DATA:
            return result
        if result.kind == bodies.NO_DATA:
            raise NoDataError(self.source, f"{what}: {result.message}", symbol)
        if result.kind == bodies.UNKNOWN_SYMBOL:
            raise UnknownSymbolError(self.source, f"{what}: {result.message}", symbol)
        if result.kind == bodies.MINUTE_CREDITS:
            raise RateLimitedError(self.source, f"{what}: the minute's API credits are spent (429): {result.message}", symbol)
        if result.kind == bodies.DAILY_CREDITS:
            if self.quota is not None and s["daily"]:
                from market_ingest.quota import utc_today

                self.quota.mark_exhausted(self.budget_key, utc_today(self._vendor_now()))
            raise QuotaExhaustedError(self.source, f"{what}: the day's API credits are spent (429): {result.message}")
        if result.kind == bodies.UNAUTHORIZED:
            raise ConfigurationError(
                self.source, f"connection {self.twelvedata_conn_id}: Twelve Data refused the API key (401): {result.message}"
            )
        if result.kind == bodies.PLAN:
            raise ConfigurationError(self.source, f"{what}: not on this key's plan (403): {result.message}", symbol)
        if result.kind == bodies.BAD_REQUEST:
            raise ConfigurationError(
                self.source, f"{what}: Twelve Data refused the request ({result.code}): {result.message}", symbol
            )
        if result.kind == bodies.SERVER:
            raise VendorUnavailableError(self.source, f"{Answered.of(response)} for {what}: {result.message}", symbol)
        raise UnexpectedBodyError(self.source, f"{what}: {result.message}", symbol)

    def answer(self, symbol: str, interval: str, window: Window, ingested_at: datetime) -> Answer:
        """Twelve Data's bars for ``symbol`` around ``window``, canonical schema.

        One ``/time_series`` request (one credit) per range of :func:`~market_ingest.vendors.twelvedata.series_params`
        (5,000 points at most each), asked ``adjust=none``: as traded at every interval (daily and
        longer bars would otherwise come split-adjusted). Times are the bar's open, UTC, from the
        exchange's wall clock (``meta.exchange_timezone``; pairs: UTC). Intraday listings come back
        with their market's regular sessions (``exchange_calendars``), so a stray bar outside them
        is counted, not stored; crypto pairs are continuous (every missing bar is a gap).

        :return: the :class:`~market_ingest.extract.Answer`.
        :raises QuotaExhaustedError, RateLimitedError, UnknownSymbolError, ConfigurationError,
            VendorUnavailableError, UnexpectedBodyError: as :meth:`query` raises them; a range
            without data is no error unless every range of the window has none (``NoDataError``).
        """
        from market_ingest.calendars import ALWAYS_OPEN, FOREX, sessions
        from market_ingest.extract import Answer
        from market_ingest.intervals import INTRADAY_INTERVALS
        from market_ingest.schema import empty_bars

        params_list = td.series_params(symbol, interval, window)
        docs, empty = [], None
        for params in params_list:
            try:
                docs.append(self.query("/time_series", params).doc)
            except NoDataError as exc:
                empty = exc  # a weekend or holiday range; the window may hold bars in another
        if not docs and empty is not None:
            raise empty
        try:
            table = bodies.series_to_bars(docs, symbol=symbol, interval=interval, ingested_at=ingested_at, source=self.source)
        except ValueError as exc:
            raise UnexpectedBodyError(self.source, str(exc), symbol) from None
        market = self.market_of(symbol)
        notes = []
        if td.is_fx(symbol) and table.num_rows:
            notes.append("volume 0: Twelve Data states no volume for FX pairs")
        return Answer(
            table if table.num_rows else empty_bars(),
            now=self._vendor_now(),
            sessions=(
                [(o, c) for _, o, c in sessions(market, window)]
                if interval in INTRADAY_INTERVALS and market not in (ALWAYS_OPEN, FOREX)
                else None
            ),
            continuous=market == ALWAYS_OPEN,
            requests=len(params_list),
            note="; ".join(notes),
            tz=bodies.series_timezone(docs[-1]) if docs else None,
        )

    def fetch_quotes(
        self, symbols: list[str], as_of: datetime, ingested_at: datetime
    ) -> tuple[pa.Table, list[outcomes.SymbolOutcome]]:
        """``/quote`` snapshots, one request (one credit) per symbol, canonical quote schema.

        :param as_of: the snapshot time stamped into ``time`` (the run's data interval end), so a
            rerun replaces the same rows; the quote's own trading day is ``latest_trading_day``.
        :return: ``(quotes, outcomes)``, one outcome per symbol as for bars.
        """
        import pyarrow as pa

        from market_ingest.schema import QUOTE_SCHEMA, conform

        def one(symbol: str):
            try:
                quote = bodies.parse_quote(self.query("/quote", {"symbol": symbol}), symbol)
            except ValueError as exc:
                raise UnexpectedBodyError(self.source, str(exc), symbol) from None
            row = {**quote.__dict__, "symbol": symbol, "time": as_of, "source": self.source, "ingested_at": ingested_at}
            return outcomes.SymbolOutcome(symbol, outcomes.OK, rows=1), row

        rows, results = each_symbol(self.source, symbols, one)
        table = conform(pa.Table.from_pylist(rows), QUOTE_SCHEMA) if rows else QUOTE_SCHEMA.empty_table()
        return table, results
