"""Run independent commands at once, each with its output in a log of its own; fail if any fails.

``.ci/run`` runs its test passes this way (two on a 2-core machine: much of a pass is waiting on
Airflow's scheduler). Each command runs under ``bash -c`` in its own process group, from the
current directory, with its output (stdout and stderr) in ``<logs>/<name>.log``, so passes never
interleave. When a command ends, its log is printed whole under a header and a line says how it
ended and how long it took; every few minutes a line names the commands still running. At the end,
one line per command, the failed ones last. On SIGINT or SIGTERM every command's process group is
stopped.

Run from the repository root::

    python tools/run_concurrently.py --logs /tmp/ci "py311=make test" "py312=make test-3.12"

Exit status: 0 when every command exited 0, else 1 (2 for a bad argument).
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Job:
    """One command: its name (the log's stem), command line, log file, process and times (monotonic seconds)."""

    name: str
    command: str
    log: Path
    proc: subprocess.Popen | None = None
    started: float = 0.0
    ended: float | None = None
    returncode: int | None = None
    _out: object = field(default=None, repr=False)

    def start(self) -> None:
        self._out = self.log.open("wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            ["bash", "-c", self.command],
            stdout=self._out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )

    def poll(self) -> bool:
        """Whether the command has ended (recording its exit status and end time)."""
        if self.returncode is None and self.proc.poll() is not None:
            self.returncode, self.ended = self.proc.returncode, time.monotonic()
            self._out.close()
        return self.returncode is not None

    def stop(self) -> None:
        """SIGTERM to the command's process group, SIGKILL 20 s later if anything of it is left."""
        if self.proc is None or self.returncode is not None:
            return
        for sig, wait in ((signal.SIGTERM, 20), (signal.SIGKILL, 5)):
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                return
            try:
                self.proc.wait(wait)
                return
            except subprocess.TimeoutExpired:
                continue

    @property
    def seconds(self) -> float:
        return (self.ended or time.monotonic()) - self.started


def parse_job(text: str, logs: Path) -> Job:
    """``NAME=COMMAND`` -> a :class:`Job` logging to ``logs/NAME.log``; raises ValueError on a bad name."""
    name, sep, command = text.partition("=")
    if not sep or not name or not command or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise ValueError(f"{text!r}: expected NAME=COMMAND, NAME of letters, digits, '.', '-' or '_'")
    return Job(name, command, logs / f"{name}.log")


def print_log(job: Job) -> None:
    status = "passed" if job.returncode == 0 else f"FAILED (exit {job.returncode})"
    print(f"\n======== {job.name}: {job.command}", flush=True)
    sys.stdout.buffer.write(job.log.read_bytes())
    print(f"======== {job.name} {status} in {job.seconds:.0f} s (log {job.log})", flush=True)


def run(jobs: list[Job], heartbeat: float) -> int:
    """Start every job, print each log as its job ends; return 0 when every job exited 0, else 1."""

    def stop_all(signum, _frame):
        print(f"\nsignal {signum}: stopping {', '.join(j.name for j in jobs if not j.poll())}", flush=True)
        for job in jobs:
            job.stop()
        sys.exit(128 + signum)

    signal.signal(signal.SIGTERM, stop_all)
    signal.signal(signal.SIGINT, stop_all)
    for job in jobs:
        job.start()
        print(f"started {job.name}: {job.command} (log {job.log})", flush=True)
    pending, next_beat = list(jobs), time.monotonic() + heartbeat
    while pending:
        time.sleep(1)
        for job in [j for j in pending if j.poll()]:
            pending.remove(job)
            print_log(job)
        if pending and time.monotonic() >= next_beat:
            print("still running: " + ", ".join(f"{j.name} ({j.seconds / 60:.0f} min)" for j in pending), flush=True)
            next_beat += heartbeat
    print("\nsummary:")
    for job in sorted(jobs, key=lambda j: j.returncode != 0):
        print(f"  {job.name}: {'passed' if job.returncode == 0 else f'FAILED (exit {job.returncode})'} in {job.seconds:.0f} s")
    failed = [j.name for j in jobs if j.returncode != 0]
    if failed:
        print(f"failed: {', '.join(failed)} (each log is printed above, whole)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--logs", type=Path, required=True, help="folder for the logs (created)")
    parser.add_argument("--heartbeat", type=float, default=300, help="seconds between 'still running' lines")
    parser.add_argument("jobs", nargs="+", metavar="NAME=COMMAND")
    args = parser.parse_args(argv)
    try:
        jobs = [parse_job(text, args.logs) for text in args.jobs]
    except ValueError as exc:
        parser.error(str(exc))
    if len({j.name for j in jobs}) != len(jobs):
        parser.error("two commands with one name would share a log")
    args.logs.mkdir(parents=True, exist_ok=True)
    return run(jobs, args.heartbeat)


if __name__ == "__main__":
    sys.exit(main())
