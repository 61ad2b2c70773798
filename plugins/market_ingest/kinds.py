"""Source kinds: what each ``kind:`` of the pipeline config means, in one registry.

A kind names the hook that serves a source and the facts the rest of the pipeline needs without
building it: how its symbols are spelled, whether it defers symbols to a later run (a daily
quota), whether its intraday bars have pre- and post-market hours, and whether it needs a ccxt
exchange id. The config validates ``kind`` against :data:`KINDS`; ``market_ingest.sources``
builds hooks and plans requests from it. Adding a vendor is one :func:`register` call plus its
hook and request planner (``market_ingest.sources.register_hook``).

Stdlib only: imported at DAG parse time.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SourceKind:
    """One source kind.

    :param name: the ``kind:`` value in the pipeline config.
    :param symbol_pattern: the kind's symbol spelling, a regex matched against the whole symbol
        (Python and ECMAScript alike: the Params form uses it too).
    :param defers: the hook reports ``deferred`` symbols (daily quota) for a later run to pick up.
    :param extended_hours: intraday bars have pre- and post-market hours (``extended_hours``
        applies to its intraday intervals).
    :param exchange: a ccxt exchange id is required (``exchange:`` and the ccxt-only options).
    :param quote_request_per_symbol: a quote snapshot costs one request per symbol, not per batch.
    :param continuous: its markets trade around the clock (crypto exchanges): every bar of every
        day should exist (market ``24/7``, :func:`market_ingest.calendars.market_of`).
    :param concurrent_symbols: its hook may fetch several symbols of a batch at once, in threads
        (``symbols_in_flight``): yfinance shares one session and its caches across threads, as its
        own ``download(threads=True)`` does. Not ccxt (its synchronous throttle keeps no lock) nor
        Alpha Vantage (a daily quota spent symbol after symbol).
    :param conn_type: the Airflow connection type of its hook (``get_provider_info``).
    :param default_conn_id: the connection a source of this kind uses without ``conn_id``; empty:
        ``market_<source name>`` (one connection per exchange).
    """

    name: str
    symbol_pattern: str
    defers: bool = False
    extended_hours: bool = False
    exchange: bool = False
    quote_request_per_symbol: bool = False
    continuous: bool = False
    concurrent_symbols: bool = False
    conn_type: str = ""
    default_conn_id: str = ""


#: Yahoo: ``AAPL``, ``BRK-B``, ``BP.L``, ``EURUSD=X``, ``GC=F``, ``^GSPC``, ``BTC-USD`` (no ``/``: a
#: symbol becomes a URL path segment). Alpha Vantage: listings (``IBM``, ``BRK.B``, ``TSCO.LON``)
#: and ``BASE/QUOTE`` pairs (``EUR/USD``, ``BTC/EUR``). ccxt unified symbols: ``BTC/USDT``, swaps
#: ``BTC/USDT:USDT``, futures ``BTC/USDT:USDT-250328``.
KINDS: dict[str, SourceKind] = {
    k.name: k
    for k in (
        SourceKind(
            "yahoo",
            r"[A-Za-z0-9^][A-Za-z0-9.=^-]{0,31}",
            extended_hours=True,
            concurrent_symbols=True,
            conn_type="yahoo_finance",
            default_conn_id="market_yahoo",
        ),
        SourceKind(
            "alpha_vantage",
            r"[A-Za-z0-9][A-Za-z0-9.-]{0,15}|[A-Za-z]{2,10}/[A-Za-z]{3}",
            defers=True,
            extended_hours=True,
            quote_request_per_symbol=True,
            conn_type="alpha_vantage",
            default_conn_id="market_alpha_vantage",
        ),
        SourceKind(
            "ccxt",
            r"[A-Za-z0-9][A-Za-z0-9._-]{0,31}/[A-Za-z0-9]{1,16}(:[A-Za-z0-9]{1,16}(-[A-Za-z0-9]{1,16})?)?",
            exchange=True,
            continuous=True,
            conn_type="ccxt",
        ),
    )
}


def kind(name: str) -> SourceKind:
    """The registered kind ``name``.

    :raises ValueError: naming the kind and the registered ones.
    """
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown source kind {name!r}; registered kinds: {', '.join(sorted(KINDS))}") from None


def register(source_kind: SourceKind) -> SourceKind:
    """Add (or replace) a kind; returns it. Call before the config is loaded (e.g. in a plugin module)."""
    KINDS[source_kind.name] = source_kind
    return source_kind
