"""Universe files (``include/symbols/*.csv``): ``make universes`` rebuilding them from what the repository holds."""

from __future__ import annotations

import shutil
import subprocess
import sys

from tests.conftest import ROOT


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
