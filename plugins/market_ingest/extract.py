"""The extract step every source shares: one symbol after another, the same rules for every vendor.

A source is a thin *bar client* (:class:`BarClient`, a hook): for one symbol it asks its vendor
and returns the bars as the vendor answered them, in the canonical schema (:class:`Answer`), or
raises a typed error from :mod:`market_ingest.errors`. Everything after that is decided here,
once:

* **price basis**: bars the vendor sent split-adjusted (:attr:`Answer.basis`) are converted to as
  traded with the symbol's split history known at the vendor's clock
  (:func:`market_ingest.actions.to_as_traded`, the history from a
  :class:`~market_ingest.actions.SplitHistories`); every kept row says ``price_basis`` ``as_traded``;
* **bar stamps**: a source configured ``bar_stamp: end`` (its vendor stamps bars by their close)
  has every intraday time moved back one interval to the bar's open first, and its outcomes say
  so (daily and longer bars are dated by their session and never moved);
* **window and closed bars**: bars opening outside the run's window, and the bar still open at
  the vendor's own clock (``Answer.now``), are dropped and counted
  (:func:`market_ingest.quality.clean_bars`);
* **sessions**: intraday bars outside the regular sessions the vendor states are dropped as
  ``outside_session`` unless the interval is configured with ``extended_hours``;
* **validation**: duplicates, missing or non-finite values and impossible prices are dropped
  and counted by reason; optional columns that are not finite become null;
* **gaps**: for markets that trade around the clock (``Answer.continuous``), every closed bar of
  the window the vendor did not return is reported as a gap;
* **outcomes**: one :class:`~market_ingest.outcomes.SymbolOutcome` per symbol, in the order
  asked (:func:`each_symbol`).

Staging the result in the lake is the extract task's (:class:`~market_ingest.operators.extract.MarketExtractOperator`).
Imports pyarrow inside functions: call from tasks only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, cast

from market_ingest import outcomes
from market_ingest.actions import AS_TRADED, SPLIT_ADJUSTED, AskEveryTime, SplitHistories
from market_ingest.errors import ConfigurationError, MarketDataError, QuotaExhaustedError, SymbolError
from market_ingest.intervals import INTRADAY_INTERVALS, Window, validate_interval

if TYPE_CHECKING:
    import pyarrow as pa

    from market_ingest.quality import Bounds

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Answer:
    """One symbol's bars as its vendor answered them, before any rule of :func:`extract_bars`.

    :param table: bars in the canonical schema (:data:`~market_ingest.schema.BAR_SCHEMA`: UTC
        open times, prices in the listing currency, volume in units of the asset), in the order
        the vendor sent them, unfiltered: bars outside the window, still open, repeated or invalid
        are all still there.
    :param now: the vendor's clock (UTC) when it answered: a bar that has not closed by then is
        still open. Vendors state it in their ``Date`` header (:mod:`market_ingest.routing`).
    :param sessions: the regular trading sessions ``[(open, close)]`` (UTC) the vendor states or
        the market keeps; ``None`` when the market has no session rule (24/7, FX, crypto) or the
        vendor does not say. Applied to intraday intervals configured without ``extended_hours``.
    :param continuous: the market trades around the clock, so every closed bar of the window
        should exist and each missing one is reported as a gap (crypto exchanges).
    :param requests: vendor requests this symbol cost (for the log).
    :param no_data_reason: what to report when no bar is left.
    :param note: what the bars mean when it is not obvious (a swap's settle currency and volume
        unit); shown in the run report.
    :param basis: what the table's prices are: ``as_traded`` (most vendors), or ``split_adjusted``
        as of ``now`` (Yahoo's equities), which the extract step converts
        (:mod:`market_ingest.actions`); ``tz``: the exchange's timezone (IANA) dating the bars' days.
    """

    table: pa.Table
    now: datetime
    sessions: list[tuple[datetime, datetime]] | None = None
    continuous: bool = False
    requests: int = 1
    no_data_reason: str = "no bars in the window"
    note: str = ""
    basis: str = AS_TRADED
    tz: str | None = None


class BarClient(Protocol):
    """What a source offers the extract step (every bar hook of :mod:`market_ingest.hooks`)."""

    #: the configured source name, written into every row and every message
    source: str
    #: what the vendor's bar times mark: ``start`` (the open) or ``end`` (the close; moved back to the
    #: open before any rule, see :func:`bar_ends_to_opens`). Set from the source's config.
    bar_stamp: str

    def prepare(self, interval: str, window: Window) -> None:
        """Check once per batch what holds for every symbol (the interval is offered, the window
        is within the vendor's lookback); raise a permanent error otherwise. May make requests."""

    def answer(self, symbol: str, interval: str, window: Window, ingested_at: datetime) -> Answer:
        """The vendor's bars for ``symbol`` around ``window``, or a typed error (see :func:`each_symbol`)."""


def each_symbol(
    source: str,
    symbols: list[str],
    fetch_one: Callable[[str], tuple[outcomes.SymbolOutcome, T | None]],
    *,
    concurrency: int = 1,
) -> tuple[list[T], list[outcomes.SymbolOutcome]]:
    """Run ``fetch_one`` for each symbol, turning what stops one symbol into its outcome.

    * :class:`~market_ingest.errors.SymbolError` and its kinds: the symbol gets the error's
      ``status`` (``unknown_symbol``, ``no_data``, ``failed``) and reason;
      :class:`~market_ingest.errors.QuotaExhaustedError` makes it and every symbol not yet asked
      ``deferred``, without calling ``fetch_one`` for them;
    * a :class:`~market_ingest.errors.ConfigurationError` naming a symbol (a spelling the vendor
      cannot serve): ``failed``;
    * any other :class:`~market_ingest.errors.MarketDataError` (throttling, the vendor down, a
      window or configuration wrong for the whole task, a body of unknown shape) propagates: the
      task fails and is retried or not by its kind;
    * any other exception (an answer that cannot be normalised): ``failed``, with its type and
      message, logged at ERROR; the batch goes on and the run report counts the failure.

    :param source: source name, for messages.
    :param fetch_one: ``symbol -> (outcome, payload or None)``; with ``concurrency`` above 1 it
        is called from that many threads at once and must be thread-safe.
    :param concurrency: symbols asked at once (``symbols_in_flight``). 1: one after another in
        the calling thread. Above 1: in a thread pool; a propagating error is raised once the
        symbols already in flight have answered, and no further symbol is started.
    :return: ``(payloads that were not None, one outcome per symbol in the order of symbols)``,
        whatever order the symbols were answered in.
    """
    exhausted: list[str] = []  # the quota's reason, once spent

    def settle(symbol: str) -> tuple[outcomes.SymbolOutcome, T | None]:
        if exhausted:
            return outcomes.SymbolOutcome(symbol, outcomes.DEFERRED, reason=exhausted[0]), None
        try:
            return fetch_one(symbol)
        except QuotaExhaustedError as exc:
            exhausted.append(exc.reason)
            log.warning("%s: %s; deferring %s and the rest of the batch", source, exc.reason, symbol)
            return outcomes.SymbolOutcome(symbol, outcomes.DEFERRED, reason=exc.reason), None
        except SymbolError as exc:
            (log.error if exc.status == outcomes.FAILED else log.warning)("Skipping %s:%s: %s", source, symbol, exc.reason)
            return outcomes.SymbolOutcome(symbol, exc.status, reason=exc.reason), None
        except ConfigurationError as exc:
            if not exc.symbol:
                raise  # the whole task is misconfigured (premium function, no key)
            log.warning("Skipping %s:%s: %s", source, symbol, exc.reason)
            return outcomes.SymbolOutcome(symbol, outcomes.FAILED, reason=exc.reason), None
        except MarketDataError:
            raise
        except Exception as exc:  # one symbol's malformed answer must not sink the batch
            reason = f"{type(exc).__name__}: {exc}"
            log.error("%s:%s failed: %s", source, symbol, reason)
            return outcomes.SymbolOutcome(symbol, outcomes.FAILED, reason=reason), None

    if concurrency <= 1 or len(symbols) <= 1:
        settled = [settle(symbol) for symbol in symbols]
    else:
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(min(concurrency, len(symbols)), thread_name_prefix=f"{source}-symbol")
        try:
            settled = list(pool.map(settle, symbols))
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    payloads = [payload for _, payload in settled if payload is not None]
    return payloads, [outcome for outcome, _ in settled]


def extract_bars(
    client: BarClient,
    symbols: list[str],
    interval: str,
    window: Window,
    ingested_at: datetime,
    *,
    extended_hours: bool = False,
    rejects: list[pa.Table] | None = None,
    concurrency: int = 1,
    bounds: Bounds | None = None,
    split_histories: SplitHistories | None = None,
    keep_actions: bool = False,
) -> tuple[pa.Table, list[outcomes.SymbolOutcome]]:
    """Closed, valid bars opening in ``window`` for each symbol, from ``client``, with their outcomes.

    :param client: the source's bar client (a hook).
    :param symbols: symbols in the source's spelling.
    :param interval: canonical interval.
    :param window: ``[start, end)``, UTC.
    :param ingested_at: lineage stamp (UTC) written into every row.
    :param extended_hours: intraday only: keep bars outside the regular sessions the client
        states; without it they are dropped and counted as ``outside_session``.
    :param rejects: when given, each symbol's rows that failed validation are appended to it (as
        sent, with a ``reason`` column: :func:`market_ingest.quality.split_valid`).
    :param concurrency: symbols asked at once, in threads (:func:`each_symbol`); above 1 only for
        clients whose kind allows it (:attr:`market_ingest.kinds.SourceKind.concurrent_symbols`).
    :param bounds: the source's plausible magnitudes (:class:`market_ingest.quality.Bounds`; default
        its defaults): a bar beyond them is rejected as ``invalid: implausible_price`` or ``_volume``.
    :param split_histories: where a symbol's split history comes from when its vendor sends
        split-adjusted prices (the lake's :class:`~market_ingest.lake.actions.ActionsCache`;
        default :class:`~market_ingest.actions.AskEveryTime`, one actions request per symbol).
    :param keep_actions: also refresh the actions of symbols whose bars are as traded
        (``SourceConfig.actions_enabled``: Alpha Vantage with ``corporate_actions: true``); a
        failure to refresh them is a note on the symbol, not a failure.
    :return: ``(bars, outcomes)``: a :data:`~market_ingest.schema.BAR_SCHEMA` table of every
        symbol's kept bars (symbol after symbol), and one outcome per symbol in order: ``ok`` with
        its rows, ``dropped`` by reason, ``nulled``, ``conflicts`` and ``gaps``; or ``no_data``,
        ``unknown_symbol``, ``deferred``, ``failed`` with the reason.
    :raises ValueError: ``interval`` is not canonical.
    :raises MarketDataError: what the client raises for the whole task (see :func:`each_symbol`).
    """
    import pyarrow as pa

    from market_ingest.actions import bar_days, to_as_traded, with_basis
    from market_ingest.quality import clean_bars, find_gaps
    from market_ingest.schema import conform, empty_bars

    validate_interval(interval)
    client.prepare(interval, window)
    intraday = interval in INTRADAY_INTERVALS
    histories = split_histories or AskEveryTime()

    def one(symbol: str) -> tuple[outcomes.SymbolOutcome, Any]:
        answer = client.answer(symbol, interval, window, ingested_at)
        if answer.basis == SPLIT_ADJUSTED and answer.table.num_rows:
            history = histories.split_history(cast(Any, client), symbol, answer.now, answer.tz or "UTC")
            answer.table = to_as_traded(answer.table, history, answer.tz)
            if history.factor(min(bar_days(answer.table, answer.tz))) != 1.0:  # the oldest bar's is the largest
                note = f"as traded: the vendor's split adjustment undone with the {len(history)} splits known on {history.as_of}"
                answer.note = "; ".join(filter(None, [answer.note, note]))
        elif answer.basis != AS_TRADED:
            raise ConfigurationError(client.source, f"the vendor's price basis {answer.basis!r} cannot be converted to as traded")
        else:
            answer.table = with_basis(answer.table, AS_TRADED)
            if keep_actions and answer.table.num_rows:
                # As-traded bars need no history; the actions are kept for adjusted reads. Failing to
                # refresh them costs the symbol nothing: its bars are right, and tomorrow asks again.
                try:
                    histories.split_history(cast(Any, client), symbol, answer.now, answer.tz or "UTC")
                except MarketDataError as exc:
                    note = f"corporate actions not refreshed: {exc.reason}"
                    log.warning("%s:%s: %s", client.source, symbol, note)
                    answer.note = "; ".join(filter(None, [answer.note, note]))
        if intraday and getattr(client, "bar_stamp", "start") == "end":  # daily and longer bars are dated, not stamped
            answer.table, answer.note = (
                bar_ends_to_opens(answer.table, interval),
                "; ".join(filter(None, [answer.note, END_NOTE])),
            )
        sessions = answer.sessions if intraday and not extended_hours else None
        if sessions == [] and answer.table.num_rows:
            log.warning("%s:%s: the vendor stated no trading sessions; keeping every bar it sent", client.source, symbol)
            sessions = None
        cleaned = clean_bars(answer.table, interval, window, answer.now, sessions, bounds)
        gaps = find_gaps(cleaned.table["time"], interval, window, answer.now) if answer.continuous else []
        log.info(
            "%s:%s %s: %d bars in %d requests, %d kept, dropped %s%s",
            client.source,
            symbol,
            interval,
            answer.table.num_rows,
            answer.requests,
            cleaned.table.num_rows,
            cleaned.dropped or "none",
            f", gaps {[f'{a:%Y-%m-%d %H:%M}-{b:%H:%M}' for a, b in gaps[:10]]}" if gaps else "",
        )
        outcome = cleaned.outcome(
            symbol, gaps=[[a.isoformat(), b.isoformat()] for a, b in gaps], no_data_reason=answer.no_data_reason
        )
        outcome.note = answer.note
        if rejects is not None and cleaned.rejected is not None:
            rejects.append(cleaned.rejected)
        return outcome, (cleaned.table if outcome.rows else None)

    tables, results = each_symbol(client.source, symbols, one, concurrency=concurrency)
    return (pa.concat_tables([conform(t) for t in tables]) if tables else empty_bars()), results


class SharedExtract:
    """Mixin for bar hooks: ``fetch_bars`` is :func:`extract_bars` over the hook's own
    :meth:`~BarClient.prepare` and :meth:`~BarClient.answer`."""

    source: str
    #: ``start``: the vendor stamps bars by their open; ``end``: by their close (``SourceConfig.bar_stamp``,
    #: set by :func:`market_ingest.sources.bar_hook`)
    bar_stamp: str = "start"

    def prepare(self, interval: str, window: Window) -> None:
        """Nothing to check before the first symbol (override where there is)."""

    def endpoint(self) -> tuple[str, str | None]:
        """``(URL of the hook's first request, after any base URL's routing; its connection id)``."""
        raise NotImplementedError

    def check_reachable(self, timeout: float = 10.0) -> None:
        """Fail within ``timeout`` seconds when the vendor's server (or the proxy to it) gives no
        HTTP answer: :func:`market_ingest.routing.check_reachable` on :meth:`endpoint`.

        :raises VendorUnavailableError: naming the host, the port and the connection.
        """
        from market_ingest.routing import check_reachable

        url, conn_id = self.endpoint()
        check_reachable(url, self.source, conn_id, timeout)

    def fetch_bars(
        self,
        symbols: list[str],
        interval: str,
        window: Window,
        ingested_at: datetime,
        *,
        extended_hours: bool = False,
        rejects: list[pa.Table] | None = None,
        concurrency: int = 1,
        bounds: Bounds | None = None,
        split_histories: SplitHistories | None = None,
        keep_actions: bool = False,
    ) -> tuple[pa.Table, list[outcomes.SymbolOutcome]]:
        """Closed, valid bars in ``window`` per symbol, with outcomes: :func:`extract_bars` on this
        hook (``rejects`` collects the rows that failed validation; ``concurrency`` symbols are
        asked at once, in threads; ``bounds``: the source's plausible magnitudes;
        ``split_histories``: where split histories come from, for split-adjusted vendors;
        ``keep_actions``: refresh as-traded symbols' actions too)."""
        return extract_bars(
            cast(BarClient, self),  # the hooks mixing this in are BarClients
            symbols,
            interval,
            window,
            ingested_at,
            extended_hours=extended_hours,
            rejects=rejects,
            concurrency=concurrency,
            bounds=bounds,
            split_histories=split_histories,
            keep_actions=keep_actions,
        )


#: The outcome note of a symbol whose vendor stamps bars by their end (``bar_stamp: end``).
END_NOTE = "bar_stamp end: the vendor's times are bar ends, moved back one interval to bar opens"


def bar_ends_to_opens(table: pa.Table, interval: str) -> pa.Table:
    """``table`` with each ``time`` moved from the bar's end to its open, one interval earlier, for
    vendors that stamp intraday bars by their close. Daily and longer bars are dated by their
    session, not stamped by an instant: they are never moved (a 1d bar would land a day early).

    :param table: canonical intraday bars whose ``time`` is each bar's (exclusive) end, UTC.
    :param interval: canonical intraday interval (``1m`` to ``1h``).
    :return: the same rows, ``time`` the bar's open (the canonical meaning), UTC.
    :raises ValueError: ``interval`` is not intraday.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from market_ingest.intervals import INTERVAL_LENGTH

    if interval not in INTRADAY_INTERVALS:
        raise ValueError(f"bar_stamp end moves intraday bars only; {interval} bars are dated by their session")
    column = table.schema.get_field_index("time")
    opens = pc.subtract(table["time"], pa.scalar(INTERVAL_LENGTH[interval], pa.duration("us")))
    return table.set_column(column, table.schema.field("time"), opens)
