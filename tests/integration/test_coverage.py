"""The coverage ledger (``market.coverage``): what each load says it holds, per symbol and UTC day,
against the market's calendar, on recorded Yahoo answers."""

from __future__ import annotations

from contextlib import closing
from datetime import date, datetime, timedelta, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException

from market_ingest import coverage, outcomes
from market_ingest.contracts import read_plan
from market_ingest.operators.extract import MarketExtractOperator
from market_ingest.operators.lake import LakePublishOperator
from market_ingest.operators.plan import MarketPlanOperator, MarketRepairPlanOperator
from market_ingest.operators.warehouse import TimescaleLoadOperator
from standin.server import StandIn
from tests.conftest import ROOT, built, serving
from tests.faults.support import context, derived_yahoo_library

pytestmark = pytest.mark.integration

UTC = timezone.utc


def _load(ctx: dict, interval: str, plan: list[dict], source: str = "yahoo") -> dict:
    """extract -> publish_lake -> load_timescale of ``plan``'s batches in this process, as the DAG chains them."""
    extracts = [built(MarketExtractOperator, "extract", source, interval, batch=b).execute(ctx) for b in plan]
    lake = built(LakePublishOperator, "publish_lake", source, interval, extracts=extracts).execute(ctx)
    load = built(TimescaleLoadOperator, "load_timescale", source, interval, lake=lake, plan=plan, extracts=extracts)
    return load.execute(ctx)


def _ingest(run_id: str, interval: str, symbols: list[str], start: datetime, end: datetime, source: str = "yahoo") -> dict:
    """plan -> extract -> publish_lake -> load_timescale in this process, as the DAG chains them."""
    ctx = context(run_id, {"symbols": symbols, "start": start.isoformat(), "end": end.isoformat()}, start, end)
    return _load(ctx, interval, built(MarketPlanOperator, "plan", source, interval).execute(ctx), source)


def _ledger(services, interval: str, symbols: list[str], source: str = "yahoo") -> dict[tuple[str, date], dict]:
    import psycopg

    with closing(psycopg.connect(services.pg_conninfo())) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(coverage.COLUMNS)} FROM market.coverage WHERE source = %s AND interval = %s AND symbol = ANY(%s)",
            (source, interval, symbols),
        )
        names = [d.name for d in cur.description]
        return {(r[2], r[3]): dict(zip(names, r, strict=True)) for r in cur.fetchall()}


def _make_coverage(services, capsys) -> list[str]:
    """What ``make coverage`` prints for Yahoo's daily bars."""
    from demo.coverage import main

    capsys.readouterr()
    assert main(["--dsn", services.pg_conninfo(), "--source", "yahoo", "--interval", "1d"]) == 0
    return capsys.readouterr().out.splitlines()


def _forget_repairable(services) -> None:
    """Delete Yahoo's repairable daily ledger rows: the session's warehouse is shared, and other
    tests' would be planned first (newest first) or take the budget."""
    import psycopg

    with psycopg.connect(services.pg_conninfo()) as conn:
        conn.execute(
            "DELETE FROM market.coverage WHERE source = 'yahoo' AND interval = '1d' AND state IN ('partial', 'missing', 'failed')"
        )


def _repair(run_id: str, interval: str, **override) -> tuple[list[dict], dict]:
    """market_repair's group for (yahoo, interval), in this process: its plan, then the ingestion's tasks."""
    ctx = context(run_id)
    plan = built(MarketRepairPlanOperator, "repair_plan", "yahoo", interval, **override).execute(ctx)
    return plan, (_load(ctx, interval, plan) if plan else {})


def test_sessions_the_vendor_left_out_are_missing_and_the_repair_loads_them(services, tmp_path, monkeypatch, capsys):
    """2021-06-28 .. 07-10 daily: TSLA's answer lacks the sessions of 07-01 and 07-07 (a derived
    recording). Nine XNYS sessions: Monday 07-05 (Independence Day, observed) and the weekends have
    no row; TSLA's two days are ``missing`` with the reason; every other day of the three symbols is
    ``complete``. Then the repair, on the untouched recordings: with a budget of one request it asks
    for the newest (07-07) only and leaves 07-01 for the next run, which completes it."""
    _forget_repairable(services)
    symbols = ["MSFT", "NVDA", "TSLA"]
    start, end = datetime(2021, 6, 28, tzinfo=UTC), datetime(2021, 7, 10, tzinfo=UTC)
    library = derived_yahoo_library(tmp_path, {}, dropped={"yahoo_chart_TSLA_1d_full": ["2021-07-01", "2021-07-07"]})
    with serving(StandIn(library), monkeypatch):
        result = _ingest("manual__coverage_gap", "1d", symbols, start, end)
    ledger = {k: v for k, v in _ledger(services, "1d", symbols).items() if start.date() <= k[1] < end.date()}
    sessions = [date(2021, 6, d) for d in (28, 29, 30)] + [date(2021, 7, d) for d in (1, 2, 6, 7, 8, 9)]
    assert sorted({day for _, day in ledger}) == sessions
    assert len(ledger) == 27
    gaps = [("TSLA", date(2021, 7, 1)), ("TSLA", date(2021, 7, 7))]
    for key in gaps:
        gap = ledger[key]
        assert (gap["state"], gap["expected"], gap["loaded"]) == (coverage.MISSING, 1, 0)
        assert gap["reason"] == "the vendor returned bars for the window but none of the 1 expected this day"
        assert gap["run_id"] == "manual__coverage_gap"
    others = {k: v["state"] for k, v in ledger.items() if k not in gaps}
    assert set(others.values()) == {coverage.COMPLETE}
    assert all((v["expected"], v["loaded"]) == (1, 1) for k, v in ledger.items() if k in others)
    assert result["coverage"] == dict(dict.fromkeys(coverage.STATES, 0), complete=25, missing=2)
    printed = _make_coverage(services, capsys)
    assert printed[0].split() == [
        "source", "interval", "symbols", "days", "from", "to", "cal-expected", "loaded",
        "complete", "partial", "missing", "empty", "deferred", "failed", "rejected", "unrecoverable", "flagged",
    ]  # fmt: skip
    assert (
        "  yahoo/1d/TSLA 2021-07-07: missing (0 of 1 calendar-expected bars) the vendor returned bars for the window but none of the 1 "
        "expected this day  [manual__coverage_gap]"
    ) in printed

    plan, load = _repair("scheduled__repair_1", "1d", max_requests=1, max_days_back=10_000)
    assert plan == [
        {"batch": 0, "symbols": ["TSLA"], "start": "2021-07-07T00:00:00+00:00", "end": "2021-07-08T00:00:00+00:00", "since": {}}
    ]
    assert load["rows_by_symbol"] == {"TSLA": 1} and load["coverage"][coverage.COMPLETE] == 1
    ledger = _ledger(services, "1d", ["TSLA"])
    assert (ledger["TSLA", date(2021, 7, 7)]["state"], ledger["TSLA", date(2021, 7, 7)]["run_id"]) == (
        coverage.COMPLETE,
        "scheduled__repair_1",
    )
    assert ledger["TSLA", date(2021, 7, 1)]["state"] == coverage.MISSING

    plan, _ = _repair("scheduled__repair_2", "1d", max_days_back=10_000)
    assert [(b["symbols"], b["start"][:10]) for b in plan] == [(["TSLA"], "2021-07-01")]
    fixed = _ledger(services, "1d", ["TSLA"])[("TSLA", date(2021, 7, 1))]
    assert (fixed["state"], fixed["loaded"], fixed["run_id"]) == (coverage.COMPLETE, 1, "scheduled__repair_2")
    assert not any("TSLA 2021-07-0" in line for line in _make_coverage(services, capsys))
    assert _repair("scheduled__repair_3", "1d", max_days_back=10_000) == ([], {})


def test_fx_weekends_have_no_ledger_row_and_a_saturday_is_not_asked(services, tmp_path, monkeypatch):
    """Alpha Vantage's recorded EUR/USD ``FX_DAILY`` answer, loaded for 2026-04-27 .. 05-11: its ten
    weekdays are ``complete`` and the two weekends have no row (24/5: nothing expected, nothing
    stored), so the repair has nothing to ask; on 24/7 each weekend day was ``missing``. A run for a
    Saturday alone asks the vendor nothing."""
    from tests.conftest import recording

    fx = (ROOT / "tests" / "fixtures" / "alpha_vantage" / "av_csv_FX_DAILY_EURUSD_demo_2025-12_2026-05.csv").read_text()
    recording(
        tmp_path / "alpha_vantage", "av_csv_FX_DAILY_EURUSD", fx, vendor="alpha_vantage", endpoint="FX_DAILY", symbol="EUR/USD"
    )
    start, end = datetime(2026, 4, 27, tzinfo=UTC), datetime(2026, 5, 11, tzinfo=UTC)
    with serving(StandIn(tmp_path), monkeypatch):
        result = _ingest("manual__fx_weekends", "1d", ["EUR/USD"], start, end, source="alpha_vantage")
        saturday = datetime(2026, 5, 2, tzinfo=UTC)
        ctx = context("manual__fx_saturday", {"symbols": ["EUR/USD"]}, saturday, saturday + timedelta(days=1))
        (batch,) = built(MarketPlanOperator, "plan", "alpha_vantage", "1d").execute(ctx)
        (outcome,) = built(MarketExtractOperator, "extract", "alpha_vantage", "1d", batch=batch).execute(ctx)["outcomes"]
    ledger = {k: v for k, v in _ledger(services, "1d", ["EUR/USD"], "alpha_vantage").items() if start.date() <= k[1] < end.date()}
    weekdays = [start.date() + timedelta(days=i) for i in range(14) if (start.date() + timedelta(days=i)).weekday() < 5]
    assert sorted(day for _, day in ledger) == weekdays and len(weekdays) == 10
    assert {(v["state"], v["expected"], v["loaded"]) for v in ledger.values()} == {(coverage.COMPLETE, 1, 1)}
    assert result["coverage"] == dict(dict.fromkeys(coverage.STATES, 0), complete=10)
    assert (outcome["status"], outcome["reason"]) == (
        outcomes.NO_DATA,
        "no 24/5 session in the window (weekend or holiday): the vendor was not asked",
    )


def test_hourly_runs_widen_the_day_and_count_the_session_minutes(services):
    """Yahoo's recorded 1m AAPL session of 2024-10-02 (XNYS 13:30-20:00 UTC, 390 minutes), loaded
    by two hourly runs: the first covers 13:00-14:00 (30 session minutes, all stored), the second
    14:00-15:00, and the day's row then covers 13:00-15:00 with 90 expected and 90 stored."""
    import psycopg

    day = date(2024, 10, 2)
    with psycopg.connect(services.pg_conninfo()) as conn:  # a day another test of the session may have covered
        conn.execute("DELETE FROM market.coverage WHERE source = 'yahoo' AND interval = '1m' AND day = %s", (day,))
    _ingest("scheduled__1m_13h", "1m", ["AAPL"], datetime(2024, 10, 2, 13, tzinfo=UTC), datetime(2024, 10, 2, 14, tzinfo=UTC))
    first = _ledger(services, "1m", ["AAPL"])[("AAPL", day)]
    assert (first["expected"], first["loaded"], first["state"]) == (30, 30, coverage.COMPLETE)
    _ingest("scheduled__1m_14h", "1m", ["AAPL"], datetime(2024, 10, 2, 14, tzinfo=UTC), datetime(2024, 10, 2, 15, tzinfo=UTC))
    row = _ledger(services, "1m", ["AAPL"])[("AAPL", day)]
    assert (row["covered_from"], row["covered_until"]) == (
        datetime(2024, 10, 2, 13, tzinfo=UTC),
        datetime(2024, 10, 2, 15, tzinfo=UTC),
    )
    assert (row["expected"], row["loaded"], row["state"], row["run_id"]) == (90, 90, coverage.COMPLETE, "scheduled__1m_14h")


@pytest.mark.parametrize(
    "now", [datetime(2024, 12, 2, 15, 7, tzinfo=UTC), datetime(2025, 2, 1, tzinfo=UTC)], ids=["mid-day", "after"]
)
def test_the_bars_the_ledger_expects_are_the_calendars_sessions(services, now):
    """The ledger counts expected bars in SQL against ``market.sessions`` (migration V014), filled
    from the calendars: per UTC day they are the bars :func:`market_ingest.calendars.expected_bars`
    gives for the window (exchange_calendars' sessions, ``24/5``, ``24/7``), over a week with a
    holiday, an early close and Sunday evening sessions, closed by ``now``; the sessions are filled
    once, and NYSE's close of the day after Thanksgiving 2024 is its early close (13:00 New York)."""
    import psycopg

    from market_ingest.calendars import expected_bars, store_sessions
    from market_ingest.intervals import Window

    start, end = datetime(2024, 11, 24, tzinfo=UTC), datetime(2024, 12, 3, tzinfo=UTC)
    markets = ["XNYS", "XLON", "CMES", "24/5", "24/7"]
    with closing(psycopg.connect(services.pg_conninfo())) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bars_sessions_test (source text, symbol text, time timestamptz)")
        for interval in ("1m", "1h", "1d", "1wk", "1mo"):
            runs = [coverage.Asked(f"S{i}", m, start, end, outcomes.OK) for i, m in enumerate(markets)]
            rows = coverage.record(
                cur, source="sessions-test", interval=interval, table="bars_sessions_test", runs=runs, run_id="t", now=now
            ).to_pylist()
            got = {(r["symbol"], r["day"]): r["expected"] for r in rows}
            want = {}
            for i, market in enumerate(markets):
                for t in expected_bars(market, interval, Window(start, min(end, now)), now=now):
                    want[f"S{i}", t.date()] = want.get((f"S{i}", t.date()), 0) + 1
            assert got == want, interval
        assert store_sessions(cur, markets, start, end) == 0  # filled by the first load
        cur.execute("SELECT close, early_close FROM market.sessions WHERE market = 'XNYS' AND day = '2024-11-29'")
        assert cur.fetchone() == (datetime(2024, 11, 29, 18, tzinfo=UTC), True)
        cur.execute("SELECT count(*) FROM market.sessions WHERE market = 'XNYS' AND day = '2024-11-28'")  # Thanksgiving
        assert cur.fetchone() == (0,)
        conn.rollback()


def test_a_failed_hour_stays_repairable_after_later_hours_without_a_session(services):
    """Seen in the soak benchmark: an hourly run failed (the day's row ``failed``), then the evening
    runs after the close asked nothing (``no_data``), and the day turned ``vendor_empty`` with the
    last run's "no XNYS session" reason, which the repair does not ask again. An earlier hole that a
    later run did not re-ask keeps its state and reason; a run that asks the same part again (a
    repair, a clear) decides the day's state as before."""
    import psycopg

    source, day, now = "ledger-test", date(2024, 10, 2), datetime(2024, 10, 3, tzinfo=UTC)
    failure = "task extract[0] failed on try 4 of 4: VendorUnavailableError: yahoo: ... (see its log)"

    def asked(hour: int, status: str, reason: str) -> coverage.Asked:
        start = datetime(2024, 10, 2, hour, tzinfo=UTC)
        return coverage.Asked("AAA", "XNYS", start, start + timedelta(hours=1), status, reason)

    with closing(psycopg.connect(services.pg_conninfo())) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE bars_ledger_test (source text, symbol text, time timestamptz)")
        cur.execute("DELETE FROM market.coverage WHERE source = %s", (source,))

        def write(run_id: str, a: coverage.Asked) -> dict:
            (row,) = coverage.record(
                cur, source=source, interval="1m", table="bars_ledger_test", runs=[a], run_id=run_id, now=now
            ).to_pylist()
            return row

        first = write("scheduled__13h", asked(13, outcomes.FAILED, failure))  # 13:30-14:00: 30 session minutes
        assert (first["state"], first["expected"], first["loaded"]) == (coverage.FAILED, 30, 0)
        closed = "no XNYS session in the window (weekend or holiday): the vendor was not asked"
        later = write("scheduled__21h", asked(21, outcomes.NO_DATA, closed))  # after the 20:00 UTC close
        assert (later["day"], later["state"], later["reason"], later["expected"], later["loaded"]) == (
            day,
            coverage.FAILED,
            failure,
            390,  # the covered part is one range: 13:00-22:00 holds the whole 13:30-20:00 session
            0,
        )
        assert (later["covered_from"], later["covered_until"]) == (
            datetime(2024, 10, 2, 13, tzinfo=UTC),
            datetime(2024, 10, 2, 22, tzinfo=UTC),
        )
        again = write("scheduled__repair", asked(13, outcomes.NO_DATA, "Yahoo returned no bars for the window"))
        assert (again["state"], again["reason"]) == (coverage.VENDOR_EMPTY, "Yahoo returned no bars for the window")
        conn.rollback()


def test_a_day_asked_again_and_still_missing_counts_an_attempt(services):
    """The ledger's ``attempts`` of one XNYS session, each step written as a load writes it
    (:func:`market_ingest.coverage.record_run`): the first ask leaves it ``missing`` with none; each
    run asking it again whose load leaves it ``missing`` or ``failed`` counts one; a run whose bars
    were not loaded (``not_loaded``: the report writes it), a run whose extract task failed and the
    same run's load again count none, the vendor's answer never judged anew; a run leaving it in
    another state (the vendor answered empty) puts it back to 0."""
    import psycopg

    from market_ingest.config import load_config
    from market_ingest.dag_factory import task_arguments

    settings = task_arguments(load_config(), "yahoo", "1d")["load_timescale"]["series"].settings
    plan = [{"batch": 0, "symbols": ["ATTEMPTS"], "start": "2024-10-02T00:00:00+00:00", "end": "2024-10-03T00:00:00+00:00"}]
    with closing(psycopg.connect(services.pg_conninfo())) as conn, conn.cursor() as cur:

        def load(run_id: str, status: str | None = outcomes.OK, reason: str = "", not_loaded: str | None = None) -> tuple:
            """The ledger row as run ``run_id``'s load writes it; ``status`` ``None``: its batch's task did not succeed."""
            extracts = [
                {"batch": 0, "outcomes": [{"symbol": "ATTEMPTS", "status": status, "reason": reason}]} if status else None
            ]
            rows, _ = coverage.record_run(
                cur,
                source="yahoo",
                interval="1d",
                settings=settings,
                batches=read_plan(plan),
                extracts=extracts,
                run_id=run_id,
                not_loaded=not_loaded,
            )
            (row,) = rows.to_pylist()
            return row["state"], row["attempts"]

        assert load("scheduled__first") == (coverage.MISSING, 0)
        assert load("scheduled__repair_1") == (coverage.MISSING, 1)
        assert load("scheduled__repair_2", not_loaded="task load_timescale did not succeed") == (coverage.FAILED, 1)
        assert load("scheduled__repair_3", outcomes.FAILED, "ValueError: no timestamps") == (coverage.FAILED, 2)
        assert load("scheduled__repair_3", outcomes.FAILED, "ValueError: no timestamps") == (coverage.FAILED, 2)  # its retry
        assert load("scheduled__repair_outage", None) == (coverage.FAILED, 2)  # no answer judged: a 5xx, a rate limit
        assert load("scheduled__repair_4", outcomes.NO_DATA, "Yahoo returned no bars") == (coverage.VENDOR_EMPTY, 0)
        assert load("scheduled__repair_5") == (coverage.MISSING, 0)  # not a hole before: a first ask again
        conn.rollback()


def test_the_ledger_is_mirrored_to_the_lake(services):
    """The rows a load wrote are in the lake's coverage table as the warehouse stores them, each
    day once, ``updated_at`` included; the load retried, changing nothing, leaves them as they are
    (in the warehouse and here); another run's load of the same days replaces them, and the first
    load's rows stay readable by version (time travel). Before, the mirror stamped each row with
    the worker's clock after the commit: it never said what the warehouse said, and a worker
    whose clock ran behind lost to an earlier load."""
    import psycopg

    from market_ingest.config import load_config
    from market_ingest.lake import lake_root, open_table, read_mirror

    root = lake_root(load_config().lake.url)
    start, end = datetime(2021, 8, 2, tzinfo=UTC), datetime(2021, 8, 7, tzinfo=UTC)
    columns = (*coverage.COLUMNS, "updated_at")

    def mirrored(version=None):
        rows = read_mirror(root, "yahoo", "1d", version=version).to_pylist()
        return [{c: r[c] for c in columns} for r in rows if r["symbol"] == "MSFT" and start.date() <= r["day"] < end.date()]

    def stored():
        with closing(psycopg.connect(services.pg_conninfo())) as conn:
            cur = conn.execute(
                f"SELECT {', '.join(columns)} FROM market.coverage WHERE source = 'yahoo' AND interval = '1d' "
                "AND symbol = 'MSFT' AND day >= %s AND day < %s ORDER BY day",
                (start.date(), end.date()),
            )
            return [dict(zip(columns, r, strict=True)) for r in cur.fetchall()]

    _ingest("manual__coverage_mirror", "1d", ["MSFT"], start, end)
    rows = mirrored()
    assert [(r["symbol"], r["day"], r["state"], r["expected"], r["loaded"]) for r in rows] == [
        ("MSFT", date(2021, 8, d), coverage.COMPLETE, 1, 1) for d in range(2, 7)
    ]
    assert {r["run_id"] for r in rows} == {"manual__coverage_mirror"}
    assert rows == stored()
    first = open_table(root, dataset="coverage").version()

    _ingest("manual__coverage_mirror", "1d", ["MSFT"], start, end)  # the load retried: nothing changes
    assert mirrored() == rows == stored()

    _ingest("manual__coverage_mirror_again", "1d", ["MSFT"], start, end)  # another run of the same days
    again = mirrored()
    assert again == stored()
    assert {r["run_id"] for r in again} == {"manual__coverage_mirror_again"}
    assert all(b["updated_at"] > a["updated_at"] for a, b in zip(rows, again, strict=True))
    assert mirrored(version=first) == rows


def test_a_minute_the_vendor_did_not_send_leaves_the_day_partial(services):
    """Yahoo's recorded 1m AAPL session of 2024-10-02 holds one minute with a null close, which
    yfinance leaves out: the day holds 389 of its 390 session minutes and is ``partial``."""
    _ingest("manual__1m_day", "1m", ["AAPL"], datetime(2024, 10, 2, tzinfo=UTC), datetime(2024, 10, 3, tzinfo=UTC))
    row = _ledger(services, "1m", ["AAPL"])[("AAPL", date(2024, 10, 2))]
    assert (row["expected"], row["loaded"], row["state"]) == (390, 389, coverage.PARTIAL)
    assert row["reason"] == "389 of 390 expected bars stored; the vendor returned no bar for the others"
    assert (row["covered_from"], row["covered_until"]) == (datetime(2024, 10, 2, tzinfo=UTC), datetime(2024, 10, 3, tzinfo=UTC))

    # Yahoo serves 1m bars for the last 30 days only: the repair cannot ask for this day, says so
    # in the ledger, and does not plan it again.
    assert _repair("scheduled__repair_1m", "1m", max_days_back=10_000) == ([], {})
    row = _ledger(services, "1m", ["AAPL"])[("AAPL", date(2024, 10, 2))]
    assert row["state"] == coverage.UNRECOVERABLE and row["run_id"] == "scheduled__repair_1m"
    assert (row["expected"], row["loaded"]) == (390, 389)
    oldest, rest = row["reason"].removeprefix("yahoo serves 1m bars from ").split(" only; ")
    assert abs(datetime.fromisoformat(oldest) - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=5)
    assert rest == "it was partial: 389 of 390 expected bars stored; the vendor returned no bar for the others"
    ctx = context("scheduled__repair_1m_again")
    again = built(MarketRepairPlanOperator, "repair_plan", "yahoo", "1m", max_days_back=10_000)
    assert again.execute(ctx) == []
    assert _ledger(services, "1m", ["AAPL"])[("AAPL", date(2024, 10, 2))]["run_id"] == "scheduled__repair_1m"


def test_a_run_whose_load_failed_leaves_its_days_failed_for_the_repair(services):
    """The warehouse load of a run did not succeed (``load_timescale`` is ``None`` to the report):
    the report writes the ledger itself, every planned day ``failed`` naming the task, and the
    repair plans exactly those days."""
    from market_ingest.operators.report import RunReportOperator

    _forget_repairable(services)
    start, end = datetime(2021, 9, 13, tzinfo=UTC), datetime(2021, 9, 18, tzinfo=UTC)
    ctx = context("manual__load_failed", {"symbols": ["NVDA"]}, start, end)
    plan = built(MarketPlanOperator, "plan", "yahoo", "1d").execute(ctx)
    extracts = [built(MarketExtractOperator, "extract", "yahoo", "1d", batch=b).execute(ctx) for b in plan]
    report = built(
        RunReportOperator, "report", "yahoo", "1d", plan=plan, extracts=extracts, lake=None, timescale=None, kinesis=None
    )
    with pytest.raises(AirflowFailException, match=r"tasks \['publish_lake', 'load_timescale', 'publish_kinesis'\]"):
        report.execute(ctx)
    days = {d: r for (_, d), r in _ledger(services, "1d", ["NVDA"]).items() if start.date() <= d < end.date()}
    assert sorted(days) == [date(2021, 9, d) for d in (13, 14, 15, 16, 17)]
    assert {(r["state"], r["loaded"], r["reason"], r["run_id"]) for r in days.values()} == {
        (
            coverage.FAILED,
            0,
            "not in the warehouse: task publish_lake, load_timescale did not succeed (see its log); nor in any other sink",
            "manual__load_failed",
        )
    }
    plan, load = _repair("scheduled__repair_failed_load", "1d", max_days_back=10_000, max_requests=1)
    assert plan[0]["symbols"] == ["NVDA"] and (plan[0]["start"], plan[0]["end"]) == (start.isoformat(), end.isoformat())
    assert {r["state"] for (_, d), r in _ledger(services, "1d", ["NVDA"]).items() if d in days} == {coverage.COMPLETE}


def test_a_load_that_failed_with_the_warehouse_down_is_ledgered_once_it_is_back(services, monkeypatch):
    """Seen on main: with PostgreSQL down, ``load_timescale`` failed, the bars reached the lake and
    Kinesis, and the report could not write the ledger either (the warehouse is what failed): no
    row said the days were not loaded, so neither the coverage view nor the repair saw the gap.
    Now the report parks the rows in the lake, and the pair's next repair (or load) writes them
    before planning: every day ``failed``, naming the warehouse and the sinks that hold the bars."""
    import json

    from market_ingest.operators.kinesis import KinesisPublishOperator
    from market_ingest.operators.report import RunReportOperator

    _forget_repairable(services)
    start, end = datetime(2021, 9, 20, tzinfo=UTC), datetime(2021, 9, 25, tzinfo=UTC)
    ctx = context("manual__warehouse_down", {"symbols": ["NVDA"]}, start, end)
    plan = built(MarketPlanOperator, "plan", "yahoo", "1d").execute(ctx)
    extracts = [built(MarketExtractOperator, "extract", "yahoo", "1d", batch=b).execute(ctx) for b in plan]
    lake = built(LakePublishOperator, "publish_lake", "yahoo", "1d", extracts=extracts).execute(ctx)
    kinesis = built(KinesisPublishOperator, "publish_kinesis", "yahoo", "1d", lake=lake).execute(ctx)
    report = built(
        RunReportOperator, "report", "yahoo", "1d", plan=plan, extracts=extracts, lake=lake, timescale=None, kinesis=kinesis
    )
    with monkeypatch.context() as down:  # the warehouse refuses connections, as a stopped PostgreSQL does
        down.setenv(
            "AIRFLOW_CONN_MARKET_TIMESCALE", json.dumps({"conn_type": "postgres", "host": "127.0.0.1", "port": 9, "login": "x"})
        )
        with pytest.raises(AirflowFailException, match=r"tasks \['load_timescale'\] did not succeed"):
            report.execute(ctx)
    s3 = services.boto3_client("s3")
    parked = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket="market-lake", Prefix="bars/_ledger_parked/source=yahoo/interval=1d/").get(
            "Contents", []
        )
    ]
    assert len(parked) == 1 and parked[0].endswith(".json")
    assert not [d for (_, d) in _ledger(services, "1d", ["NVDA"]) if start.date() <= d < end.date()]  # nothing could say so yet

    # A parked object that cannot be read (cut by a crash, written by another version) costs only itself.
    bad = "bars/_ledger_parked/source=yahoo/interval=1d/run=a-cut-object.json"
    s3.put_object(Bucket="market-lake", Key=bad, Body=b'{"plan": [')
    repair_plan = built(MarketRepairPlanOperator, "repair_plan", "yahoo", "1d", max_days_back=10_000, max_requests=1)
    plan = repair_plan.execute(context("scheduled__repair_after_outage"))
    days = {d: r for (_, d), r in _ledger(services, "1d", ["NVDA"]).items() if start.date() <= d < end.date()}
    assert sorted(days) == [date(2021, 9, d) for d in (20, 21, 22, 23, 24)]
    assert {(r["state"], r["loaded"], r["reason"], r["run_id"]) for r in days.values()} == {
        (
            coverage.FAILED,
            0,
            "not in the warehouse: task load_timescale did not succeed (see its log); the run's bars are in the lake and Kinesis",
            "manual__warehouse_down",
        )
    }
    # The repair wrote the parked rows before it planned, so it asks for exactly those days; the object is gone.
    assert plan[0]["symbols"] == ["NVDA"] and (plan[0]["start"], plan[0]["end"]) == (start.isoformat(), end.isoformat())
    left = [o["Key"] for o in s3.list_objects_v2(Bucket="market-lake", Prefix="bars/_ledger_parked/").get("Contents", [])]
    assert left == [bad]  # the drained object is gone; the unreadable one is left for an operator (logged)
    s3.delete_object(Bucket="market-lake", Key=bad)
    _forget_repairable(services)


def test_a_100x_bar_and_a_jump_are_loaded_and_flagged(services, tmp_path, monkeypatch):
    """Daily bars of 2021-06-01 .. 07-31 from Yahoo's recordings, with MSFT's 2021-07-21 prices
    made 100 times larger (pence for pounds) and TSLA's 2021-07-14 close and high 1.5 times larger
    (a jump). Both bars pass validation and are loaded as sent; the anomaly checks flag MSFT's bar
    and the one after it (each 100x from its previous close) and TSLA's return, with the figures,
    and nothing else in two months of real bars. The ledger counts the flagged bars per day."""
    import psycopg

    from market_ingest.hooks.yahoo import YahooFinanceHook
    from market_ingest.intervals import Window

    start, end = datetime(2021, 6, 1, tzinfo=UTC), datetime(2021, 8, 1, tzinfo=UTC)
    recorded, _ = YahooFinanceHook().fetch_bars(
        ["MSFT", "TSLA"],
        "1d",
        Window(datetime(2021, 7, 14, tzinfo=UTC), datetime(2021, 7, 22, tzinfo=UTC)),
        datetime(2026, 1, 1, tzinfo=UTC),
    )
    bar = {(r["symbol"], r["time"].date().isoformat()): r for r in recorded.to_pylist()}
    msft, tsla = bar["MSFT", "2021-07-21"], bar["TSLA", "2021-07-14"]
    library = derived_yahoo_library(
        tmp_path,
        {
            "yahoo_chart_MSFT_1d_2021": [("2021-07-21", f, msft[f] * 100) for f in ("open", "high", "low", "close")],
            "yahoo_chart_TSLA_1d_full": [
                ("2021-07-14", "close", tsla["close"] * 1.5),
                ("2021-07-14", "high", tsla["close"] * 1.5),
            ],
        },
    )
    with serving(StandIn(library), monkeypatch):
        result = _ingest("manual__anomalies", "1d", ["MSFT", "TSLA"], start, end)
    assert result["flags"] == {"return_outlier": 2, "unit_100x": 2}
    with psycopg.connect(services.pg_conninfo()) as conn:
        flags = conn.execute(
            "SELECT symbol, time::date::text, flag, detail, run_id FROM market.bar_flags WHERE source = 'yahoo' "
            "AND interval = '1d' AND symbol IN ('MSFT', 'TSLA') AND time >= %s AND time < %s ORDER BY symbol, time, flag",
            (start, end),
        ).fetchall()
        stored = conn.execute(
            "SELECT close FROM market.bars WHERE source = 'yahoo' AND interval = '1d' AND symbol = 'MSFT' AND time = '2021-07-21'"
        ).fetchone()[0]
        flagged = conn.execute(
            "SELECT symbol, day::text, flagged FROM market.coverage WHERE source = 'yahoo' AND interval = '1d' "
            "AND symbol IN ('MSFT', 'TSLA') AND day >= %s AND day < %s AND flagged > 0 ORDER BY symbol, day",
            (start.date(), end.date()),
        ).fetchall()
    assert [(s, d, f) for s, d, f, _, _ in flags] == [
        ("MSFT", "2021-07-21", "return_outlier"),
        ("MSFT", "2021-07-21", "unit_100x"),
        ("MSFT", "2021-07-22", "unit_100x"),
        ("TSLA", "2021-07-14", "return_outlier"),
    ]
    assert {r for *_, r in flags} == {"manual__anomalies"}
    assert stored == pytest.approx(msft["close"] * 100)  # flagged, not dropped
    unit = next(d for s, day, f, d, _ in flags if (s, day, f) == ("MSFT", "2021-07-21", "unit_100x"))
    assert unit.startswith(f"close {msft['close'] * 100}") and " is 100" in unit
    assert flagged == [("MSFT", "2021-07-21", 1), ("MSFT", "2021-07-22", 1), ("TSLA", "2021-07-14", 1)]

    _ingest("manual__anomalies_fixed", "1d", ["MSFT", "TSLA"], start, end)  # the recordings as Yahoo sent them
    with psycopg.connect(services.pg_conninfo()) as conn:
        left = conn.execute(
            "SELECT count(*) FROM market.bar_flags WHERE source = 'yahoo' AND interval = '1d' AND symbol IN ('MSFT', 'TSLA') "
            "AND time >= %s AND time < %s",
            (start, end),
        ).fetchone()[0]
    assert left == 0  # a corrected reload replaces the flags of its span


def test_a_split_stored_as_traded_is_not_flagged(services):
    """TSLA's daily bars of 2020-08-03 .. 09-30 through the pipeline: Yahoo sent them adjusted as of
    2025-02-22 (5:1 on 2020-08-31, 3:1 on 2022-08-25), they are stored as traded (2020-08-28 closed
    at 2,213.40, 2020-08-31 at 498.32: a fifth of it after the split), and the anomaly checks read
    the split on its ex-date bar, so the split is no outlier; before, its log return of -1.49 was."""
    import psycopg

    from market_ingest import ui

    start, end = datetime(2020, 8, 3, tzinfo=UTC), datetime(2020, 10, 1, tzinfo=UTC)
    result = _ingest("manual__tsla_split", "1d", ["TSLA"], start, end)
    with psycopg.connect(services.pg_conninfo()) as conn:
        closes = dict(
            conn.execute(
                "SELECT time::date::text, close FROM market.bars WHERE source = 'yahoo' AND interval = '1d' AND symbol = 'TSLA' "
                "AND time IN ('2020-08-28', '2020-08-31') AND price_basis = 'as_traded'"
            ).fetchall()
        )
        flags = conn.execute(
            "SELECT time::date::text, flag, detail FROM market.bar_flags WHERE source = 'yahoo' AND interval = '1d' "
            "AND symbol = 'TSLA' AND time >= %s AND time < %s",
            (start, end),
        ).fetchall()
    assert closes["2020-08-28"] == pytest.approx(2213.40, abs=0.01)
    assert closes["2020-08-31"] == pytest.approx(498.32, abs=0.01)
    assert flags == [] and result["flags"] == {}
    # The coverage view marks the ex-date on the grid, from market.corporate_actions.
    with closing(psycopg.connect(services.pg_conninfo())) as conn:
        newer = conn.execute(
            "SELECT count(DISTINCT day) FROM market.coverage WHERE source = 'yahoo' AND interval = '1d' AND day > '2020-08-31'"
        ).fetchone()[0]
        view = ui.read("yahoo", "1d", days=newer + 1, conn=conn)
    assert view["actions"]["TSLA"]["2020-08-31"] == ["split 5:1"]
    page = ui.render(view)
    assert "<span class='cell action' role='button' tabindex='0'" in page
    assert "TSLA 2020-08-31: complete, 1 of 1 bars. Ex-date of: split 5:1 (market.corporate_actions)." in page


def test_market_float8_stats_is_avg_stddev_samp_and_count(services):
    """MSFT's and TSLA's daily bars of 2021-01 .. 07 from Yahoo's recordings: over each bar's
    20 trailing log returns and volumes, market.float8_stats (migration V015) gives what
    PostgreSQL's avg, stddev_samp and count give, to the last bit (so one state per series serves
    all three). The anomaly checks take running sums instead (tests/integration/test_anomalies.py)."""
    import psycopg

    _ingest("manual__trailing", "1d", ["MSFT", "TSLA"], datetime(2021, 1, 1, tzinfo=UTC), datetime(2021, 8, 1, tzinfo=UTC))
    with psycopg.connect(services.pg_conninfo()) as conn:
        bars, differ = conn.execute(
            """
            WITH r AS (
                SELECT symbol, time, volume, ln(close / lag(close) OVER (PARTITION BY symbol ORDER BY time)) AS r
                FROM market.bars_1d WHERE source = 'yahoo' AND symbol IN ('MSFT', 'TSLA')
                    AND time >= '2021-01-01' AND time < '2021-08-01'
            ), w AS (
                SELECT avg(r) OVER p AS r_mean, stddev_samp(r) OVER p AS r_sd, count(r) OVER p AS n,
                       avg(volume) OVER p AS v_mean, stddev_samp(volume) OVER p AS v_sd,
                       market.float8_stats(r) OVER p AS rs, market.float8_stats(volume) OVER p AS vs
                FROM r WINDOW p AS (PARTITION BY symbol ORDER BY time ROWS BETWEEN 20 PRECEDING AND 1 PRECEDING)
            )
            SELECT count(*), count(*) FILTER (WHERE
                (r_mean, r_sd, n, v_mean, v_sd) IS DISTINCT FROM (
                    CASE WHEN rs[1] > 0 THEN rs[2] / rs[1] END, CASE WHEN rs[1] > 1 THEN sqrt(rs[3] / (rs[1] - 1)) END,
                    rs[1]::bigint, CASE WHEN vs[1] > 0 THEN vs[2] / vs[1] END,
                    CASE WHEN vs[1] > 1 THEN sqrt(vs[3] / (vs[1] - 1)) END))
            FROM w
            """
        ).fetchone()
    assert bars == 126 + 145  # XNYS sessions: MSFT's recording of 2021 starts in February, TSLA's holds January too
    assert differ == 0


#: Symbols whose 43 XNYS sessions of 2021-08-02 .. 09-30 the vendor never serves (the reviewer's 300).
NEVER_SERVED = [f"NEVER{i:03d}" for i in range(300)]


def _load_never_served(services, run_id: str, plan: list[dict]) -> list[dict]:
    """The load of ``plan``'s batches of :data:`NEVER_SERVED` symbols: the vendor answered each
    symbol (``ok``) and none of the window's sessions' bars is stored, so each day is ``missing``
    (again). Written as the load writes it (:func:`market_ingest.coverage.record_run`, one transaction)."""
    import psycopg

    from market_ingest.config import load_config
    from market_ingest.dag_factory import task_arguments

    settings = task_arguments(load_config(), "yahoo", "1d")["load_timescale"]["series"].settings
    extracts = [{"batch": b["batch"], "outcomes": [{"symbol": s, "status": outcomes.OK} for s in b["symbols"]]} for b in plan]
    with closing(psycopg.connect(services.pg_conninfo())) as conn, conn.transaction(), conn.cursor() as cur:
        rows, _ = coverage.record_run(
            cur, source="yahoo", interval="1d", settings=settings, batches=read_plan(plan), extracts=extracts, run_id=run_id
        )
    return rows.to_pylist()


def test_days_the_vendor_never_serves_stop_being_asked_and_an_older_day_is_still_repaired(services, tmp_path, monkeypatch):
    """The reviewer's case: 300 symbols whose 43 sessions of 2021-08-02 .. 09-30 the vendor never
    serves (each load finds none of their bars: ``missing`` again), and TSLA's older session of
    2012-06-15, which the ingestion's answer lacked (a derived recording) and Yahoo's untouched
    recording holds. Each never-served symbol is one window (one request); the budget is 200
    (``repair.max_requests_per_source``). The first repair asks the 200 newest windows; the second
    asks TSLA's day first among the days not asked yet, and loads it from the recording. Every
    never-served window is asked ``repair.max_attempts`` times, then its days are
    ``unrecoverable`` with the attempts and the last reason, and the repair plans nothing more."""
    import math
    from collections import Counter

    import psycopg

    from market_ingest import ui
    from market_ingest.config import load_config

    _forget_repairable(services)
    older = date(2012, 6, 15)
    with psycopg.connect(services.pg_conninfo()) as conn:  # a shared warehouse: the day's bar and rows start absent
        conn.execute(
            "DELETE FROM market.bars_1d WHERE source = 'yahoo' AND symbol = 'TSLA' AND time >= %s AND time < %s",
            (older, older + timedelta(days=1)),
        )
        conn.execute(
            "DELETE FROM market.coverage WHERE source = 'yahoo' AND interval = '1d' AND symbol = ANY(%s)", (NEVER_SERVED,)
        )
    library = derived_yahoo_library(tmp_path, {}, dropped={"yahoo_chart_TSLA_1d_full": [older.isoformat()]})
    with serving(StandIn(library), monkeypatch):
        _ingest("manual__older_gap", "1d", ["TSLA"], datetime(2012, 6, 14, tzinfo=UTC), datetime(2012, 6, 19, tzinfo=UTC))
    assert _ledger(services, "1d", ["TSLA"])["TSLA", older]["state"] == coverage.MISSING
    start, end = datetime(2021, 8, 2, tzinfo=UTC), datetime(2021, 10, 1, tzinfo=UTC)
    window = {"batch": 0, "symbols": NEVER_SERVED, "start": start.isoformat(), "end": end.isoformat(), "since": {}}
    rows = _load_never_served(services, "scheduled__never_served", [window])
    assert len(rows) == 300 * 43 and {r["state"] for r in rows} == {coverage.MISSING}

    budget = load_config().repair.max_requests_per_source
    asked: Counter[str] = Counter()
    last_asked: dict[str, int] = {}
    repaired_in = None
    for run in range(1, 11):
        ctx = context(f"scheduled__never_served_repair_{run}")
        plan = built(MarketRepairPlanOperator, "repair_plan", "yahoo", "1d", max_days_back=10_000).execute(ctx)
        if not plan:
            break
        older_batches = [b for b in plan if b["symbols"] == ["TSLA"]]
        never = [b for b in plan if b not in older_batches]
        assert {(b["start"], b["end"]) for b in never} <= {(window["start"], window["end"])}
        asked.update(s for b in never for s in b["symbols"])
        last_asked.update((s, run) for b in never for s in b["symbols"])
        if older_batches:
            assert [(b["start"], b["end"]) for b in older_batches] == [("2012-06-15T00:00:00+00:00", "2012-06-16T00:00:00+00:00")]
            assert _load(ctx, "1d", older_batches)["rows_by_symbol"] == {"TSLA": 1}
            repaired_in = run
        _load_never_served(services, ctx["run_id"], never)
        if run == 2:
            assert repaired_in in (1, 2), "the older servable day was not planned within 2 repair runs"
    assert not plan, "the repair still plans the never-served days after 10 runs"
    fixed = _ledger(services, "1d", ["TSLA"])["TSLA", older]
    assert (fixed["state"], fixed["loaded"], fixed["run_id"]) == (
        coverage.COMPLETE,
        1,
        f"scheduled__never_served_repair_{repaired_in}",
    )

    attempts = load_config().repair.max_attempts
    assert asked == Counter(dict.fromkeys(NEVER_SERVED, attempts))
    assert run <= math.ceil((len(NEVER_SERVED) * attempts + 1) / budget) + 1  # the budget spent, then one empty plan
    gave_up = _ledger(services, "1d", NEVER_SERVED)
    assert len(gave_up) == 300 * 43
    assert {(r["state"], r["attempts"], r["reason"]) for r in gave_up.values()} == {
        (
            coverage.UNRECOVERABLE,
            attempts,
            f"not served after {attempts} repair attempts (repair.max_attempts); it was missing: "
            "the vendor returned bars for the window but none of the 1 expected this day",
        )
    }
    # each given up by the plan of the repair after its last ask
    assert {(s, r["run_id"]) for (s, _), r in gave_up.items()} == {
        (s, f"scheduled__never_served_repair_{last_asked[s] + 1}") for s in NEVER_SERVED
    }

    # The coverage view shows those days unrecoverable, with their reason.
    with closing(psycopg.connect(services.pg_conninfo())) as conn:
        newer = conn.execute(
            "SELECT count(DISTINCT day) FROM market.coverage WHERE source = 'yahoo' AND interval = '1d' AND day > %s",
            (date(2021, 9, 30),),
        ).fetchone()[0]
        view = ui.read("yahoo", "1d", days=newer + 1, conn=conn)
    (pair,) = [p for p in view["pairs"] if (p["source"], p["interval"]) == ("yahoo", "1d")]
    assert pair[coverage.UNRECOVERABLE] >= 300 * 43
    cell = view["cells"]["NEVER000"]["2021-09-30"]
    assert (cell["state"], cell["reason"]) == (coverage.UNRECOVERABLE, next(iter(gave_up.values()))["reason"])
    page = ui.render(view)
    assert f"<td class='n-{coverage.UNRECOVERABLE}'>{pair[coverage.UNRECOVERABLE]}</td>" in page
    assert f"data-symbol='NEVER000' data-day='2021-09-30' data-state='{coverage.UNRECOVERABLE}'" in page
    assert (
        f"NEVER000 2021-09-30: unrecoverable, 0 of 1 bars. Asked again {attempts} times (repair attempts). "
        f"{cell['reason']} [{cell['run_id']}]"
    ) in page
    with psycopg.connect(services.pg_conninfo()) as conn:  # a shared warehouse: 12,900 rows no other test expects
        conn.execute(
            "DELETE FROM market.coverage WHERE source = 'yahoo' AND interval = '1d' AND symbol = ANY(%s)", (NEVER_SERVED,)
        )


def test_a_ledger_of_the_previous_release_takes_the_unrecoverable_state(services, tmp_path):
    """A warehouse at V010, whose repair marked a day beyond the lookback with the reason prefix
    ``unrecoverable: ``: V011 makes it state ``unrecoverable`` (the reason keeps the rest), gives
    every row 0 attempts, and accepts no other new state; run twice, it changes nothing more."""
    import shutil

    import psycopg

    from market_ingest.hooks.timescale import MIGRATIONS_DIR, apply_migrations

    previous = tmp_path / "migrations"
    previous.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("V0*.sql")):
        if path.name < "V011":
            shutil.copy(path, previous)
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS coverage_v010 WITH (FORCE)")
        conn.execute("CREATE DATABASE coverage_v010")
    lookback = "yahoo serves 1m bars from 2024-11-05T06:00:00+00:00 only; 389 of 390 expected bars stored"
    with closing(psycopg.connect(services.pg_conninfo().replace("dbname=postgres", "dbname=coverage_v010"))) as conn:
        assert apply_migrations(conn, directory=previous)[-1] == "010"
        conn.execute(
            "INSERT INTO market.coverage (source, interval, symbol, day, covered_from, covered_until, expected, loaded, "
            "state, reason, run_id) VALUES "
            "('yahoo', '1m', 'AAPL', '2024-10-02', '2024-10-02', '2024-10-03', 390, 389, 'partial', %s, 'scheduled__r'), "
            "('yahoo', '1m', 'AAPL', '2024-10-03', '2024-10-03', '2024-10-04', 390, 0, 'missing', 'none came', 'scheduled__r')",
            ("unrecoverable: " + lookback,),
        )
        conn.commit()
        assert apply_migrations(conn)[0] == "011"  # then any later one
        rows = conn.execute("SELECT day::text, state, reason, attempts FROM market.coverage ORDER BY day").fetchall()
        assert rows == [("2024-10-02", "unrecoverable", lookback, 0), ("2024-10-03", "missing", "none came", 0)]
        conn.execute((MIGRATIONS_DIR / "V011__coverage_attempts.sql").read_text())
        assert conn.execute("SELECT day::text, state, reason, attempts FROM market.coverage ORDER BY day").fetchall() == rows
        with pytest.raises(psycopg.errors.CheckViolation, match="coverage_state_check"):
            conn.execute("UPDATE market.coverage SET state = 'gone' WHERE day = '2024-10-03'")
        conn.rollback()
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP DATABASE coverage_v010 WITH (FORCE)")


def test_the_coverage_view_reads_through_a_login_that_cannot_write(services):
    """Seen on main: the view read the ledger through the loading connection (here, as in the demo,
    a superuser). It now reads through ``timescale.reader_conn_id``, a login in the read-only role
    ``market_reader`` (migration V012): it reads every relation of schema ``market``, including one
    created after the migration, and may not change any."""
    import psycopg

    from market_ingest import ui

    day = date(2021, 7, 19)
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as admin:
        admin.execute(
            "INSERT INTO market.coverage (source, interval, symbol, day, covered_from, covered_until, expected, loaded, "
            "state, run_id) VALUES ('readonly-test', '1d', 'MSFT', %s, %s, %s, 1, 1, 'complete', 'manual__readonly') "
            "ON CONFLICT DO NOTHING",
            (day, datetime(2021, 7, 19, tzinfo=UTC), datetime(2021, 7, 20, tzinfo=UTC)),
        )
        admin.execute("CREATE TABLE market.after_v012 (a int)")  # as a later migration would
        relations = [
            r
            for (r,) in admin.execute(
                "SELECT format('%I.%I', n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = 'market' AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1"
            )
        ]
    try:
        view = ui.read("readonly-test", "1d")
        assert view["cells"]["MSFT"][day.isoformat()]["state"] == "complete"
        with closing(ui.reader_connection()) as conn:
            assert conn.info.user == "market_view"
            for relation in relations:  # bars per interval, market.bars, rollups, quotes, ledger, flags, ...
                conn.execute(f"SELECT * FROM {relation} LIMIT 1").fetchall()
            assert "market.after_v012" in relations and "market.bars_1d" in relations
            for statement in (
                "INSERT INTO market.coverage (source, interval, symbol, day, covered_from, covered_until, expected, "
                "loaded, state, run_id) VALUES ('x', '1d', 'X', '2021-07-19', '2021-07-19', '2021-07-20', 0, 0, 'missing', 'x')",
                "UPDATE market.coverage SET reason = 'changed' WHERE source = 'readonly-test'",
                "DELETE FROM market.coverage WHERE source = 'readonly-test'",
                "DELETE FROM market.bars_1d",
                "TRUNCATE market.bars_1d",
                "INSERT INTO market.after_v012 VALUES (1)",
                "CREATE TABLE market.by_the_view (a int)",
            ):
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    conn.execute(statement)
                conn.rollback()
    finally:
        with psycopg.connect(services.pg_conninfo(), autocommit=True) as admin:
            admin.execute("DROP TABLE market.after_v012")
            admin.execute("DELETE FROM market.coverage WHERE source = 'readonly-test'")


def test_without_its_connection_the_view_says_so_and_never_uses_the_loading_one(services, monkeypatch):
    from market_ingest import ui
    from market_ingest.config import load_config
    from market_ingest.errors import ConfigurationError

    cfg = load_config().timescale
    monkeypatch.delenv(f"AIRFLOW_CONN_{cfg.reader_conn_id.upper()}")
    with pytest.raises(ConfigurationError, match=f"connection {cfg.reader_conn_id} .* is not defined"):
        ui.read()
    (page,) = [r.endpoint for r in ui.create_app().routes if getattr(r, "path", None) == "/"]
    answer = page(source=None, interval=None, days=31)  # the route's function, past Airflow's login check
    assert answer.status_code == 503
    assert f"never through the loading connection {cfg.conn_id}" in answer.body.decode()


def test_the_coverage_view_says_when_the_asked_pair_has_no_rows(services):
    """Seen on main: asked for a (source, interval) the ledger has no rows of, the view showed
    another pair's grid instead (the source's first interval, or the ledger's first source) with
    nothing on the page saying so. It now keeps the pair asked, says it has no rows, shows no grid
    and still lists the pairs that have rows; a pair with rows is shown as before."""
    import psycopg

    from market_ingest import ui

    day = date(2021, 7, 19)
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as admin:
        admin.execute(
            "INSERT INTO market.coverage (source, interval, symbol, day, covered_from, covered_until, expected, loaded, "
            "state, run_id) VALUES ('absent-test', '1d', 'MSFT', %s, %s, %s, 1, 1, 'complete', 'manual__absent') "
            "ON CONFLICT DO NOTHING",
            (day, datetime(2021, 7, 19, tzinfo=UTC), datetime(2021, 7, 20, tzinfo=UTC)),
        )
    routes = {r.path: r.endpoint for r in ui.create_app().routes if getattr(r, "path", None) in ("/", "/api/coverage")}
    try:
        # an interval the source has no rows of; a source the ledger has no rows of
        for source, interval in (("absent-test", "5m"), ("absent-test-never", "1d")):
            view = ui.read(source, interval)
            assert (view["source"], view["interval"]) == (source, interval)
            assert (view["days"], view["symbols"], view["cells"], view["runs"]) == ([], [], {}, [])
            assert ("absent-test", "1d") in {(p["source"], p["interval"]) for p in view["pairs"]}
            said = f"The coverage ledger has no rows for {source} {interval}"
            assert view["absent"].startswith(said)
            page = routes["/"](source=source, interval=interval, days=31)  # the route's function, past Airflow's login check
            assert said in page and "id='grid'" not in page and "data-pair='absent-test/1d'" in page
            assert routes["/api/coverage"](source=source, interval=interval, days=31)["absent"] == view["absent"]
        view = ui.read("absent-test", "1d")
        assert view["absent"] is None and view["cells"]["MSFT"][day.isoformat()]["state"] == "complete"
        assert "id='grid'" in ui.render(view)
    finally:
        with psycopg.connect(services.pg_conninfo(), autocommit=True) as admin:
            admin.execute("DELETE FROM market.coverage WHERE source = 'absent-test'")
