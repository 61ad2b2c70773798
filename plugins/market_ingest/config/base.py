"""What every part of the configuration shares: where ``include/`` is, the models' base class,
their field types (an interval, a source name, a schedule) and the error a bad config raises.

Imported at DAG parse time: pydantic (an Airflow dependency) at the top, Airflow's timetable only
inside the schedule check.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

from market_ingest.intervals import validate_interval

PROJECT_ROOT = Path(__file__).resolve().parents[3]
#: include/ beside plugins/ (Astro, docker-compose); MWAA deployments that ship include/ inside
#: the DAGs folder point MARKET_INGEST_INCLUDE_DIR at it.
INCLUDE_DIR = Path(os.environ.get("MARKET_INGEST_INCLUDE_DIR") or PROJECT_ROOT / "include")


_ID = re.compile(r"^[a-z][a-z0-9_]*$")

#: A key naming a bar interval in the config; validation fails naming it when it is not canonical.
Interval = Annotated[str, AfterValidator(validate_interval)]


def _source_name(name: str) -> str:
    if not _ID.match(name):
        raise ValueError(f"source name {name!r} must match {_ID.pattern}")
    return name


#: A key naming a source: lower case, digits and underscores (it is part of DAG ids and pool names).
SourceName = Annotated[str, AfterValidator(_source_name)]


def _schedule(expression: str) -> str:
    """``expression`` when Airflow's cron timetable accepts it (a cron expression, or a preset such as
    ``@hourly``, ``@daily``); the check the DAG processor runs on every DAG (``DAG.validate``).

    :raises ValueError: naming the expression and croniter's reason.
    """
    from airflow.sdk.definitions.timetables.interval import CronDataIntervalTimetable
    from airflow.sdk.exceptions import AirflowTimetableInvalid

    try:
        CronDataIntervalTimetable(expression, timezone="UTC").validate()
    except AirflowTimetableInvalid as exc:
        raise ValueError(f"{expression!r} is not a cron expression or preset (@hourly, @daily, ...): {exc}") from None
    return expression


#: A cron expression or preset, checked as Airflow checks a DAG's schedule.
Schedule = Annotated[str, AfterValidator(_schedule)]


class PipelineConfigError(ValueError):
    """The pipeline config or a universe file is invalid. The message names the file, the line and
    each bad field (``include/pipeline.yaml:57: sources.yahoo.intervals.1d.schedule: ...``)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
