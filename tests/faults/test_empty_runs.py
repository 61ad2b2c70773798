"""No silent green: a run the vendor served (almost) nothing for fails and says why, first.

Seen on main: a run of ``market_yahoo_1d`` in which Yahoo knew 277 of 281 symbols as unknown
succeeded with 0 bars (``unknown_symbol`` and ``vendor_empty`` did not count toward
``max_failed_share``), and a backfill made in the UI without "Override parameters on existing
runs" ticked silently took the whole universe.
"""

from __future__ import annotations

from datetime import datetime, timezone
from types import SimpleNamespace

import pytest
from airflow.sdk.exceptions import AirflowFailException

from tests.faults.support import context, run_tasks

pytestmark = pytest.mark.integration
UTC = timezone.utc


@pytest.fixture
def notes(monkeypatch) -> list[str]:
    """The notes the report task writes, captured instead of sent to an API server."""
    written: list[str] = []

    def write_note(conn_id, dag_id, run_id, note):
        written.append(note)

    monkeypatch.setattr("market_ingest.run_note.write_note", write_note)
    return written


def _run(ctx: dict, source: str, interval: str) -> dict:
    """Every task of a run, the report last (:func:`tests.faults.support.run_tasks`); its report, or its failure."""
    return run_tasks(ctx, source, interval, report=True)["report"]


def test_a_run_the_vendor_served_almost_nothing_fails_and_its_note_says_why_first(services, vendors, notes):
    """Every configured Yahoo symbol (281: NASDAQ-100, DAX 40, FTSE 100, CAC 40) over a recorded
    week: the stand-in holds that week for MSFT, NVDA and TSLA only, and answers Yahoo's 404 for
    the others, as Yahoo does for symbols it does not know."""
    from demo.services import read_stream
    from market_ingest.config import load_config, load_universe

    src = load_config().sources["yahoo"]
    universe = [s for u in src.universes for s in load_universe(u)]
    assert len(universe) == 281
    start, end = datetime(2021, 7, 19, tzinfo=UTC), datetime(2021, 7, 24, tzinfo=UTC)
    run_id = "manual__almost_nothing_served"
    with pytest.raises(AirflowFailException) as failed:
        _run(context(run_id, {"start": start.isoformat(), "end": end.isoformat()}, start, end), "yahoo", "1d")
    message = str(failed.value)
    assert message.startswith("the vendor served no bar for 278 of 281 symbols (99% > 50%)")
    (note,) = notes
    assert note.splitlines()[0] == f"**Failed:** {message[:300]}"
    (event,) = [e for e in read_stream(services, "market-events") if e["run_id"] == run_id]
    assert event["event"] == "unserved_share_exceeded"
    assert len(event["detail"]["unserved_symbols"]) == 278 and {"MSFT", "NVDA", "TSLA"}.isdisjoint(
        event["detail"]["unserved_symbols"]
    )
    assert (event["detail"]["symbols_total"], event["detail"]["threshold"]) == (281, 0.5)
    import psycopg

    with psycopg.connect(services.pg_conninfo()) as conn:  # a shared warehouse: 1,390 vendor_empty rows no other test expects
        conn.execute("DELETE FROM market.coverage WHERE run_id = %s", (run_id,))


def test_a_weekend_is_not_a_vendor_serving_nothing(services, vendors, notes):
    """A Saturday on XNYS, XETR, XLON and XPAR: no vendor is asked, every symbol is ``no_data``,
    and the run succeeds: only symbols the vendor was asked for count as unserved."""
    start, end = datetime(2021, 7, 24, tzinfo=UTC), datetime(2021, 7, 25, tzinfo=UTC)
    ctx = context("manual__weekend", {"symbols": ["MSFT", "SAP.DE", "BP.L", "AIR.PA"]}, start, end)
    ctx["params"].update(start=start.isoformat(), end=end.isoformat())
    report = _run(ctx, "yahoo", "1d")
    assert {s: v["status"] for s, v in report["symbols"].items()} == dict.fromkeys(
        ["MSFT", "SAP.DE", "BP.L", "AIR.PA"], "no_data"
    )
    assert report["unserved_symbols"] == [] and report["failure"] is None
    assert notes[0].startswith("**2021-07-24 00:00 → 2021-07-25 00:00 UTC** · 4 symbols: 4 no_data")


def test_a_backfill_without_conf_says_it_took_the_whole_universe_and_why(services, vendors, notes, capfd):
    """A backfill run as Airflow 3.3's Backfill dialog creates it when "Override parameters on
    existing runs" is not ticked (``dag_run_conf: null``, tests/e2e/test_scheduler.py): the plan's
    log and the run's note say it took every configured symbol, and which box to tick."""
    from airflow.utils.types import DagRunType

    from market_ingest.config import load_config, load_universe

    start, end = datetime(2023, 11, 6, tzinfo=UTC), datetime(2023, 11, 7, tzinfo=UTC)
    ctx = context("backfill__2023-11-06T00:00:00+00:00", None, start, end)
    ctx["dag_run"] = SimpleNamespace(run_type=DagRunType.BACKFILL_JOB, conf=None)
    universe = [s for u in load_config().sources["alpha_vantage"].universes for s in load_universe(u)]
    capfd.readouterr()
    try:
        _run(ctx, "alpha_vantage", "1d")
    except AirflowFailException:
        pass  # the stand-in holds that day for IBM only: whether the run fails is the other test's business
    said = f"backfill run without conf: it took every configured symbol ({len(universe)}) over its data interval"
    plan_log = [line for line in capfd.readouterr().out.splitlines() if "MarketPlanOperator" in line]
    assert any(said in line and "Override parameters on existing runs" in line for line in plan_log)
    (note,) = notes
    assert any(line.startswith(f"*{said}") and "Override parameters on existing runs" in line for line in note.splitlines())

    notes.clear()  # the same run with the dialog's box ticked: its conf narrows it, and nothing is said
    ctx["dag_run"] = SimpleNamespace(run_type=DagRunType.BACKFILL_JOB, conf={"symbols": ["IBM"]})
    ctx["params"] = {"symbols": ["IBM"]}
    _run(ctx, "alpha_vantage", "1d")
    assert "backfill run without conf" not in notes[0]
