"""Adjusted series computed from as-traded bars and corporate actions (issue 30), on Yahoo's recordings.

Yahoo's chart ``close`` is adjusted for every split up to the answer (2025-02-22 here) and
``adjclose`` also for every dividend up to it (CRSP factors). Bars stored as traded
(:func:`~market_ingest.actions.to_as_traded`) and adjusted on read as of that date must give them
back; as of an earlier date, only the actions known then.
"""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date, datetime, timedelta, timezone

import pyarrow as pa
import pytest

from market_ingest.actions import (
    DIVIDEND,
    SPLIT,
    CorporateAction,
    SplitHistory,
    adjust_bars,
    to_as_traded,
)
from market_ingest.errors import PriceBasisError
from market_ingest.vendors.yahoo import parse_events
from tests.unit.test_actions import NVDA_SPLITS, NY, RECORDED, RECORDINGS, TSLA_SPLITS, daily_bars, on

UTC = timezone.utc
NVDA = "yahoo_chart_NVDA_1d_2021-02-01_2022-01-28_split"
TSLA = "yahoo_chart_TSLA_1d_full_2010-06-29_2023-08-11"
MSFT = "yahoo_chart_MSFT_1d_2021-02-01_2022-01-28_dividends"


def splits(symbol: str, pairs, first_seen=None) -> list[CorporateAction]:
    """The documented splits as actions, first seen on their ex-date unless ``first_seen`` says otherwise."""
    return [
        CorporateAction(
            "yahoo",
            symbol,
            d,
            SPLIT,
            ratio=r,
            first_seen=first_seen or datetime(d.year, d.month, d.day, tzinfo=UTC),
            extracted_at=RECORDED,
        )
        for d, r in pairs
    ]


def traded(name: str, symbol: str, pairs) -> pa.Table:
    """A recording's bars as the lake stores them: Yahoo's split adjustment of its answer undone."""
    return to_as_traded(daily_bars(name, symbol), SplitHistory(pairs, RECORDED.date()), None)


def relative_errors(got: list[float], want: list[float]) -> float:
    return max(abs(g / w - 1) for g, w in zip(got, want))


@pytest.mark.parametrize(("name", "symbol", "pairs"), [(NVDA, "NVDA", NVDA_SPLITS), (TSLA, "TSLA", TSLA_SPLITS)])
def test_split_adjusted_as_of_the_recording_gives_yahoos_close_on_every_row(name, symbol, pairs):
    sent, stored = daily_bars(name, symbol), traded(name, symbol, pairs)
    adjusted, skipped = adjust_bars(stored, splits(symbol, pairs), "split", as_of=RECORDED, tz=NY)
    assert skipped == []
    for column in ("open", "high", "low", "close", "volume"):
        assert relative_errors(adjusted[column].to_pylist(), sent[column].to_pylist()) < 1e-6, column
    assert set(adjusted["price_basis"].to_pylist()) == {"split_adjusted"}


def test_as_of_early_2022_nvda_is_adjusted_for_the_4_to_1_split_only():
    sent, stored = daily_bars(NVDA, "NVDA"), traded(NVDA, "NVDA", NVDA_SPLITS)
    as_of = datetime(2022, 1, 31, 21, 0, tzinfo=UTC)
    adjusted, _ = adjust_bars(stored, splits("NVDA", NVDA_SPLITS), "split", as_of=as_of, tz=NY)
    # Yahoo's 2025 answer divides by 40 before 2021-07-20 and by 10 after: as of 2022, x 10 of it throughout.
    assert relative_errors(adjusted["close"].to_pylist(), [c * 10 for c in sent["close"].to_pylist()]) < 1e-6
    assert on(adjusted, "2021-07-16")["close"] == pytest.approx(181.61, abs=0.01)  # 726.44 / 4
    assert on(adjusted, "2021-07-16")["volume"] == pytest.approx(on(stored, "2021-07-16")["volume"] * 4)


def test_a_split_first_seen_after_as_of_is_not_applied():
    stored = traded(NVDA, "NVDA", NVDA_SPLITS)
    late = splits("NVDA", NVDA_SPLITS[:1], first_seen=datetime(2022, 2, 1, tzinfo=UTC))
    adjusted, _ = adjust_bars(stored, late, "split", as_of=datetime(2022, 1, 31, 21, 0, tzinfo=UTC), tz=NY)
    assert adjusted["close"].to_pylist() == stored["close"].to_pylist()
    # As of the day after it was first seen, it is.
    adjusted, _ = adjust_bars(stored, late, "split", as_of=datetime(2022, 2, 2, tzinfo=UTC), tz=NY)
    assert on(adjusted, "2021-07-16")["close"] == pytest.approx(on(stored, "2021-07-16")["close"] / 4)


def msft() -> tuple[pa.Table, pa.Table, list[CorporateAction]]:
    """MSFT's recording as sent, as stored (no split since 2003: as traded already), and the
    dividends it states, first seen four weeks before their ex-dates (about when declared)."""
    sent = daily_bars(MSFT, "MSFT")
    body = json.loads((RECORDINGS / f"{MSFT}.json").read_text())
    actions, _ = parse_events(body, "MSFT", RECORDED)
    dividends = [
        replace(a, first_seen=datetime(a.ex_date.year, a.ex_date.month, a.ex_date.day, tzinfo=UTC) - timedelta(days=28))
        for a in actions
    ]
    return sent, to_as_traded(sent, SplitHistory((), RECORDED.date()), None), dividends


def test_split_dividend_follows_yahoos_adjclose_and_each_factor_is_its_step():
    sent, stored, dividends = msft()
    assert [(a.ex_date, a.kind, a.amount) for a in dividends] == [
        (date(2021, 2, 17), DIVIDEND, 0.56),
        (date(2021, 5, 19), DIVIDEND, 0.56),
        (date(2021, 8, 18), DIVIDEND, 0.56),
        (date(2021, 11, 17), DIVIDEND, 0.62),
    ]
    as_of = datetime(2022, 1, 28, 23, 0, tzinfo=UTC)  # the evening of the recording's last session
    adjusted, skipped = adjust_bars(stored, dividends, "split_dividend", as_of=as_of, tz=NY)
    assert skipped == []
    # Yahoo's adjclose also holds the dividends of 2022 to 2025 (one factor for every row here):
    # the ratio to it is constant.
    ratios = [a / y for a, y in zip(adjusted["close"].to_pylist(), sent["adj_close"].to_pylist())]
    assert max(ratios) / min(ratios) - 1 < 1e-6
    assert 1.0 < ratios[0] < 1.05  # about 0.8 % a year of later dividends
    for a in dividends:
        day_before = stored.filter(pa.compute.less(stored["time"], datetime.combine(a.ex_date, datetime.min.time(), UTC)))
        before = day_before["time"][-1].as_py().date().isoformat()

        def step(table: pa.Table, column: str, ex: str = a.ex_date.isoformat(), before: str = before) -> float:
            return (on(table, before)[column] / on(stored, before)["close"]) / (on(table, ex)[column] / on(stored, ex)["close"])

        assert step(adjusted, "close") == pytest.approx(step(sent, "adj_close"), rel=1e-6)
        assert step(adjusted, "close") == pytest.approx(1 - a.amount / on(stored, before)["close"], rel=1e-12)
    assert adjusted["volume"].to_pylist() == stored["volume"].to_pylist()  # dividends leave volume alone


def test_a_dividend_whose_prior_close_is_unknown_is_skipped_and_returned():
    _, stored, dividends = msft()
    # MSFT's dividend of 2022-02-16 (0.62, constructed from its declaration): after the recording.
    later = CorporateAction(
        "yahoo", "MSFT", date(2022, 2, 16), DIVIDEND, amount=0.62, currency="USD", first_seen=datetime(2022, 1, 20, tzinfo=UTC)
    )
    as_of = datetime(2022, 2, 17, 23, 0, tzinfo=UTC)
    without, skipped = adjust_bars(stored, [*dividends, later], "split_dividend", as_of=as_of, tz=NY)
    assert skipped == [later]
    earlier, _ = adjust_bars(stored, dividends, "split_dividend", as_of=as_of, tz=NY)
    assert without["close"].to_pylist() == earlier["close"].to_pylist()
    # Given the close before it, it applies to every row: 1 - 0.62 / 300.
    given, skipped = adjust_bars(
        stored, [*dividends, later], "split_dividend", as_of=as_of, tz=NY, prior_closes={date(2022, 2, 16): 300.0}
    )
    assert skipped == []
    assert relative_errors(given["close"].to_pylist(), [c * (1 - 0.62 / 300.0) for c in earlier["close"].to_pylist()]) < 1e-12
    # A dividend in another currency than the bars' is skipped too, not applied in the wrong unit.
    pence = replace(dividends[0], currency="GBp")
    _, skipped = adjust_bars(
        stored.set_column(stored.schema.get_field_index("currency"), "currency", pa.array(["USD"] * stored.num_rows)),
        [pence],
        "split_dividend",
        as_of=as_of,
        tz=NY,
    )
    assert skipped == [pence]


def test_bars_not_stored_as_traded_are_refused_naming_the_series_and_the_fix():
    legacy = daily_bars(NVDA, "NVDA")  # as Yahoo sent it: price_basis null, as earlier versions stored it
    with pytest.raises(
        PriceBasisError,
        match=r"yahoo:NVDA: 1d bars: 252 rows are not stored as traded \(the first, 2021-02-01T00:00:00\+00:00, has price_basis null\).* re-base them",
    ):
        adjust_bars(legacy, splits("NVDA", NVDA_SPLITS), "split", as_of=RECORDED, tz=NY)
    with pytest.raises(ValueError, match="adjust='dividend'"):
        adjust_bars(traded(NVDA, "NVDA", NVDA_SPLITS), [], "dividend")
