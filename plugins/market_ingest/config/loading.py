"""Loading the pipeline config: the YAML file, the file and line of each error, and the parts
left out (:func:`load_config_parts`, :class:`ConfigProblem`), or all of it (:func:`load_config`).
"""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import ValidationError

from market_ingest.config.base import INCLUDE_DIR, PipelineConfigError
from market_ingest.config.pipeline import PipelineConfig, TimescaleConfig
from market_ingest.config.sources import IntervalConfig
from market_ingest.config.universes import load_universe

DEFAULT_CONFIG = INCLUDE_DIR / "pipeline.yaml"
CONFIG_ENV = "MARKET_INGEST_CONFIG"


def config_path() -> Path:
    """The config file: ``$MARKET_INGEST_CONFIG`` or ``include/pipeline.yaml``."""
    return Path(os.environ.get(CONFIG_ENV) or DEFAULT_CONFIG)


@dataclass(frozen=True)
class ConfigProblem:
    """A part of the pipeline config that cannot be used, and the DAGs it stops.

    :param part: the part, as a field path: ``sources.<s>`` (the whole source),
        ``sources.<s>.intervals.<i>``, ``sources.<s>.quotes`` or ``repair``.
    :param pairs: the ``(source, interval)`` pairs it stops (``interval`` ``quote`` for a source's
        quote snapshots); empty for ``repair``, which stops the ``market_repair`` DAG.
    :param message: ``<file>:<line>: <field>: <what is wrong>``; for a universe, its CSV file and
        line, then the config line that names the universe.
    """

    part: str
    pairs: tuple[tuple[str, str], ...]
    message: str


@dataclass(frozen=True)
class ConfigParts:
    """What :func:`load_config_parts` read: the usable config and the parts left out.

    :param config: every source, interval and quote section without a problem of its own
        (and the repair settings' defaults when they have one: see ``problems``).
    :param problems: the parts left out and why, in file order.
    """

    config: PipelineConfig
    problems: list[ConfigProblem]

    def stopped(self) -> set[tuple[str, str]]:
        """Every ``(source, interval)`` pair a problem stops."""
        return {pair for p in self.problems for pair in p.pairs}

    @property
    def repair_stopped(self) -> bool:
        """The ``repair`` settings have a problem: no ``market_repair`` DAG."""
        return any(p.part == "repair" for p in self.problems)


def _yaml_document(path: Path):
    """``(data, root node)`` of the YAML file at ``path``, one parse; the node keeps the lines.

    :raises PipelineConfigError: naming the file, and the line yaml stopped at.
    """
    try:
        with path.open() as fh:
            loader = yaml.SafeLoader(fh)
            try:
                node = loader.get_single_node()
                return (loader.construct_document(node) if node is not None else None), node
            finally:
                loader.dispose()
    except (OSError, yaml.YAMLError) as exc:
        raise PipelineConfigError(f"{path}: cannot read config: {exc}") from None


def _line(node, loc: tuple) -> int | None:
    """The line (1-based) of the deepest key of ``loc`` (a pydantic error location) found in the
    YAML ``node``; ``None`` when not even the first is there."""
    line = None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            found = next(((k, v) for k, v in node.value if isinstance(k, yaml.ScalarNode) and k.value == str(part)), None)
            if found is None:
                return line
            line, node = found[0].start_mark.line + 1, found[1]
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _at(path: Path, node, loc: tuple) -> str:
    """``<file>:<line>: <field>`` for the error location ``loc``."""
    line = _line(node, loc)
    field = ".".join(str(p) for p in loc) or "<root>"
    return f"{path}:{line}: {field}" if line else f"{path}: {field}"


def _part(doc: dict, loc: tuple) -> tuple[tuple, tuple[tuple[str, str], ...]] | None:
    """The part of the config document an error at ``loc`` lies in, as the keys leading to it in
    ``doc`` (``("sources", "yahoo", "intervals", "1d")``), and the ``(source, interval)`` pairs
    that part holds; ``None`` for an error that concerns every DAG (sinks, retries, the sources
    list itself)."""
    if loc[:1] in (("repair",), ("instruments",), ("reconciliation",)):
        return (str(loc[0]),), ()
    sources = doc.get("sources")
    if len(loc) < 2 or loc[0] != "sources" or not isinstance(sources, dict) or loc[1] not in sources:
        return None
    name = loc[1]
    src: dict = sources[name] if isinstance(sources[name], dict) else {}
    intervals: dict = src["intervals"] if isinstance(src.get("intervals"), dict) else {}
    if len(loc) >= 4 and loc[2] == "intervals" and loc[3] in intervals:
        return ("sources", name, "intervals", loc[3]), ((str(name), str(loc[3])),)
    if len(loc) >= 3 and loc[2] == "quotes" and "quotes" in src:
        return ("sources", name, "quotes"), ((str(name), "quote"),)
    pairs = [(str(name), str(i)) for i in intervals] + ([(str(name), "quote")] if src.get("quotes") else [])
    return ("sources", name), tuple(pairs)


def _universe_problems(cfg: PipelineConfig, path: Path, root) -> list[ConfigProblem]:
    """A :class:`ConfigProblem` for each pair (and quote section) of ``cfg`` with a universe that
    :func:`load_universe` refuses (each file read once per symbol spelling)."""
    refused: dict[tuple[str, str], str | None] = {}
    problems = []
    for source, src in cfg.sources.items():
        sections: list[tuple[str, tuple[str, ...], IntervalConfig]] = [
            (i, ("intervals", i), ic) for i, ic in src.intervals.items()
        ]
        sections += [("quote", ("quotes",), src.quotes)] if src.quotes else []
        for interval, where, ic in sections:
            named_at = ("sources", source, *where, "universes") if ic.universes else ("sources", source, "universes")
            for name in cfg.universes_of(source, interval):
                key = (name, src.symbols_like)
                if key not in refused:
                    try:
                        load_universe(name, src.symbols_like)
                        refused[key] = None
                    except PipelineConfigError as exc:
                        refused[key] = str(exc)
                if refused[key]:
                    message = f"{refused[key]} (universe named at {_at(path, root, named_at)})"
                    problems.append(ConfigProblem(".".join(("sources", source, *where)), ((source, interval),), message))
                    break
    return problems


def _splits_problems(cfg: PipelineConfig, path: Path, root) -> list[ConfigProblem]:
    """A :class:`ConfigProblem` for each source whose ``splits_from`` names no source stating splits
    (:meth:`PipelineConfig.splits_from_of`): its bars cannot be stored as traded, so none of its
    DAGs is built."""
    problems = []
    for source, src in cfg.sources.items():
        try:
            cfg.splits_from_of(source)
        except ValueError as exc:
            pairs = tuple((source, i) for i in src.intervals) + (((source, "quote"),) if src.quotes else ())
            message = f"{_at(path, root, ('sources', source, 'splits_from'))}: {exc}"
            problems.append(ConfigProblem(f"sources.{source}.splits_from", pairs, message))
    return problems


def load_config_parts(path: Path | str | None = None) -> ConfigParts:
    """Load the pipeline config, leaving out the parts that are invalid, and read every universe.

    An error inside one source, interval, quote section or the repair settings leaves that part
    out and names it in a :class:`ConfigProblem`; so does a universe that cannot be read
    (:func:`load_universe`, checked against the source's symbol spelling), for each pair using it.
    Everything else must be valid.

    :param path: YAML file; default :func:`config_path`.
    :raises PipelineConfigError: naming the file, line and every invalid field, when the file
        cannot be read or parsed, an error concerns every DAG (sinks, retries, ``version``), or no
        source is left.
    """
    path = Path(path) if path else config_path()
    raw, root = _yaml_document(path)
    if not isinstance(raw, dict):
        raise PipelineConfigError(f"{path}: the config is not a YAML mapping (version, lake, kinesis, timescale, sources)")
    doc = copy.deepcopy(raw)
    problems: list[ConfigProblem] = []
    while True:
        try:
            cfg = PipelineConfig.model_validate(doc)
            break
        except ValidationError as exc:
            parts: dict[tuple, tuple[tuple, list[str]]] = {}
            shared = []
            for err in exc.errors():
                message = f"{_at(path, root, err['loc'])}: {err['msg']}"
                part = _part(doc, err["loc"])
                if part is None:
                    shared.append(message)
                else:
                    parts.setdefault(part[0], (part[1], []))[1].append(message)
            if shared:
                raise PipelineConfigError("\n".join([*shared, *(p.message for p in problems)])) from None
            for keys in sorted(parts, key=len, reverse=True):  # an interval's errors join its source's, when it has some
                whole = next((k for k in parts if len(k) < len(keys) and keys[: len(k)] == k), None)
                if whole:
                    parts[whole][1].extend(parts.pop(keys)[1])
            for keys, (pairs, messages) in parts.items():
                problems.append(ConfigProblem(".".join(str(k) for k in keys), pairs, "\n".join(messages)))
                parent = doc
                for key in keys[:-1]:
                    parent = parent[key]
                del parent[keys[-1]]  # repair: its defaults validate, and no market_repair DAG is built
                if keys == ("reconciliation",):
                    doc.pop("instruments", None)  # no comparison on tolerances the config did not mean
                if keys[2:3] == ("intervals",) and not parent and not doc["sources"][keys[1]].get("quotes"):
                    del doc["sources"][keys[1]]  # nothing left of it: its intervals' problems say why
    return ConfigParts(cfg, problems + _universe_problems(cfg, path, root) + _splits_problems(cfg, path, root))


@lru_cache(maxsize=8)
def load_config(path: Path | str | None = None) -> PipelineConfig:
    """Load and validate the pipeline config and its universes, all of it.

    :param path: YAML file; default :func:`config_path`.
    :raises PipelineConfigError: naming the file, line and every invalid field, e.g.
        ``include/pipeline.yaml:47: sources.yahoo.batch_size: Input should be greater than 0``,
        and every universe that cannot be read (:func:`load_config_parts` lists the same).
    """
    parts = load_config_parts(path)
    if parts.problems:
        raise PipelineConfigError("\n".join(p.message for p in parts.problems))
    return parts.config


@lru_cache(maxsize=8)
def load_timescale_config(path: Path | str | None = None) -> TimescaleConfig:
    """Only the ``timescale`` section of the pipeline config, validated: what the coverage view
    needs to reach the warehouse. A problem in a source, a universe or a schedule, which stops only
    its own DAGs (:func:`load_config_parts`), does not stop the view either.

    :param path: YAML file; default :func:`config_path`.
    :raises PipelineConfigError: naming the file and line, when the file cannot be read or its
        ``timescale`` section is invalid.
    """
    path = Path(path) if path else config_path()
    raw, root = _yaml_document(path)
    try:
        return TimescaleConfig.model_validate((raw or {}).get("timescale") if isinstance(raw, dict) else None)
    except ValidationError as exc:
        raise PipelineConfigError(
            "; ".join(f"{_at(path, root, ('timescale', *err['loc']))}: {err['msg']}" for err in exc.errors())
        ) from None
