"""The coverage ledger (``market.coverage``): what each load says it holds, per symbol and UTC day,
against the market's calendar, on recorded Yahoo answers."""

from __future__ import annotations

from contextlib import closing
from datetime import date, datetime, timedelta, timezone

import pytest
from airflow.sdk.exceptions import AirflowFailException

from market_ingest import coverage, outcomes
from market_ingest.operators.market import (
    LakePublishOperator,
    MarketExtractOperator,
    MarketPlanOperator,
    MarketRepairPlanOperator,
    TimescaleLoadOperator,
)
from standin.server import StandIn
from tests.conftest import built, serving
from tests.faults.support import context, derived_yahoo_library

pytestmark = pytest.mark.integration

UTC = timezone.utc


def _ingest(run_id: str, interval: str, symbols: list[str], start: datetime, end: datetime) -> dict:
    """plan -> extract -> publish_lake -> load_timescale in this process, as the DAG chains them."""
    ctx = context(run_id, {"symbols": symbols, "start": start.isoformat(), "end": end.isoformat()}, start, end)
    plan = built(MarketPlanOperator, "plan", "yahoo", interval).execute(ctx)
    extracts = [built(MarketExtractOperator, "extract", "yahoo", interval, batch=b).execute(ctx) for b in plan]
    lake = built(LakePublishOperator, "publish_lake", "yahoo", interval, extracts=extracts).execute(ctx)
    return built(TimescaleLoadOperator, "load_timescale", "yahoo", interval, lake=lake, plan=plan, extracts=extracts).execute(ctx)


def _ledger(services, interval: str, symbols: list[str]) -> dict[tuple[str, date], dict]:
    import psycopg

    with closing(psycopg.connect(services.pg_conninfo())) as conn, conn.cursor() as cur:
        cur.execute(
            f"SELECT {', '.join(coverage.COLUMNS)} FROM market.coverage WHERE source = 'yahoo' AND interval = %s "
            "AND symbol = ANY(%s)",
            (interval, symbols),
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
    if not plan:
        return plan, {}
    extracts = [built(MarketExtractOperator, "extract", "yahoo", interval, batch=b).execute(ctx) for b in plan]
    lake = built(LakePublishOperator, "publish_lake", "yahoo", interval, extracts=extracts).execute(ctx)
    load = built(TimescaleLoadOperator, "load_timescale", "yahoo", interval, lake=lake, plan=plan, extracts=extracts)
    return plan, load.execute(ctx)


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
    assert result["coverage"] == dict(coverage.counts([]), complete=25, missing=2)
    printed = _make_coverage(services, capsys)
    assert printed[0].split() == [
        "source", "interval", "symbols", "days", "from", "to", "expected", "loaded",
        "complete", "partial", "missing", "empty", "deferred", "failed", "rejected", "flagged",
    ]  # fmt: skip
    assert (
        "  yahoo/1d/TSLA 2021-07-07: missing (0 of 1 bars) the vendor returned bars for the window but none of the 1 "
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
            )
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


def test_the_ledger_is_mirrored_to_the_lake(services):
    """The rows a load wrote are in ``_coverage/source=yahoo/interval=1d/run=<token>.parquet``."""
    import pyarrow.parquet as pq

    from market_ingest.config import load_config
    from market_ingest.lake import coverage_object, lake_root

    start, end = datetime(2021, 8, 2, tzinfo=UTC), datetime(2021, 8, 7, tzinfo=UTC)
    _ingest("manual__coverage_mirror", "1d", ["MSFT"], start, end)
    path = coverage_object(lake_root(load_config().lake.url), "yahoo", "1d", "manual__coverage_mirror")
    with path.open("rb") as fh:
        rows = pq.read_table(fh).to_pylist()
    assert [(r["symbol"], r["day"], r["state"], r["expected"], r["loaded"]) for r in rows] == [
        ("MSFT", date(2021, 8, d), coverage.COMPLETE, 1, 1) for d in range(2, 7)
    ]
    assert {r["run_id"] for r in rows} == {"manual__coverage_mirror"}


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
    assert row["state"] == coverage.PARTIAL and row["run_id"] == "scheduled__repair_1m"
    oldest, rest = row["reason"].removeprefix("unrecoverable: yahoo serves 1m bars from ").split(" only; ")
    assert abs(datetime.fromisoformat(oldest) - (datetime.now(UTC) - timedelta(days=30))) < timedelta(minutes=5)
    assert rest == "389 of 390 expected bars stored; the vendor returned no bar for the others"
    ctx = context("scheduled__repair_1m_again")
    again = built(MarketRepairPlanOperator, "repair_plan", "yahoo", "1m", max_days_back=10_000)
    assert again.execute(ctx) == []
    assert _ledger(services, "1m", ["AAPL"])[("AAPL", date(2024, 10, 2))]["run_id"] == "scheduled__repair_1m"


def test_a_run_whose_load_failed_leaves_its_days_failed_for_the_repair(services):
    """The warehouse load of a run did not succeed (``load_timescale`` is ``None`` to the report):
    the report writes the ledger itself, every planned day ``failed`` naming the task, and the
    repair plans exactly those days."""
    from market_ingest.operators.market import RunReportOperator

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
            "task publish_lake, load_timescale did not succeed: the run's bars were not loaded (see its log)",
            "manual__load_failed",
        )
    }
    plan, load = _repair("scheduled__repair_failed_load", "1d", max_days_back=10_000, max_requests=1)
    assert plan[0]["symbols"] == ["NVDA"] and (plan[0]["start"], plan[0]["end"]) == (start.isoformat(), end.isoformat())
    assert {r["state"] for (_, d), r in _ledger(services, "1d", ["NVDA"]).items() if d in days} == {coverage.COMPLETE}


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
