"""Child processes that die with the workspace, however it dies (kill -9 included).

Linux's parent-death signal (`prctl(PR_SET_PDEATHSIG)`) is the one mechanism that needs nothing from
the child: it survives `execve` (so it reaches the JVM behind `spark-submit`'s `exec` chain) and the
kernel sends it even when the parent was SIGKILLed. Its catch: it fires when the *thread* that forked
the child ends, not the process. The workspace starts processes from short-lived threads (a run's
worker, a cluster start), so every start goes through one long-lived thread here, which lives as long
as the process. A child whose parent died between `fork` and `prctl` would never get the signal: it
checks its parent after arming and exits at once if it was orphaned already.

The signal reaches only the process started here, not what *it* starts (the kernel clears it in
children). A process started with `start_new_session=True` leads a session its descendants stay in,
and that session is handed to the warden (warden.py), which SIGKILLs what is left of it when this
process dies.

Elsewhere than Linux `prctl` does not exist: processes start as plain `subprocess.Popen`.
"""

from __future__ import annotations

import ctypes
import os
import queue
import signal
import subprocess
import sys
import threading
from concurrent.futures import Future
from typing import Any

from aml_databricks.compute.host import warden

_PR_SET_PDEATHSIG = 1

_jobs: queue.SimpleQueue[tuple[Future[subprocess.Popen[Any]], tuple[Any, ...], dict[str, Any]]] = queue.SimpleQueue()
_thread: threading.Thread | None = None
_thread_lock = threading.Lock()
_thread_pid = 0  # the process the thread belongs to: a forked copy of this module must start its own


def _prctl() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()


def arm(sig: signal.Signals = signal.SIGKILL, expected_parent: int | None = None) -> None:
    """In a child (right after fork): get `sig` when the parent goes; exit now if it went already."""
    if _PRCTL is None:
        return
    _PRCTL(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    if expected_parent is not None and os.getppid() != expected_parent:
        os._exit(1)


def popen(*args: Any, death_signal: signal.Signals = signal.SIGKILL, **kwargs: Any) -> subprocess.Popen[Any]:
    """`subprocess.Popen(*args, **kwargs)`, started from the long-lived thread and armed with
    `death_signal` for when this process dies; with `start_new_session=True` its session is guarded
    too (warden.py). Raises what `Popen` raises."""
    if _PRCTL is None:
        return subprocess.Popen(*args, **kwargs)
    parent = os.getpid()
    kwargs["preexec_fn"] = lambda: arm(death_signal, parent)
    done: Future[subprocess.Popen[Any]] = Future()
    _jobs.put((done, args, kwargs))
    _ensure_thread()
    process = done.result()
    if kwargs.get("start_new_session"):
        warden.guard(process.pid)
    return process


def _ensure_thread() -> None:
    global _thread
    with _thread_lock:
        if _thread is None or not _thread.is_alive() or _thread_pid != os.getpid():
            _start_thread()


def _start_thread() -> None:
    global _thread, _thread_pid
    _thread = threading.Thread(target=_spawn_forever, name="lifeline-spawner", daemon=True)
    _thread_pid = os.getpid()
    _thread.start()


def _spawn_forever() -> None:
    while True:
        done, args, kwargs = _jobs.get()
        if not done.set_running_or_notify_cancel():
            continue
        try:
            done.set_result(subprocess.Popen(*args, **kwargs))
        except BaseException as error:  # handed to the caller's thread, which raises it
            done.set_exception(error)
