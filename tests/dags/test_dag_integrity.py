"""DAG integrity: the DAG folder parses cleanly, cheaply, and yields exactly the configured DAGs."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import textwrap
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from market_ingest.config import load_config
from tests.conftest import ROOT, expected_dag_ids

HEAVY = ("pandas", "pyarrow", "yfinance", "ccxt", "boto3", "botocore", "psycopg", "requests", "vcr")


#: Every DAG id the pipeline config asks for, and its (source, interval) pairs: read from the
#: config at collection, not from the DagBag, so that each DAG is its own test case and a DAG
#: that is not built fails its own cases and no other.
DAG_IDS = sorted(expected_dag_ids(load_config()))
PAIRS = load_config().dag_pairs()
#: The ingestion DAGs, ``market_<source>_<interval>``: all but ``market_setup`` and ``market_repair``.
INGESTION_DAG_IDS = [dag_id for dag_id in DAG_IDS if dag_id not in ("market_setup", "market_repair")]


@pytest.fixture(scope="module")
def dagbag():
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(ROOT / "dags"))


def built_dag(dagbag, dag_id: str):
    """DAG ``dag_id`` of ``dagbag``; fails the calling test or fixture (that DAG's case only) with
    the DagBag's import errors when the DAG was not built."""
    if dag_id not in dagbag.dags:
        pytest.fail(f"{dag_id} was not built; import errors: {dagbag.import_errors}")
    return dagbag.dags[dag_id]


@pytest.fixture(params=DAG_IDS)
def any_dag(request, dagbag):
    """Each configured DAG, one test case per DAG id."""
    return built_dag(dagbag, request.param)


@pytest.fixture(params=INGESTION_DAG_IDS)
def ingestion_dag(request, dagbag):
    """Each ingestion DAG, ``market_<source>_<interval>``, one test case per DAG id."""
    return built_dag(dagbag, request.param)


def test_no_import_errors(dagbag):
    assert dagbag.import_errors == {}


@pytest.mark.parametrize("dag_id", DAG_IDS)
def test_the_dag_is_built(dagbag, dag_id):
    """Each configured DAG id is in the DagBag; the failure names the import errors. (Its other
    cases error at setup, through :func:`built_dag`.)"""
    assert dag_id in dagbag.dags, f"{dag_id} was not built; import errors: {dagbag.import_errors}"


def test_one_dag_per_configured_pair_and_quote_source(dagbag):
    cfg = load_config()
    expected = expected_dag_ids(cfg)
    assert set(dagbag.dag_ids) == expected
    assert len(dagbag.dag_ids) == len(cfg.dag_pairs()) + len(cfg.quote_sources()) + 2
    assert {"market_alpha_vantage_1d", "market_alpha_vantage_5m", "market_alpha_vantage_quote"} <= expected


def test_dags_are_tagged_retried_and_documented(ingestion_dag):
    dag, dag_id = ingestion_dag, ingestion_dag.dag_id
    source, interval = dag_id.removeprefix("market_").rsplit("_", 1)
    assert {"market-data", f"source:{source}", f"interval:{interval}"} <= set(dag.tags), dag_id
    assert dag.doc_md and dag.max_active_runs >= 1
    assert set(dag.params.keys()) == {"symbols", "start", "end"}
    for task in dag.tasks:
        assert task.retries >= 2, f"{dag_id}.{task.task_id} retries={task.retries}"
        assert task.retry_exponential_backoff, f"{dag_id}.{task.task_id} has no exponential backoff"
        assert task.max_retry_delay == timedelta(seconds=load_config().retry.max_delay_seconds)


def test_extract_runs_in_the_source_pool(ingestion_dag):
    source = ingestion_dag.dag_id.removeprefix("market_").rsplit("_", 1)[0]
    assert ingestion_dag.get_task("extract").pool == load_config().sources[source].pool


def test_window_is_the_data_interval_of_one_period(dagbag):
    """A scheduled run owns one whole period (not Airflow 3's empty CronTrigger interval)."""
    from datetime import datetime, timezone

    from airflow.serialization.encoders import coerce_to_core_timetable

    timetable = coerce_to_core_timetable(dagbag.dags["market_yahoo_1d"].timetable)
    info = timetable.infer_manual_data_interval(run_after=datetime(2021, 7, 20, tzinfo=timezone.utc))
    assert (info.start, info.end) == (datetime(2021, 7, 19, tzinfo=timezone.utc), datetime(2021, 7, 20, tzinfo=timezone.utc))


def _parse_dag_folder(include: Path | None = None) -> dict:
    """Parse the DAG folder with Airflow's ``DagBag`` in a fresh interpreter with sockets disabled,
    as the DAG processor does, optionally on another ``include/`` (``MARKET_INGEST_INCLUDE_DIR``).

    :return: ``{"errors": {file name: import error}, "dags": [dag id], "heavy": [heavy modules
        loaded], "plans": {dag id: symbols its plan task was given}, "repair_groups": [...]}``.
    """
    code = f"""
import json, socket, sys
from pathlib import Path
def _no_network(*a, **k):
    raise RuntimeError("network access during DAG parsing")
socket.socket.connect = _no_network
socket.create_connection = _no_network
from airflow.dag_processing.dagbag import DagBag
bag = DagBag(dag_folder={str(ROOT / "dags")!r})
repair = bag.dags.get("market_repair")
print(json.dumps({{"errors": {{Path(k).name: str(v) for k, v in bag.import_errors.items()}}, "dags": sorted(bag.dag_ids),
                  "heavy": sorted(m for m in {HEAVY!r} if m in sys.modules),
                  "plans": {{i: d.get_task("plan").symbols for i, d in bag.dags.items() if "plan" in d.task_dict}},
                  "repair_groups": sorted({{t.split(".")[0] for t in repair.task_dict}}) if repair else None}}))
"""
    env = {**os.environ, **({"MARKET_INGEST_INCLUDE_DIR": str(include)} if include else {})}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _include(tmp_path: Path, yaml_edit=None, **universes: Path) -> Path:
    """A copy of ``include/``'s config and universes in ``tmp_path``, the config edited by
    ``yaml_edit`` (text -> text) and universe ``<name>`` replaced by the file given for it."""
    include = tmp_path / "include"
    include.mkdir()
    shutil.copytree(ROOT / "include" / "symbols", include / "symbols")
    text = (ROOT / "include" / "pipeline.yaml").read_text()
    (include / "pipeline.yaml").write_text(yaml_edit(text) if yaml_edit else text)
    for name, source in universes.items():
        shutil.copy(source, include / "symbols" / f"{name}.csv")
    return include


def _line_of(path: Path, text: str, after: str | None = None) -> int:
    """The 1-based number of the first line of ``path`` holding ``text`` (after the first holding ``after``)."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if after in line) if after else 0
    return next(i for i, line in enumerate(lines) if i >= start and text in line) + 1


def test_parsing_imports_nothing_heavy_and_touches_no_network():
    result = _parse_dag_folder()
    assert result["errors"] == {}
    assert set(result["dags"]) == expected_dag_ids(load_config())
    assert result["heavy"] == []


def test_a_universe_file_as_an_index_provider_publishes_it_builds_every_dag(tmp_path):
    """yfiua's DAX 40 list, as published (header ``Symbol,Name``), dropped in as ``dax40.csv``:
    every DAG parses and market_yahoo_1d plans its 40 symbols. (It removed every DAG.)"""
    dax = ROOT / "tools" / "indices" / "dax_constituents_yfiua_2026-07-01.csv"
    assert dax.read_text().startswith("Symbol,Name\n")
    result = _parse_dag_folder(_include(tmp_path, dax40=dax))
    assert result["errors"] == {}
    assert set(result["dags"]) == expected_dag_ids(load_config())
    with dax.open(newline="") as fh:
        published = [row["Symbol"] for row in csv.DictReader(fh)]
    assert len(published) == 40 and set(published) <= set(result["plans"]["market_yahoo_1d"])


def test_a_broken_universe_fails_only_the_dags_that_use_it(tmp_path):
    """``dax40.csv`` without a symbol column (the DAX list's names only): market_yahoo_1d, the one
    DAG using it, is not built and an import error names the file, line and the config line that
    names the universe; every other DAG parses, and market_repair repairs every other pair."""
    with (ROOT / "tools" / "indices" / "dax_constituents_yfiua_2026-07-01.csv").open(newline="") as fh:
        rows = [[row["Name"]] for row in csv.DictReader(fh)]
    names = tmp_path / "names.csv"
    with names.open("w", newline="") as fh:
        csv.writer(fh).writerows([["Name"], *rows])
    include = _include(tmp_path, dax40=names)
    result = _parse_dag_folder(include)
    cfg = load_config()
    assert set(result["dags"]) == expected_dag_ids(cfg) - {"market_yahoo_1d"}
    assert result["repair_groups"] == sorted(f"{s}_{i}" for s, i in cfg.dag_pairs() if (s, i) != ("yahoo", "1d"))
    assert list(result["errors"]) == ["market_config_check.py"]
    error = result["errors"]["market_config_check.py"]
    named_at = _line_of(include / "pipeline.yaml", "universes: [nasdaq100, dax40", after="  yahoo:")
    assert (
        "market_yahoo_1d, market_repair's group yahoo_1d not built: "
        f"{include / 'symbols' / 'dax40.csv'}:1: universe 'dax40' has no symbol column (header ['Name']); "
        "name one column symbol or ticker (any case) "
        f"(universe named at {include / 'pipeline.yaml'}:{named_at}: sources.yahoo.universes)"
    ) in error


def test_the_metadata_db_keeps_every_other_dag_active_and_lists_the_import_error(tmp_path):
    """What the DAG processor stores (``airflow dags reserialize`` writes through the same
    ``update_dag_parsing_results_in_db``), on a fresh metadata DB, with ``dax40.csv`` broken: every
    other DAG is active (Airflow marks every DAG of a file with an import error stale), and
    ``airflow dags list-import-errors`` shows the one error, on the check file."""
    import sqlite3

    (tmp_path / "dax40.csv").write_text("Name\nadidas AG\n")
    include = _include(tmp_path, dax40=tmp_path / "dax40.csv")
    env = {**os.environ, "AIRFLOW_HOME": str(tmp_path / "airflow"), "MARKET_INGEST_INCLUDE_DIR": str(include)}
    airflow = str(Path(sys.executable).with_name("airflow"))
    for command in (["db", "migrate"], ["dags", "reserialize"]):
        subprocess.run([airflow, *command], env=env, check=True, capture_output=True)
    listed = subprocess.run([airflow, "dags", "list-import-errors", "-o", "json"], env=env, capture_output=True, text=True)
    assert listed.returncode == 1, listed.stderr  # the command exits 1 when it lists an error
    (error,) = json.loads(next(line for line in listed.stdout.splitlines() if line.startswith("[{")))
    assert error["filepath"] == "market_config_check.py"
    assert "market_yahoo_1d, market_repair's group yahoo_1d not built: " in error["error"]
    with closing(sqlite3.connect(tmp_path / "airflow" / "airflow.db")) as db:
        rows = db.execute("SELECT dag_id, is_stale, has_import_errors, relative_fileloc FROM dag").fetchall()
    assert {r[0] for r in rows} == expected_dag_ids(load_config()) - {"market_yahoo_1d"}
    assert {r[1:] for r in rows} == {(0, 0, "market_data.py")}


def test_a_bad_interval_or_schedule_fails_only_its_dag_naming_file_line_and_field(tmp_path):
    """binance 1h's schedule ``every day`` and yahoo's interval ``1min``: those two DAGs are not
    built, one import error names each with its line and field; every other DAG parses."""

    def edit(text: str) -> str:
        binance = text.index("  binance:")
        text = text[:binance] + text[binance:].replace('schedule: "@daily"', 'schedule: "every day"', 1)
        return text.replace(
            '      1m:\n        schedule: "@hourly"         # Yahoo', '      1min:\n        schedule: "@hourly"  # Yahoo'
        )

    include = _include(tmp_path, edit)
    config = include / "pipeline.yaml"
    result = _parse_dag_folder(include)
    assert set(result["dags"]) == expected_dag_ids(load_config()) - {"market_binance_1h", "market_yahoo_1m"}
    error = result["errors"].pop("market_config_check.py")
    assert result["errors"] == {}
    schedule_line = _line_of(config, '"every day"')
    assert (
        f"market_binance_1h, market_repair's group binance_1h not built: {config}:{schedule_line}: "
        "sources.binance.intervals.1h.schedule: Value error, 'every day' is not a cron expression or preset"
    ) in error
    assert (
        f"market_yahoo_1min, market_repair's group yahoo_1min not built: {config}:{_line_of(config, '1min:')}: "
        "sources.yahoo.intervals.1min.[key]: Value error, interval '1min' is not canonical"
    ) in error


def test_an_ibkr_source_without_a_splits_source_fails_only_its_dags(tmp_path):
    """IB sends split-adjusted prices and no split history: a source of kind ``ibkr`` without
    ``splits_from`` cannot store as traded, so its DAGs are not built, the config check naming the
    line and reason; every other DAG parses."""
    include = _include(tmp_path, lambda text: text.replace("    splits_from: yahoo ", "    # splits_from: yahoo "))
    config = include / "pipeline.yaml"
    result = _parse_dag_folder(include)
    assert set(result["dags"]) == expected_dag_ids(load_config()) - {"market_ibkr_1d"}
    error = result["errors"].pop("market_config_check.py")
    assert result["errors"] == {}
    assert f"market_ibkr_1d, market_repair's group ibkr_1d not built: {config}:" in error
    assert "kind ibkr needs splits_from" in error


def test_sources_of_a_configured_instrument_reconcile_after_their_load(dagbag):
    """A bars DAG of a source serving an instrument (``instruments``) that another of its sources
    loads at the same interval compares its loaded bars with theirs (``reconcile`` after
    ``load_timescale``, its result read by the report); other DAGs, and quote DAGs, have no such task."""
    twelve = built_dag(dagbag, "market_twelvedata_1d")
    reconcile = twelve.get_task("reconcile")
    assert reconcile.upstream_task_ids == {"load_timescale", "plan"}
    assert "reconcile" in twelve.get_task("report").upstream_task_ids
    assert reconcile.instruments["AAPL"] == {"yahoo": "AAPL", "alpha_vantage": "AAPL", "twelvedata": "AAPL", "ibkr": "AAPL"}
    assert "reconcile" in built_dag(dagbag, "market_ibkr_1d").task_ids
    assert "reconcile" not in built_dag(dagbag, "market_twelvedata_quote").task_ids
    assert "reconcile" in built_dag(dagbag, "market_binance_1h").task_ids  # BTC/USDT, ETH/USDT on KuCoin's 1h too
    assert "reconcile" not in built_dag(dagbag, "market_binance_1m").task_ids  # no other source loads 1m of them
    assert "reconcile" not in built_dag(dagbag, "market_yahoo_1m").task_ids


def test_a_bad_instrument_leaves_every_dag_built_without_reconciliation_naming_it(tmp_path):
    """An instrument naming a source that is not configured: the reconciliation is off (no DAG has
    a reconcile task), every DAG is built, and the config check names file, line and reason."""

    def edit(text: str) -> str:
        return text.replace("  IBM: {alpha_vantage: IBM, twelvedata: IBM, ibkr: IBM}", "  IBM: {alpha_vantage: IBM, stooq: IBM}")

    include = _include(tmp_path, edit)
    config = include / "pipeline.yaml"
    result = _parse_dag_folder(include)
    assert set(result["dags"]) == expected_dag_ids(load_config())
    error = result["errors"].pop("market_config_check.py")
    assert result["errors"] == {}
    assert f"no cross-source reconciliation (every DAG is built without it): {config}:" in error
    assert "IBM: source 'stooq' is not configured" in error
    from market_ingest.config import load_config_parts

    parts = load_config_parts(config)
    assert parts.config.instruments == {} and parts.stopped() == set()


def test_a_yaml_syntax_error_fails_every_dag_naming_the_line(tmp_path):
    """A config that is not YAML builds nothing: the one import error, on dags/market_data.py, names
    the file and the line the parser stopped at (the check file stays quiet: no second copy)."""
    include = _include(tmp_path, lambda text: text.replace("    kind: yahoo\n", "    kind: yahoo: x\n"))
    result = _parse_dag_folder(include)
    assert result["dags"] == []
    assert list(result["errors"]) == ["market_data.py"]
    line = _line_of(include / "pipeline.yaml", "kind: yahoo: x")
    assert (
        f"PipelineConfigError: {include / 'pipeline.yaml'}: cannot read config: mapping values are not allowed here"
        in (result["errors"]["market_data.py"])
    )
    assert f'in "{include / "pipeline.yaml"}", line {line}, column 16' in result["errors"]["market_data.py"]


def test_invalid_config_names_file_and_field(tmp_path):
    from market_ingest.config import PipelineConfigError
    from market_ingest.config import load_config as load

    bad = tmp_path / "pipeline.yaml"
    text = (ROOT / "include" / "pipeline.yaml").read_text().replace("batch_size: 25", "batch_size: 0")
    bad.write_text(text.replace('"@hourly"', '"@hourly"\n        unknown_knob: 1'))
    with pytest.raises(PipelineConfigError) as err:
        load(bad)
    message = str(err.value)
    batch_size = next(i for i, line in enumerate(bad.read_text().splitlines(), 1) if "batch_size: 0" in line)
    assert f"{bad}:{batch_size}: sources.yahoo.batch_size: Input should be greater than 0" in message
    assert "unknown_knob" in message


def test_catchup_is_off_in_the_shipped_config(ingestion_dag):
    assert not ingestion_dag.catchup


def test_catchup_is_off_unless_an_interval_asks_for_it(tmp_path):
    """(Off in every DAG of the shipped config: the test above.)"""
    from market_ingest.config import load_config as load
    from market_ingest.dag_factory import build_dag

    path = tmp_path / "pipeline.yaml"
    text = (ROOT / "include" / "pipeline.yaml").read_text()
    path.write_text(text.replace('schedule: "@hourly"         # 60 candles', 'catchup: true\n        schedule: "@hourly"  #', 1))
    cfg = load(path)
    assert build_dag(cfg, "binance", "1m").catchup
    assert not build_dag(cfg, "binance", "1h").catchup


def test_non_canonical_interval_is_rejected(tmp_path):
    from market_ingest.config import PipelineConfigError
    from market_ingest.config import load_config as load

    bad = tmp_path / "pipeline.yaml"
    bad.write_text((ROOT / "include" / "pipeline.yaml").read_text().replace("      1m:", "      60min:"))
    with pytest.raises(PipelineConfigError, match="60min"):
        load(bad)


def test_non_canonical_interval_in_warehouse_policies_is_rejected(tmp_path):
    from market_ingest.config import PipelineConfigError
    from market_ingest.config import load_config as load

    bad = tmp_path / "pipeline.yaml"
    text = (ROOT / "include" / "pipeline.yaml").read_text()
    bad.write_text(text.replace("  conn_id: market_timescale\n", "  conn_id: market_timescale\n  retention: {1y: P365D}\n"))
    with pytest.raises(PipelineConfigError, match=r"retention\.1y.*'1y' is not canonical"):
        load(bad)


def test_exchange_fields_belong_to_kind_ccxt(tmp_path):
    from market_ingest.config import PipelineConfigError
    from market_ingest.config import load_config as load

    text = (ROOT / "include" / "pipeline.yaml").read_text()
    no_id = tmp_path / "no_id.yaml"
    no_id.write_text(text.replace("    exchange: kraken\n", ""))
    with pytest.raises(PipelineConfigError, match="sources.kraken.*kind ccxt needs exchange"):
        load(no_id)
    misplaced = tmp_path / "misplaced.yaml"
    misplaced.write_text(text.replace("    kind: yahoo\n", "    kind: yahoo\n    max_lookback_bars: 720\n"))
    with pytest.raises(PipelineConfigError, match=r"sources.yahoo.*\['max_lookback_bars'\] apply to kind ccxt only"):
        load(misplaced)


def test_every_configured_exchange_and_interval_exists_in_ccxt():
    """Checked here, not at parse time: ccxt is too heavy to import while parsing DAGs."""
    import ccxt

    from market_ingest.vendors.ccxt import CCXT_TIMEFRAMES

    cfg = load_config()
    exchanges = {name: src for name, src in cfg.sources.items() if src.kind == "ccxt"}
    assert {"binance", "kucoin", "coinbase", "kraken"} <= set(exchanges)
    for name, src in exchanges.items():
        assert src.exchange in ccxt.exchanges, name
        timeframes = getattr(ccxt, src.exchange)().timeframes
        for interval in src.intervals:
            assert CCXT_TIMEFRAMES[interval] in timeframes, f"{name} {interval}"
    assert {("binance", "1m"), ("binance", "1h"), ("kucoin", "1h"), ("coinbase", "1h"), ("kraken", "1m")} <= set(cfg.dag_pairs())


def test_pools_file_is_generated_from_config_and_holds_every_task_pool(dagbag):
    from tools.build_pools import POOLS_FILE, render

    assert POOLS_FILE.read_text() == render(), "include/pools.json is stale: run `make pools`"
    pools = json.loads(POOLS_FILE.read_text())
    cfg = load_config()
    assert {p: v["slots"] for p, v in pools.items()} == {src.pool: src.pool_slots for src in cfg.sources.values()}
    used = {task.pool for dag in dagbag.dags.values() for task in dag.tasks}
    assert used - {"default_pool"} <= set(pools)


def test_retry_policy_waits_longer_on_rate_limits_and_fails_permanent_errors_at_once(ingestion_dag):
    from airflow.sdk.definitions.retry_policy import RetryAction

    from market_ingest.errors import ConfigurationError, RateLimitedError, VendorUnavailableError, WindowNotServableError

    cfg = load_config()
    policy = ingestion_dag.get_task("extract").retry_policy
    limited = policy.evaluate(RateLimitedError("binance", "418 ban"), try_number=1, max_tries=cfg.retry.retries)
    assert limited.action == RetryAction.RETRY
    assert (
        limited.retry_delay
        == timedelta(seconds=cfg.retry.rate_limited_delay_seconds)
        > timedelta(seconds=cfg.retry.delay_seconds)
    )
    for permanent in (ConfigurationError("alpha_vantage", "premium"), WindowNotServableError("kraken", "720")):
        assert policy.evaluate(permanent, try_number=1, max_tries=cfg.retry.retries).action == RetryAction.FAIL
    assert policy.evaluate(VendorUnavailableError("yahoo", "503"), 1, cfg.retry.retries).action == RetryAction.DEFAULT


def test_every_dag_has_its_configured_deadline_and_failure_notifier(ingestion_dag):
    from airflow.serialization.serialized_objects import DagSerialization

    from market_ingest.alerts import MarketEventNotifier
    from market_ingest.deadlines import DataIntervalEndDeadline

    cfg = load_config()
    dag = ingestion_dag
    source, interval = dag.dag_id.removeprefix("market_").rsplit("_", 1)
    src = cfg.sources[source]
    ic = src.quotes if interval == "quote" else src.intervals[interval]
    (alert,) = dag.deadline
    assert isinstance(alert.reference, DataIntervalEndDeadline) and alert.interval == ic.allowed_lateness
    assert alert.callback.path == "market_ingest.alerts.MarketEventNotifier"
    channels = cfg.alerts.model_dump(mode="json")  # where events go, handed over: no callback reads the config
    assert alert.callback.kwargs == {"kind": "deadline_missed", "channels": channels}
    assert isinstance(dag.on_failure_callback, MarketEventNotifier) and dag.on_failure_callback.kind == "dag_failed"
    assert dag.on_failure_callback.channels == channels
    # What the scheduler stores: the custom reference by import path, found again through the plugin.
    encoded = DagSerialization.to_dict(dag)["dag"]["deadline"][0]
    assert "market_ingest.deadlines.DataIntervalEndDeadline" in json.dumps(encoded)


def test_daily_yahoo_bars_are_due_two_hours_after_the_day():
    assert load_config().sources["yahoo"].intervals["1d"].allowed_lateness == timedelta(hours=2)


def test_the_deadline_reference_is_registered_by_the_plugin():
    from airflow.serialization.helpers import find_registered_custom_deadline_reference

    from market_ingest.deadlines import DataIntervalEndDeadline

    assert find_registered_custom_deadline_reference("market_ingest.deadlines.DataIntervalEndDeadline") is DataIntervalEndDeadline


def test_tasks_run_on_their_arguments_and_read_no_configuration_file(dagbag, tmp_path, monkeypatch):
    """The factory hands each task what it needs; with the config file gone, a parsed DAG's plan
    still resolves its window and symbols, and every operator holds the configured values."""
    from datetime import datetime, timezone
    from types import SimpleNamespace

    cfg = load_config()
    dag = dagbag.dags["market_yahoo_1d"]
    monkeypatch.setenv("MARKET_INGEST_CONFIG", str(tmp_path / "gone.yaml"))
    load_config.cache_clear()
    try:
        start = datetime(2021, 7, 19, tzinfo=timezone.utc)
        context = {
            "params": {"symbols": ["MSFT", "NVDA"]},
            "data_interval_start": start,
            "data_interval_end": start + timedelta(days=5),
            "dag": SimpleNamespace(dag_id=dag.dag_id),
            "run_id": "manual__no_config",
        }
        (batch,) = dag.get_task("plan").execute(context)
        assert (batch["symbols"], batch["start"], batch["end"]) == (
            ["MSFT", "NVDA"],
            "2021-07-19T00:00:00+00:00",
            "2021-07-24T00:00:00+00:00",
        )
    finally:
        load_config.cache_clear()
    series = dag.get_task("extract").partial_kwargs["series"]
    assert series.lake_url == cfg.lake.url and series.timescale_conn_id == cfg.timescale.conn_id
    assert series.source_config == cfg.sources["yahoo"].model_dump(mode="json")
    kinesis = dag.get_task("publish_kinesis")
    assert (kinesis.stream, kinesis.aws_conn_id, kinesis.bars_per_record, kinesis.record_format) == (
        cfg.kinesis.stream,
        cfg.kinesis.aws_conn_id,
        cfg.kinesis.bars_per_record,
        cfg.kinesis.record_format,
    )
    assert dag.get_task("report").max_failed_share == cfg.report.max_failed_share
    assert dagbag.dags["market_kucoin_quote"].get_task("publish_lake").series.lake_url == cfg.lake.quotes_url


def test_every_dag_says_in_one_line_what_it_does(any_dag):
    """The DAG list shows each DAG's description: one line, naming what it ingests or does."""
    description = any_dag.description
    assert description and "\n" not in description and len(description) <= 140, any_dag.dag_id


def test_the_description_names_source_interval_universes_and_schedule(dagbag):
    assert dagbag.dags["market_yahoo_1m"].description == (
        "Yahoo Finance 1m bars of nasdaq100 every hour into the lake, TimescaleDB and Kinesis"
    )
    assert dagbag.dags["market_kucoin_quote"].description.startswith("KuCoin spot quote snapshots of crypto_majors at cron */15")


def test_the_repair_dag_has_one_task_group_per_pair(dagbag):
    """``market_repair`` (scheduled, one run at a time): one task group per configured (source, interval)."""
    cfg = load_config()
    dag = built_dag(dagbag, "market_repair")
    assert dag.timetable.can_be_scheduled and dag.max_active_runs == 1
    groups = {f"{s}_{i}" for s, i in cfg.dag_pairs()}
    assert {t.task_id.split(".")[0] for t in dag.tasks} == groups


@pytest.mark.parametrize("source, interval", PAIRS, ids=[f"{s}_{i}" for s, i in PAIRS])
def test_the_repair_dag_runs_the_ingestion_tasks_after_a_ledger_plan_per_pair(dagbag, source, interval):
    """``market_repair``'s group of each configured (source, interval): a plan read from the
    coverage ledger with the configured budget, then the same extract (in the source's pool),
    sinks and report."""
    from market_ingest.operators.plan import MarketRepairPlanOperator

    cfg = load_config()
    dag = built_dag(dagbag, "market_repair")
    g = f"{source}_{interval}"
    plan = dag.get_task(f"{g}.plan")
    assert isinstance(plan, MarketRepairPlanOperator)
    assert (plan.source, plan.interval, plan.max_requests, plan.max_days_back, plan.max_attempts) == (
        source,
        interval,
        cfg.repair.max_requests_per_source,
        cfg.repair.max_days_back,
        cfg.repair.max_attempts,
    )
    assert dag.get_task(f"{g}.extract").pool == cfg.sources[source].pool
    assert dag.get_task(f"{g}.load_timescale").source == source
    assert dag.get_task(f"{g}.report").upstream_task_ids >= {f"{g}.{t}" for t in ("plan", "extract", "load_timescale")}
    assert [a.uri for a in dag.get_task(f"{g}.load_timescale").outlets] == [f"x-market://bars/{source}/{interval}"]


@pytest.mark.parametrize(
    "dag_id, run_after, expected",
    [
        pytest.param(
            "market_yahoo_1d",
            datetime(2021, 7, 21, 6, tzinfo=UTC),
            (datetime(2021, 7, 20, tzinfo=UTC), datetime(2021, 7, 21, tzinfo=UTC)),
            id="market_yahoo_1d",
        ),
        pytest.param(
            "market_yahoo_1m",
            datetime(2024, 10, 2, 15, 30, tzinfo=UTC),
            (datetime(2024, 10, 2, 14, tzinfo=UTC), datetime(2024, 10, 2, 15, tzinfo=UTC)),
            id="market_yahoo_1m",
        ),
        pytest.param(
            "market_alpha_vantage_5m",
            datetime(2023, 11, 11, 9, tzinfo=UTC),
            (datetime(2023, 11, 9, 22, tzinfo=UTC), datetime(2023, 11, 10, 22, tzinfo=UTC)),
            id="market_alpha_vantage_5m",
        ),
    ],
)
def test_a_run_triggered_without_a_logical_date_takes_the_last_complete_interval(dagbag, dag_id, run_after, expected):
    """Seen with ``make up``: a run triggered through the REST API with ``logical_date: null`` (as
    the UI's form may) has no data interval in its context, and the plan failed with
    ``KeyError: 'data_interval_start'``. Now it ingests the last complete period before it was
    triggered, like a manual run with a logical date."""
    from types import SimpleNamespace

    from market_ingest.operators.base import data_interval

    context = {"dag": built_dag(dagbag, dag_id), "dag_run": SimpleNamespace(run_after=run_after), "params": {}}
    assert data_interval(context) == expected, dag_id


def test_a_run_triggered_without_a_logical_date_plans_the_last_complete_interval(dagbag):
    """As above, through the plan task of ``market_yahoo_1d``: its batch holds that window."""
    from types import SimpleNamespace

    context = {
        "dag": dagbag.dags["market_yahoo_1d"],
        "dag_run": SimpleNamespace(run_after=datetime(2021, 7, 21, 6, tzinfo=UTC)),
        "params": {"symbols": ["MSFT"]},
        "run_id": "manual__no_logical_date",
    }
    (batch,) = dagbag.dags["market_yahoo_1d"].get_task("plan").execute(context)
    assert (batch["start"], batch["end"]) == ("2021-07-20T00:00:00+00:00", "2021-07-21T00:00:00+00:00")


@pytest.mark.parametrize(
    "dag_id, hours", [("market_binance_1m", 1), ("market_kraken_1m", 1), ("market_coinbase_1h", 24), ("market_yahoo_1d", 24)]
)
def test_a_scheduled_run_plans_on_the_pendulum_interval_airflow_gives_it(dagbag, dag_id, hours):
    """Scheduled and backfill runs get ``pendulum`` datetimes as their data interval. The plan of
    every scheduled ccxt run failed on them (``pendulum.Interval / timedelta``: ``AttributeError:
    'datetime.timedelta' object has no attribute '_to_microseconds'``), found by the soak benchmark."""
    import pendulum

    from market_ingest.operators.base import data_interval

    start = pendulum.datetime(2025, 7, 14, tz="UTC")
    dag, end = built_dag(dagbag, dag_id), start.add(hours=hours)
    context = {"dag": dag, "params": {}, "run_id": "scheduled__x", "data_interval_start": start, "data_interval_end": end}
    batches = dag.get_task("plan").execute(context)
    window = data_interval(context)
    assert [type(t) for t in window] == [datetime, datetime] and window == (start, end)
    assert batches and all(b["start"] == "2025-07-14T00:00:00+00:00" for b in batches), dag_id


def test_the_setup_dag_migrates_the_warehouse_on_demand(dagbag):
    """Migrations run in ``market_setup`` (triggered by hand), not in every ingestion task; the
    re-basing of bars stored before the price basis runs after them, knowing each source's basis."""
    dag = dagbag.dags["market_setup"]
    assert sorted(t.task_id for t in dag.tasks) == ["compact_lake", "migrate", "rebase_bars"]
    assert dag.timetable.can_be_scheduled is False
    cfg = load_config()
    assert dag.get_task("migrate").timescale_conn_id == cfg.timescale.conn_id
    rebase = dag.get_task("rebase_bars")
    assert rebase.upstream_task_ids == {"migrate"} and rebase.timescale_conn_id == cfg.timescale.conn_id
    assert set(rebase.sources) == set(cfg.sources)
    assert {s for s, v in rebase.sources.items() if v["split_adjusted"]} == {
        s for s, v in cfg.sources.items() if v.kind == "yahoo"
    }
    compact = dag.get_task("compact_lake")
    assert (compact.lake_url, compact.quotes_url) == (cfg.lake.url, cfg.lake.quotes_url)
    assert [tuple(p) for p in compact.pairs] == cfg.dag_pairs() and compact.quote_sources == cfg.quote_sources()


def test_each_load_updates_one_asset(ingestion_dag):
    assert len(ingestion_dag.get_task("load_timescale").outlets) == 1


def test_each_load_updates_its_asset_and_the_readme_consumer_is_scheduled_on_it(dagbag):
    """The example consumer DAG of docs/operations.md, run as written: scheduled on the Asset the
    yahoo 1d load updates. (One Asset per load, in every DAG: the test above.)"""
    import re

    loads = {
        dag_id: [a.uri for a in built_dag(dagbag, dag_id).get_task("load_timescale").outlets]
        for dag_id in ("market_yahoo_1d", "market_kucoin_quote")
    }
    assert loads["market_yahoo_1d"] == ["x-market://bars/yahoo/1d"]
    assert loads["market_kucoin_quote"] == ["x-market://quotes/kucoin"]
    readme = (ROOT / "docs" / "operations.md").read_text()
    (example,) = re.findall(r"```python\n(.*?)```", readme[readme.index("## Assets") :], re.S)[:1]
    namespace: dict = {}
    exec(compile(textwrap.dedent(example), "docs/operations.md", "exec"), namespace)  # noqa: S102 - our own docs
    consumer = namespace["dag"]
    assert consumer.dag_id == "daily_returns"
    assert [a.uri for a in consumer.timetable.asset_condition.objects] == ["x-market://bars/yahoo/1d"]


def test_tolerances_must_be_positive_and_name_configured_instruments_and_sources(tmp_path):
    """A negative or zero tolerance would flag every bar; an unknown instrument or source in the
    tolerances would leave the one meant on the default: each turns the reconciliation off, named."""
    from pydantic import ValidationError

    from market_ingest.config import ReconciliationConfig, load_config_parts

    with pytest.raises(ValidationError, match="basis points above 0"):
        ReconciliationConfig(close_tolerance_bps_by_instrument={"AAPL": -5})
    with pytest.raises(ValidationError, match="two different sources"):
        ReconciliationConfig(volume_tolerance={"yahoo/yahoo": 0.05})

    def edit(text: str) -> str:
        return text.replace("volume_tolerance: {}", "volume_tolerance: {yahoo/stooq: 0.05}")

    config = _include(tmp_path, edit) / "pipeline.yaml"
    parts = load_config_parts(config)
    assert parts.config.instruments == {} and parts.stopped() == set()
    assert any("names no configured instrument or source: stooq" in p.message for p in parts.problems)
