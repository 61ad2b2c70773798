"""Bars as traded in the warehouse, corporate actions beside them, adjusted series on read
(``market.bars_adjusted``) and the re-basing of bars stored by earlier versions (issue 30,
migration V013), on Yahoo's recorded chart answers (made 2025-02-22: prices adjusted for every
split up to that day, ``adjclose`` also for dividends).

Split histories: NVDA 4:1 on 2021-07-20 (stated in its recording's events) and 10:1 on
2024-06-10, TSLA 5:1 on 2020-08-31 and 3:1 on 2022-08-25 (documented; tests/unit/test_actions.py).
No recording states when this product would have first seen each action: ``first_seen`` is set
to the ex-date's evening (New York), as a daily run would have seen it, unless a test says otherwise.
"""

from __future__ import annotations

import json
import shutil
from contextlib import closing
from datetime import date, datetime, timezone

import psycopg
import pyarrow as pa
import pytest

from market_ingest.actions import AS_TRADED, DIVIDEND, SPLIT, CorporateAction, SplitHistory, actions_table, to_as_traded
from market_ingest.hooks.timescale import TimescaleHook
from market_ingest.schema import BAR_COLUMNS
from tests.unit.test_actions import NVDA_SPLITS, RECORDED, RECORDINGS, TSLA_SPLITS, daily_bars

pytestmark = pytest.mark.integration

UTC = timezone.utc
NVDA = "yahoo_chart_NVDA_1d_2021-02-01_2022-01-28_split"
TSLA = "yahoo_chart_TSLA_1d_full_2010-06-29_2023-08-11"
MSFT = "yahoo_chart_MSFT_1d_2021-02-01_2022-01-28_dividends"


def _seen(day: date) -> datetime:
    """The evening (22:00 UTC, after New York's close) of ``day``: when a daily run would first have seen an action of that ex-date."""
    return datetime(day.year, day.month, day.day, 22, tzinfo=UTC)


def _splits(source: str, symbol: str, splits, first_seen=None) -> list[CorporateAction]:
    return [
        CorporateAction(source, symbol, d, SPLIT, ratio=r, first_seen=first_seen or _seen(d), extracted_at=RECORDED)
        for d, r in splits
    ]


def _with_source(bars: pa.Table, source: str) -> pa.Table:
    return bars.set_column(bars.schema.get_field_index("source"), "source", pa.array([source] * bars.num_rows))


def _as_traded(name: str, symbol: str, source: str, splits) -> pa.Table:
    """The recording's bars as this version stores them: Yahoo's split adjustment undone with the splits known on its day."""
    return _with_source(to_as_traded(daily_bars(name, symbol), SplitHistory(splits, date(2025, 2, 22)), None), source)


def _adjusted(conn, source: str, symbol: str, adjust: str, as_of: datetime, start=datetime(2000, 1, 1, tzinfo=UTC)):
    """``market.bars_adjusted`` of a daily series: ``{date: (close, volume, price_basis)}``."""
    rows = conn.execute(
        "SELECT time, close, volume, price_basis FROM market.bars_adjusted(%s, %s, '1d', %s, %s, adjust => %s, as_of => %s)",
        (source, symbol, start, datetime(2030, 1, 1, tzinfo=UTC), adjust, as_of),
    ).fetchall()
    return {t.date(): (c, v, b) for t, c, v, b in rows}


def _recorded(name: str, symbol: str) -> dict[date, dict]:
    """Yahoo's recorded daily rows by date: ``close``, ``volume``, ``adj_close`` as sent."""
    return {r["time"].date(): r for r in daily_bars(name, symbol).to_pylist()}


def _stored(conn, source: str) -> list[tuple]:
    return conn.execute(
        "SELECT symbol, time, open, high, low, close, volume, dividend, price_basis, ingested_at FROM market.bars_1d "
        "WHERE source = %s ORDER BY 1, 2",
        (source,),
    ).fetchall()


def test_stored_as_traded_and_adjusted_on_read_the_splits_give_yahoos_recorded_prices(services):
    """NVDA's and TSLA's recordings stored as traded, with their splits as first seen: adjusted on
    read as of the recording's clock, every close and volume is Yahoo's recorded one. NVDA's 10:1
    split of 2024-06-10 first seen after the bars were stored changes ``bars_adjusted`` as of a
    time after it, not as of a time before it, and no stored row."""
    source = "prices-split-test"
    hook = TimescaleHook()
    hook.migrate()
    bars = pa.concat_tables([_as_traded(NVDA, "NVDA", source, NVDA_SPLITS), _as_traded(TSLA, "TSLA", source, TSLA_SPLITS)])
    assert hook.load_bars(bars) == 252 + 3303
    assert (
        hook.upsert_actions(actions_table(_splits(source, "TSLA", TSLA_SPLITS) + _splits(source, "NVDA", NVDA_SPLITS[:1]))) == 3
    )
    with closing(psycopg.connect(services.pg_conninfo())) as conn:
        stored = _stored(conn, source)
        assert {r[8] for r in stored} == {AS_TRADED}
        traded = {(r[0], r[1].date()): r[5] for r in stored}
        assert traded["NVDA", date(2021, 7, 16)] == pytest.approx(726.44, abs=0.01)  # 18.161 x 40, as printed that day
        assert traded["TSLA", date(2020, 8, 28)] == pytest.approx(2213.40, abs=0.01)  # 147.56 x 15

        for symbol, name in (("TSLA", TSLA), ("NVDA", NVDA)):
            recorded = _recorded(name, symbol)
            adjusted = _adjusted(conn, source, symbol, "split", RECORDED)
            assert set(adjusted) == set(recorded)
            factor = 1 if symbol == "TSLA" else 10  # NVDA's 10:1 split is not known yet
            for day, r in recorded.items():
                close, volume, basis = adjusted[day]
                assert close / factor == pytest.approx(r["close"], rel=1e-6), (symbol, day)
                assert volume * factor == pytest.approx(r["volume"], rel=1e-6), (symbol, day)
                assert basis == "split_adjusted"

        # The 10:1 split (ex-date 2024-06-10) first seen the evening after: as of the 11th's
        # morning, someone reading the warehouse did not know it yet.
        morning = datetime(2024, 6, 11, 12, tzinfo=UTC)
        before = _adjusted(conn, source, "NVDA", "split", morning)
        seen_late = _splits(source, "NVDA", NVDA_SPLITS[1:], first_seen=datetime(2024, 6, 11, 22, tzinfo=UTC))
        assert hook.upsert_actions(actions_table(seen_late)) == 1
        assert _stored(conn, source) == stored  # no stored row restated
        assert _adjusted(conn, source, "NVDA", "split", morning) == before
        after = _adjusted(conn, source, "NVDA", "split", RECORDED)
        for day, r in _recorded(NVDA, "NVDA").items():
            assert after[day][0] == pytest.approx(r["close"], rel=1e-6), day
            assert after[day][1] == pytest.approx(r["volume"], rel=1e-6), day
        assert after[date(2021, 7, 16)][0] == pytest.approx(before[date(2021, 7, 16)][0] / 10, rel=1e-12)
    from market_ingest import ui

    with closing(ui.reader_connection()) as reader:  # the read-only role (V012) reads it too
        assert _adjusted(reader, source, "NVDA", "split", RECORDED) == after


def test_actions_upserted_again_keep_when_first_seen_and_take_the_later_answer(services):
    """The earliest ``first_seen`` of the two is kept; ratio and ``extracted_at`` come from the
    answer extracted later; an answer extracted earlier changes nothing; the same answer twice
    writes nothing the second time."""
    source = "prices-upsert-test"
    hook = TimescaleHook()
    hook.migrate()
    first = _splits(source, "NVDA", NVDA_SPLITS)
    assert hook.upsert_actions(actions_table(first)) == 2
    assert hook.upsert_actions(actions_table(first)) == 0
    later = datetime(2025, 3, 1, tzinfo=UTC)
    restated = [
        CorporateAction(source, "NVDA", date(2021, 7, 20), SPLIT, ratio=4.0, first_seen=later, extracted_at=later),
        CorporateAction(source, "NVDA", date(2024, 6, 10), SPLIT, ratio=10.5, first_seen=later, extracted_at=later),
    ]
    stale = [CorporateAction(source, "NVDA", date(2024, 6, 10), SPLIT, ratio=9.0, first_seen=later, extracted_at=RECORDED)]
    assert hook.upsert_actions(actions_table(restated)) == 2
    assert hook.upsert_actions(actions_table(stale)) == 0
    with closing(psycopg.connect(services.pg_conninfo())) as conn:
        rows = conn.execute(
            "SELECT ex_date, ratio, first_seen, extracted_at FROM market.corporate_actions WHERE source = %s ORDER BY 1",
            (source,),
        ).fetchall()
    assert rows == [
        (date(2021, 7, 20), 4.0, _seen(date(2021, 7, 20)), later),
        (date(2024, 6, 10), 10.5, _seen(date(2024, 6, 10)), later),
    ]


def test_adjusted_for_dividends_msft_follows_yahoos_adjclose(services):
    """MSFT's recording (2021-02-01 .. 2022-01-28, dividends of 0.56 on 2021-02-17, 05-19 and
    08-18 and 0.62 on 11-17): adjusted for splits and dividends as of 2022-01-28's evening, every
    close divided by Yahoo's ``adjclose`` is one constant (Yahoo's adjusts also for the dividends
    of 2022-2025, whose prior closes are not recorded), and each dividend's step across its
    ex-date is Yahoo's. A dividend whose prior close is not stored makes the prices before it
    NULL, with a NOTICE naming it, instead of a factor measured against another day's close."""
    from market_ingest.vendors.yahoo import parse_events

    source = "prices-dividend-test"
    hook = TimescaleHook()
    hook.migrate()
    body = json.loads((RECORDINGS / f"{MSFT}.json").read_text())
    stated, _ = parse_events(body, "MSFT", RECORDED, source)
    dividends = [CorporateAction(**{**a.__dict__, "first_seen": _seen(a.ex_date)}) for a in stated]
    assert [(a.ex_date, a.kind, a.amount) for a in dividends] == [
        (date(2021, 2, 17), DIVIDEND, 0.56),
        (date(2021, 5, 19), DIVIDEND, 0.56),
        (date(2021, 8, 18), DIVIDEND, 0.56),
        (date(2021, 11, 17), DIVIDEND, 0.62),
    ]
    hook.load_bars(_as_traded(MSFT, "MSFT", source, ()))  # no split since 2003: Yahoo's closes are as traded
    assert hook.upsert_actions(actions_table(dividends)) == 4
    recorded = _recorded(MSFT, "MSFT")
    days = sorted(recorded)
    with closing(psycopg.connect(services.pg_conninfo())) as conn:
        adjusted = _adjusted(conn, source, "MSFT", "split_dividend", datetime(2022, 1, 28, 23, tzinfo=UTC))
        assert set(adjusted) == set(days)
        ratios = [adjusted[d][0] / recorded[d]["adj_close"] for d in days]
        assert all(r == pytest.approx(ratios[-1], rel=1e-6) for r in ratios), (min(ratios), max(ratios))
        assert ratios[-1] > 1  # Yahoo's later dividends
        ours = {d: adjusted[d][0] / recorded[d]["close"] for d in days}  # our factor of each day
        yahoos = {d: recorded[d]["adj_close"] / recorded[d]["close"] for d in days}
        for a in dividends:
            before = days[days.index(a.ex_date) - 1]
            step = ours[before] / ours[a.ex_date]
            assert step == pytest.approx(yahoos[before] / yahoos[a.ex_date], rel=1e-6), a.ex_date
            assert step < 1
        assert all(adjusted[d][1] == pytest.approx(recorded[d]["volume"]) for d in days)  # volume: not for dividends

        # MSFT's next dividend (0.62, ex-date 2022-02-16) after the stored bars: its prior close
        # (2022-02-15) is not stored; the last stored one, 2022-01-28, is not the close before it.
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        hook.upsert_actions(
            actions_table(
                [
                    CorporateAction(
                        source,
                        "MSFT",
                        date(2022, 2, 16),
                        DIVIDEND,
                        amount=0.62,
                        currency="USD",
                        first_seen=_seen(date(2022, 2, 16)),
                        extracted_at=RECORDED,
                    )
                ]
            )
        )
        later = _adjusted(conn, source, "MSFT", "split_dividend", datetime(2022, 3, 1, tzinfo=UTC))
        assert {c for c, _, _ in later.values()} == {None}
        assert [n for n in notices if "2022-02-16" in n] == [
            f"{source}:MSFT: the dividend of 2022-02-16 (0.62 per share) cannot be applied: no 1d bar of the series is stored "
            "in the 10 days before its ex-date (the close it is measured against), so prices before it are NULL"
        ]
        split_only = _adjusted(conn, source, "MSFT", "split", datetime(2022, 3, 1, tzinfo=UTC))
        assert all(split_only[d][0] == pytest.approx(recorded[d]["close"]) for d in days)


@pytest.fixture
def v012_warehouse(services, tmp_path, monkeypatch):
    """A database at migration V012 (schema 1: no price_basis), as the previous release left it;
    ``(conninfo, connection id)``."""
    from market_ingest.hooks.timescale import MIGRATIONS_DIR, apply_migrations

    previous = tmp_path / "migrations"
    previous.mkdir()
    for path in sorted(MIGRATIONS_DIR.glob("V0*.sql")):
        if path.name < "V013":
            shutil.copy(path, previous)
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS prices_v012 WITH (FORCE)")
        conn.execute("CREATE DATABASE prices_v012")
    conninfo = services.pg_conninfo().replace("dbname=postgres", "dbname=prices_v012")
    with closing(psycopg.connect(conninfo)) as conn:
        assert apply_migrations(conn, directory=previous)[-1] == "012"
    conn_id = "market_prices_v012"
    fresh = {"conn_type": "postgres", "host": services.pg_socket_dir, "port": 5432, "login": "postgres", "schema": "prices_v012"}
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps(fresh))
    yield conninfo, conn_id
    with psycopg.connect(services.pg_conninfo(), autocommit=True) as conn:
        conn.execute("DROP DATABASE prices_v012 WITH (FORCE)")


def test_an_upgrade_keeps_earlier_rows_and_market_setup_rebases_them_once(services, warehouse, v012_warehouse):
    """A warehouse of the previous release holds NVDA as Yahoo sent it (split-adjusted as of the
    recording), EURUSD=X from Yahoo, and NVDA from Alpha Vantage (as traded). V013 keeps every row,
    price_basis NULL (on TimescaleDB in columnstore chunks), and ``bars_adjusted`` refuses them,
    naming the series. ``market_setup``'s ``rebase_bars`` converts what it can: Alpha Vantage's
    and Yahoo's currency rows unchanged; Yahoo's NVDA only once its actions were asked, then to the
    prices traded that day; run again, it changes nothing."""
    from airflow.sdk.exceptions import AirflowFailException

    from market_ingest.config import load_config
    from market_ingest.dag_factory import rebase_arguments
    from market_ingest.hooks.timescale import apply_migrations
    from market_ingest.operators.setup import RebaseBarsOperator

    conninfo, conn_id = v012_warehouse
    sent = daily_bars(NVDA, "NVDA")  # as Yahoo sent it on 2025-02-22, as the previous release stored it
    fx = daily_bars("yahoo_chart_EURUSD=X_1d_2020-01-01_2020-01-03", "EURUSD=X")
    alpha = _with_source(to_as_traded(sent, SplitHistory(NVDA_SPLITS, date(2025, 2, 22)), None), "alpha_vantage")
    schema_1 = [c for c in BAR_COLUMNS if c != "price_basis"]
    with closing(psycopg.connect(conninfo)) as conn:
        with conn.cursor() as cur:
            for table in (sent, fx, alpha):
                cur.executemany(
                    f"INSERT INTO market.bars_1d ({', '.join(schema_1)}) VALUES ({', '.join(['%s'] * len(schema_1))})",
                    [tuple(r[c] for c in schema_1) for r in table.to_pylist()],
                )
        conn.commit()
        if warehouse == "timescaledb":
            conn.autocommit = True
            for (chunk,) in conn.execute("SELECT show_chunks('market.bars_1d')").fetchall():
                conn.execute("CALL convert_to_columnstore(%s::regclass, if_not_columnstore => true)", (chunk,))
            conn.autocommit = False
            assert conn.execute(
                "SELECT bool_and(is_compressed) FROM timescaledb_information.chunks WHERE hypertable_name = 'bars_1d'"
            ).fetchone() == (True,)
        before = conn.execute("SELECT source, symbol, time, open, close, volume FROM market.bars_1d ORDER BY 1, 2, 3").fetchall()
        assert len(before) == 252 * 2 + fx.num_rows
        conn.commit()

        assert apply_migrations(conn)[0] == "013"  # then any later one
        columns = conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_schema = 'market' AND table_name = 'bars' "
            "ORDER BY ordinal_position"
        ).fetchall()
        assert tuple(c for (c,) in columns) == BAR_COLUMNS
        assert (
            conn.execute("SELECT source, symbol, time, open, close, volume FROM market.bars_1d ORDER BY 1, 2, 3").fetchall()
            == before
        )
        assert conn.execute("SELECT count(*) FROM market.bars_1d WHERE price_basis IS NULL").fetchone()[0] == len(before)
        with pytest.raises(
            psycopg.errors.ObjectNotInPrerequisiteState,
            match=r"yahoo:NVDA 1d: 252 bars between .* were stored before price_basis",
        ):
            _adjusted(conn, "yahoo", "NVDA", "split", RECORDED)
        conn.rollback()

    rebase = RebaseBarsOperator(task_id="rebase_bars", **{**rebase_arguments(load_config()), "timescale_conn_id": conn_id})
    # No DAG has asked NVDA's corporate actions since the upgrade: the task asks Yahoo for them
    # (the stand-in's whole-history events of NVDA, dated 2025-02-22), keeps them in the lake and
    # the warehouse, and converts NVDA in the same run. ZZZZ, which Yahoo does not know, cannot be
    # converted: the task fails naming it, after committing the rest.
    cols = ", ".join(f'"{c}"' for c in schema_1)
    copied = ", ".join("'ZZZZ'" if c == "symbol" else f'"{c}"' for c in schema_1)
    with closing(psycopg.connect(conninfo)) as conn:
        conn.execute(f"INSERT INTO market.bars_1d ({cols}) SELECT {copied} FROM market.bars_1d WHERE symbol = 'EURUSD=X'")
        conn.commit()
    with pytest.raises(
        AirflowFailException,
        match=r"3 bars stored before schema 2 are not converted to as traded yet: yahoo:ZZZZ 1d \(3 rows\)",
    ):
        rebase.execute({})
    with closing(psycopg.connect(conninfo)) as conn:
        asked = conn.execute(
            "SELECT ex_date::text, ratio FROM market.corporate_actions WHERE source = 'yahoo' AND symbol = 'NVDA' AND kind = 'split'"
            " ORDER BY ex_date"
        ).fetchall()
        assert asked[-2:] == [("2021-07-20", 4.0), ("2024-06-10", 10.0)] and len(asked) == 6
        conn.execute("DELETE FROM market.bars_1d WHERE symbol = 'ZZZZ'")
        conn.commit()
    with closing(psycopg.connect(conninfo)) as conn:
        stored = {
            (s, d.date()): (c, v, b)
            for s, d, c, v, b in conn.execute(
                "SELECT source, time, close, volume, price_basis FROM market.bars_1d WHERE symbol = 'NVDA'"
            )
        }
        assert {b for _, _, b in stored.values()} == {AS_TRADED}
        assert stored["yahoo", date(2021, 7, 16)][0] == pytest.approx(726.44, abs=0.01)
        assert stored["yahoo", date(2021, 7, 21)][0] == pytest.approx(194.10, abs=0.01)
        for (_, day), (close, volume, _) in stored.items():
            assert (close, volume) == pytest.approx(stored["alpha_vantage", day][:2], rel=1e-12)  # one basis across vendors
        alpha_before = {(s, t): (o, c, v) for s, sym, t, o, c, v in before if s != "yahoo" or sym == "EURUSD=X"}
        assert {
            (s, t): (o, c, v)
            for s, t, o, c, v in conn.execute(
                "SELECT source, time, open, close, volume FROM market.bars_1d WHERE source <> 'yahoo' OR symbol = 'EURUSD=X'"
            )
        } == alpha_before
        for day, r in _recorded(NVDA, "NVDA").items():
            assert _adjusted(conn, "yahoo", "NVDA", "split", RECORDED)[day][0] == pytest.approx(r["close"], rel=1e-6)
        rebased = conn.execute("SELECT * FROM market.bars_1d ORDER BY source, symbol, time").fetchall()
    assert rebase.execute({}) == {}  # nothing left stored before schema 2: nothing changed
    with closing(psycopg.connect(conninfo)) as conn:
        assert conn.execute("SELECT * FROM market.bars_1d ORDER BY source, symbol, time").fetchall() == rebased


def test_the_load_task_upserts_the_actions_its_run_refreshed_once(services):
    """The extract tasks list the lake's action objects they refreshed (NVDA with its two splits,
    EURUSD=X with none); ``load_timescale`` upserts them and when each symbol was asked, and says
    how many actions changed: 2, then 0 for the same objects again (a retry or a clear), then 2
    for a later answer restating them (first seen as before, extracted later)."""
    from market_ingest.config import load_config
    from market_ingest.lake import lake_root
    from market_ingest.lake.actions import actions_object, write_actions
    from market_ingest.operators.warehouse import TimescaleLoadOperator
    from tests.conftest import built

    source = "prices-load-test"
    root = lake_root(load_config().lake.url)
    nvda, fx = actions_object(root, source, "NVDA"), actions_object(root, source, "EURUSD=X")
    write_actions(nvda, _splits(source, "NVDA", NVDA_SPLITS), RECORDED)
    write_actions(fx, [], RECORDED)
    extracts = [{"batch": 0, "actions": [str(nvda)]}, None, {"batch": 2, "actions": [str(fx)]}, {"batch": 3}]

    def load() -> dict:
        return built(TimescaleLoadOperator, "load_timescale", lake={"staged": []}, plan=[], extracts=extracts).execute({})

    def stored() -> tuple[list, list]:
        with closing(psycopg.connect(services.pg_conninfo())) as conn:
            actions = conn.execute(
                "SELECT symbol, ex_date, kind, ratio, first_seen, extracted_at FROM market.corporate_actions "
                "WHERE source = %s ORDER BY 1, 2",
                (source,),
            ).fetchall()
            checked = conn.execute(
                "SELECT symbol, checked_at FROM market.corporate_actions_checked WHERE source = %s ORDER BY 1", (source,)
            ).fetchall()
        return actions, checked

    assert load()["actions"] == 2
    first = stored()
    assert first == (
        [("NVDA", d, SPLIT, r, _seen(d), RECORDED) for d, r in NVDA_SPLITS],
        [("EURUSD=X", RECORDED), ("NVDA", RECORDED)],
    )
    assert load()["actions"] == 0 and stored() == first
    later = datetime(2025, 3, 3, 22, tzinfo=UTC)
    restated = [
        CorporateAction(**{**a.__dict__, "first_seen": later, "extracted_at": later})
        for a in _splits(source, "NVDA", NVDA_SPLITS)
    ]
    write_actions(nvda, restated, later)
    assert load()["actions"] == 2
    assert stored() == (
        [("NVDA", d, SPLIT, r, _seen(d), later) for d, r in NVDA_SPLITS],  # first seen as before
        [("EURUSD=X", RECORDED), ("NVDA", later)],
    )


def test_a_split_first_seen_by_a_run_is_announced_loaded_and_changes_no_stored_bar(services):
    """The lake holds NVDA's actions as a run of 2024-06-09 kept them: everything Yahoo states up to
    then. The next run asks Yahoo again (its whole history of events, dated 2025-02-22) and sees the
    10:1 split of 2024-06-10 (and three later dividends) first: the report names them, one
    ``corporate_actions_first_seen`` event carries them, ``market.corporate_actions`` holds them
    first seen at Yahoo's clock while the earlier actions keep theirs; the bars are as traded."""
    from demo.services import read_stream
    from market_ingest.config import load_config
    from market_ingest.hooks.yahoo import YahooFinanceHook
    from market_ingest.lake import lake_root
    from market_ingest.lake.actions import actions_object, write_actions
    from tests.faults.support import context, run_tasks

    earlier = datetime(2024, 6, 9, 21, tzinfo=UTC)
    stated = YahooFinanceHook().corporate_actions("NVDA").actions
    known = [
        CorporateAction(**{**a.__dict__, "first_seen": earlier, "extracted_at": earlier})
        for a in stated
        if a.ex_date < date(2024, 6, 10)
    ]
    root = lake_root(load_config().lake.url)
    write_actions(actions_object(root, "yahoo", "NVDA"), known, earlier)
    # The warehouse as that run left it (the session's other runs of NVDA loaded its actions too).
    with closing(psycopg.connect(services.pg_conninfo())) as conn:
        conn.execute("DELETE FROM market.corporate_actions WHERE source = 'yahoo' AND symbol = 'NVDA'")
        conn.commit()
    TimescaleHook().upsert_actions(actions_table(known), {("yahoo", "NVDA"): earlier})

    run_id = "manual__nvda_split_first_seen"
    start, end = datetime(2021, 7, 19, tzinfo=UTC), datetime(2021, 7, 24, tzinfo=UTC)
    done = run_tasks(
        context(run_id, {"symbols": ["NVDA"], "start": start.isoformat(), "end": end.isoformat()}, start, end),
        "yahoo",
        "1d",
        report=True,
    )

    new = done["extracts"][0]["new_actions"]
    assert {"symbol": "NVDA", "kind": SPLIT, "ex_date": "2024-06-10", "ratio": 10.0, "amount": None, "currency": None} in new
    assert sorted(a["ex_date"] for a in new) == ["2024-06-10", "2024-06-11", "2024-09-12", "2024-12-05"]
    assert any(
        n.startswith("4 corporate actions first seen by yahoo: NVDA split 2024-06-10 10.0") for n in done["report"]["notices"]
    )
    (event,) = [e for e in read_stream(services, "market-events") if e["run_id"] == run_id]
    assert event["event"] == "corporate_actions_first_seen" and event["detail"]["actions"] == new
    with closing(psycopg.connect(services.pg_conninfo())) as conn:
        seen = dict(
            conn.execute(
                "SELECT ex_date::text, first_seen FROM market.corporate_actions WHERE source = 'yahoo' AND symbol = 'NVDA' AND kind = 'split'"
            ).fetchall()
        )
        closes = dict(
            conn.execute(
                "SELECT time::date::text, close FROM market.bars_1d WHERE source = 'yahoo' AND symbol = 'NVDA' "
                "AND time IN ('2021-07-19', '2021-07-20')"
            ).fetchall()
        )
    assert seen["2024-06-10"] == RECORDED and seen["2021-07-20"] == earlier
    assert closes["2021-07-19"] == pytest.approx(751.19, abs=0.01) and closes["2021-07-20"] == pytest.approx(186.12, abs=0.01)
