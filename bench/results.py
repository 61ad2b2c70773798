"""Recording a benchmark's figures in bench/RESULTS.md: one section per run, headed by its UTC time
and what it measured, then the command line that measured it, so every figure says how to get it again."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path

#: The file every benchmark appends to (kept in git: the project's measured history).
RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def command_line() -> str:
    """This process's command as a user types it from the project's root: ``python bench/<script>.py <args>``."""
    return " ".join(["python", f"bench/{Path(sys.argv[0]).name}", *sys.argv[1:]])


def record(lines: list[str], title: str = "", indent: str = "") -> None:
    """Append ``lines`` to :data:`RESULTS` under ``## <UTC time>[, <title>]`` and the command line.

    :param lines: the figures, one per line, without newlines.
    :param title: what was measured (``lake``, ``ledger``), or empty.
    :param indent: put before each line: ``"- "`` for a list, ``"    "`` for a table printed as
        text (kept as is by Markdown), ``""`` for lines already formatted.
    """
    heading = f"## {datetime.now(UTC):%Y-%m-%d %H:%M} UTC" + (f", {title}" if title else "")
    with RESULTS.open("a") as out:
        out.write(f"\n{heading}\n\n`{command_line()}`\n\n" + "".join(f"{indent}{line}\n" for line in lines))
