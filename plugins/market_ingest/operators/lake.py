"""The lake publish task: the run's staged batches merged into the bars (or quotes) Delta table."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

from market_ingest.contracts import LakeObject, LakeResult
from market_ingest.operators.base import SeriesOperator, failing_fast, materialise

if TYPE_CHECKING:
    from airflow.sdk import Context


class LakePublishOperator(SeriesOperator):
    """Merge the run's staged bars into the lake's bars Delta table in one commit (quotes: into the
    quotes table, :mod:`market_ingest.lake.quotes`).

    A run replaces only the bars it extracted, and only where the stored bar is not newer; see
    :mod:`market_ingest.lake`. A missing bucket fails at once.

    :param series: the source, interval, dataset and lake (:class:`~market_ingest.operators.base.Series`;
        quotes have no interval partition).
    :param extracts: the extract tasks' :class:`~market_ingest.contracts.ExtractResult` s (templated; mapped XCom).
    :param compression: unused (the tables' files are zstd); kept for existing DAGs.
    :return: :class:`~market_ingest.contracts.LakeResult`; the sinks read its ``staged``.
    """

    template_fields: Sequence[str] = ("extracts",)

    def __init__(self, *, extracts: Any, compression: str = "zstd", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.extracts = extracts
        self.compression = compression

    def execute(self, context: Context) -> LakeResult:
        import hashlib
        import json

        from market_ingest.lake import lake_root, publish, staging_run_dir

        series = self.series
        results = [e for e in materialise(self.extracts) if e]
        staged = [{**s, "ingested_at": e.get("ingested_at")} for e in results for s in e.get("staged", [])]
        root = lake_root(series.lake_url)
        with failing_fast():
            published = publish(
                staged, root, self.source, series.stored_interval, compression=self.compression, dataset=series.dataset
            )
        counts: Counter[str] = Counter()
        objects: list[LakeObject] = []
        for obj in published:
            counts.update(obj.pop("rows_by_symbol"))
            objects.append(cast(LakeObject, obj))
            self.log.info(
                "Published %d rows into %s (%d rows; %d stored bars were newer and kept)%s",
                obj["run_rows"],
                obj["path"],
                obj["rows"],
                obj["kept_newer"],
                f"; table version {obj['version']}" if "version" in obj else "",
            )
        ordered = sorted(staged, key=lambda s: s["path"])
        fingerprint = hashlib.sha256(
            json.dumps([[s["path"], s["ingested_at"], s["rows"]] for s in ordered]).encode()
        ).hexdigest()[:32]
        run_dir = staging_run_dir(root, self.source, series.stored_interval, context["run_id"])
        return {
            "objects": objects,
            "rows_by_symbol": dict(counts),
            "staged": [s["path"] for s in ordered],
            "fingerprint": fingerprint,
            "run_dir": str(run_dir),
        }
