"""Vendors: one module per source kind, holding everything the pipeline knows about that vendor.

A vendor module (``vendors/yahoo.py``, ``vendors/alpha_vantage.py``, ``vendors/ccxt.py``) holds
the kind's facts and its Add Connection form (its ``KIND``, a :class:`SourceKind`), its request
planning and lookback (offline, no client), the parsing of its answers into canonical bars and
the paging of its requests, as pure functions. Its hook under ``market_ingest.hooks`` (named by
``KIND.hook``) is the Airflow-facing class around them: the connection, the client or session,
retries and the translation of the client's errors.

:mod:`market_ingest.kinds` registers the ``KIND`` of every module of this package; another kind
(a plugin's, a test's) is registered with :func:`market_ingest.kinds.register`. Everything else
reads the registered kind: the config (``kind:``), :mod:`market_ingest.sources` (the hook, the
request plan, the lookback) and :mod:`market_ingest.get_provider_info` (the connection form).

Stdlib only at import time (the config reads the kinds at DAG parse time): a vendor module
imports its client library, pandas and pyarrow inside the functions that need them.

A vendor named like its client library is a package (``vendors/ccxt/__init__.py``), not a
module file: Airflow's plugin loader imports every ``.py`` file under ``plugins/`` it is not told
to ignore as a top-level module named by its file name, so where ``plugins/.airflowignore`` is
missing a file ``vendors/ccxt.py`` would replace the ccxt library in ``sys.modules`` (a
package's ``__init__.py`` does not).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from market_ingest.actions import AS_TRADED
from market_ingest.intervals import Window

_KEY_PARAM = re.compile(r"(?i)(apikey[=\s:]+)[^&\s\"',]+")


def redact(text: str, api_key: str | None) -> str:
    """``text`` without an API key: the key itself, and any ``apikey=...`` (a query parameter) or
    ``apikey ...`` (an ``Authorization`` header's value), replaced by ``***``.

    :param text: a message, URL or body that may hold the key.
    :param api_key: the key in use (may be ``None``).
    """
    if api_key:
        text = text.replace(api_key, "***")
    return _KEY_PARAM.sub(r"\1***", text)


@dataclass(frozen=True)
class Classified:
    """A vendor body's kind, decided before any parsing of data (each vendor's ``bodies.classify``).

    :param kind: one of the vendor's body kinds (``data``, or an error kind).
    :param doc: the parsed JSON (or the CSV text), when it could be parsed.
    :param message: for errors, the vendor's message, with the key redacted (:func:`redact`).
    :param keys: the JSON object's keys, named when a shape is unknown.
    :param code: the vendor's error code (Twelve Data's ``code``), when it states one.
    """

    kind: str
    doc: Any = None
    message: str = ""
    keys: tuple[str, ...] = field(default=())
    code: int | None = None


def number_field(label: str, description: str, default: float | int | None, kind: str = "number") -> dict[str, Any]:
    """An Add Connection form field holding a number (``kind="integer"`` for whole numbers), empty allowed."""
    return {"label": label, "description": description, "schema": {"type": [kind, "null"], "default": default}}


def text_field(label: str, description: str, *, secret: bool = False) -> dict[str, Any]:
    """An Add Connection form field holding text; ``secret``: masked in the form and in the API's answers."""
    schema: dict[str, Any] = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"
    return {"label": label, "description": description, "schema": schema}


def flag_field(label: str, description: str, default: bool = False) -> dict[str, Any]:
    """An Add Connection form field holding a yes/no setting."""
    return {"label": label, "description": description, "schema": {"type": ["boolean", "null"], "default": default}}


@dataclass(frozen=True)
class ConnectionForm:
    """A kind's connection type as Airflow's providers manager shows it (``get_provider_info``).

    :param hook_name: the connection type's name in the Add Connection dialog (``Yahoo Finance``).
    :param integration: the integration's name (``provider_info.schema.json``, ``integrations``).
    :param doc_url: the vendor's documentation.
    :param fields: ``conn-fields``: fields stored under their own name in the connection's extra
        (:func:`number_field`, :func:`text_field`, :func:`flag_field`); their defaults are the hook's.
    :param behaviour: ``ui-field-behaviour``: hidden and relabelled standard fields, placeholders.
    """

    hook_name: str
    integration: str
    doc_url: str
    fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    behaviour: dict[str, Any] = field(default_factory=dict)


def serves_any_window(src: Any, interval: str, now: datetime) -> datetime | None:
    """The lookback of a vendor serving any past window: ``None``."""
    return None


@dataclass(frozen=True)
class SourceKind:
    """One source kind: what a ``kind:`` of the pipeline config means, registered once.

    :param name: the ``kind:`` value in the pipeline config.
    :param symbol_pattern: the kind's symbol spelling, a regex matched against the whole symbol
        (Python and ECMAScript alike: the Params form uses it too).
    :param hook: the dotted path of its hook class (``market_ingest.hooks.yahoo.YahooFinanceHook``),
        imported only when a task builds it. The class builds itself for a configured source with
        ``for_source(name, src, *, timescale_conn_id)``.
    :param planned_requests: ``(source config, interval, window, now) -> requests per symbol``, an
        upper bound computed offline (no client, no request, no hook).
    :param oldest_servable: ``(source config, interval, now) -> the oldest bar open time (UTC) the
        vendor serves, or None`` (no cap), offline.
    :param conn_type: the Airflow connection type of its hook.
    :param form: the connection type's Add Connection form (:class:`ConnectionForm`).
    :param default_conn_id: the connection a source of this kind uses without ``conn_id``; empty:
        ``market_<source name>`` (one connection per exchange).
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
    :param price_basis: what its vendor's prices are (:mod:`market_ingest.actions`): ``as_traded``,
        or ``split_adjusted`` as of each answer (Yahoo's equities), which the extract step converts
        to as traded with the symbol's split history; stored rows are always as traded. Versions
        before bar schema 2 stored them as sent, with ``price_basis`` null: the basis
        :func:`market_ingest.lake.rebase_lake` converts from and :func:`market_ingest.lake.read_adjusted` reads them on.
    :param actions_requests: vendor requests a symbol's corporate actions cost, once per symbol and
        exchange-local day (:class:`market_ingest.lake.actions.ActionsCache`), in the source's pool.
    :param splits_elsewhere: its vendor sends split-adjusted prices but states no split history
        (Interactive Brokers): a source of the kind names another configured source whose
        vendor states splits (``splits_from``), and its hook asks that source's hook for them.
    """

    name: str
    symbol_pattern: str
    hook: str
    planned_requests: Callable[[Any, str, Window, datetime], int]
    conn_type: str
    form: ConnectionForm
    oldest_servable: Callable[[Any, str, datetime], datetime | None] = serves_any_window
    default_conn_id: str = ""
    defers: bool = False
    extended_hours: bool = False
    exchange: bool = False
    quote_request_per_symbol: bool = False
    continuous: bool = False
    concurrent_symbols: bool = False
    price_basis: str = AS_TRADED
    actions_requests: int = 0
    splits_elsewhere: bool = False
