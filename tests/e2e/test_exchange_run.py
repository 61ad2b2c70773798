"""End to end: an exchange DAG through Airflow (``dag.test``) on recorded Binance candles from the stand-in into all three sinks."""

from __future__ import annotations

from datetime import datetime, timezone

import psycopg
import pytest

from tests.e2e.test_dag_run import _run, report_of

pytestmark = pytest.mark.e2e
UTC = timezone.utc
CONF = {"symbols": ["BTC/USDT", "NOPE/USDT"], "start": "2021-10-22T23:03:00Z", "end": "2021-10-22T23:13:00Z"}


def _bars(services):
    with psycopg.connect(services.pg_conninfo()) as conn:
        return conn.execute(
            "SELECT time, open, close, volume, currency FROM market.bars "
            "WHERE source = 'binance' AND symbol = 'BTC/USDT' AND interval = '1m' ORDER BY time"
        ).fetchall()


def test_binance_run_loads_closed_candles_once_and_a_rerun_adds_nothing(services, airflow_db):
    from demo.services import read_stream

    first = _run("market_binance_1m", datetime(2021, 10, 22, 23, 13, tzinfo=UTC), CONF)
    assert str(first.state).endswith("success")
    report = report_of(first)
    btc = report["symbols"]["BTC/USDT"]
    assert (btc["status"], btc["lake"], btc["timescale"], btc["kinesis"]) == ("ok", 9, 9, 9)
    assert btc["dropped"] == {"open_bar": 1} and btc["gaps"] == []  # 23:12 was open when recorded
    assert report["symbols"]["NOPE/USDT"]["status"] == "unknown_symbol"
    (key,) = report["lake_objects"]
    assert key.endswith("/bars/source=binance/interval=1m/period=2021-10-22")

    rows = _bars(services)
    assert [r[0].minute for r in rows] == list(range(3, 12)) and {r[4] for r in rows} == {"USDT"}
    assert rows[0][1:4] == (60685.22, 60719.27, 21.63272)  # the recorded 23:03 candle: open, close, base volume

    second = _run("market_binance_1m", datetime(2021, 10, 22, 23, 13, tzinfo=UTC), CONF)
    assert str(second.state).endswith("success")
    assert report_of(second)["lake_objects"] == report["lake_objects"]
    assert _bars(services) == rows
    ids = [r["record_id"] for r in read_stream(services, "market-bars") if r["source"] == "binance"]
    assert len(set(ids)) == 9 and len(ids) == 18  # at-least-once delivery: the rerun re-sent the same ids
