"""Spark's Python worker daemons, forked from one warm process instead of started from scratch.

Why: the Spark Connect server gives every session its own Python worker daemons (the session's
artifact id is part of the worker factory's key), one per worker module a query needs: a Delta
write through our Python data source (delta/source.py) starts five (`lookup_data_sources`,
`create_data_source`, `write_into_data_source`, `commit_data_source_write`, `pyspark.worker`). Each
is a new interpreter importing pyspark, pandas, pyarrow and the data source: a run's first Delta
write and read took 8-9 s of a 9 s run (benchmarks/local_run.py), and every run starts a new session.

How: the server's Python (`PYSPARK_PYTHON`) is a small script, `interpreter_script()`, that runs
`python -m pyspark.daemon WORKER_MODULE` as a *stub* and anything else as plain Python (the data
source planners name `pyspark.daemon` themselves, so `spark.python.daemon.module` does not reach
them). The stub imports almost nothing: it hands its
stdin/stdout/stderr, environment, working directory and arguments over a Unix socket to the *warm
parent* (`--serve`), which has all of the above imported and forks a child that runs pyspark's own
daemon (`pyspark.daemon.manager`) on those descriptors, exactly as the stub would have. The stub
waits for that child and passes SIGTERM on. What Spark sees is unchanged: the port on stdout, the
daemon ending when its stdin closes, workers forked per task.

Safety: without a warm parent (not started yet, gone, refused) the stub runs pyspark's daemon
itself, as before. The socket is abstract (no file), and the parent serves only its own user
(SO_PEERCRED). The warm parent ends when the server's JVM does; it is started in a session of its
own by the host (compute/host/jvm.py), so the warden ends it and its children if the workspace dies.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import struct
import sys
from typing import Any

SOCKET_ENV = "AML_DATABRICKS_PYWORKERS"  # the warm parent's abstract socket name, for the stubs
_MAX_MESSAGE = 1 << 20

# What a worker process of a Delta or UDF query imports: here once, in the warm parent.
_PRELOAD = (
    "pyspark.daemon",
    "pyspark.worker",
    "pyspark.sql.worker.lookup_data_sources",
    "pyspark.sql.worker.create_data_source",
    "pyspark.sql.worker.plan_data_source_read",
    "pyspark.sql.worker.write_into_data_source",
    "pyspark.sql.worker.commit_data_source_write",
    "pyspark.sql.worker.analyze_udtf",
    "pyspark.sql.pandas.serializers",
    "aml_databricks.delta.source",
)


# --- the stub: what the Spark server starts -------------------------------------------------------


def interpreter_script() -> str | None:
    """The text of the `PYSPARK_PYTHON` executable for a server; None where a `#!` line can't name
    this interpreter (a path with spaces): the server then uses it directly."""
    if " " in sys.executable or len(sys.executable) > 120:
        return None
    return (
        f"#!{sys.executable}\n"
        "# The Spark server's Python: its worker daemons come from a warm parent (aml_databricks.compute.pyworkers).\n"
        "import os, sys\n"
        "if sys.argv[1:3] == ['-m', 'pyspark.daemon']:\n"
        "    from aml_databricks.compute.pyworkers import stub\n"
        "    stub(sys.argv[3:])\n"
        "else:\n"
        "    os.execv(sys.executable, [sys.executable, *sys.argv[1:]])\n"
    )


def stub(argv: list[str]) -> None:
    """Be the pyspark daemon for `WORKER_MODULE` (`argv`): through the warm parent if there is one."""
    name = os.environ.get(SOCKET_ENV)
    child = _hand_over(name, argv) if name else None
    if child is None:
        _run_pyspark_daemon(argv)  # no warm parent: be the daemon, as Spark's default would
        return
    signal.signal(signal.SIGTERM, lambda *_: _forward(child, signal.SIGTERM))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):  # the daemon has them now: its exit alone must end Spark's reads
        os.dup2(devnull, fd)
    os.close(devnull)
    try:
        pidfd = os.pidfd_open(child)
    except OSError:
        return  # it has ended already
    while True:
        with contextlib.suppress(InterruptedError):
            if select.select([pidfd], [], [])[0]:
                return


def _hand_over(name: str, argv: list[str]) -> int | None:
    """The pid of the daemon the warm parent forked for us, or None if there is no warm parent."""
    request = json.dumps({"argv": argv, "env": dict(os.environ), "cwd": os.getcwd()}).encode()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
            channel.connect("\0" + name)
            socket.send_fds(channel, [request], [0, 1, 2])
            channel.shutdown(socket.SHUT_WR)
            answer = b"".join(iter(lambda: channel.recv(4096), b""))
        return int(json.loads(answer)["pid"])
    except (OSError, ValueError, KeyError):
        return None


def _forward(pid: int, signum: int) -> None:
    with contextlib.suppress(OSError):
        os.kill(pid, signum)


def _run_pyspark_daemon(argv: list[str]) -> None:
    sys.argv = [sys.argv[0], *argv]
    from pyspark import daemon

    daemon.manager()


# --- the warm parent ------------------------------------------------------------------------------


def serve(name: str, jvm_pid: int) -> None:
    """Fork a pyspark daemon for each stub that asks, until the JVM `jvm_pid` ends."""
    # pyspark's daemon leads a process group of its own and SIGHUPs it when it stops
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the daemons
    try:
        jvm = os.pidfd_open(jvm_pid)
    except OSError:
        return  # the server is gone already
    _preload()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind("\0" + name)
    listener.listen(64)
    # a pidfd per daemon -> the server-side session it serves: a pidfd, not a pid, since the kernel
    # reaps the daemons and a pid may be another process's by the time its session is released
    sessions: dict[int, str] = {}
    while True:
        ready = select.select([listener.fileno(), jvm], [], [])[0]
        if jvm in ready:
            return
        _forget_ended(sessions)
        channel, _ = listener.accept()
        with channel:
            if _peer_uid(channel) != os.getuid():
                continue
            message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 3)
            try:
                request = json.loads(message)
            except ValueError:
                request = None
            if not isinstance(request, dict) or len(fds) != 3:  # a release, or nothing we know
                for fd in fds:
                    os.close(fd)
                if isinstance(request, dict) and not fds:
                    _end_daemons_of(request.get("released"), sessions)
                continue
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                listener.close()
                os.close(jvm)
                channel.close()  # the stub reads until the parent's answer ends
                _become_daemon(request, fds)
            for fd in fds:
                os.close(fd)
            with contextlib.suppress(OSError):  # it may have ended already
                sessions[os.pidfd_open(pid)] = request.get("env", {}).get("SPARK_JOB_ARTIFACT_UUID", "default")
            with contextlib.suppress(OSError):
                channel.sendall(json.dumps({"pid": pid}).encode())


def release(name: str, server_session_id: str) -> None:
    """Tell the warm parent `name` that a server-side session is gone: its daemons and their idle
    workers end. The server keeps every session's daemons until it stops, and no later session
    ever uses them (about 200 MB per session that ran Delta or a Python UDF)."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as channel:
        channel.settimeout(2)
        channel.connect("\0" + name)
        channel.sendall(json.dumps({"released": server_session_id}).encode())


def _end_daemons_of(session: object, sessions: dict[int, str]) -> None:
    if not isinstance(session, str) or session == "default":
        return  # the server's own daemons serve every session
    for pidfd in [pidfd for pidfd, owner in sessions.items() if owner == session]:
        del sessions[pidfd]
        with contextlib.suppress(OSError):  # pyspark's daemon stops its workers on SIGTERM
            signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        os.close(pidfd)


def _forget_ended(sessions: dict[int, str]) -> None:
    """Close the pidfds of daemons that have ended (Spark stopped them, or they crashed)."""
    poller = select.poll()  # not select(): many daemons' pidfds may pass FD_SETSIZE
    for pidfd in sessions:
        poller.register(pidfd, select.POLLIN)
    for pidfd, _ in poller.poll(0):
        del sessions[pidfd]
        os.close(pidfd)


def _preload() -> None:
    import importlib

    for module in _PRELOAD:
        with contextlib.suppress(Exception):
            importlib.import_module(module)


def _peer_uid(channel: socket.socket) -> int:
    credentials = channel.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    uid: int = struct.unpack("3i", credentials)[1]
    return uid


def _become_daemon(request: dict[str, Any], fds: list[int]) -> None:
    code = 1
    try:
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        for signum in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM):
            signal.signal(signum, signal.SIG_DFL)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for entry in reversed(os.environ.get("PYTHONPATH", "").split(os.pathsep)):
            if entry and entry not in sys.path:
                sys.path.insert(0, entry)
        _run_pyspark_daemon(request["argv"])
        code = 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else 1
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


if __name__ == "__main__":  # python -m aml_databricks.compute.pyworkers NAME JVM_PID
    serve(sys.argv[1], int(sys.argv[2]))
