"""Stop what the harness started even when the harness itself is killed by SIGKILL.

The demo, ``make up``, the benchmarks and the test sessions start servers (PostgreSQL or
TimescaleDB, moto, the vendor stand-in, Redis) and Airflow's components, each Airflow process in a
session of its own. Their ``with`` blocks stop them on a normal exit, on an exception and on
SIGTERM or SIGHUP (:func:`demo.services.unwind_on_signals`), but SIGKILL runs no code: before
this module a SIGKILLed ``make demo`` left 9 processes, PostgreSQL among them.

:func:`watch` hands each one to a *reaper*: a small process (``python -m demo.reaper``) started
once per harness process in a session of its own, reading what to stop from a pipe whose other end
only the harness holds. When the harness ends, however it ends, the kernel closes that end; the
reaper reads end-of-file, stops what it was given and is still alive (SIGTERM to every process of
each session, SIGKILL to what is left 10 s later) and exits. What the harness stopped itself it
:func:`forget`\\ s first, so the reaper never signals a later process that reuses an id.

Linux only (``/proc``), as the harness is.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

#: Seconds between SIGTERM and SIGKILL when the reaper stops what is left.
GRACE_SECONDS = 10.0

_lock = threading.Lock()
_reaper: subprocess.Popen | None = None


def _tell(line: str) -> None:
    global _reaper
    with _lock:
        if _reaper is None or _reaper.poll() is not None:
            _reaper = subprocess.Popen(
                [sys.executable, "-m", "demo.reaper"],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                cwd=Path(__file__).resolve().parent.parent,
                start_new_session=True,  # not in any session it stops, nor signalled with the harness's group
            )
        assert _reaper.stdin is not None
        _reaper.stdin.write(f"{line}\n".encode())
        _reaper.stdin.flush()


def watch(*, session: int | None = None, pid: int | None = None) -> None:
    """Have the reaper stop, once this process has ended, every process of ``session`` (a session
    id: the pid of a process started with ``start_new_session=True``) or the process ``pid``.

    :raises ValueError: when neither or both are given, or ``session`` is this process's own.
    """
    if (session is None) == (pid is None):
        raise ValueError("give a session or a pid")
    if session is not None and session == os.getsid(0):
        raise ValueError(f"session {session} is this process's own: the reaper would stop what started the harness")
    _tell(f"session {session}" if session is not None else f"pid {pid}")


def forget(*, session: int | None = None, pid: int | None = None) -> None:
    """Undo :func:`watch` for what the harness has stopped itself."""
    if (session is None) == (pid is None):
        raise ValueError("give a session or a pid")
    if _reaper is not None:
        _tell(f"forget session {session}" if session is not None else f"forget pid {pid}")


def session_members(sid: int) -> list[int]:
    """Processes of the session ``sid`` alive now, zombies excluded (``/proc``)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if os.getsid(int(entry)) == sid and _alive(int(entry)):
                    found.append(int(entry))
            except (ProcessLookupError, PermissionError):
                pass
    return found


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _targets(sessions: set[int], pids: set[int]) -> set[int]:
    return {p for sid in sessions for p in session_members(sid)} | {p for p in pids if _alive(p)}


def _signal(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except (ProcessLookupError, PermissionError):
            pass


def main() -> int:
    """The reaper: read ``session <id>``, ``pid <id>`` and ``forget ...`` lines until end-of-file,
    then SIGTERM what is left of them, and SIGKILL what is still left :data:`GRACE_SECONDS` later."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C reaches the harness, which stops things itself
    sessions: set[int] = set()
    pids: set[int] = set()
    for raw in sys.stdin.buffer:
        words = raw.decode().split()
        forget_it = words[:1] == ["forget"]
        kind, ident = words[-2], int(words[-1])
        chosen = sessions if kind == "session" else pids
        (chosen.discard if forget_it else chosen.add)(ident)
    left = _targets(sessions, pids)
    if not left:
        return 0
    _signal(left, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_SECONDS
    while (left := _targets(sessions, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    _signal(left, signal.SIGKILL)
    return 0


if __name__ == "__main__":
    sys.exit(main())
