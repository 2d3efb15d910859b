"""The warden: a small process that ends the workspace's sessions of processes when the workspace dies.

The parent-death signal (lifeline.py) reaches only the processes the workspace starts itself: the
kernel clears it in their children. A driver killed by it leaves what *it* started — a `%sh sleep 1000 &`,
a `subprocess.Popen` of a Python-file task, `pip` under a notebook — reparented to PID 1, alive. Every
process the workspace starts leads a session of its own (`start_new_session`, or `setsid` in a forked
driver), and its descendants stay in that session unless they call `setsid` themselves (a daemon does;
`&`, `nohup`, job control and `setpgid` do not). So the workspace tells the warden the id of each
session it starts, and the warden, when the workspace is gone, SIGKILLs every process still in one
of them.

The warden learns that the workspace is gone without any signal: its stdin is a pipe whose only
writer is the workspace, and the kernel closes it however the workspace ends, kill -9 included. It
is not armed with a parent-death signal (it must outlive the workspace for that moment); it ignores
SIGINT and SIGHUP and leads its own session, so a Ctrl-C or a closed terminal meant for the
workspace does not end it first.

A session id is a pid: once every process of a session has ended, a stranger may lead a new session
with that number. The warden forgets sessions that have emptied (checked on each new session and every
PRUNE_S), and keeps each leader's start time: a live leader with another start time is a stranger,
and its session is left alone.

The process side runs as a script (`python -I -S warden.py`, standard library only: a start costs
about 20 ms); the workspace side is `guard(session_id)`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import subprocess
import sys
import threading
from pathlib import Path

PRUNE_S = 10.0
log = logging.getLogger(__name__)

# --- the workspace side ------------------------------------------------------------------------------

_lock = threading.Lock()
_warden: subprocess.Popen[bytes] | None = None
_warden_pid = 0  # the process that started it: a forked copy of this module must start its own


def guard(session_id: int) -> None:
    """Have the session led by `session_id` SIGKILLed when this process dies. Linux only; elsewhere
    (no /proc) nothing is guarded. A warden that can't be started is logged, never raised: the run goes on."""
    if not sys.platform.startswith("linux"):
        return
    global _warden, _warden_pid
    with _lock:
        for attempt in range(2):
            if _warden is None or _warden_pid != os.getpid() or _warden.poll() is not None:
                if _warden is not None and _warden_pid == os.getpid():
                    log.warning("the process warden ended (exit %s): starting another; sessions it guarded "
                                "are no longer guarded", _warden.poll())
                try:
                    _warden = _start()
                except OSError as error:
                    log.warning("the process warden did not start (%s): session %d is not guarded",
                                error, session_id)
                    return
                _warden_pid = os.getpid()
            try:
                assert _warden.stdin is not None
                _warden.stdin.write(b"%d\n" % session_id)
                _warden.stdin.flush()
                return
            except (BrokenPipeError, ValueError):
                _warden = None  # it ended between the check and the write: start another once
                if attempt:
                    log.warning("the process warden is not answering: session %d is not guarded", session_id)


def _start() -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-I", "-S", str(Path(__file__).resolve())],
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C or hang-up for the workspace's group must not end it first
    )


# --- the warden process ------------------------------------------------------------------------------


def _stat(pid: int | str) -> list[str] | None:
    """Fields 3.. of /proc/<pid>/stat (after the command name, which may hold spaces), or None if gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _start_time(pid: int) -> str | None:
    fields = _stat(pid)
    return fields[19] if fields is not None else None  # field 22: start time, in clock ticks since boot


def _members() -> dict[int, list[int]]:
    """session id -> pids of the live processes in it (zombies have ended already)."""
    found: dict[int, list[int]] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        fields = _stat(entry.name)
        if fields is not None and fields[0] != "Z":
            found.setdefault(int(fields[3]), []).append(int(entry.name))
    return found


def _ours(sessions: dict[int, str | None], members: dict[int, list[int]]) -> set[int]:
    """Sessions still ours: not empty, and not led by a stranger with a reused pid."""
    kept = set()
    for session, started in sessions.items():
        if session not in members:
            continue
        leader = _start_time(session)
        if leader is not None and started is not None and leader != started:
            continue
        kept.add(session)
    return kept


def _prune(sessions: dict[int, str | None]) -> None:
    kept = _ours(sessions, _members())
    for session in list(sessions):
        if session not in kept:
            del sessions[session]


def _end(sessions: dict[int, str | None]) -> None:
    """SIGKILL every process of the guarded sessions; again while a fork raced the previous pass."""
    me = os.getpid()
    for _ in range(5):
        members = _members()
        doomed = [pid for session in _ours(sessions, members) for pid in members[session] if pid != me]
        if not doomed:
            return
        for pid in doomed:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    sessions: dict[int, str | None] = {}
    pending = b""
    while True:
        if not select.select([0], [], [], PRUNE_S)[0]:
            _prune(sessions)
            continue
        data = os.read(0, 65536)
        if not data:
            break  # the workspace has ended, however it ended
        lines = (pending + data).split(b"\n")
        pending = lines.pop()
        _prune(sessions)
        for line in lines:
            if line.strip().isdigit():
                session = int(line)
                sessions[session] = _start_time(session)
    _end(sessions)


if __name__ == "__main__":
    main()
