"""Provider metadata: what Airflow learns about this package without importing its hooks.

Installed as a distribution (``pyproject.toml``: ``airflow-provider-market-ingest``), the package
declares this function under the ``apache_airflow_provider`` entry point. Airflow's providers
manager reads it at start (``airflow providers list`` shows the package) and builds the Add
Connection form of each connection type from ``conn-fields`` (fields stored under their own
name in the connection's extra: ``{"requests_per_second": 4}``, which is what the hooks read)
and ``ui-field-behaviour`` (hidden and relabelled standard fields), the format Airflow 3.3's
``provider.yaml`` schema describes and its UI reads. The hooks themselves are imported only
when a task uses them. Each source kind's connection type is declared once, by its vendor module
(:mod:`market_ingest.vendors`), and listed here as registered. The operators, the TimescaleDB
hook, the notifier, the Asset URI scheme and the plugin are listed by name (strings), so reading
the info imports none of them (``tests/unit/test_provider.py`` imports each one).

Stdlib only (the vendor modules are): the providers manager calls this in every Airflow process.
"""

from __future__ import annotations

from importlib import metadata

from market_ingest.kinds import KINDS

PACKAGE_NAME = "airflow-provider-market-ingest"
#: The integration of what is not one vendor's: the pipeline's operators (plan, extract, lake,
#: warehouse, Kinesis, reconcile, report, setup).
PIPELINE = "Market data pipeline"
#: The warehouse's integration (its hook subclasses PostgresHook and uses the ``postgres`` type).
TIMESCALEDB = "TimescaleDB"
OPERATOR_MODULES = [
    f"market_ingest.operators.{name}"
    for name in ("plan", "extract", "lake", "warehouse", "kinesis", "reconcile", "report", "setup")
]


def get_provider_info() -> dict:
    """This package's provider info (Airflow's ``provider_info.schema.json``, runtime form).

    :return: a dict with ``package-name`` (the distribution's name, as Airflow requires), ``name``,
        ``description``, ``versions``, ``integrations``, ``hooks``, ``operators``,
        ``connection-types``, ``notifications``, ``asset-uris`` and ``plugins``: one integration,
        hook module and connection type per registered source kind
        (:data:`market_ingest.kinds.KINDS`: ``alpha_vantage``, ``ccxt``, ``ibkr``, ``twelvedata``, ``yahoo_finance``),
        each with its hook class, its form fields (``conn-fields``) and its standard-field
        behaviour, as its vendor module declares them (``KIND.form``; the defaults shown are the
        hooks' own); the TimescaleDB hook's module (integration ``TimescaleDB``); the operator
        modules (integration ``Market data pipeline``); the notifier
        :class:`market_ingest.alerts.MarketEventNotifier`; the Asset scheme ``x-market``
        (:mod:`market_ingest.assets`; handler ``None``: Airflow leaves ``x-`` URIs as written);
        and the plugin ``market_ingest`` (:class:`market_ingest.plugin.MarketIngestPlugin`, which
        the ``airflow.plugins`` entry point also registers: Airflow loads it once).
        ``versions`` is the installed distribution's version.
    :raises importlib.metadata.PackageNotFoundError: the distribution is not installed (Airflow
        calls this only through the installed distribution's entry point).
    """
    kinds = list(KINDS.values())
    return {
        "package-name": PACKAGE_NAME,
        "name": "Market data ingestion",
        "description": "OHLCV bars from Yahoo Finance, Alpha Vantage, Twelve Data, Interactive Brokers and crypto exchanges (ccxt) into S3, Kinesis and TimescaleDB.",
        "versions": [metadata.version(PACKAGE_NAME)],  # pyproject.toml's, as installed
        "integrations": [
            *({"integration-name": k.form.integration, "external-doc-url": k.form.doc_url, "tags": ["service"]} for k in kinds),
            {"integration-name": TIMESCALEDB, "external-doc-url": "https://docs.timescale.com/", "tags": ["software"]},
            {"integration-name": PIPELINE, "tags": ["software"]},
        ],
        "hooks": [
            *({"integration-name": k.form.integration, "python-modules": [k.hook.rpartition(".")[0]]} for k in kinds),
            {"integration-name": TIMESCALEDB, "python-modules": ["market_ingest.hooks.timescale.hook"]},
        ],
        "operators": [{"integration-name": PIPELINE, "python-modules": OPERATOR_MODULES}],
        "connection-types": [
            {
                "connection-type": k.conn_type,
                "hook-class-name": k.hook,
                "hook-name": k.form.hook_name,
                "conn-fields": k.form.fields,
                "ui-field-behaviour": k.form.behaviour,
            }
            for k in kinds
        ],
        "notifications": ["market_ingest.alerts.MarketEventNotifier"],
        "asset-uris": [{"schemes": ["x-market"], "handler": None}],
        "plugins": [{"name": "market_ingest", "plugin-class": "market_ingest.plugin.MarketIngestPlugin"}],
    }
