"""The lake's copy of each symbol's corporate actions, refreshed from the vendor once a day.

Layout: ``_corporate_actions/source=<s>/symbol=<symbol, URL-quoted>/actions.parquet``, one object
per symbol (:func:`market_ingest.actions.action_schema`; its metadata ``checked_at`` is the
vendor's clock of the answer it holds). Extract tasks read it to undo a vendor's split
adjustment; the warehouse load upserts the objects a run refreshed into ``market.corporate_actions``.
Imports pyarrow inside functions: callable from tasks only.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING
from urllib.parse import quote

from market_ingest.actions import (
    ActionsClient,
    CorporateAction,
    SplitHistory,
    actions_of,
    actions_table,
    local_date,
    merge_actions,
)
from market_ingest.lake.objects import _decoding, write_object

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

#: Under the lake root beside ``_coverage/``: ``_`` keeps it out of globs over the bars' partitions.
ACTIONS = "_corporate_actions"


def actions_object(root: ObjectStoragePath, source: str, symbol: str) -> ObjectStoragePath:
    """Where the lake keeps ``symbol``'s actions from ``source``."""
    return root / ACTIONS / f"source={source}" / f"symbol={quote(symbol, safe='-._')}" / "actions.parquet"


def read_actions(path: ObjectStoragePath) -> tuple[list[CorporateAction], datetime | None]:
    """The actions in one object and its ``checked_at``; ``([], None)`` when it does not exist.

    :raises CorruptObjectError: the object is not Parquet of the action schema.
    """
    import pyarrow.parquet as pq

    from market_ingest.actions import action_schema

    if not path.exists():
        return [], None
    with path.open("rb") as fh, _decoding(str(path)):
        parquet = pq.ParquetFile(fh)  # one footer read: the rows and the stamp
        checked = (parquet.schema_arrow.metadata or {}).get(b"checked_at")
        table = parquet.read().select(action_schema().names).cast(action_schema())
    return actions_of(table), datetime.fromisoformat(checked.decode()) if checked else None


def write_actions(path: ObjectStoragePath, actions: list[CorporateAction], checked_at: datetime) -> None:
    """Replace the object at ``path`` with ``actions``, stamped ``checked_at`` (the vendor's clock)."""
    from market_ingest.lake.objects import to_parquet_bytes

    table = actions_table(actions)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"checked_at": checked_at.isoformat().encode()})
    write_object(path, to_parquet_bytes(table))


class ActionsCache:
    """:class:`~market_ingest.actions.SplitHistories` over the lake: the vendor is asked for a
    symbol's actions at most once per exchange-local day (its clock's), by any task of any DAG.

    Asking again the day a split takes effect is what keeps the history right: the vendor applies
    a split to its prices from the ex-date on, and a history checked that same day states it.
    Thread-safe (the extract asks several symbols at once). After the extract, :attr:`refreshed`
    lists the objects rewritten and :attr:`new` the actions first seen of symbols whose history
    was already in the lake (the first answer about a symbol states its whole past: not news).

    :param root: the lake root; ``source``: the configured source name.
    """

    def __init__(self, root: ObjectStoragePath, source: str) -> None:
        self.root, self.source = root, source
        self.refreshed: list[str] = []
        self.new: list[CorporateAction] = []
        self._lock = threading.Lock()

    def split_history(self, client: ActionsClient, symbol: str, now: datetime, tz: str) -> SplitHistory:
        """The splits of ``symbol`` known at the vendor's clock ``now``: from the lake when it was
        checked on ``now``'s exchange-local date, else from ``client`` (then written to the lake).

        :raises MarketDataError: what ``client.corporate_actions`` raises (the symbol's extract
            fails with it: no bar is stored on a basis it cannot state).
        """
        path = actions_object(self.root, self.source, symbol)
        known, checked = read_actions(path)
        today = local_date(now, tz)
        if checked is None or local_date(checked, tz) < today:
            answer = client.corporate_actions(symbol)
            answered = answer.actions if checked is not None else [_known_by_ex_date(a) for a in answer.actions]
            known, new = merge_actions(known, answered)
            write_actions(path, known, answer.now)
            with self._lock:
                self.refreshed.append(str(path))
                if checked is not None:
                    self.new.extend(new)
            if new and checked is not None:
                log.info("%s:%s: %d corporate actions first seen: %s", self.source, symbol, len(new), _listed(new))
        return SplitHistory.of(known, today)


def _known_by_ex_date(action: CorporateAction) -> CorporateAction:
    """``action`` from a symbol's first history, taken as known from its ex-date (00:00 UTC).

    A symbol's first answer states its whole past, which the market knew long before this product
    asked: stamping those actions with the answer's clock would leave every historical split out
    of a point-in-time read (``as_of``) before the deployment. Actions first seen later keep the
    clock of the answer that stated them.
    """
    from dataclasses import replace
    from datetime import timezone

    start = datetime(action.ex_date.year, action.ex_date.month, action.ex_date.day, tzinfo=timezone.utc)
    seen = action.first_seen
    return replace(action, first_seen=start if seen is None or start < seen else seen)


def _listed(actions: list[CorporateAction], most: int = 5) -> str:
    shown = [f"{a.kind} {a.ex_date} {a.ratio if a.ratio is not None else a.amount}" for a in actions[-most:]]
    return ", ".join(shown) + (f" and {len(actions) - most} earlier" if len(actions) > most else "")
