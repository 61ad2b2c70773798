"""Airflow plugin of the market-data package: registers the deadline reference of its DAGs.

The scheduler and the DAG processor look custom deadline references up among plugins when they
deserialise a DAG; without this registration a DAG with ``deadline=`` fails to load there.
"""

from __future__ import annotations

from airflow.plugins_manager import AirflowPlugin

from market_ingest.deadlines import DataIntervalEndDeadline


class MarketIngestPlugin(AirflowPlugin):
    """``market_ingest``: :class:`~market_ingest.deadlines.DataIntervalEndDeadline`."""

    name = "market_ingest"
    deadline_references = [DataIntervalEndDeadline]
