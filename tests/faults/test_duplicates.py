"""Every dropped row is counted under its reason, duplicates included, and duplicates that
disagree are reported with their times."""

from __future__ import annotations

import pytest

from market_ingest.intervals import Window
from tests.unit.test_exchange import INGESTED, _body, _hook, _loaded, _ms, binance_dated, d

WINDOW = Window(d(2021, 10, 22, 23, 3), d(2021, 10, 22, 23, 13))


def _recorded_candles():
    return sorted(([int(r[0]), *map(float, r[1:6])] for r in _body("binance", "binance_spot_klines")), key=lambda c: c[0])


def _hook_answering(pages):
    """A Binance hook (recorded markets; the exchange's clock is their answer's ``Date``) whose
    ``fetch_ohlcv`` answers ``pages(since, limit)``."""
    hook = _hook("binance", page_limit=4)
    _loaded(hook).fetch_ohlcv = lambda symbol, tf, since, limit, params=None: pages(since, limit)
    return hook


def test_conflicting_duplicates_across_pages_are_counted_and_reported(tmp_path, monkeypatch):
    """On main: the later page's candle replaced the earlier one silently. Here the exchange
    answered 23:06 and 23:10 twice (pages of 4 from 23:03, each repeating the candle before it), the second time with more volume (a late trade)."""
    candles = _recorded_candles()

    def overlapping(since, limit):
        first = next(i for i, c in enumerate(candles) if c[0] >= since)
        page = [list(c) for c in candles[max(0, first - 1) : first + limit]]
        if first:
            page[0][5] += 1.5  # the repeated candle differs from the copy on the previous page
        return page

    with binance_dated(tmp_path, monkeypatch):  # a minute later: the 23:12 candle has closed
        bars, (outcome,) = _hook_answering(overlapping).fetch_bars(["BTC/USDT"], "1m", WINDOW, INGESTED)
    assert outcome.dropped == {"duplicate": 2}
    assert outcome.conflicts == {"keys": 2, "times": ["2021-10-22T23:06:00+00:00", "2021-10-22T23:10:00+00:00"]}
    by_time = {r["time"]: r["volume"] for r in bars.to_pylist()}
    assert by_time[d(2021, 10, 22, 23, 6)] == pytest.approx(candles[3][5] + 1.5)  # the later answer is kept
    assert len(by_time) == bars.num_rows == 10


def test_identical_duplicates_are_counted_without_a_conflict(tmp_path, monkeypatch):
    candles = _recorded_candles()

    def repeating(since, limit):
        first = next(i for i, c in enumerate(candles) if c[0] >= since)
        return candles[max(0, first - 1) : first + limit]

    with binance_dated(tmp_path, monkeypatch):  # a minute later: the 23:12 candle has closed
        bars, (outcome,) = _hook_answering(repeating).fetch_bars(["BTC/USDT"], "1m", WINDOW, INGESTED)
    assert outcome.dropped == {"duplicate": 2} and outcome.conflicts == {}
    assert bars["time"].to_pylist() == [_ms(c[0]) for c in candles]


def test_every_dropped_candle_is_counted_under_one_reason(tmp_path, monkeypatch):
    """A candle with no volume (null), one with a negative volume, one outside the window and the
    open one: four reasons, each counted once, the rest kept."""
    candles = _recorded_candles()
    candles[2][5] = None
    candles[4][5] = -1.0
    extra = [candles[0][0] - 60_000, *candles[0][1:]]

    # The exchange answers at the klines page's own time, 23:12:30, when the 23:12 candle was still open.
    with binance_dated(tmp_path, monkeypatch, "2021-10-22T23:12:30Z"):
        hook = _hook_answering(lambda since, limit: [extra, *candles] if since < candles[1][0] else [])
        bars, (outcome,) = hook.fetch_bars(["BTC/USDT"], "1m", WINDOW, INGESTED)
    assert outcome.dropped == {"out_of_window": 1, "open_bar": 1, "invalid: missing_value": 1, "invalid: negative_volume": 1}
    assert bars.num_rows == len(candles) - 3
