"""The coverage view: the ledger (``market.coverage``) as a page of the Airflow UI.

A FastAPI app the project's plugin mounts on the API server at ``/market-coverage`` and adds to
the UI's navigation ("Market coverage", an external view shown inside the UI):

* ``GET /market-coverage/`` - per (source, interval) the totals (symbol-days per state; calendar-expected
  and loaded bars), a symbol-by-day grid of the latest ``days`` days with rows, each cell coloured by its state
  (click one: its state, bars, repair attempts and reason show under the grid; an ``unrecoverable``
  day's reason says why the repair gave up on it), and the latest runs that wrote it. A pair asked
  with ``?source=&interval=`` that has no ledger rows is said to have none (no other pair's grid);
* ``GET /market-coverage/api/coverage?source=&interval=&days=`` - the same as JSON.

"Expected" here is the ledger's: the bars the market's calendar expects for a day (``market_ingest.calendars``).

Both need an Airflow login (the UI's session cookie or a bearer token: Airflow's own
``requires_authenticated``). The ledger is read through a connection of its own,
``timescale.reader_conn_id`` of the pipeline config (default ``market_timescale_reader``): a login
in the read-only role ``market_reader`` that migration V012 creates (SELECT on schema ``market``
only), so a flaw in the view cannot write the warehouse. The API server needs that connection (an
``AIRFLOW_CONN_*`` variable or the secrets backend). Without it the page answers 503 naming the
connection to define; it never falls back to the loading connection ``timescale.conn_id``, whose
role may write.
"""

from __future__ import annotations

import html
import json
from collections.abc import Callable
from contextlib import closing
from datetime import date
from typing import Any

from market_ingest.coverage import STATES

PREFIX = "/market-coverage"
#: Cell colours per state (the legend shows them).
COLOURS = {
    "complete": "#2e7d32",
    "partial": "#f9a825",
    "missing": "#c62828",
    "vendor_empty": "#9e9e9e",
    "deferred": "#1565c0",
    "failed": "#6a1b9a",
    "rejected": "#ef6c00",
    "unrecoverable": "#212121",
}


def read(source: str | None = None, interval: str | None = None, days: int = 31, conn=None) -> dict[str, Any]:
    """What the page shows, from the ledger.

    :param source: the source shown in the grid; default: the first in the ledger (of ``interval``, when given).
    :param interval: its interval; default: the first of that source.
    :param days: the latest days with rows shown in the grid (columns).
    :param conn: an open psycopg connection; default: one through the view's read-only connection
        (:func:`reader_connection`).
    :return: ``{"pairs": [summary rows of every (source, interval)], "source", "interval",
        "absent": None, or a sentence saying the asked pair has no ledger rows,
        "days": [ISO dates, oldest first], "symbols": [...], "cells": {symbol: {day: {"state",
        "expected" (bars the calendar expects), "loaded" (bars stored), "reason", "run_id", "flagged", "attempts"}}},
        "runs": [{"run_id", "updated_at", "days", <state>: n}], "actions": {symbol: {day: ["split 4:1",
        "dividend 0.205 USD"]}} (``market.corporate_actions`` on the days shown, by ex-date),
        "disagreements": {symbol: {day: {"bars", "others"}}} and "checks": [the latest 20 rows of those
        days: instrument, symbol, time, other (source), close_here, close_there, close_diff_bps,
        reason] (the cross-source layer, ``market.cross_source_checks``)}``. When the ledger has no row of the
        asked ``source`` (and ``interval``), ``"absent"`` says so and the grid and runs are empty:
        another pair is never shown in its place.
    :raises ConfigurationError: the view's connection is not defined (see :func:`reader_connection`).
    """
    from market_ingest import coverage

    if conn is None:
        with closing(reader_connection()) as own:
            return read(source, interval, days, own)
    pairs = coverage.summary(conn)
    view: dict[str, Any] = {
        "pairs": pairs,
        "source": source,
        "interval": interval,
        "absent": None,
        "days": [],
        "symbols": [],
        "cells": {},
        "runs": [],
    }
    if not pairs:
        return view
    matching = [p for p in pairs if source in (None, "", p["source"]) and interval in (None, "", p["interval"])]
    if not matching:
        asked = " ".join(x for x in (source, interval) if x)
        view["absent"] = (
            f"The coverage ledger has no rows for {asked}: no load of it has written the ledger yet, or it is "
            "not a configured pair. The pairs with rows are listed above."
        )
        return view
    source, interval = matching[0]["source"], matching[0]["interval"]
    view.update(source=source, interval=interval)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT DISTINCT day FROM market.coverage WHERE source = %s AND interval = %s ORDER BY day DESC LIMIT %s",
            (source, interval, days),
        )
        shown: list[date] = sorted(d for (d,) in cur.fetchall())
        cur.execute(
            "SELECT symbol, day, state, expected, loaded, reason, run_id, flagged, attempts FROM market.coverage "
            "WHERE source = %s AND interval = %s AND day = ANY(%s) ORDER BY symbol, day",
            (source, interval, shown),
        )
        cells: dict[str, dict[str, dict]] = {}
        for symbol, day, state, expected, loaded, reason, run_id, flagged, attempts in cur.fetchall():
            cells.setdefault(symbol, {})[day.isoformat()] = {
                "state": state,
                "expected": expected,
                "loaded": loaded,
                "reason": reason,
                "run_id": run_id,
                "flagged": flagged,
                "attempts": attempts,
            }
        cur.execute(
            f"SELECT run_id, max(updated_at) AS updated_at, count(*) AS days, {coverage.STATE_COUNTS} FROM market.coverage "
            "WHERE source = %s AND interval = %s GROUP BY run_id ORDER BY max(updated_at) DESC LIMIT 10",
            (source, interval),
        )
        names = [d.name for d in cur.description]
        runs = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        cur.execute(
            "SELECT symbol, ex_date, kind, ratio, amount, currency FROM market.corporate_actions "
            "WHERE source = %s AND ex_date = ANY(%s) ORDER BY symbol, ex_date, kind",
            (source, shown),
        )
        actions: dict[str, dict[str, list[str]]] = {}
        for symbol, day, kind, ratio, amount, currency in cur.fetchall():
            actions.setdefault(symbol, {}).setdefault(day.isoformat(), []).append(action_label(kind, ratio, amount, currency))
        disagreements, checks = _cross_source(cur, source, interval, shown)
    view.update(
        days=[d.isoformat() for d in shown],
        symbols=sorted(cells),
        cells=cells,
        runs=runs,
        actions=actions,
        disagreements=disagreements,
        checks=checks,
    )
    return view


def _cross_source(cur, source: str, interval: str, shown: list[date]) -> tuple[dict[str, dict[str, dict]], list[dict]]:
    """The cross-source layer: per symbol of ``source`` and UTC day shown, the bars another source
    disagrees on (``{"bars", "others"}``), and the latest 20 disagreements of those days with both
    figures (``market.cross_source_checks``)."""
    if not shown:
        return {}, []
    mine = (
        "SELECT c.*, CASE WHEN c.source_a = %(source)s THEN c.symbol_a ELSE c.symbol_b END AS symbol, "
        "CASE WHEN c.source_a = %(source)s THEN c.source_b ELSE c.source_a END AS other, "
        "CASE WHEN c.source_a = %(source)s THEN c.close_a ELSE c.close_b END AS close_here, "
        "CASE WHEN c.source_a = %(source)s THEN c.close_b ELSE c.close_a END AS close_there "
        "FROM market.cross_source_checks c WHERE %(source)s IN (c.source_a, c.source_b) AND c.interval = %(interval)s "
        "AND c.time >= %(first)s::timestamp AT TIME ZONE 'UTC' AND c.time < (%(last)s::date + 1)::timestamp AT TIME ZONE 'UTC'"
    )
    params = {"source": source, "interval": interval, "first": shown[0], "last": shown[-1]}
    cur.execute(
        f"SELECT symbol, (time AT TIME ZONE 'UTC')::date AS day, count(*), array_agg(DISTINCT other ORDER BY other) "
        f"FROM ({mine}) m GROUP BY 1, 2",
        params,
    )
    layer: dict[str, dict[str, dict]] = {}
    for symbol, day, bars, others in cur.fetchall():
        layer.setdefault(symbol, {})[day.isoformat()] = {"bars": bars, "others": list(others)}
    cur.execute(
        f"SELECT instrument, symbol, time, other, close_here, close_there, close_diff_bps, reason FROM ({mine}) m "
        "ORDER BY time DESC, instrument, other LIMIT 20",
        params,
    )
    names = [d.name for d in cur.description]
    return layer, [dict(zip(names, r, strict=True)) for r in cur.fetchall()]


def action_label(kind: str, ratio: float | None, amount: float | None, currency: str | None) -> str:
    """A corporate action as the grid names it: ``split 4:1``, ``split 1:10``, ``dividend 0.205 USD``."""
    if kind == "split" and ratio:
        from fractions import Fraction

        f = Fraction(ratio).limit_denominator(1000)
        return f"split {f.numerator}:{f.denominator}"
    return f"{kind.replace('_', ' ')} {amount:g} {currency or ''}".rstrip()


def reader_connection():
    """A new psycopg connection through ``timescale.reader_conn_id`` (default
    ``market_timescale_reader``): the view's own login, in the read-only role ``market_reader``.

    :raises ConfigurationError: naming the connection when it is not defined; the loading
        connection is never used instead.
    :raises SinkUnavailableError: the warehouse cannot be reached through it.
    """
    from airflow.sdk.exceptions import AirflowNotFoundException

    from market_ingest.config import load_timescale_config
    from market_ingest.errors import ConfigurationError
    from market_ingest.hooks.timescale import TimescaleHook

    cfg = load_timescale_config()  # a bad source or universe stops its DAGs, not the view
    try:
        return TimescaleHook(timescale_conn_id=cfg.reader_conn_id).get_conn()
    except AirflowNotFoundException:
        raise ConfigurationError(
            "coverage view",
            f"connection {cfg.reader_conn_id} (timescale.reader_conn_id) is not defined: the view reads the warehouse "
            "through its own login in the read-only role market_reader (created by migration V012), never through "
            f"the loading connection {cfg.conn_id}. Create a login in that role and define the connection "
            "(README, Connections).",
        ) from None


def render_error(message: str) -> str:
    """The page shown when the ledger cannot be read (``message`` escaped)."""
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>Market coverage</title></head>"
        f"<body><h1>Market coverage</h1><p id='error'>{html.escape(message)}</p></body></html>"
    )


def render(view: dict[str, Any]) -> str:
    """The page's HTML for :func:`read`'s ``view`` (no external asset: it runs inside the UI's frame)."""
    e = html.escape
    out = [
        "<!doctype html><html><head><meta charset='utf-8'><title>Market coverage</title><style>",
        "body{font:14px system-ui,sans-serif;margin:16px;color:#222}table{border-collapse:collapse}",
        "th,td{padding:2px 6px;text-align:right}th{font-weight:600}td.l,th.l{text-align:left}",
        ".grid td{padding:0}.cell{width:14px;height:14px;border:1px solid #fff;cursor:pointer;display:block}",
        ".grid th.day{writing-mode:vertical-rl;font-weight:400;font-size:11px}",
        ".cell.action{box-shadow:inset 0 0 0 3px #111}",
        ".cell.disagree{outline:2px dashed #d50000;outline-offset:-2px}body.no-layer .cell.disagree{outline:none}",
        ".key{display:inline-block;width:12px;height:12px;margin:0 4px 0 12px;vertical-align:middle}",
        "#detail{margin:12px 0;padding:8px;border:1px solid #ccc;min-height:1.5em}nav a{margin-right:12px}",
        "</style></head><body><h1>Market coverage</h1>",
    ]
    if not view["pairs"]:
        out.append("<p id='empty'>The coverage ledger is empty: no load has run yet.</p></body></html>")
        return "".join(out)
    out.append(
        "<h2>Totals (days per state in symbol-days; calendar-expected, loaded and flagged in bars)</h2>"
        "<p>calendar-expected: the bars the market's calendar expects for the days (its sessions); "
        "loaded: the bars stored.</p>"
        "<table id='totals'><tr><th class='l'>source</th><th class='l'>interval</th>"
    )
    out.append("<th>symbols</th><th class='l'>from</th><th class='l'>to</th><th>calendar-expected</th><th>loaded</th>")
    out.extend(f"<th>{s}</th>" for s in STATES)
    out.append("<th>flagged bars</th></tr>")
    for p in view["pairs"]:
        link = f"?source={e(p['source'])}&interval={e(p['interval'])}"
        out.append(
            f"<tr data-pair='{e(p['source'])}/{e(p['interval'])}'><td class='l'><a href='{link}'>{e(p['source'])}</a></td>"
            f"<td class='l'>{e(p['interval'])}</td><td>{p['symbols']}</td><td class='l'>{p['first_day']}</td>"
            f"<td class='l'>{p['last_day']}</td><td>{p['expected']}</td><td>{p['loaded']}</td>"
        )
        out.extend(f"<td class='n-{s}'>{p[s]}</td>" for s in STATES)
        out.append(f"<td class='n-flagged'>{p['flagged']}</td></tr>")
    out.append("</table>")
    if view.get("absent"):
        out.append(f"<p id='absent'>{e(view['absent'])}</p></body></html>")
        return "".join(out)
    out.append(f"<h2 id='title'>{e(view['source'])} {e(view['interval'])}: the latest {len(view['days'])} days</h2><p>")
    out.extend(f"<span class='key' style='background:{COLOURS[s]}'></span>{s}" for s in STATES)
    out.append("<span class='key' style='box-shadow:inset 0 0 0 3px #111'></span>a corporate action's ex-date")
    out.append(
        "<label id='layer'><span class='key' style='outline:2px dashed #d50000;outline-offset:-2px'></span>"
        "<input type='checkbox' id='layer-toggle' checked> another source disagrees (cross-source checks)</label>"
    )
    out.append("</p><table class='grid' id='grid'><tr><th class='l'>symbol</th>")
    out.extend(f"<th class='day'>{d}</th>" for d in view["days"])
    out.append("</tr>")
    for symbol in view["symbols"]:
        out.append(f"<tr><th class='l'>{e(symbol)}</th>")
        for d in view["days"]:
            c = view["cells"][symbol].get(d)
            if c is None:
                out.append("<td></td>")
                continue
            flags = f" {c['flagged']} flagged as anomalies (market.bar_flags)." if c["flagged"] else ""
            tries = f" Asked again {c['attempts']} times (repair attempts)." if c["attempts"] else ""
            on_day = view.get("actions", {}).get(symbol, {}).get(d, [])
            acted = f" Ex-date of: {', '.join(on_day)} (market.corporate_actions)." if on_day else ""
            detail = (
                f"{symbol} {d}: {c['state']}, {c['loaded']} of {c['expected']} bars.{flags}{tries}{acted} "
                f"{c['reason']} [{c['run_id']}]"
            )
            apart = view.get("disagreements", {}).get(symbol, {}).get(d)
            if apart:
                detail += (
                    f" Cross-source: {apart['bars']} bars disagree with {', '.join(apart['others'])} "
                    "(market.cross_source_checks)."
                )
            marked = (" action" if on_day else "") + (" disagree" if apart else "")
            out.append(
                f"<td><span class='cell{marked}' role='button' tabindex='0' style='background:{COLOURS[c['state']]}' "
                f"data-symbol='{e(symbol)}' data-day='{d}' data-state='{c['state']}' data-detail='{e(detail)}' "
                f"title='{e(symbol)} {d} {c['state']}{e(', ' + ', '.join(on_day)) if on_day else ''}'></span></td>"
            )
        out.append("</tr>")
    out.append("</table><div id='detail'>Click a cell for its state and reason.</div>")
    if view.get("checks"):
        out.append(
            "<h2>Cross-source disagreements (latest 20 of the days shown; as traded)</h2><table id='checks'>"
            "<tr><th class='l'>instrument</th><th class='l'>symbol</th><th class='l'>bar (UTC)</th><th class='l'>other source</th>"
            "<th>close here</th><th>close there</th><th>difference (bps)</th><th class='l'>reason</th></tr>"
        )
        for c in view["checks"]:
            diff = "" if c["close_diff_bps"] is None else f"{c['close_diff_bps']:.1f}"
            out.append(
                f"<tr><td class='l'>{e(c['instrument'])}</td><td class='l'>{e(c['symbol'])}</td>"
                f"<td class='l'>{c['time']:%Y-%m-%d %H:%M}</td><td class='l'>{e(c['other'])}</td>"
                f"<td>{c['close_here']:g}</td><td>{c['close_there']:g}</td><td>{diff}</td><td class='l'>{e(c['reason'])}</td></tr>"
            )
        out.append("</table>")
    out.append(
        "<h2>Latest runs (ledger rows written, in symbol-days)</h2><table id='runs'><tr><th class='l'>run</th>"
        "<th class='l'>written at</th><th>symbol-days</th>"
    )
    out.extend(f"<th>{s}</th>" for s in STATES)
    out.append("</tr>")
    for r in view["runs"]:
        out.append(
            f"<tr><td class='l'>{e(r['run_id'])}</td><td class='l'>{r['updated_at']:%Y-%m-%d %H:%M:%S} UTC</td><td>{r['days']}</td>"
        )
        out.extend(f"<td>{r[s]}</td>" for s in STATES)
        out.append("</tr>")
    out.append(
        "</table><script>for(const c of document.querySelectorAll('.cell')){const show=()=>"
        "{document.getElementById('detail').textContent=c.dataset.detail};c.addEventListener('click',show);"
        "c.addEventListener('keydown',ev=>{if(ev.key==='Enter')show()})}"
        "const t=document.getElementById('layer-toggle');if(t)t.addEventListener('change',()=>"
        "document.body.classList.toggle('no-layer',!t.checked))</script></body></html>"
    )
    return "".join(out)


def create_app():
    """The coverage app (a ``FastAPI``), behind Airflow's login (``requires_authenticated``)."""
    from airflow.api_fastapi.core_api.security import requires_authenticated
    from fastapi import Depends, FastAPI, Query
    from fastapi.responses import HTMLResponse, JSONResponse

    from market_ingest.errors import MarketDataError

    app = FastAPI(title="Market coverage", dependencies=[Depends(requires_authenticated())])

    @app.get("/", response_class=HTMLResponse)
    def page(source: str | None = None, interval: str | None = None, days: int = Query(31, ge=1, le=366)) -> Any:
        try:
            return render(read(source, interval, days))
        except MarketDataError as exc:  # no reader connection, or the warehouse unreachable
            return HTMLResponse(render_error(str(exc)), status_code=503)

    @app.get("/api/coverage")
    def api(source: str | None = None, interval: str | None = None, days: int = Query(31, ge=1, le=366)) -> Any:
        try:
            return json.loads(json.dumps(read(source, interval, days), default=str))
        except MarketDataError as exc:
            return JSONResponse({"error": str(exc)}, status_code=503)

    return app


class LazyApp:
    """An ASGI app that builds :func:`create_app` on its first request.

    Every Airflow component imports the project's plugin, but only the API server serves this
    app: building it at import would cost each of them Airflow's API security module (about 1.6 s).
    """

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._app: Any = None

    async def __call__(self, scope, receive, send) -> None:
        if self._app is None:
            self._app = self._factory()
        await self._app(scope, receive, send)


#: What the plugin mounts at :data:`PREFIX`.
app = LazyApp(create_app)
