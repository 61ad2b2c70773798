"""Provider metadata: what Airflow learns about this package without importing its hooks.

Installed as a distribution (``pyproject.toml``: ``airflow-provider-market-ingest``), the package
declares this function under the ``apache_airflow_provider`` entry point. Airflow's providers
manager reads it at start (``airflow providers list`` shows the package) and builds the Add
Connection form of each connection type from ``conn-fields`` (fields stored under their own
name in the connection's extra: ``{"requests_per_second": 4}``, which is what the hooks read)
and ``ui-field-behaviour`` (hidden and relabelled standard fields), the format Airflow 3.3's
``provider.yaml`` schema describes and its UI reads. The hooks themselves are imported only
when a task uses them.

Stdlib only: the providers manager calls this in every Airflow process.
"""

from __future__ import annotations

from importlib import metadata

PACKAGE_NAME = "airflow-provider-market-ingest"


def _number(label: str, description: str, default: float | int | None, kind: str = "number") -> dict:
    return {"label": label, "description": description, "schema": {"type": [kind, "null"], "default": default}}


def _text(label: str, description: str, *, secret: bool = False) -> dict:
    schema: dict = {"type": ["string", "null"]}
    if secret:
        schema["format"] = "password"  # masked in the form and in the API's answers
    return {"label": label, "description": description, "schema": schema}


def _flag(label: str, description: str, default: bool = False) -> dict:
    return {"label": label, "description": description, "schema": {"type": ["boolean", "null"], "default": default}}


def get_provider_info() -> dict:
    """This package's provider info (Airflow's ``provider_info.schema.json``, runtime form).

    :return: a dict with ``package-name`` (the distribution's name, as Airflow requires), ``name``,
        ``description``, ``versions``, ``hooks`` and ``connection-types``: ``yahoo_finance``,
        ``alpha_vantage`` and ``ccxt``, each with its hook class, its form fields (``conn-fields``)
        and its standard-field behaviour. Defaults shown here are the hooks' own defaults
        (``market_ingest.hooks.*``). ``versions`` is the installed distribution's version.
    :raises importlib.metadata.PackageNotFoundError: the distribution is not installed (Airflow
        calls this only through the installed distribution's entry point).
    """
    return {
        "package-name": PACKAGE_NAME,
        "name": "Market data ingestion",
        "description": "OHLCV bars from Yahoo Finance, Alpha Vantage and crypto exchanges (ccxt) into S3, Kinesis and TimescaleDB.",
        "versions": [metadata.version(PACKAGE_NAME)],  # pyproject.toml's, as installed
        "integrations": [
            {
                "integration-name": "Yahoo Finance",
                "external-doc-url": "https://github.com/ranaroussi/yfinance",
                "tags": ["service"],
            },
            {
                "integration-name": "Alpha Vantage",
                "external-doc-url": "https://www.alphavantage.co/documentation/",
                "tags": ["service"],
            },
            {"integration-name": "ccxt", "external-doc-url": "https://docs.ccxt.com/", "tags": ["service"]},
        ],
        "hooks": [
            {"integration-name": "Yahoo Finance", "python-modules": ["market_ingest.hooks.yahoo"]},
            {"integration-name": "Alpha Vantage", "python-modules": ["market_ingest.hooks.alpha_vantage"]},
            {"integration-name": "ccxt", "python-modules": ["market_ingest.hooks.exchange"]},
        ],
        "connection-types": [
            {
                "connection-type": "yahoo_finance",
                "hook-class-name": "market_ingest.hooks.yahoo.YahooFinanceHook",
                "hook-name": "Yahoo Finance",
                "conn-fields": {
                    "requests_per_second": _number(
                        "Requests per second",
                        "Most requests one extract task sends per second (its threads share it); pool slots x this is the "
                        "rate the source may use. Yahoo publishes no limit. Empty: no spacing.",
                        None,
                    ),
                    "retries": _number(
                        "Retries per request",
                        "yfinance asks again after a dropped connection or a timeout (1, 2, 4 s).",
                        3,
                        "integer",
                    ),
                    "symbol_attempts": _number(
                        "Tries per symbol",
                        "Tries per symbol while Yahoo answers its 5xx page or a body that is not JSON.",
                        3,
                        "integer",
                    ),
                    "proxy": _text("HTTP proxy", "http://host:port for yfinance's requests; empty: the environment's proxy."),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "password", "port", "extra"],
                    "relabeling": {"host": "Base URL (optional)"},
                    "placeholders": {"host": "empty: query2.finance.yahoo.com"},
                },
            },
            {
                "connection-type": "alpha_vantage",
                "hook-class-name": "market_ingest.hooks.alpha_vantage.AlphaVantageHook",
                "hook-name": "Alpha Vantage",
                "conn-fields": {
                    "premium": _flag(
                        "Premium plan", "The key is on a premium plan: daily bars come from TIME_SERIES_DAILY_ADJUSTED."
                    ),
                    "requests_per_second": _number(
                        "Requests per second", "Spacing of the hook's requests; the free key allows 1 per second.", 1
                    ),
                    "daily_budget": _number(
                        "Daily budget", "Requests per UTC day shared by every task (the free key: 25).", 25, "integer"
                    ),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "login", "port", "extra"],
                    "relabeling": {"password": "API key", "host": "Query endpoint URL (optional)"},
                    "placeholders": {"host": "https://www.alphavantage.co/query"},
                },
            },
            {
                "connection-type": "ccxt",
                "hook-class-name": "market_ingest.hooks.exchange.ExchangeHook",
                "hook-name": "Crypto exchange (ccxt)",
                "conn-fields": {
                    "sandbox": _flag("Sandbox", "Use the exchange's testnet (ccxt set_sandbox_mode)."),
                    "retry_attempts": _number(
                        "Tries per request",
                        "Tries of a request while the exchange times out, drops the connection, answers 5xx or throttles (not a ban).",
                        4,
                        "integer",
                    ),
                    "passphrase": _text("API passphrase", "KuCoin, Coinbase and OKX keys have one; others: empty.", secret=True),
                },
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port"],
                    "relabeling": {"login": "API key (optional)", "password": "Secret (optional)", "host": "Base URL (optional)"},
                    "placeholders": {"extra": '{"options": {"defaultType": "spot"}}'},
                },
            },
        ],
    }
