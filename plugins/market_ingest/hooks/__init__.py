"""Hooks: the vendors (Yahoo Finance, Alpha Vantage, ccxt exchanges) and the warehouse.

Stdlib only at import time; each hook imports its vendor library inside the methods that use it.
"""

from __future__ import annotations

from typing import Any


def connection_extra(conn: Any) -> dict[str, Any]:
    """A connection's extra (``conn.extra_dejson``) without the fields whose value is null.

    The Add Connection form (:mod:`market_ingest.get_provider_info`) stores every field of a
    connection type, an emptied one as ``null``: ``{"requests_per_second": 4, "proxy": null}``.
    Dropping them lets each hook's ``extra.get(name, default)`` give its default, as for a field
    absent from an extra written by hand or in an ``AIRFLOW_CONN_*`` variable.
    """
    return {key: value for key, value in conn.extra_dejson.items() if value is not None}


def as_flag(value: Any) -> bool:
    """A yes/no setting of a connection's extra: ``True`` or 1, or the strings ``true``, ``1``,
    ``yes``, ``on`` in any case; anything else, ``None`` included, is ``False``. A task reads a
    URI's ``?sandbox=false`` as the string ``"false"`` (Airflow 3.3's Task SDK keeps query values
    as strings), which ``bool()`` reads as true; so may an extra written by hand."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "on")
    return value is True or value == 1


def safe_to_send_credentials(url: str) -> bool:
    """Whether a connection's base URL may carry credentials or a session: ``https://``, or plain
    ``http://`` to this machine only (``127.0.0.1``, ``localhost``, ``[::1]``: a local gateway,
    the stand-in)."""
    return url.startswith(("https://", "http://127.0.0.1", "http://localhost", "http://[::1]"))
