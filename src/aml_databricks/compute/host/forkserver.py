"""A warm parent for driver processes: the driver and pyspark's Connect client imported once, forked per run.

A new interpreter spends about a second importing pyspark's Connect client (pandas, pyarrow, grpc)
before a notebook's first cell can run; on a warm Spark server that is most of a short run. The
fork server imports all that once, then forks one child per task run. Each child becomes what a
fresh `python -m aml_databricks.compute.driver RUN_DIR` would be: a session and process group of its
own, stdout/stderr on the executor's pipe, the run's environment and working directory.

What a forked driver does not get from a fresh interpreter: variables read only at interpreter
start (PYTHONPATH — the driver puts `python_path` on sys.path itself —, PYTHONHASHSEED, ...).

A *standby* driver goes one step further for runs on Spark: forked before its run exists, it opens a
Spark Connect session on a warm server and runs one tiny query, then waits. The run handed to it
skips the session's set-up and the first query's extra cost in a new process (about 0.1 s of a warm
run's 0.3-0.8 s, benchmarks/local_run.py). The run's lease then uses the standby's session id.

Wire protocol (a SOCK_SEQPACKET socket pair, one message per request and per reply):
    executor -> server  {"run_dir", "cwd", "env"} with two descriptors: output pipe, secrets pipe
                        or {"standby": remote} with one descriptor: the standby's end of a socket pair
    server -> executor  {"pid"} with one descriptor: a pidfd of the child, to wait on and poll
    executor -> standby {"run_dir", "cwd", "env"} with output and secrets pipes, on that socket pair;
                        its end of the pair closing without a message dismisses the standby
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

from aml_databricks.compute.host import lifeline, procs, warden
from aml_databricks.compute.protocol import SECRET_FD_ENV

_MAX_MESSAGE = 1 << 20
_READY = b"ready"
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


class Standby:
    """A forked driver connected to a session on `remote`, waiting for the run it will become."""

    def __init__(self, remote: str, driver: ForkedDriver, channel: socket.socket) -> None:
        self.remote = remote
        self.driver = driver
        self._channel = channel
        self._ready = False

    @property
    def ready(self) -> bool:
        """Its session is open and warm. Until then a run is better off with a driver of its own: this
        one would first finish warming up, which costs about what it saves."""
        if not self._ready and select.select([self._channel], [], [], 0)[0]:
            self._ready = self._channel.recv(16) == _READY  # b"" (it has ended) stays not ready
        return self._ready and not self.driver.exited

    def hand_over(self, run_dir: str, cwd: str, env: dict[str, str], output_fd: int, secrets_fd: int
                  ) -> ForkedDriver:
        """Make the standby this run's driver; raises OSError when it has gone."""
        try:
            if self.driver.exited:
                raise OSError("the standby driver has ended")
            request = json.dumps({"run_dir": run_dir, "cwd": cwd, "env": env}).encode()
            socket.send_fds(self._channel, [request], [output_fd, secrets_fd])
        finally:
            self._channel.close()
        return self.driver

    def dismiss(self) -> None:
        """The standby sees its socket close, releases its session and exits."""
        self._channel.close()


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
        # SIGTERM when the workspace dies: `serve` turns it into an exit that ends every driver first.
        self._process = lifeline.popen(
            [sys.executable, "-m", "aml_databricks.compute.host.forkserver", str(theirs.fileno())],
            death_signal=signal.SIGTERM,
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
        return self._request({"run_dir": run_dir, "cwd": cwd, "env": env}, [output_fd, secrets_fd])

    def spawn_standby(self, remote: str) -> Standby:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            driver = self._request({"standby": remote}, [theirs.fileno()])
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return Standby(remote, driver, ours)

    def _request(self, request: dict[str, Any], fds: list[int]) -> ForkedDriver:
        with self._lock:
            if self._broken:
                raise RuntimeError("the driver fork server stopped answering")
            try:
                socket.send_fds(self._socket, [json.dumps(request).encode()], fds)
                reply, received, _, _ = socket.recv_fds(self._socket, _MAX_MESSAGE, 1)
            except OSError:
                self._broken = True  # a late reply would answer the next request: never reuse it
                raise
        if not reply or len(received) != 1:
            for fd in received:
                os.close(fd)
            raise RuntimeError("the driver fork server did not answer")
        pid = int(json.loads(reply)["pid"])
        # The fork server ends its drivers' process groups when the workspace dies; the warden ends the
        # rest of their sessions (a `%sh` child that made a process group of its own) and covers a fork
        # server killed outright.
        warden.guard(pid)
        return ForkedDriver(pid, received[0])

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
    from aml_databricks.compute.driver import runner

    with contextlib.suppress(ImportError):  # the heavy part a fresh driver would pay on every run
        import pyspark.sql.connect.session  # noqa: F401

        # what every Spark run imports next: here once, not compiled and run again in each driver
        import aml_databricks.compute.driver.samples_wait
        import aml_databricks.compute.driver.spark_session
        import aml_databricks.delta.notebook
        import aml_databricks.delta.sql  # noqa: F401  (imported when the run's session is set up)
    signal.signal(signal.SIGTERM, _exit_on_signal)  # the workspace died: end the drivers (finally) and go
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the drivers; pidfds still report their end
    children: dict[int, int] = {}  # pid -> pidfd of each driver still running
    try:
        _serve(channel, children, runner.main)
    finally:
        # The executor is gone (closed, or its process died): no driver may outlive it unwatched.
        for pid, pidfd in children.items():
            if not select.select([pidfd], [], [], 0)[0]:
                procs.send(pid, signal.SIGKILL, group=True)


def _exit_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


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
        server_pid = os.getpid()
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            lifeline.arm(signal.SIGKILL, server_pid)  # a fork server killed outright takes its drivers
            channel.close()
            for pidfd in children.values():
                os.close(pidfd)
            if "standby" in request:
                _become_standby(request["standby"], fds[0], main)
            _become_driver(request, fds[0], fds[1], main)
        for fd in fds:
            os.close(fd)
        pidfd = os.pidfd_open(pid)  # before the child can end and its pid be reused
        children[pid] = pidfd
        socket.send_fds(channel, [json.dumps({"pid": pid}).encode()], [pidfd])


def _become_standby(remote: str, channel_fd: int, main: Any) -> None:
    """Open and warm a session on `remote`, then wait for a run; dismissed (socket closed): exit."""
    code = 0
    try:
        os.setsid()  # its own process group from the start: a cancel of its run ends it all
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, 1)  # pyspark's warnings while warming belong to no run's log
        os.dup2(devnull, 2)
        os.close(devnull)
        session = _warm_session(remote)
        channel = socket.socket(fileno=channel_fd)
        channel.send(_READY)  # also when warming failed: its run then opens the session itself
        message, fds, _, _ = socket.recv_fds(channel, _MAX_MESSAGE, 2)
        channel.close()
        if message and len(fds) == 2:
            _become_driver(json.loads(message), fds[0], fds[1], main)
        if session is not None:  # dismissed: give the session back to the server
            with contextlib.suppress(Exception):
                session.stop()
    finally:
        os._exit(code)


def _warm_session(remote: str) -> Any:
    """The session the driver's `SparkSession.builder.remote(remote).getOrCreate()` will find, after
    one query; None if the server did not answer (the driver then opens its session itself)."""
    os.environ["SPARK_REMOTE"] = remote
    try:
        from pyspark.sql import SparkSession

        session = SparkSession.builder.remote(remote).getOrCreate()
    except Exception:
        return None
    try:
        session.range(1).count()
    except Exception:
        with contextlib.suppress(Exception):
            session.stop()  # a session that failed its query must not be the one the driver finds
        return None
    return session


def _become_driver(request: dict[str, Any], output_fd: int, secrets_fd: int, main: Any) -> None:
    code = 1
    try:
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)  # subprocess in the task needs exit statuses
        if os.getsid(0) != os.getpid():  # a standby already leads its own session
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
