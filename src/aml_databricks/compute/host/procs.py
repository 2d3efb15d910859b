"""Processes the host starts and ends: signal then kill, and finding ours by their command line.

One helper for what the executor (a driver's process group), the pool (a Spark JVM) and the fork
server (drivers left when the host went away) each did their own way. Linux `/proc` is the only
process table read (psutil is not a dependency of the `local` install); elsewhere scans find nothing.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path
from typing import Protocol


class Waitable(Protocol):
    """What `stop` needs of a process: `subprocess.Popen`, or a forked driver that is not our child."""

    pid: int

    def wait(self, timeout: float | None = None) -> int | None: ...


def stop(process: Waitable, grace_s: float, *, group: bool = False, kill_wait_s: float | None = None) -> None:
    """SIGTERM, up to `grace_s` to end, then SIGKILL; reaps it. `group`: signal its whole process group,
    and once the leader is gone kill what is left of it (children that ignored SIGTERM must not outlive it).
    """
    for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, grace_s if kill_wait_s is None else kill_wait_s)):
        send(process.pid, sig, group=group)
        try:
            process.wait(wait_s)
        except subprocess.TimeoutExpired:
            continue
        if group:
            send(process.pid, signal.SIGKILL, group=True)
        return


def send(pid: int, sig: signal.Signals, *, group: bool = False) -> None:
    """A signal to a process (or its group) that may be gone already."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if group:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def command_lines(marker: str) -> dict[int, list[str]]:
    """pid -> arguments of every process whose command line contains `marker`."""
    found: dict[int, list[str]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            args = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:
            continue
        if any(marker in arg for arg in args):
            found[int(entry.name)] = args
    return found
