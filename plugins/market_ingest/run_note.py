"""The run note: a run's window and bars per sink, shown on the DAG run in the Airflow UI.

The runs list shows a run's "Run After" (when it was triggered), not the window it loaded: a
backfill of 2021 made today reads "2026-11-22". The report task therefore writes a short Markdown
note on its own run, which the UI shows on the run's page and in the runs list.

Airflow 3.3's Task SDK has no call that sets a run's note: the execution API sets one only when it
triggers a new run (a runtime helper is proposed in apache/airflow#69403, closing #64890, and not
released). The public REST API does: ``PATCH /api/v2/dags/{dag_id}/dagRuns/{run_id}`` with
``{"note": ...}`` (``DAGRunPatchBody``, at most 1,000 characters; the ``dag_run_note.content``
column is ``VARCHAR(1000)``). So the note is written through the connection ``market_airflow_api``
when it exists, and skipped with one log line when it does not:

- ``conn_type`` ``http``; ``host`` the API server's base URL (``http://localhost:8080``);
- either ``login`` and ``password`` of a user allowed to edit runs, exchanged for a JWT at
  ``POST /auth/token`` (the simple auth manager and the FAB auth manager both serve it),
- or ``extra`` ``{"token": "..."}``: a bearer token used as it is (an Astronomer deployment API
  token, for example),
- or neither: the request goes without credentials, which only an API server that signs every
  request itself accepts: the simple auth manager with ``[core] simple_auth_manager_all_admins``.
  Any other server answers 401 and the note is skipped. (``docker-compose.yaml`` gives its
  ``admin`` login and password.)

On MWAA the API server sits behind IAM (``InvokeRestApi``); no connection form here covers that,
and there the note is skipped.

Stdlib and ``requests`` only (an Airflow dependency); nothing here runs at DAG parse time.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

#: Default connection id; ``report.run_note_conn_id`` in the pipeline config overrides it.
CONN_ID = "market_airflow_api"
#: ``DAGRunPatchBody.note`` max_length in Airflow 3.3.
MAX_CHARS = 1000
#: seconds per HTTP call; a note is never worth holding the report task longer
TIMEOUT = 10


def _utc(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M")


def format_note(report: dict[str, Any]) -> str:
    """The note of a run, as Markdown, at most :data:`MAX_CHARS` characters.

    :param report: :func:`market_ingest.report.build_report`'s dict, with its
        ``window`` (``{"start", "end"}`` ISO UTC, or ``None`` when nothing was planned).
    :return: e.g. ``**2021-07-22 00:00 → 2021-07-23 00:00 UTC** · 3 symbols: 3 ok`` (after
        ``**Failed:** <why>`` when the run failed, and followed by its notices) then a table of bars per sink, the ledger's symbol-days per state, and what did not succeed. Lists
        of symbols are cut to fit, saying how many were left out.
    """
    window = report.get("window")
    head = f"**{_utc(window['start'])} → {_utc(window['end'])} UTC**" if window else "**nothing planned**"
    by_status: dict[str, int] = {}
    for v in report["symbols"].values():
        by_status[v["status"]] = by_status.get(v["status"], 0) + 1
    states = ", ".join(f"{n} {s}" for s, n in sorted(by_status.items()))
    lines = [f"{head} · {report['symbols_total']} symbols" + (f": {states}" if states else "")]
    if report.get("failure"):  # why the run failed comes first: the runs list shows the note's first line
        lines.insert(0, f"**Failed:** {report['failure'][:300]}")
    lines += [f"*{notice}*" for notice in report.get("notices", [])]
    t = report["totals"]
    ok = t.get("sinks_ok", {})

    def cell(sink: str) -> str:
        return f"{t[sink]:,}" if ok.get(sink, True) else "not loaded"

    lines += [
        "",
        "| sink | bars |",
        "|---|---:|",
        f"| S3 lake | {cell('lake')} |",
        f"| TimescaleDB | {cell('timescale')} |",
        f"| Kinesis | {cell('kinesis')} |",
    ]
    tail = []
    if report.get("coverage"):
        tail.append("ledger days: " + ", ".join(f"{s} {n}" for s, n in report["coverage"].items() if n))
    if report.get("flags"):
        tail.append("flagged bars (loaded): " + ", ".join(f"{f} {n}" for f, n in report["flags"].items()))
    if report.get("reconciliation"):
        from market_ingest.contracts import reconciliation_line

        tail.append("cross-source check: " + reconciliation_line(report["reconciliation"]))
    if report.get("failed_tasks"):
        batches = sum(t.startswith("extract[") for t in report["failed_tasks"])
        others = [t for t in report["failed_tasks"] if not t.startswith("extract[")]
        tail.append("did not succeed: " + ", ".join(([f"extract ({batches} batches)"] if batches else []) + others))
    if tail:
        lines += ["", *tail]
    text = "\n".join(lines)
    failed = report.get("failed_symbols") or []
    if failed:
        text += "\n\nfailed: " + _fit(failed, MAX_CHARS - len(text) - len("\n\nfailed: "))
    return text[:MAX_CHARS]


def _fit(symbols: list[str], room: int) -> str:
    """``symbols`` joined by ", " in at most ``room`` characters, ending "… (+N more)" when cut."""
    shown: list[str] = []
    for i, sym in enumerate(symbols):
        more = len(symbols) - i
        candidate = ", ".join([*shown, sym])
        suffix = f" … (+{more - 1} more)" if more > 1 else ""
        if len(candidate) + len(suffix) > room:
            return ", ".join(shown) + f" … (+{more} more)"
        shown.append(sym)
    return ", ".join(shown)


def write_note(conn_id: str, dag_id: str, run_id: str, note: str) -> str | None:
    """Set the note of run ``run_id`` of ``dag_id`` through the REST API of connection ``conn_id``.

    Never raises: a note is for people, and a run's state must not depend on it.

    :param note: Markdown, at most :data:`MAX_CHARS` characters (longer is cut).
    :return: ``None`` when the note was written, else why not (no such connection, the API's
        status and detail, an unreachable host), for one log line. The reason names the
        connection and the host, never the password or the token.
    """
    from urllib.parse import quote

    import requests
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        return f"no Airflow connection {conn_id!r} (an http connection to the API server: see market_ingest.run_note)"
    base = (conn.host or "").rstrip("/")
    if not base.startswith(("http://", "https://")):
        base = f"{conn.schema or 'http'}://{base}" + (f":{conn.port}" if conn.port else "")
    try:
        token = conn.extra_dejson.get("token")
        if not token and conn.login:
            r = requests.post(f"{base}/auth/token", json={"username": conn.login, "password": conn.password}, timeout=TIMEOUT)
            if r.status_code >= 400:
                return f"connection {conn_id!r}: POST {base}/auth/token answered {r.status_code}"
            token = r.json()["access_token"]
        r = requests.patch(
            f"{base}/api/v2/dags/{quote(dag_id, safe='')}/dagRuns/{quote(run_id, safe='')}",
            params={"update_mask": "note"},
            json={"note": note[:MAX_CHARS]},
            headers={"Authorization": f"Bearer {token}"} if token else {},
            timeout=TIMEOUT,
        )
        if r.status_code >= 400:
            return f"connection {conn_id!r}: PATCH dagRuns/{run_id} answered {r.status_code} {r.text[:300]}"
    except (requests.RequestException, ValueError, KeyError) as exc:
        return f"connection {conn_id!r} ({base}): {type(exc).__name__}: {exc}"
    return None
