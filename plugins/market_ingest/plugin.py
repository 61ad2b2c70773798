"""The Airflow plugin of the market-data package, registered by its distribution.

``pyproject.toml`` declares :class:`MarketIngestPlugin` under the ``airflow.plugins`` entry point, so
Airflow's plugins manager loads it from the installed wheel (``airflow/_shared/plugins_manager``:
``_load_entrypoint_plugins``) in every component: no file is copied into the plugins folder on
MWAA, Astro, Docker Compose or Kubernetes, and the development virtualenv gets the entry point from
its editable install (``make install``). It brings:

* the deadline reference of its DAGs: the scheduler and the DAG processor look custom deadline
  references up among plugins when they deserialise a DAG; without this registration a DAG with
  ``deadline=`` fails to load there;
* the coverage view (:mod:`market_ingest.ui`): a FastAPI app on the API server at
  ``/market-coverage``, and an entry "Market coverage" in the UI's navigation showing it.

Airflow registers a plugin name once (folder first, then entry points, then providers): a second
plugin named ``market_ingest`` (an older ``market_ingest_plugin.py`` left in a plugins folder, or
the provider info's ``plugins`` entry when ``[core] lazy_discover_providers`` is off) is skipped
with a warning and listed among the plugin import errors, never loaded twice.
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
