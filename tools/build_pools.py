"""Write ``include/pools.json`` (``airflow pools import`` format) from ``include/pipeline.yaml``.

One pool per source's ``pool`` with the configured ``pool_slots``; a test keeps the committed file
equal to what this writes. Run from the repository root: ``python tools/build_pools.py``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "plugins"))

from market_ingest.config import INCLUDE_DIR, load_config  # noqa: E402

POOLS_FILE = INCLUDE_DIR / "pools.json"


def render() -> str:
    """The file's text for the current config."""
    return json.dumps(load_config().pools(), indent=2) + "\n"


if __name__ == "__main__":
    POOLS_FILE.write_text(render())
    print(POOLS_FILE.relative_to(ROOT))
