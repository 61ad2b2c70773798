"""The Airflow Assets this product updates: one per (dataset, source, interval).

A load that commits bars to the warehouse emits an event on its Asset, so a downstream DAG can be
scheduled on fresh bars (``schedule=[bars_asset("bars", "yahoo", "1d")]``). Names and URIs:
``market.bars.yahoo.1d`` / ``x-market://bars/yahoo/1d``; quotes have no interval
(``x-market://quotes/yahoo``). The ``x-`` scheme is one Airflow leaves as written: for any other
scheme, building the Asset asks every installed provider for a URI normaliser, which imported
boto3 at DAG parse time (Airflow 3.3.2, ``airflow.sdk.definitions.asset._sanitize_uri``).
Imported at DAG parse time: Airflow's SDK only.
"""

from __future__ import annotations

from airflow.sdk import Asset

GROUP = "market-data"


def bars_asset(dataset: str, source: str, interval: str | None = None) -> Asset:
    """The Asset of ``dataset`` (``bars`` or ``quotes``) from ``source`` at ``interval`` (none for quotes).

    :return: ``Asset(name="market.<dataset>.<source>[.<interval>]", uri="x-market://<dataset>/<source>[/<interval>]")``
        in the group ``market-data``.
    """
    parts = [dataset, source, *([interval] if interval else [])]
    return Asset(name="market." + ".".join(parts), uri="x-market://" + "/".join(parts), group=GROUP)
