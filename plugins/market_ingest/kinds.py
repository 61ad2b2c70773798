"""Source kinds: what each ``kind:`` of the pipeline config means, in one registry.

Every module of :mod:`market_ingest.vendors` that defines ``KIND`` (a
:class:`~market_ingest.vendors.SourceKind`) is a registered kind: adding a vendor is adding its
module. A kind from elsewhere (a plugin module, a test) is added with :func:`register`. The config
validates ``kind`` against :data:`KINDS`; :mod:`market_ingest.sources` builds hooks and plans
requests from the registered kind, and :mod:`market_ingest.get_provider_info` lists its
connection form.

Stdlib only at import time (imported at DAG parse time); so are the vendor modules.
"""

from __future__ import annotations

import importlib
import pkgutil

from market_ingest import vendors
from market_ingest.vendors import SourceKind

__all__ = ["KINDS", "SourceKind", "kind", "register"]


def _vendor_kinds() -> dict[str, SourceKind]:
    """The ``KIND`` of each module of :mod:`market_ingest.vendors`, by name, in module order."""
    found: dict[str, SourceKind] = {}
    for module in sorted(m.name for m in pkgutil.iter_modules(vendors.__path__)):
        source_kind = getattr(importlib.import_module(f"{vendors.__name__}.{module}"), "KIND", None)
        if isinstance(source_kind, SourceKind):
            found[source_kind.name] = source_kind
    return found


#: name -> kind: the vendor modules' kinds, and those added with :func:`register`.
KINDS: dict[str, SourceKind] = _vendor_kinds()


def kind(name: str) -> SourceKind:
    """The registered kind ``name``.

    :raises ValueError: naming the kind and the registered ones.
    """
    try:
        return KINDS[name]
    except KeyError:
        raise ValueError(f"unknown source kind {name!r}; registered kinds: {', '.join(sorted(KINDS))}") from None


def register(source_kind: SourceKind) -> SourceKind:
    """Add (or replace) a kind; returns it. Call before the config is loaded (e.g. in a plugin module)."""
    KINDS[source_kind.name] = source_kind
    return source_kind
