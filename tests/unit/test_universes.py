"""Universe files (``include/symbols/*.csv``): the shapes index providers publish, refused clearly
when unusable, and ``make universes`` rebuilding them from what the repository holds."""

from __future__ import annotations

import csv
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from market_ingest.config import PipelineConfigError, load_universe, universes
from market_ingest.kinds import kind
from tests.conftest import ROOT

INDICES = ROOT / "tools" / "indices"
FIXTURES = ROOT / "tests" / "fixtures" / "indices"
YAHOO = kind("yahoo").symbol_pattern


@pytest.fixture
def symbols_dir(tmp_path, monkeypatch) -> Path:
    """An empty ``include/symbols/`` that :func:`load_universe` reads."""
    monkeypatch.setattr(universes, "INCLUDE_DIR", tmp_path)
    (tmp_path / "symbols").mkdir()
    return tmp_path / "symbols"


def _committed(name: str) -> list[str]:
    with (ROOT / "include" / "symbols" / f"{name}.csv").open(newline="") as fh:
        return [r["symbol"] for r in csv.DictReader(fh)]


def test_a_universe_as_index_providers_publish_it_is_read(symbols_dir):
    """yfiua's DAX list (``Symbol,Name``) and AshF195's CAC 40 list (``Ticker,Company``), as published."""
    shutil.copy(INDICES / "dax_constituents_yfiua_2026-07-01.csv", symbols_dir / "dax.csv")
    shutil.copy(FIXTURES / "cac40_constituents_AshF195_My-Scanner_undated.csv", symbols_dir / "cac.csv")
    dax = load_universe("dax", YAHOO)
    assert len(dax) == 40 and sorted(dax) == _committed("dax40")
    cac = load_universe("cac", YAHOO)
    assert len(cac) == 40 and cac[:2] == ["AC.PA", "AI.PA"]


def test_an_unusable_universe_is_refused_naming_file_and_line(symbols_dir):
    """yfiua's FTSE 100 list keeps Bloomberg's slashes (``BP/.L``, row 10 ``AV/.L`` first), which
    are not Yahoo symbols; the DAX list without its symbol column has nothing to read."""
    shutil.copy(INDICES / "ftse100_constituents_yfiua_2026-07-01.csv", symbols_dir / "ftse.csv")
    with pytest.raises(PipelineConfigError) as err:
        load_universe("ftse", YAHOO)
    assert str(err.value).startswith(f"{symbols_dir / 'ftse.csv'}:10: universe 'ftse': 'AV/.L' is not a symbol")
    assert len(load_universe("ftse")) == 100  # without a spelling to match, every row is a symbol

    with (INDICES / "dax_constituents_yfiua_2026-07-01.csv").open(newline="") as fh:
        names = [[row["Name"]] for row in csv.DictReader(fh)]
    with (symbols_dir / "names.csv").open("w", newline="") as fh:
        csv.writer(fh).writerows([["Name"], *names])
    with pytest.raises(PipelineConfigError) as err:
        load_universe("names")
    assert str(err.value) == (
        f"{symbols_dir / 'names.csv'}:1: universe 'names' has no symbol column (header ['Name']); "
        "name one column symbol or ticker (any case)"
    )
    with pytest.raises(PipelineConfigError, match=r"missing\.csv: cannot read universe 'missing': No such file or directory"):
        load_universe("missing")


def test_make_universes_rebuilds_the_committed_universes_from_the_repository_alone(tmp_path):
    """A fresh clone holds ``tools/`` and nothing beside it (the shared fixtures folder the tool
    once read is not there): the tool rebuilds every committed index universe byte for byte."""
    clone = tmp_path / "clone"
    shutil.copytree(ROOT / "tools", clone / "tools", ignore=shutil.ignore_patterns("__pycache__"))
    out = subprocess.run(
        [sys.executable, "tools/build_universes.py"], cwd=clone, capture_output=True, text=True, check=False, timeout=60
    )
    assert out.returncode == 0, out.stderr
    built = sorted(p.name for p in (clone / "include" / "symbols").iterdir())
    assert built == ["cac40.csv", "dax40.csv", "ftse100.csv", "nasdaq100.csv"]
    for name in built:
        assert (clone / "include" / "symbols" / name).read_bytes() == (ROOT / "include" / "symbols" / name).read_bytes(), name
