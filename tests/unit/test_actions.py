"""Corporate actions and the as-traded basis (issue 30) on Yahoo's recorded chart answers.

Yahoo's chart prices are adjusted for every split up to the day of the answer; these recordings
were made on 2025-02-20/22, after TSLA's splits of 2020-08-31 (5:1) and 2022-08-25 (3:1) and
NVDA's of 2021-07-20 (4:1) and 2024-06-10 (10:1).
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from pathlib import Path

import pyarrow as pa
import pytest

from market_ingest.actions import (
    AS_TRADED,
    DIVIDEND,
    SPLIT,
    CorporateAction,
    SplitHistory,
    merge_actions,
    to_as_traded,
)
from market_ingest.vendors.yahoo import parse_events

RECORDINGS = Path(__file__).resolve().parents[2] / "include" / "recordings" / "yahoo"
NY = "America/New_York"
TSLA_SPLITS = ((date(2020, 8, 31), 5.0), (date(2022, 8, 25), 3.0))
NVDA_SPLITS = ((date(2021, 7, 20), 4.0), (date(2024, 6, 10), 10.0))
RECORDED = datetime(2025, 2, 22, 10, 1, 31, tzinfo=timezone.utc)


def daily_bars(name: str, symbol: str) -> pa.Table:
    """A recorded daily chart answer as canonical bars (00:00 UTC of each New York date), as Yahoo sent them."""
    from zoneinfo import ZoneInfo

    from market_ingest.schema import conform

    result = json.loads((RECORDINGS / f"{name}.json").read_text())["chart"]["result"][0]
    quote = result["indicators"]["quote"][0]
    days = [datetime.fromtimestamp(t, ZoneInfo(NY)).date() for t in result["timestamp"]]
    n = len(days)
    return conform(
        pa.table(
            {
                "time": pa.array(
                    [datetime(d.year, d.month, d.day, tzinfo=timezone.utc) for d in days], pa.timestamp("us", tz="UTC")
                ),
                "source": ["yahoo"] * n,
                "symbol": [symbol] * n,
                "interval": ["1d"] * n,
                **{k: pa.array(quote[k], pa.float64()) for k in ("open", "high", "low", "close", "volume")},
                "adj_close": pa.array(result["indicators"]["adjclose"][0]["adjclose"], pa.float64()),
                "ingested_at": pa.array([RECORDED] * n, pa.timestamp("us", tz="UTC")),
            }
        )
    )


def on(table: pa.Table, day: str) -> dict:
    rows = [r for r in table.to_pylist() if r["time"].date().isoformat() == day]
    assert len(rows) == 1, day
    return rows[0]


def test_tsla_full_history_stored_as_traded_gives_the_closes_printed_before_each_split():
    sent = daily_bars("yahoo_chart_TSLA_1d_full_2010-06-29_2023-08-11", "TSLA")
    traded = to_as_traded(sent, SplitHistory(TSLA_SPLITS, date(2025, 2, 22)), None)
    assert on(sent, "2020-08-28")["close"] == pytest.approx(147.56, abs=0.01)  # as Yahoo sent it
    assert on(traded, "2020-08-28")["close"] == pytest.approx(2213.40, abs=0.01)  # x 15
    assert on(traded, "2022-08-24")["close"] == pytest.approx(891.29, abs=0.01)  # x 3
    assert on(traded, "2022-08-25")["close"] == pytest.approx(on(sent, "2022-08-25")["close"])  # ex-date: unchanged
    assert on(traded, "2020-08-28")["volume"] == pytest.approx(on(sent, "2020-08-28")["volume"] / 15)
    assert set(traded["price_basis"].to_pylist()) == {AS_TRADED}
    # Yahoo's adjusted close stays as Yahoo stated it (as of its answer), not restated.
    assert traded["adj_close"].equals(sent["adj_close"])


def test_nvda_recording_stored_as_traded_and_a_history_known_earlier_undoes_only_its_splits():
    sent = daily_bars("yahoo_chart_NVDA_1d_2021-02-01_2022-01-28_split", "NVDA")
    traded = to_as_traded(sent, SplitHistory(NVDA_SPLITS, date(2025, 2, 22)), None)
    assert on(traded, "2021-07-16")["close"] == pytest.approx(726.44, abs=0.01)  # 18.161 x 40
    assert on(traded, "2021-07-21")["close"] == pytest.approx(194.10, abs=0.01)  # 19.410 x 10
    # An answer of 2022-01-31 had applied only the 4:1 split: its as-of history does not undo 2024's.
    before_2024 = SplitHistory(NVDA_SPLITS, date(2022, 1, 31))
    assert before_2024.factor(date(2021, 7, 16)) == 4.0 and before_2024.factor(date(2021, 7, 20)) == 1.0
    assert len(before_2024) == 1


def test_intraday_bars_are_dated_in_the_exchange_timezone():
    t = [datetime(2020, 8, 31, 3, 0, tzinfo=timezone.utc), datetime(2020, 8, 31, 13, 30, tzinfo=timezone.utc)]
    from market_ingest.schema import conform

    bars = conform(
        pa.table(
            {
                "time": pa.array(t, pa.timestamp("us", tz="UTC")),
                "source": ["yahoo"] * 2,
                "symbol": ["TSLA"] * 2,
                "interval": ["1h"] * 2,
                **{k: [10.0, 10.0] for k in ("open", "high", "low", "close")},
                "volume": [150.0, 150.0],
                "ingested_at": pa.array([RECORDED] * 2, pa.timestamp("us", tz="UTC")),
            }
        )
    )
    traded = to_as_traded(bars, SplitHistory(TSLA_SPLITS[:1], date(2021, 1, 1)), NY)
    # 03:00 UTC on the 31st is 23:00 of the 30th in New York: before the ex-date; 13:30 UTC is on it.
    assert traded["close"].to_pylist() == [50.0, 10.0] and traded["volume"].to_pylist() == [30.0, 150.0]


def test_yahoo_events_are_read_with_ex_dates_in_new_york_and_amounts_as_traded():
    body = json.loads((RECORDINGS / "yahoo_chart_AAPL_1d_2020-08-31_2020-11-06_split_div.json").read_text())
    clock = datetime(2025, 2, 20, 11, 47, 42, tzinfo=timezone.utc)
    actions, tz = parse_events(body, "AAPL", clock)
    assert tz == NY
    assert [(a.ex_date, a.kind, a.ratio, a.amount, a.currency) for a in actions] == [
        (date(2020, 8, 31), SPLIT, 4.0, None, None),
        (date(2020, 11, 6), DIVIDEND, None, 0.205, "USD"),
    ]
    # A dividend before a split Yahoo applied is stated split-adjusted: multiplied back.
    body["chart"]["result"][0]["events"]["dividends"] = {"1565271000": {"amount": 0.1925, "date": 1565271000}}  # 2019-08-08
    dividend = [a for a in parse_events(body, "AAPL", clock)[0] if a.kind == DIVIDEND][0]
    assert (dividend.ex_date, dividend.amount) == (date(2019, 8, 8), pytest.approx(0.77))


def test_a_chart_answer_without_meta_is_refused_naming_the_symbol():
    with pytest.raises(ValueError, match="yahoo:AAPL: not a chart answer"):
        parse_events({"chart": {"result": None, "error": {"code": "Not Found"}}}, "AAPL", RECORDED)


def test_merging_keeps_when_an_action_was_first_seen_and_reports_the_new_ones():
    first = datetime(2024, 1, 2, tzinfo=timezone.utc)
    later = datetime(2024, 6, 11, tzinfo=timezone.utc)
    known = [CorporateAction("yahoo", "NVDA", date(2021, 7, 20), SPLIT, ratio=4.0, first_seen=first, extracted_at=first)]
    answered = [
        CorporateAction("yahoo", "NVDA", date(2021, 7, 20), SPLIT, ratio=4.0, first_seen=later, extracted_at=later),
        CorporateAction("yahoo", "NVDA", date(2024, 6, 10), SPLIT, ratio=10.0, first_seen=later, extracted_at=later),
    ]
    merged, new = merge_actions(known, answered)
    assert [(a.ex_date, a.first_seen, a.extracted_at) for a in merged] == [
        (date(2021, 7, 20), first, later),
        (date(2024, 6, 10), later, later),
    ]
    assert [a.ex_date for a in new] == [date(2024, 6, 10)]
