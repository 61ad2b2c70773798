"""Run inside the MWAA-like virtualenv by ``test_mwaa.py`` (not a test module): parse the DAGs folder,
load the plugins and the providers as MWAA's Airflow would, and print what was found as one JSON line.

Reads ``AIRFLOW_HOME`` (with ``dags/`` and ``plugins/`` beneath it, MWAA's layout) from the environment.
"""

from __future__ import annotations

import json
import os
from importlib import metadata

from airflow import plugins_manager
from airflow.dag_processing.dagbag import DagBag
from airflow.providers_manager import ProvidersManager

bag = DagBag(dag_folder=os.path.join(os.environ["AIRFLOW_HOME"], "dags"))
providers = ProvidersManager()
print(
    json.dumps(
        {
            "airflow": metadata.version("apache-airflow"),
            "dags": sorted(bag.dag_ids),
            "import_errors": bag.import_errors,
            "dag_files": sorted(s.file for s in bag.dagbag_stats),
            "plugins": [p["name"] for p in plugins_manager.get_plugin_info()],
            "plugin_errors": plugins_manager.get_import_errors(),
            "deadline_references": sorted(plugins_manager.get_deadline_references_plugins()),
            "providers": {name: info.version for name, info in providers.providers.items()},
            "field_behaviours": sorted(providers.field_behaviours),
            "installed": {d.metadata["Name"]: d.version for d in metadata.distributions()},
        }
    )
)
