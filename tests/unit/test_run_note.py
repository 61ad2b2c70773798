"""The run note (``market_ingest.run_note``): what the runs list shows of a run.

The note written through a real API server is checked under ``airflow standalone`` in
``tests/e2e/test_scheduler.py``; here, its text for the largest run the config makes, and the
answer when nothing can be written.
"""

from __future__ import annotations

import json

from market_ingest.config import load_config, load_universe
from market_ingest.contracts import read_plan
from market_ingest.report import build_report
from market_ingest.run_note import MAX_CHARS, format_note, write_note

WINDOW = {"start": "2021-07-22T00:00:00+00:00", "end": "2021-07-23T00:00:00+00:00"}


def _whole_universe_run(failed_batches: set[int]) -> dict:
    """The report of a yahoo 1d run over every configured universe, batches of 10, some batches failed."""
    src = load_config().sources["yahoo"]
    names = src.intervals["1d"].universes or src.universes
    symbols = sorted({s for name in names for s in load_universe(name)})
    plan = [{"batch": i, "symbols": symbols[j : j + 10], **WINDOW} for i, j in enumerate(range(0, len(symbols), 10))]
    extracts = [
        None
        if b["batch"] in failed_batches
        else {"batch": b["batch"], "outcomes": [{"symbol": s, "status": "ok"} for s in b["symbols"]]}
        for b in plan
    ]
    loaded = {s: 1 for e in extracts if e for s in (o["symbol"] for o in e["outcomes"])}
    lake = {"rows_by_symbol": loaded, "objects": []}
    return build_report(read_plan(plan), extracts, lake, {"rows_by_symbol": loaded, "coverage": {"complete": len(loaded)}}, None)


def test_the_note_of_a_whole_universe_run_with_failed_batches_fits_and_counts_what_it_leaves_out():
    report = _whole_universe_run(failed_batches=set(range(20)))
    failed, total = report["failed_symbols"], report["symbols_total"]
    assert total > 250 and len(failed) == 200  # the config's yahoo universes; 20 batches of 10 failed

    note = format_note(report)
    assert len(note) <= MAX_CHARS
    lines = note.splitlines()
    assert lines[0] == f"**2021-07-22 00:00 → 2021-07-23 00:00 UTC** · {total} symbols: 200 failed, {total - 200} ok"
    assert f"| S3 lake | {total - 200:,} |" in lines
    assert "| TimescaleDB | " + f"{total - 200:,} |" in lines
    assert "| Kinesis | not loaded |" in lines  # publish_kinesis gave nothing
    assert f"ledger days: complete {total - 200}" in lines
    assert lines[-3] == "did not succeed: extract (20 batches), publish_kinesis"
    shown, more = lines[-1].removeprefix("failed: ").split(" … ")
    assert shown.split(", ") == failed[: len(shown.split(", "))]
    assert more == f"(+{200 - len(shown.split(', '))} more)"


def test_a_run_whose_plan_failed_says_so():
    note = format_note(build_report(None, [], None, None, None))
    assert note.splitlines()[0] == "**nothing planned** · 0 symbols"
    assert note.splitlines()[-1] == "did not succeed: plan"


def test_without_the_connection_or_the_server_the_note_is_skipped_with_a_reason_and_no_secret(monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_NOTE_TEST", raising=False)
    assert write_note("note_test", "market_yahoo_1d", "manual__x", "n") == (
        "no Airflow connection 'note_test' (an http connection to the API server: see market_ingest.run_note)"
    )
    conn = {"conn_type": "http", "host": "http://127.0.0.1:9", "login": "admin", "password": "s3cret-pw"}
    monkeypatch.setenv("AIRFLOW_CONN_NOTE_TEST", json.dumps(conn))
    why = write_note("note_test", "market_yahoo_1d", "manual__x", "n")
    assert why.startswith("connection 'note_test' (http://127.0.0.1:9): ConnectionError") and "s3cret-pw" not in why
