"""Finite values or a named rejection: one bad value never blocks the other bars of a run."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone

import pyarrow as pa
import pytest

from market_ingest.hooks.yahoo import Window, YahooFinanceHook
from market_ingest.kinesis import build_records
from market_ingest.quality import validate_bars
from standin.server import StandIn
from tests.conftest import serving
from tests.e2e.test_dag_run import _run, report_of
from tests.faults.support import derived_yahoo_library, is_finite

UTC = timezone.utc
WEEK = Window(datetime(2021, 8, 9, tzinfo=UTC), datetime(2021, 8, 14, tzinfo=UTC))


@pytest.fixture(scope="module")
def recorded_week():
    """MSFT, NVDA and TSLA daily bars of 2021-08-09 .. 08-13 from the recordings (15 rows)."""
    hook = YahooFinanceHook()
    table, _ = hook.fetch_bars(["MSFT", "NVDA", "TSLA"], "1d", WEEK, datetime(2026, 1, 1, tzinfo=UTC))
    assert table.num_rows == 15
    return table


def _with(table: pa.Table, row: int, column: str, value) -> pa.Table:
    values = table[column].to_pylist()
    values[row] = value
    i = table.schema.get_field_index(column)
    return table.set_column(i, table.schema.field(i).with_nullable(True), pa.array(values, table.schema.field(i).type))


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        pytest.param("volume", math.nan, "invalid: non_finite_value", id="nan-volume"),
        pytest.param("volume", math.inf, "invalid: non_finite_value", id="inf-volume"),
        pytest.param("high", math.inf, "invalid: non_finite_value", id="inf-high"),
        pytest.param("low", -math.inf, "invalid: non_finite_value", id="minus-inf-low"),
        pytest.param("volume", None, "invalid: missing_value", id="null-volume-is-not-negative"),
        pytest.param("close", None, "invalid: missing_value", id="null-close"),
    ],
)
def test_a_non_finite_or_missing_required_value_rejects_the_bar_by_name(recorded_week, column, value, reason):
    kept, counts = validate_bars(_with(recorded_week, 4, column, value))
    assert counts == {reason: 1}
    assert kept.num_rows == 14 and kept.num_rows == recorded_week.num_rows - 1


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        pytest.param("high", 1e308, "invalid: implausible_price", id="1e308-high"),
        pytest.param("close", 1e13, "invalid: implausible_price", id="1e13-close"),
        pytest.param("low", 1e-300, "invalid: implausible_price", id="1e-300-low"),
        pytest.param("volume", 1e308, "invalid: implausible_volume", id="1e308-volume"),
    ],
)
def test_a_finite_but_absurd_value_rejects_the_bar_by_name(recorded_week, column, value, reason):
    """Seen on main: a bar with 1e308 OHLC passed validation and was loaded into every sink."""
    bad = _with(recorded_week, 4, column, value)
    if column == "high":  # an absurd high alone would not break the bar's range; make every price absurd
        for c in ("open", "low", "close"):
            bad = _with(bad, 4, c, value)
    kept, counts = validate_bars(bad)
    assert counts == {reason: 1}
    assert kept.num_rows == 14 and value not in kept[column].to_pylist()


def test_a_source_sets_its_own_plausible_range(recorded_week):
    """``sources.<name>.bounds``: the defaults admit MSFT's real week; a source configured for
    prices up to 250 rejects exactly the recorded bars above it (MSFT traded near 290)."""
    from market_ingest.config import BoundsConfig, SourceConfig

    assert validate_bars(recorded_week, SourceConfig.model_fields["bounds"].default.bounds())[1] == {}
    tight = BoundsConfig(max_price=250).bounds()
    kept, counts = validate_bars(recorded_week, tight)
    above = [r for r in recorded_week.to_pylist() if max(r["open"], r["high"], r["low"], r["close"]) > 250]
    assert above and counts == {"invalid: implausible_price": len(above)}
    assert kept.num_rows == recorded_week.num_rows - len(above)
    with pytest.raises(ValueError, match="min_price"):
        BoundsConfig(min_price=10, max_price=5)


@pytest.mark.parametrize("column", ["adj_close", "vwap", "dividend", "split_ratio"])
def test_a_non_finite_optional_value_becomes_null_and_is_counted(recorded_week, column):
    from market_ingest.quality import clean_bars

    bad = _with(_with(recorded_week, 2, column, math.nan), 7, column, math.inf)
    cleaned = clean_bars(bad, "1d", WEEK, datetime(2026, 1, 1, tzinfo=UTC))
    assert cleaned.table.num_rows == 15 and cleaned.nulled == {column: 2}
    values = cleaned.table[column].to_pylist()
    assert values[2] is None and values[7] is None
    assert [v for i, v in enumerate(values) if i not in (2, 7)] == [
        v for i, v in enumerate(recorded_week[column].to_pylist()) if i not in (2, 7)
    ]
    records = [json.loads(r["Data"]) for r in build_records(cleaned.table)]
    assert [r[column] for r in records][2] is None


def test_the_kinesis_serialiser_cannot_fail_on_one_row(recorded_week):
    """Even rows that never went through validation (an older staged object) serialise: NaN and
    infinity become JSON null instead of raising ``Out of range float values``."""
    bad = _with(_with(recorded_week, 0, "vwap", math.nan), 1, "high", math.inf)
    records = [json.loads(r["Data"]) for r in build_records(bad)]
    assert len(records) == 15 and records[0]["vwap"] is None and records[1]["high"] is None


def _week_run(tmp_path, monkeypatch, edits: dict):
    """``market_yahoo_1d`` through Airflow for MSFT, NVDA and TSLA over the week of :data:`WEEK`, on
    Yahoo's recordings with ``edits`` (:func:`tests.faults.support.derived_yahoo_library`)."""
    with serving(StandIn(derived_yahoo_library(tmp_path, edits)), monkeypatch):
        return _run(
            "market_yahoo_1d",
            datetime(2021, 8, 16, tzinfo=UTC),
            {"symbols": ["MSFT", "NVDA", "TSLA"], "start": WEEK.start.isoformat(), "end": WEEK.end.isoformat()},
        )


def _rejects_of(run) -> list[dict]:
    """The rows the lake's rejects table holds for ``run`` of ``market_yahoo_1d`` (every batch)."""
    from market_ingest.config import load_config
    from market_ingest.lake import lake_root, read_rejects

    return read_rejects(lake_root(load_config().lake.url), "yahoo", "1d", run.run_id).to_pylist()


@pytest.mark.e2e
def test_bad_values_are_rejected_by_name_and_every_other_bar_reaches_every_sink(services, airflow_db, tmp_path, monkeypatch):
    """Seen on main: an infinite high reached PostgreSQL and the lake, then the Kinesis publish
    failed for every symbol (``ValueError: Out of range float values``).

    (An infinite or null *volume* cannot be shown through Yahoo: yfinance 1.7 casts volume to int,
    failing the symbol on infinity, and fills a null volume with 0 before we see it.)"""
    from demo.services import read_stream

    run = _week_run(
        tmp_path,
        monkeypatch,
        {
            "yahoo_chart_NVDA_1d_2021": [("2021-08-10", "high", math.inf)],
            "yahoo_chart_MSFT_1d_2021": [("2021-08-11", "low", math.inf)],
            "yahoo_chart_TSLA_1d_full": [("2021-08-12", "adjclose", math.inf)]
            + [("2021-08-10", f, 1e300) for f in ("open", "high", "low", "close")],
        },
    )
    assert str(run.state).endswith("success")
    report = report_of(run)["symbols"]
    invalid = {s: {k: n for k, n in v["dropped"].items() if k.startswith("invalid")} for s, v in report.items()}
    assert invalid == {
        "NVDA": {"invalid: non_finite_value": 1},
        "MSFT": {"invalid: non_finite_value": 1},
        "TSLA": {"invalid: implausible_price": 1},
    }
    assert report["TSLA"]["nulled"] == {"adj_close": 1}
    assert {s: (v["lake"], v["timescale"], v["kinesis"]) for s, v in report.items()} == {
        "MSFT": (4, 4, 4),
        "NVDA": (4, 4, 4),
        "TSLA": (4, 4, 4),
    }
    on_stream = {
        (r["symbol"], r["time"][:10])
        for r in read_stream(services, "market-bars")
        if r["source"] == "yahoo" and "2021-08-09" <= r["time"][:10] <= "2021-08-13"
    }
    assert len(on_stream) == 12 and not {("NVDA", "2021-08-10"), ("MSFT", "2021-08-11"), ("TSLA", "2021-08-10")} & on_stream
    rejected = _rejects_of(run)
    assert sorted((r["symbol"], r["time"].date().isoformat(), r["reason"], r["run_id"]) for r in rejected) == [
        ("MSFT", "2021-08-11", "invalid: non_finite_value", run.run_id),
        ("NVDA", "2021-08-10", "invalid: non_finite_value", run.run_id),
        ("TSLA", "2021-08-10", "invalid: implausible_price", run.run_id),
    ]
    by_symbol = {r["symbol"]: r for r in rejected}  # as Yahoo sent them: the infinite value kept
    assert by_symbol["NVDA"]["high"] == math.inf and by_symbol["MSFT"]["low"] == math.inf
    # kept as traded: Yahoo's 1e300 times the 3:1 split of 2022-08-25 it had applied (1e308 would
    # overflow to inf and be rejected as non-finite instead)
    assert by_symbol["TSLA"]["close"] == pytest.approx(3e300)
    assert [(x["rows"], x["path"].rsplit("/", 2)[-2:], x["run_id"], x["batch"]) for x in report_of(run)["rejects"]] == [
        (3, ["bars", "rejects"], run.run_id, 0)  # the rejects table beside the bars table, under the lake url .../bars
    ]
    import psycopg

    with psycopg.connect(services.pg_conninfo()) as conn:
        ledger = conn.execute(
            "SELECT symbol, day::text, state, reason FROM market.coverage WHERE source = 'yahoo' AND interval = '1d' "
            "AND day BETWEEN '2021-08-09' AND '2021-08-13' AND state <> 'complete' AND symbol IN ('MSFT', 'NVDA', 'TSLA') "
            "ORDER BY symbol"
        ).fetchall()
    assert ledger == [
        ("MSFT", "2021-08-11", "rejected", "0 of 1 bars stored; dropped as invalid by the run: {'invalid: non_finite_value': 1}"),
        ("NVDA", "2021-08-10", "rejected", "0 of 1 bars stored; dropped as invalid by the run: {'invalid: non_finite_value': 1}"),
        (
            "TSLA",
            "2021-08-10",
            "rejected",
            "0 of 1 bars stored; dropped as invalid by the run: {'invalid: implausible_price': 1}",
        ),
    ]


@pytest.mark.e2e
def test_a_nan_close_and_a_null_ohlc_day_cost_only_their_own_bars(services, airflow_db, tmp_path, monkeypatch):
    """Seen on main: one NaN close (MSFT) or one day of null OHLC (TSLA) failed the extract task on
    every try (``ArrowInvalid: Column 'close' is declared non-nullable but contains nulls``, raised
    while writing the rejects object), so NVDA beside them lost all its bars too, and the error
    named no symbol or bar. Now the two bad bars go to ``_rejects/`` as Yahoo sent them (nulls
    kept) and every other bar of the batch reaches every sink."""
    run = _week_run(
        tmp_path,
        monkeypatch,
        {
            "yahoo_chart_MSFT_1d_2021": [("2021-08-11", "close", math.nan)],
            "yahoo_chart_TSLA_1d_full": [("2021-08-12", f, None) for f in ("open", "high", "low", "close")],
        },
    )
    assert str(run.state).endswith("success")
    report = report_of(run)["symbols"]
    assert {s: (v["status"], v["lake"], v["timescale"], v["kinesis"]) for s, v in report.items()} == {
        "MSFT": ("ok", 4, 4, 4),
        "NVDA": ("ok", 5, 5, 5),
        "TSLA": ("ok", 4, 4, 4),
    }
    rejected = _rejects_of(run)
    assert sorted((r["symbol"], r["time"].date().isoformat(), r["reason"]) for r in rejected) == [
        ("MSFT", "2021-08-11", "invalid: missing_value"),
        ("TSLA", "2021-08-12", "invalid: missing_value"),
    ]
    by_symbol = {r["symbol"]: r for r in rejected}
    assert by_symbol["MSFT"]["close"] is None and is_finite(by_symbol["MSFT"]["open"])
    assert [by_symbol["TSLA"][c] for c in ("open", "high", "low", "close")] == [None] * 4
    assert by_symbol["TSLA"]["volume"] > 0  # what Yahoo sent beside the nulls is kept


def test_a_row_no_sink_can_hold_fails_once_naming_source_symbol_bar_and_column(recorded_week, tmp_path):
    """A required value that is missing when a batch is staged (a client that skipped validation)
    is a permanent error naming source, symbol, bar time and column, not an ``ArrowInvalid`` that
    names none of them and is retried."""
    from market_ingest.errors import SerializationError
    from market_ingest.lake import lake_root, stage

    bad = _with(recorded_week, 7, "close", None)
    with pytest.raises(SerializationError) as caught:
        stage(bad, lake_root(f"file://{tmp_path}"), "yahoo", "1d", "manual__1", 0)
    row = bad.slice(7, 1).to_pylist()[0]
    assert not caught.value.retryable
    assert str(caught.value).startswith(f"yahoo:{row['symbol']}: bar {row['time'].isoformat()}: column close")
