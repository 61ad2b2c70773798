"""Cross-source reconciliation (:func:`market_ingest.reconcile.reconcile`) on recorded real bars:
Apple's daily bars of 2020-08-31 .. 2020-11-06 as Yahoo (recorded 2025) and Alpha Vantage
(recorded 2023-11-10) sent them, through the product's hooks, loaded into the warehouse. The two
agree (as traded: Apple's last split is the 4:1 of 2020-08-31, the window's first day); one close
moved by 50 basis points is the one disagreement, with both figures; moved back, the row goes."""

from __future__ import annotations

from contextlib import closing
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.compute as pc
import pytest

from market_ingest.config import ReconciliationConfig
from market_ingest.intervals import Window

pytestmark = pytest.mark.integration

UTC = timezone.utc
WINDOW = Window(datetime(2020, 8, 31, tzinfo=UTC), datetime(2020, 11, 7, tzinfo=UTC))
INGESTED = datetime(2026, 1, 1, tzinfo=UTC)
#: Source names of the test's own (the rows are deleted after it): the recorded answers of Yahoo and Alpha Vantage.
YAHOO, AV = "recon_yahoo", "recon_av"
INSTRUMENTS = {"AAPL-RECON": {YAHOO: "AAPL", AV: "AAPL"}}


@pytest.fixture(scope="module")
def recorded() -> dict[str, pa.Table]:
    """Each source's bars of :data:`WINDOW`, through its hook over the recordings (stand-in)."""
    from market_ingest.hooks.alpha_vantage import AlphaVantageHook
    from market_ingest.hooks.yahoo import YahooFinanceHook

    yahoo, _ = YahooFinanceHook().fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    av, _ = AlphaVantageHook().fetch_bars(["AAPL"], "1d", WINDOW, INGESTED)
    assert yahoo.num_rows == av.num_rows == 49  # every session of the window, from both
    return {YAHOO: yahoo, AV: av}


def _renamed(table: pa.Table, source: str) -> pa.Table:
    return table.set_column(table.schema.get_field_index("source"), "source", pa.array([source] * table.num_rows))


@pytest.fixture
def warehouse_hook(services):
    from market_ingest.hooks.timescale import TimescaleHook

    hook = TimescaleHook()
    hook.migrate()
    yield hook
    with closing(hook.get_conn()) as conn, conn.transaction():
        conn.execute("DELETE FROM market.bars_1d WHERE source IN (%s, %s)", (YAHOO, AV))
        conn.execute("DELETE FROM market.cross_source_checks WHERE instrument = 'AAPL-RECON'")
        conn.execute("DELETE FROM market.instruments WHERE instrument = 'AAPL-RECON'")


def _load(hook, table: pa.Table) -> None:
    hook.upsert(lambda: table.to_batches(), "bars")


def _run(hook, source: str):
    from market_ingest.reconcile import reconcile

    return reconcile(
        hook, source=source, interval="1d", window=WINDOW, instruments=INSTRUMENTS, cfg=ReconciliationConfig(), run_id="test"
    )


def _checks(hook) -> list[dict]:
    with closing(hook.get_conn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT time, source_a, source_b, close_a, close_b, close_diff_bps, reason FROM market.cross_source_checks "
            "WHERE instrument = 'AAPL-RECON' ORDER BY time"
        )
        names = [d.name for d in cur.description]
        return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def test_two_vendors_recorded_bars_agree_and_a_close_moved_50_bps_is_the_one_disagreement(recorded, warehouse_hook):
    hook = warehouse_hook
    _load(hook, _renamed(recorded[YAHOO], YAHOO))
    _load(hook, _renamed(recorded[AV], AV))
    agree = _run(hook, YAHOO)
    assert (agree["pairs"], agree["bars"], agree["disagreements"]) == (1, 49, 0)
    assert _checks(hook) == []

    # Alpha Vantage's close of 2020-09-15 made 50 bps higher: beyond the default 25 bps.
    av = recorded[AV]
    day = datetime(2020, 9, 15, tzinfo=UTC)
    moved = pc.if_else(
        pc.equal(av["time"], pa.scalar(day, pa.timestamp("us", tz="UTC"))), pc.multiply(av["close"], 1.005), av["close"]
    )
    _load(hook, _renamed(av.set_column(av.schema.get_field_index("close"), "close", moved), AV).replace_schema_metadata(None))
    found = _run(hook, AV)
    assert (found["pairs"], found["bars"], found["disagreements"], found["by_reason"]) == (1, 49, 1, {"close": 1})
    [check] = _checks(hook)
    yahoo_close = (
        recorded[YAHOO]
        .filter(pc.equal(recorded[YAHOO]["time"], pa.scalar(day, pa.timestamp("us", tz="UTC"))))["close"][0]
        .as_py()
    )
    assert check["time"] == day and (check["source_a"], check["source_b"]) == (AV, YAHOO)  # named in order
    assert check["close_b"] == yahoo_close and check["close_a"] == pytest.approx(yahoo_close * 1.005)
    assert check["close_diff_bps"] == pytest.approx(50.0, abs=0.01) and check["reason"] == "close"

    # Two sources 50 bps apart: neither is the consensus of that bar (each is 25 bps from their
    # median, beyond half the tolerance); every other bar's is both.
    with closing(hook.get_conn()) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT time, agreeing FROM market.bars_consensus WHERE instrument = 'AAPL-RECON' AND interval = '1d' ORDER BY time"
        )
        consensus = dict(cur.fetchall())
    assert day not in consensus and len(consensus) == 48 and set(consensus.values()) == {2}

    # The coverage view shows it as its own layer: the cell of that day marked, both closes listed.
    from market_ingest import ui

    with closing(hook.get_conn()) as conn, conn.transaction():
        conn.execute(
            "INSERT INTO market.coverage (source, interval, symbol, day, covered_from, covered_until, expected, loaded, state, run_id) "
            "SELECT %s, '1d', 'AAPL', d::date, d, d + interval '1 day', 1, 1, 'complete', 'test' "
            "FROM generate_series('2020-09-14'::timestamptz, '2020-09-16', interval '1 day') d",
            (AV,),
        )
        view = ui.read(AV, "1d", conn=conn)
        conn.execute("DELETE FROM market.coverage WHERE source = %s", (AV,))
    assert view["disagreements"] == {"AAPL": {"2020-09-15": {"bars": 1, "others": [YAHOO]}}}
    [row] = view["checks"]
    assert (row["other"], row["close_there"], row["reason"]) == (YAHOO, yahoo_close, "close")
    page = ui.render(view)
    assert page.count("cell disagree") == 1 and "data-day='2020-09-15'" in page.split("cell disagree")[1][:200]
    assert "id='checks'" in page and "50.0" in page

    # An instrument no longer configured takes its disagreements with it at the next comparison.
    from market_ingest.reconcile import reconcile

    other = {"OTHER-RECON": {YAHOO: "MSFT", AV: "MSFT"}}
    reconcile(hook, source=YAHOO, interval="1d", window=WINDOW, instruments=other, cfg=ReconciliationConfig(), run_id="t")
    assert _checks(hook) == []
    _run(hook, AV)  # configured again: the bar disagrees again
    assert len(_checks(hook)) == 1

    # Checked again from Yahoo's side, the same bar is the same one row; restored, the row is gone.
    assert _run(hook, YAHOO)["disagreements"] == 1 and len(_checks(hook)) == 1
    _load(
        hook,
        _renamed(recorded[AV].replace_schema_metadata(None), AV).set_column(
            recorded[AV].schema.get_field_index("ingested_at"),
            "ingested_at",
            pa.array([datetime(2026, 1, 2, tzinfo=UTC)] * 49, pa.timestamp("us", tz="UTC")),
        ),
    )
    assert _run(hook, AV)["disagreements"] == 0 and _checks(hook) == []


def test_the_consensus_view_is_the_median_of_the_sources_that_agree(recorded, warehouse_hook):
    """Three sources of AAPL: two as recorded, a third 2% off on one day. That day's consensus is
    the two that agree; every other day's, all three; no bar is lost or doubled."""
    hook = warehouse_hook
    third = "recon_third"
    instruments = {"AAPL-RECON": {YAHOO: "AAPL", AV: "AAPL", third: "AAPL"}}
    day = datetime(2020, 10, 1, tzinfo=UTC)
    av = recorded[AV]
    off = pc.if_else(
        pc.equal(av["time"], pa.scalar(day, pa.timestamp("us", tz="UTC"))), pc.multiply(av["close"], 1.02), av["close"]
    )
    _load(hook, _renamed(recorded[YAHOO], YAHOO))
    _load(hook, _renamed(av, AV))
    _load(hook, _renamed(av.set_column(av.schema.get_field_index("close"), "close", off), third))
    from market_ingest.reconcile import reconcile

    try:
        result = reconcile(
            hook, source=third, interval="1d", window=WINDOW, instruments=instruments, cfg=ReconciliationConfig(), run_id="t"
        )
        assert (result["pairs"], result["bars"], result["disagreements"]) == (2, 98, 2)
        with closing(hook.get_conn()) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT time, close, agreeing, sources, agreeing_sources FROM market.bars_consensus "
                "WHERE instrument = 'AAPL-RECON' AND interval = '1d' ORDER BY time"
            )
            rows = cur.fetchall()
        assert len(rows) == 49
        by_day = {t: (close, agreeing, sources, names) for t, close, agreeing, sources, names in rows}
        close, agreeing, sources, names = by_day[day]
        assert (agreeing, sources, names) == (2, 3, [AV, YAHOO])
        assert close == pytest.approx(
            av.filter(pc.equal(av["time"], pa.scalar(day, pa.timestamp("us", tz="UTC"))))["close"][0].as_py()
        )
        assert all(a == 3 for t, (_, a, _, _) in by_day.items() if t != day)
    finally:
        with closing(hook.get_conn()) as conn, conn.transaction():
            conn.execute("DELETE FROM market.bars_1d WHERE source = %s", (third,))


def test_currencies_volumes_and_unconverted_rows_are_judged_as_configured(recorded, warehouse_hook):
    """Alpha Vantage's bars restated in another currency on one day: kept as ``currency``, no figure
    compared; volumes compared only for a configured pair (Yahoo's and Alpha Vantage's recorded
    AAPL volumes differ by up to a few percent: within 5%, not within 0.1%); a row stored before the
    price basis (``price_basis`` null) is not compared at all."""
    hook = warehouse_hook
    av = recorded[AV]
    day = pa.scalar(datetime(2020, 10, 1, tzinfo=UTC), pa.timestamp("us", tz="UTC"))
    other = pc.if_else(pc.equal(av["time"], day), pa.scalar("EUR"), av["currency"])
    unconverted = pc.if_else(
        pc.equal(av["time"], pa.scalar(datetime(2020, 10, 2, tzinfo=UTC), pa.timestamp("us", tz="UTC"))),
        pa.scalar(None, pa.string()),
        av["price_basis"],
    )
    restated = av.set_column(av.schema.get_field_index("currency"), "currency", other)
    restated = restated.set_column(av.schema.get_field_index("price_basis"), "price_basis", unconverted)
    _load(hook, _renamed(recorded[YAHOO], YAHOO))
    _load(hook, _renamed(restated, AV))
    from market_ingest.reconcile import reconcile

    def run(volume):
        cfg = ReconciliationConfig(volume_tolerance=volume)
        return reconcile(hook, source=AV, interval="1d", window=WINDOW, instruments=INSTRUMENTS, cfg=cfg, run_id="t")

    loose = run({f"{YAHOO}/{AV}": 0.05})
    assert (loose["bars"], loose["by_reason"]) == (48, {"currency": 1})  # 10-02 unconverted: not compared
    [check] = _checks(hook)
    assert (check["time"], check["reason"], check["close_diff_bps"]) == (day.as_py(), "currency", None)
    # Independently, from the two recorded tables: bars (compared, so not 10-01 or 10-02) whose
    # volumes differ by more than 0.1% of the larger one.
    yv = dict(zip(recorded[YAHOO]["time"].to_pylist(), recorded[YAHOO]["volume"].to_pylist(), strict=True))
    skip = {day.as_py(), datetime(2020, 10, 2, tzinfo=UTC)}
    apart = sum(
        1
        for t, v in zip(av["time"].to_pylist(), av["volume"].to_pylist(), strict=True)
        if t not in skip and abs(v - yv[t]) / max(v, yv[t]) > 0.001
    )
    tight = run({f"{AV}/{YAHOO}": 0.001})  # either order names the pair
    assert apart > 0 and tight["by_reason"] == {"currency": 1, "volume": apart}
    assert run({})["by_reason"] == {"currency": 1}
