"""One process owns a data dir: `workspace serve` twice, kill -9 and take-over, and borrowing from Python."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from aml_databricks.workspace import LocalWorkspace
from aml_databricks.workspace.lock import SERVER_FILE, WorkspaceInUseError


def serve_command(data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "aml_databricks.cli", "workspace", "serve", "--no-spark", "--port", "0",
            "--data-dir", str(data_dir)]


@pytest.fixture
def serves() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def start_serve(data_dir: Path, started: list[subprocess.Popen[str]]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(serve_command(data_dir), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                               text=True, start_new_session=True)
    started.append(process)
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("Local Databricks workspace at "):
            return process, line.split(" at ")[1].strip()
    raise AssertionError(f"serve did not start: exit {process.wait()}")


def test_a_second_serve_on_the_same_data_dir_exits_with_one_line_naming_the_first(
    tmp_path: Path, serves: list[subprocess.Popen[str]]
) -> None:
    data_dir = tmp_path / "data"
    first, host = start_serve(data_dir, serves)
    second = subprocess.run(serve_command(data_dir), capture_output=True, text=True, timeout=60)
    assert second.returncode == 2
    assert second.stderr.splitlines() == [
        f"aml-databricks: error: {data_dir} is already served by the workspace at {host} (pid {first.pid}); "
        "stop it first or use another --data-dir"
    ]
    assert second.stdout == ""
    # the refused serve left the first one's server.json alone, and the first still answers
    assert f'"pid": {first.pid}' in (data_dir / SERVER_FILE).read_text()
    assert first.poll() is None


def test_after_kill_9_a_new_serve_takes_the_data_dir_over(tmp_path: Path, serves: list[subprocess.Popen[str]]) -> None:
    data_dir = tmp_path / "data"
    first, _ = start_serve(data_dir, serves)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    assert (data_dir / SERVER_FILE).exists()  # left behind by the dead owner: stale, not live
    second, second_host = start_serve(data_dir, serves)
    with LocalWorkspace(data_dir, spark=False, say=lambda line: None) as borrower:
        assert borrower.borrowed is not None
        assert (borrower.host, borrower.borrowed.pid) == (second_host, second.pid)
    # the stopped owner withdraws its server.json; a stop by SIGTERM ends cleanly
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0
    assert not (data_dir / SERVER_FILE).exists()


def test_a_local_workspace_borrows_the_running_one_and_puts_its_mounts_back(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    said: list[str] = []
    with LocalWorkspace(data_dir, spark=False, mounts={"/mnt/azuremlblobstore": tmp_path / "served"}) as owner:
        with LocalWorkspace(data_dir, spark=False, say=said.append,
                            mounts={"/mnt/azuremlblobstore": tmp_path / "mine", "/mnt/extra": tmp_path / "x"}) as ws:
            running = f"{owner.host} (pid {os.getpid()})"
            assert said == [f"using the local workspace already running on {data_dir}: {running}"]
            assert ws.host == owner.host and ws.token == owner.token
            assert ws.client.workspace.get_status("/").path == "/"
            assert {p: local for p, (_, local) in owner.store.mounts().items()} == {
                "/mnt/azuremlblobstore": str(tmp_path / "mine"), "/mnt/extra": str(tmp_path / "x")}
        assert {p: local for p, (_, local) in owner.store.mounts().items()} == {
            "/mnt/azuremlblobstore": str(tmp_path / "served")}
        assert (data_dir / SERVER_FILE).exists()  # the borrower never removes the owner's file

        with pytest.raises(WorkspaceInUseError, match=re.escape(f"{owner.host} (pid {os.getpid()})")):
            LocalWorkspace(data_dir, spark=False, if_running="fail").start()
        with pytest.raises(WorkspaceInUseError, match="served without Spark"):
            LocalWorkspace(data_dir, spark=True).start()


def test_a_local_workspace_has_spark_by_default_like_serve(tmp_path: Path) -> None:
    from aml_databricks.compute.host.jvm import jvm_pids
    from aml_databricks.compute.host.pool import ClusterPool

    with LocalWorkspace(tmp_path / "data") as ws:  # no JVM yet: Spark starts with the first run
        assert isinstance(ws.spark, ClusterPool)
        assert [c.cluster_id for c in ws.client.clusters.list()] == ["local"]
    assert jvm_pids(tmp_path / "data") == []
