"""Interactive Brokers (kind ``ibkr``) through its Client Portal Web API: facts, connection form, request planning.

The hook (:class:`market_ingest.hooks.ibkr.IbkrHook`) sends the requests planned here
(:func:`history_request` for each span of :func:`chunks`) through ``ibind``'s client, to a Client Portal Gateway the user runs or to
``api.ibkr.com`` with OAuth 1.0a, and reads the answers with :mod:`market_ingest.vendors.ibkr.bodies`
(classification before parsing, then canonical bars). Everything here is offline.

Vendor facts (IBKR's Web API reference; ``ibind``'s client; measurements its users published;
sources in ``include/recordings/PROVENANCE.md``):

* A symbol is asked by its contract id: ``GET /iserver/secdef/search?symbol=AAPL`` lists the
  contracts (:func:`~market_ingest.vendors.ibkr.bodies.parse_search` takes the stock listing).
* ``GET /iserver/marketdata/history?conid=&bar=&period=&startTime=&outsideRth=``: ``startTime``
  (UTC, ``YYYYMMDD-HH:MM:SS``) is the **end** of the answered span and ``period`` reaches back
  from it (``{1-1000}d``; for daily bars the days count sessions); at most 1,000 bars per answer.
  Bars ``1min 5min 15min 30min 1h 1d 1w 1m`` map one to one to the canonical intervals
  (:data:`~market_ingest.vendors.ibkr.bodies.IB_BARS`). ``t`` is the bar's open (daily: the session's
  09:30 New York); ``v`` is in lots of 100 shares for US stocks.
* Prices: IB's trade history is "adjusted for splits, but not dividends" (TWS API documentation,
  "Historical Bar Data"), as of the request: the kind's :attr:`~market_ingest.vendors.SourceKind.price_basis`
  is ``split_adjusted``. The Web API states no split history, so a source of this kind names
  another configured source (``splits_from``: a ``yahoo`` or ``alpha_vantage`` source) whose
  splits convert IB's bars to as traded, as Yahoo's own are (:mod:`market_ingest.actions`).
* Pacing ("Pacing Limitations"): 10 requests a second through a gateway, 50 through
  ``api.ibkr.com``; at most 5 history requests in flight per session; an excess answers 429, and a
  client that keeps on may be put in a "penalty box" for 10 minutes. The pool ``ibkr`` carries
  the concurrent requests, the connection's ``requests_per_second`` the spacing of each task's.
* A brokerage session times out without traffic: ``POST /tickle`` at least every minute keeps it
  (IBKR: "we recommend calling /tickle approximately every 60 seconds"); a gateway also needs a
  daily login in a browser (or a tool such as IBeam doing it), which no task can do.

Stdlib only at import time.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from market_ingest.actions import SPLIT_ADJUSTED
from market_ingest.intervals import INTRADAY_INTERVALS, Window, validate_interval
from market_ingest.vendors import ConnectionForm, SourceKind, flag_field, number_field, text_field

SOURCE = "ibkr"
#: A Client Portal Gateway on the worker's machine (its default port; its certificate is self-signed).
DEFAULT_GATEWAY_URL = "https://localhost:5000/v1/api"
#: The Web API's OAuth 1.0a host.
OAUTH_URL = "https://api.ibkr.com/v1/api"
#: Bars per history answer at most.
MAX_POINTS = 1000
#: Requests a second one session may send (Pacing Limitations): through a gateway, through OAuth.
GATEWAY_REQUESTS_PER_SECOND = 10
OAUTH_REQUESTS_PER_SECOND = 50
#: Seconds between two ``/tickle`` calls that keep a session alive (IBKR recommends about 60).
TICKLE_SECONDS = 60
#: canonical interval -> IB ``bar``.
BARS = {"1m": "1min", "5m": "5min", "15m": "15min", "30m": "30min", "1h": "1h", "1d": "1d", "1wk": "1w", "1mo": "1m"}
#: Days one intraday history request spans: 1- and 5-minute bars a day at a time (IBKR's
#: guidance for the finest bars), the others as many 24-hour days as stay under :data:`MAX_POINTS`.
INTRADAY_CHUNK_DAYS = {"1m": 1, "5m": 1, "15m": 10, "30m": 20, "1h": 41}
#: Calendar days one daily, weekly or monthly request spans (a period of at most 1,000 days).
DAILY_CHUNK_DAYS = 1000


def chunks(interval: str, window: Window) -> list[tuple[datetime, datetime]]:
    """The ``[start, end)`` spans (UTC) one history request each serves, oldest first."""
    validate_interval(interval)
    step = timedelta(days=INTRADAY_CHUNK_DAYS[interval] if interval in INTRADAY_INTERVALS else DAILY_CHUNK_DAYS)
    spans, cursor = [], window.start
    while cursor < window.end:
        spans.append((cursor, min(cursor + step, window.end)))
        cursor += step
    return spans


def history_request(conid: int, interval: str, start: datetime, end: datetime, outside_rth: bool = False) -> dict[str, Any]:
    """The ``/iserver/marketdata/history`` request serving the span ``[start, end)`` (UTC) of contract ``conid``.

    :param interval: canonical interval.
    :param outside_rth: ask the bars outside regular trading hours too (intraday).
    :return: the keyword arguments of ``ibind``'s ``marketdata_history_by_conid``: ``conid``
        (string), ``bar`` (:data:`BARS`), ``period`` and ``start_time`` (a UTC ``datetime``: the
        span's end), ``outside_rth``. Intraday: ``period`` the span's days (IB answers the bars
        opening in ``[startTime - period, startTime)``). Daily and longer: ``startTime`` 00:00 UTC two days after
        the span's last date (IB answers the sessions dated before ``startTime``'s New York date)
        and ``period`` the span's weekdays plus one (a period in days counts sessions, the
        ``startTime`` date's own included), so an answer reaches little before the span; the
        extract step keeps the bars in the window.
    """
    days = max(1, -(-int((end - start).total_seconds()) // 86_400))
    if interval in INTRADAY_INTERVALS:
        stop, period = end, days
    else:
        last = (end - timedelta(microseconds=1)).date()
        stop = datetime(last.year, last.month, last.day, tzinfo=timezone.utc) + timedelta(days=2)
        weekdays = sum((start.date() + timedelta(days=i)).weekday() < 5 for i in range((last - start.date()).days + 1))
        period = min(MAX_POINTS, weekdays + 1)
    return {"conid": str(conid), "bar": BARS[interval], "period": f"{period}d", "start_time": stop, "outside_rth": outside_rth}


def history_params(conid: int, interval: str, window: Window, outside_rth: bool = False) -> list[dict[str, Any]]:
    """:func:`history_request` for each span of :func:`chunks` serving ``window``, oldest first."""
    return [history_request(conid, interval, start, end, outside_rth) for start, end in chunks(interval, window)]


def planned_requests(src: Any, interval: str, window: Window, now: datetime) -> int:
    """Requests for one symbol over ``window``: its contract search and one per :func:`chunks` span.

    :param src: the source's config (unused: every source of the kind plans alike).
    """
    return 1 + len(chunks(interval, window))


#: IB symbols: US stock listings as IB spells them (``AAPL``, ``BRK.B``), resolved to the stock
#: contract on its primary listing. Listings on other exchanges (their currency and session dates)
#: are not served yet. History as far back as IB serves it: no lookback cap (an empty answer is
#: reported as no data).
KIND = SourceKind(
    SOURCE,
    r"[A-Za-z0-9][A-Za-z0-9.]{0,11}",
    hook="market_ingest.hooks.ibkr.IbkrHook",
    planned_requests=planned_requests,
    conn_type="ibkr",
    default_conn_id="market_ibkr",
    extended_hours=True,
    price_basis=SPLIT_ADJUSTED,
    actions_requests=1,
    splits_elsewhere=True,
    form=ConnectionForm(
        hook_name="Interactive Brokers (Client Portal Web API)",
        integration="Interactive Brokers",
        doc_url="https://www.interactivebrokers.com/campus/ibkr-api-page/cpapi-v1/",
        fields={
            "oauth": flag_field(
                "OAuth 1.0a (no gateway)",
                "On: sign every request to api.ibkr.com with the OAuth fields below. Off: send them to the "
                "Client Portal Gateway at Host, which must be logged in.",
            ),
            "cacert": text_field(
                "Gateway CA certificate",
                "Gateway mode: path of the CA certificate the gateway's TLS certificate is checked against; "
                "empty: not checked (the gateway ships a self-signed one).",
            ),
            "consumer_key": text_field("OAuth consumer key", "OAuth: the consumer key registered with IBKR (9 characters)."),
            "access_token": text_field("OAuth access token", "OAuth: the access token IBKR issued for the consumer."),
            "encryption_key": text_field(
                "OAuth private encryption key", "OAuth: PEM text of the private encryption key.", secret=True
            ),
            "signature_key": text_field(
                "OAuth private signature key", "OAuth: PEM text of the private signature key.", secret=True
            ),
            "dh_prime": text_field("OAuth Diffie-Hellman prime", "OAuth: the DH prime (hex) from the consumer's setup."),
            "realm": text_field("OAuth realm", "OAuth: limited_poa (the default), or test_realm for the TESTCONS consumer."),
            "requests_per_second": number_field(
                "Requests per second",
                "Spacing of one task's requests (IBKR's limits: 10 a second through a gateway, 50 through OAuth).",
                None,
            ),
        },
        behaviour={
            "hidden-fields": ["schema", "login", "port", "extra"],
            "relabeling": {"host": "Gateway URL", "password": "OAuth access token secret"},
            "placeholders": {"host": DEFAULT_GATEWAY_URL},
        },
    ),
)
