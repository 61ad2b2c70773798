"""The anomaly checks' statement (:func:`market_ingest.anomalies.flag`) against a pandas reference
of the four checks, on Yahoo's recorded daily bars of MSFT, NVDA and TSLA (2021-02 .. 2022-01)
with anomalies injected: the same (symbol, time, flag) set and the same ``detail`` text."""

from __future__ import annotations

from contextlib import closing
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal

import pytest

pytestmark = pytest.mark.integration

UTC = timezone.utc
SOURCE = "anomaly_reference"  # the bars and actions exist only in the test's transaction, rolled back
START, END = datetime(2021, 2, 1, tzinfo=UTC), datetime(2022, 1, 29, tzinfo=UTC)
#: Each symbol's span: the checks read the bars from 47 days before it (20 trailing bars x 2 + 7).
SPANS = {
    "MSFT": datetime(2021, 3, 15, tzinfo=UTC),
    "NVDA": datetime(2021, 2, 1, tzinfo=UTC),
    "TSLA": datetime(2021, 4, 1, tzinfo=UTC),
}


def _recorded() -> dict[str, list[dict]]:
    """``{symbol: [{"time", "close", "volume"}]}`` by time: Yahoo's recorded answers through the product's hook."""
    from market_ingest.hooks.yahoo import YahooFinanceHook
    from market_ingest.intervals import Window

    table, _ = YahooFinanceHook().fetch_bars(list(SPANS), "1d", Window(START, END), datetime(2026, 1, 1, tzinfo=UTC))
    bars: dict[str, list[dict]] = {}
    for row in sorted(table.select(["symbol", "time", "close", "volume"]).to_pylist(), key=lambda r: (r["symbol"], r["time"])):
        bars.setdefault(row.pop("symbol"), []).append(row)
    return bars


def _inject(bars: dict[str, list[dict]]) -> list[tuple[str, datetime, float]]:
    """Anomalies into the recorded bars, in place; :return: the splits ``[(symbol, ex-date, ratio)]``.

    MSFT: a 100x bar (pence for pounds), a volume spike, a gap of five sessions, a NULL volume,
    26 bars of one volume after large ones (the trailing volumes' deviation is then 0, where running
    sums of squares leave a residue: the bar after them is no spike). NVDA: as Yahoo sent it across
    its 4:1 split of 2021-07-20 (as traded, with its action), a zero close on its first bar (the
    next bar has no return), a jump within the first ten bars (too few trailing returns to judge
    it), a stale run of six equal closes with volume and one of 26 with none (no stale flag; the
    trailing returns are all 0 after it). TSLA: stored as traded across a 3:1 split on 2021-08-02
    (closes three times, volumes a third, before it), a return outlier, a stale run that starts
    before its span.
    """
    msft, nvda, tsla = bars["MSFT"], bars["NVDA"], bars["TSLA"]
    msft[120]["close"] *= 100
    msft[150]["volume"] *= 40
    del msft[170:175]
    for i in range(200, 226):
        msft[i]["volume"] = 5_000_013.0
    msft[190]["volume"] = None
    nvda[0]["close"] = 0.0
    nvda[6]["close"] *= 1.25
    for run, volume in ((range(100, 106), 1_000_000.0), (range(200, 226), 0.0)):
        for i in run:
            nvda[i]["close"], nvda[i]["volume"] = nvda[run[0]]["close"], volume
    ex_date = datetime(2021, 8, 2, tzinfo=UTC)
    for bar in tsla:
        if bar["time"].date() < ex_date.date():
            bar["close"], bar["volume"] = bar["close"] * 3, bar["volume"] / 3
    tsla[130]["close"] *= 1.4
    first = next(i for i, b in enumerate(tsla) if b["time"] >= SPANS["TSLA"])
    for i in range(first - 3, first + 4):
        tsla[i]["close"] = tsla[first - 3]["close"]
    return [("NVDA", datetime(2021, 7, 20, tzinfo=UTC), 4.0), ("TSLA", ex_date, 3.0)]


def _float(x: float) -> str:
    """``x`` as PostgreSQL prints a float8 (shortest round trip; no ``.0``)."""
    text = repr(float(x))
    return text[:-2] if text.endswith(".0") else text


def _round(x: float, places: int) -> str:
    """``round(x::numeric, places)`` as PostgreSQL prints it (15 significant digits, half away from zero)."""
    return str(Decimal(f"{x:.15g}").quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP))


def _reference(bars: dict[str, list[dict]], splits, settings) -> dict[tuple[str, datetime, str], str]:
    """The four checks in pandas, as the module docstring states them, each bar's trailing returns
    and volumes taken whole from the ``trailing_bars`` bars before it (NaN skipped; pandas' rolling
    std leaves a residue over equal values where avg and stddev_samp give 0):
    ``{(symbol, time, flag): detail}``."""
    import numpy as np
    import pandas as pd

    trailing = settings.trailing_bars
    reach = timedelta(days=1) * trailing * 2 + timedelta(days=7)
    expected = {}
    for symbol, rows in bars.items():
        f = SPANS[symbol]
        df = pd.DataFrame([r for r in rows if r["time"] >= f - reach]).astype({"volume": "float64"})
        m = np.ones(len(df))  # the product of the split ratios up to each bar's date
        for s, ex_date, ratio in splits:
            if s == symbol:
                m[(df["time"].dt.date >= ex_date.date()).to_numpy()] *= ratio
        x, volume = df["close"] * m, df["volume"] / m
        step = x / x.shift(1).replace(0.0, np.nan)
        r = np.log(step)
        run = (df["close"] != df["close"].shift(1)).cumsum()
        same_closes = df.groupby(run).cumcount() + 1
        run_volume = volume.fillna(0.0).groupby(run).cumsum()
        for i, bar in df.iterrows():
            if bar["time"] < f:
                continue
            key = (symbol, bar["time"].to_pydatetime())
            prev = df["close"].iloc[i - 1] if i else None
            returns, volumes = r.iloc[max(0, i - trailing) : i].dropna(), volume.iloc[max(0, i - trailing) : i].dropna()
            n, r_mean, r_sd, v_mean, v_sd = len(returns), returns.mean(), returns.std(ddof=1), volumes.mean(), volumes.std(ddof=1)
            if n >= settings.min_bars and r_sd > 0 and abs(r[i] - r_mean) / r_sd > settings.return_z:
                z = abs(r[i] - r_mean) / r_sd
                expected[(*key, "return_outlier")] = (
                    f"log return {_round(r[i], 4)} is {_round(z, 1)} standard deviations from the mean of the {n} bars "
                    f"before (close {_float(bar['close'])}, previous {_float(prev)})"
                )
            if step[i] > 0 and (step[i] >= settings.unit_ratio or step[i] <= 1 / settings.unit_ratio):
                expected[(*key, "unit_100x")] = (
                    f"close {_float(bar['close'])} is {_round(step[i], 4)} times the previous close {_float(prev)}"
                )
            if same_closes[i] >= settings.stale_closes and run_volume[i] > 0:
                expected[(*key, "stale_close")] = (
                    f"{same_closes[i]} bars in a row closed at {_float(bar['close'])} with {_float(run_volume[i])} volume traded"
                )
            if n >= settings.min_bars and v_sd > 0 and (volume[i] - v_mean) / v_sd > settings.volume_z:
                z = (volume[i] - v_mean) / v_sd
                expected[(*key, "volume_spike")] = (
                    f"volume {_round(volume[i] * m[i], 0)} is {_round(z, 1)} standard deviations above the mean of the "
                    f"{n} bars before ({_round(v_mean, 0)})"
                )
    return expected


def test_the_checks_flag_what_a_pandas_reference_flags_with_the_same_figures(services):
    """Every flag of the statement, and only those, is one the pandas reference raises (rolling
    mean and sample standard deviation of the ``trailing_bars`` returns and volumes before each
    bar, runs of equal closes, the split basis as a product of the ratios), with the same detail;
    each injected anomaly is among them and the recorded bars around it raise nothing else. The
    bars are in a temporary copy of ``market.bars_1d`` whose volume may be NULL."""
    import psycopg

    from market_ingest import anomalies
    from market_ingest.config import load_config

    settings = load_config().sources["yahoo"].anomalies
    bars = _recorded()
    assert {s: len(b) for s, b in bars.items()} == {"MSFT": 252, "NVDA": 252, "TSLA": 252}
    splits = _inject(bars)
    expected = _reference(bars, splits, settings)
    with closing(psycopg.connect(services.pg_conninfo())) as conn, conn.cursor() as cur:
        cur.execute("CREATE TEMP TABLE reference_bars_1d (LIKE market.bars_1d INCLUDING ALL) ON COMMIT DROP")
        cur.execute("ALTER TABLE reference_bars_1d ALTER COLUMN volume DROP NOT NULL")
        cur.executemany(
            "INSERT INTO reference_bars_1d (time, source, symbol, interval, open, high, low, close, volume, ingested_at, price_basis) "
            "VALUES (%s, %s, %s, '1d', %s, %s, %s, %s, %s, now(), 'as_traded')",
            [
                (b["time"], SOURCE, s, b["close"], b["close"], b["close"], b["close"], b["volume"])
                for s, rows in bars.items()
                for b in rows
            ],
        )
        cur.executemany(
            "INSERT INTO market.corporate_actions (source, symbol, ex_date, kind, ratio, first_seen, extracted_at) "
            "VALUES (%s, %s, %s, 'split', %s, now(), now())",
            [(SOURCE, s, d.date(), ratio) for s, d, ratio in splits],
        )
        rows = anomalies.flag(
            cur,
            source=SOURCE,
            interval="1d",
            table="pg_temp.reference_bars_1d",
            spans=[(s, f, END) for s, f in SPANS.items()],
            settings=settings,
            run_id="manual__reference",
        )
        conn.rollback()
    flagged = {(r["symbol"], r["time"], r["flag"]): r["detail"] for r in rows}
    assert set(flagged) == set(expected)
    assert flagged == expected
    day = {(s, t.date().isoformat(), f) for s, t, f in flagged}
    msft, nvda, tsla = bars["MSFT"], bars["NVDA"], bars["TSLA"]
    injected = {
        ("MSFT", msft[120]["time"].date().isoformat(), "unit_100x"),
        ("MSFT", msft[121]["time"].date().isoformat(), "unit_100x"),
        ("MSFT", msft[150]["time"].date().isoformat(), "volume_spike"),
        ("NVDA", nvda[105]["time"].date().isoformat(), "stale_close"),
        ("TSLA", tsla[130]["time"].date().isoformat(), "return_outlier"),
    }
    assert injected <= day
    nvda_stale = sorted(d.split()[0] for (s, _, f), d in flagged.items() if (s, f) == ("NVDA", "stale_close"))
    assert nvda_stale == ["5", "6"]  # the run of six with volume; the run of 26 without none
    assert not any(s == "NVDA" and t <= nvda[9]["time"] for s, t, _ in flagged)  # the jump with too few returns before it
    assert not day & {("NVDA", "2021-07-20", "return_outlier"), ("TSLA", "2021-08-02", "return_outlier")}  # the splits
