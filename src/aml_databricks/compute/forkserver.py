"""A warm parent for driver processes: the driver and pyspark's Connect client imported once, forked per run.

A new interpreter spends about a second importing pyspark's Connect client (pandas, pyarrow, grpc)
before a notebook's first cell can run; on a warm Spark server that is most of a short run. The
fork server imports all that once, then forks one child per task run. Each child becomes what a
fresh `python -m aml_databricks.compute.driver RUN_DIR` would be: a session and process group of its
own, stdout/stderr on the executor's pipe, the run's environment and working directory.

What a forked driver does not get from a fresh interpreter: variables read only at interpreter
start (PYTHONPATH — the driver puts `python_path` on sys.path itself —, PYTHONHASHSEED, ...).

Wire protocol (a SOCK_SEQPACKET socket pair, one message per request and per reply):
    executor -> server  {"run_dir", "cwd", "env"} with two descriptors: output pipe, secrets pipe
    server -> executor  {"pid"} with one descriptor: a pidfd of the child, to wait on and poll
No grpc channel exists in the server when it forks, which is what makes forking safe here.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from aml_databricks.compute.redaction import SECRET_FD_ENV

_MAX_MESSAGE = 1 << 20
SPAWN_TIMEOUT_S = 60.0


class ForkedDriver:
    """The subset of `subprocess.Popen` the executor uses, for a process that is not our child.

    Its exit status belongs to the fork server (it reaps it), so `returncode` stays None.
    """

    def __init__(self, pid: int, pidfd: int) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._pidfd = pidfd
        self._exited = False
        self._lock = threading.Lock()

    def poll(self) -> int | None:
        self._check(0)
        return None

    def wait(self, timeout: float | None = None) -> int | None:
        if not self._check(timeout):
            raise subprocess.TimeoutExpired(f"driver {self.pid}", timeout or 0)
        return None

    @property
    def exited(self) -> bool:
        return self._check(0)

    def _check(self, timeout: float | None) -> bool:
        with self._lock:
            if self._exited:
                return True
            # Each waiter selects on its own duplicate: another thread may see the exit first and
            # close the original, and a closed (or reused) descriptor must never reach select().
            pidfd = os.dup(self._pidfd)
        try:
            # A pidfd turns readable when its process ends.
            ended = bool(select.select([pidfd], [], [], timeout)[0])
        finally:
            os.close(pidfd)
        if ended:
            with self._lock:
                if not self._exited:
                    self._exited = True
                    os.close(self._pidfd)
        return ended


class DriverForkServer:
    """The executor's handle on the fork server process."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self._socket = ours
        # The first request waits for the server's imports; a server stuck longer than this is given up
        # (the executor then starts the driver from scratch).
        self._socket.settimeout(SPAWN_TIMEOUT_S)
        self._lock = threading.Lock()
        self._broken = False
        self._process = subprocess.Popen(
            [sys.executable, "-m", "aml_databricks.compute.forkserver", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            start_new_session=True,  # a Ctrl-C meant for the workspace must not hit the forked drivers
        )
        theirs.close()

    @property
    def alive(self) -> bool:
        return not self._broken and self._process.poll() is None

    def spawn(self, run_dir: str, cwd: str, env: dict[str, str], output_fd: int, secrets_fd: int) -> ForkedDriver:
        request = json.dumps({"run_dir": run_dir, "cwd": cwd, "env": env}).encode()
        with self._lock:
            if self._broken:
                raise RuntimeError("the driver fork server stopped answering")
            try:
                socket.send_fds(self._socket, [request], [output_fd, secrets_fd])
                reply, fds, _, _ = socket.recv_fds(self._socket, _MAX_MESSAGE, 1)
            except OSError:
                self._broken = True  # a late reply would answer the next request: never reuse it
                raise
        if not reply or len(fds) != 1:
            for fd in fds:
                os.close(fd)
            raise RuntimeError("the driver fork server did not answer")
        return ForkedDriver(int(json.loads(reply)["pid"]), fds[0])

    def close(self) -> None:
        self._socket.close()  # the server's read sees the end and it exits; forked drivers go on
        try:
            self._process.wait(5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


# --- the server process ------------------------------------------------------------------------------


def serve(fd: int) -> None:
    channel = socket.socket(fileno=fd)
    from aml_databricks.compute import driver

    with contextlib.suppress(ImportError):  # the heavy part a fresh driver would pay on every run
        import pyspark.sql.connect.session  # noqa: F401
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the drivers; pidfds still report their end
    children: dict[int, int] = {}  # pid -> pidfd of each driver still running
    try:
        _serve(channel, children, driver.main)
    finally:
        # The executor is gone (closed, or its process died): no driver may outlive it unwatched.
        for pid, pidfd in children.items():
            if not select.select([pidfd], [], [], 0)[0]:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


def _serve(channel: socket.socket, children: dict[int, int], main: Any) -> None:
    while True:
        try:
            message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 2)
        except OSError:
            return
        if not message:
            return  # the executor closed its end
        for pid, pidfd in list(children.items()):  # forget drivers that have ended
            if select.select([pidfd], [], [], 0)[0]:
                os.close(children.pop(pid))
        request = json.loads(message)
        output_fd, secrets_fd = fds
        pid = os.fork()
        if pid == 0:
            channel.close()
            for pidfd in children.values():
                os.close(pidfd)
            _become_driver(request, output_fd, secrets_fd, main)
        os.close(output_fd)
        os.close(secrets_fd)
        pidfd = os.pidfd_open(pid)  # before the child can end and its pid be reused
        children[pid] = pidfd
        socket.send_fds(channel, [json.dumps({"pid": pid}).encode()], [pidfd])


def _become_driver(request: dict[str, Any], output_fd: int, secrets_fd: int, main: Any) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # subprocess in the task needs exit statuses
        os.setsid()
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        os.close(output_fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ[SECRET_FD_ENV] = str(secrets_fd)
        _reseed_random()
        code = main([request["run_dir"]])
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        os._exit(code)


def _reseed_random() -> None:
    """Forked children would otherwise share the server's random state."""
    import random

    random.seed()
    numpy_random = sys.modules.get("numpy.random")
    if numpy_random is not None:
        numpy_random.seed()


if __name__ == "__main__":
    serve(int(sys.argv[1]))
