"""The Spark server's Python: `-m pyspark.daemon X` becomes pyspark's real daemon, forked from the warm
parent when there is one and started the usual way when there is not; anything else is plain Python.

Driven as the JVM drives it: the server's interpreter script run with the daemon's arguments and
environment, the port read from its stdout, the daemon stopped by closing its stdin.
"""

from __future__ import annotations

import os
import socket
import struct
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from aml_databricks.compute import pyworkers

pytestmark = [pytest.mark.subprocess, pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc")]


@pytest.fixture
def server_python(tmp_path: Path) -> Path:
    script = pyworkers.interpreter_script()
    assert script is not None
    path = tmp_path / "python"
    path.write_text(script)
    path.chmod(0o700)
    return path


@pytest.fixture
def warm_parent() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    # The parent ends when the process it watches (the JVM; here this test's own `sleep`) does.
    jvm = subprocess.Popen(["sleep", "300"])
    name = f"test-pyworkers-{uuid.uuid4().hex}"
    parent = subprocess.Popen([sys.executable, "-m", pyworkers.__name__, name, str(jvm.pid)])
    try:
        wait_for_listener(name)
        yield name, parent
    finally:
        jvm.kill()
        jvm.wait()
        assert parent.wait(10) == 0, "the warm parent outlived the JVM it serves"


def wait_for_listener(name: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            try:
                probe.connect("\0" + name)
                return
            except OSError:
                time.sleep(0.05)
    raise AssertionError("the warm parent never listened")


def start_daemon(server_python: Path, socket_name: str, session: str = "default"
                 ) -> tuple[subprocess.Popen[bytes], int]:
    env = {**os.environ, pyworkers.SOCKET_ENV: socket_name, "PYTHON_WORKER_FACTORY_SECRET": "s3cret",
           "SPARK_JOB_ARTIFACT_UUID": session}
    stub = subprocess.Popen([str(server_python), "-m", "pyspark.daemon", "pyspark.worker"], env=env,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert stub.stdout is not None
    port = struct.unpack("!i", stub.stdout.read(4))[0]  # what pyspark's daemon tells the JVM first
    return stub, port


def listener_pid(port: int) -> int:
    inode = next(line.split()[9] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if int(line.split()[1].split(":")[1], 16) == port and line.split()[3] == "0A")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]" for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    raise AssertionError(f"nothing listens on {port}")


def parent_of(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_daemon_is_forked_from_the_warm_parent_and_ends_when_its_stdin_closes(
    server_python: Path, warm_parent: tuple[str, subprocess.Popen[bytes]]
) -> None:
    name, parent = warm_parent
    stub, port = start_daemon(server_python, name)
    daemon = listener_pid(port)

    assert parent_of(daemon) == parent.pid  # not a new interpreter importing pyspark again
    assert stub.stdin is not None
    stub.stdin.close()  # how Spark stops a daemon
    assert stub.wait(10) == 0
    deadline = time.monotonic() + 10
    while Path(f"/proc/{daemon}").exists() and parent_of(daemon) == parent.pid:
        assert time.monotonic() < deadline, "the daemon outlived its stdin"
        time.sleep(0.05)


def test_a_released_sessions_daemons_end_and_other_sessions_keep_theirs(
    server_python: Path, warm_parent: tuple[str, subprocess.Popen[bytes]]
) -> None:
    name, _ = warm_parent
    released, _ = start_daemon(server_python, name, session="session-a")
    kept, _ = start_daemon(server_python, name, session="session-b")

    pyworkers.release(name, "session-a")

    assert released.wait(10) == 0  # the stub ends with its daemon
    assert kept.poll() is None
    assert kept.stdin is not None
    kept.stdin.close()
    assert kept.wait(10) == 0


def test_without_a_warm_parent_the_daemon_starts_the_usual_way(server_python: Path) -> None:
    stub, port = start_daemon(server_python, f"nobody-listens-{uuid.uuid4().hex}")

    assert listener_pid(port) == stub.pid
    assert stub.stdin is not None
    stub.stdin.close()
    stub.wait(10)  # pyspark's daemon exits 1 on a stop, its `finally` runs its shutdown twice


def test_anything_else_is_plain_python(server_python: Path) -> None:
    result = subprocess.run([str(server_python), "-c", "import sys; print(sys.argv[1:], 6 * 7)", "x"],
                            capture_output=True, text=True, timeout=60)

    assert (result.returncode, result.stdout) == (0, "['x'] 42\n")
