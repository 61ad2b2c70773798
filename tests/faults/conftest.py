"""Fixtures of the fault and bad-input suite."""

from __future__ import annotations

import pytest
import yaml


@pytest.fixture
def pipeline_config(tmp_path, monkeypatch):
    """``apply(edit)``: run ``edit(raw_config_dict)`` on a copy of the pipeline config and make it
    the config every ``load_config()`` reads for the rest of the test."""
    from market_ingest.config import config_path, load_config

    original = yaml.safe_load(config_path().read_text())

    def apply(edit) -> dict:
        raw = yaml.safe_load(yaml.safe_dump(original))
        edit(raw)
        path = tmp_path / "pipeline.yaml"
        path.write_text(yaml.safe_dump(raw))
        monkeypatch.setenv("MARKET_INGEST_CONFIG", str(path))
        load_config.cache_clear()
        return raw

    yield apply
    load_config.cache_clear()  # the environment is restored after this; the next load reads the real config
