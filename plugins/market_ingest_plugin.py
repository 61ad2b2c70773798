"""Airflow plugin of the market-data package.

* the deadline reference of its DAGs: the scheduler and the DAG processor look custom deadline
  references up among plugins when they deserialise a DAG; without this registration a DAG with
  ``deadline=`` fails to load there;
* the coverage view (:mod:`market_ingest.ui`): a FastAPI app on the API server at
  ``/market-coverage``, and an entry "Market coverage" in the UI's navigation showing it.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from market_ingest import ui
from market_ingest.deadlines import DataIntervalEndDeadline


class MarketIngestPlugin(AirflowPlugin):
    """``market_ingest``: :class:`~market_ingest.deadlines.DataIntervalEndDeadline` and the coverage view."""

    name = "market_ingest"
    deadline_references = [DataIntervalEndDeadline]
    fastapi_apps = [{"app": ui.app, "url_prefix": ui.PREFIX, "name": "Market coverage"}]
    external_views = [
        {
            "name": "Market coverage",
            "href": f"{ui.PREFIX}/",
            "destination": "nav",
            "url_route": "market-coverage",
            "nav_top_level": True,
        }
    ]
