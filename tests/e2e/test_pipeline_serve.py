"""`pipeline run` next to a running `workspace serve` on the same data dir, and stopping a pipeline
at random moments.

One served workspace (with Spark) is shared by the module: the pipeline must use it (no second
Spark, no Derby clash) and give its mount back; then it is stopped at random moments, most of them
against this warm workspace, a few from a cold data dir of its own.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient

from aml_databricks.compute.host.jvm import jvm_pids

pytestmark = pytest.mark.spark
pytest.importorskip("azure.ai.ml")
pytest.importorskip("mlflow")

ROOT = Path(__file__).resolve().parents[2]
PIPELINE = ROOT / "examples" / "pipeline" / "pipeline.yml"
CLI = [str(Path(sys.executable).parent / "aml-databricks")]
STOP_BOUND_S = 10.0  # the promise: any stop ends the command within 10 s


@dataclass
class Served:
    data_dir: Path
    host: str
    pid: int
    client: WorkspaceClient


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    folder = tmp_path_factory.mktemp("served")
    data_dir = folder / "data"
    process = subprocess.Popen(
        [*CLI, "workspace", "serve", "--port", "0", "--data-dir", str(data_dir),
         "--mount", f"/mnt/azuremlblobstore={folder / 'served-datastore'}"],
        cwd=folder, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, start_new_session=True,
    )
    try:
        assert process.stdout is not None
        host = next(line.split(" at ")[1].strip() for line in process.stdout
                    if line.startswith("Local Databricks workspace at "))
        threading.Thread(target=process.stdout.read, daemon=True).start()  # keep its pipe drained
        token = (data_dir / "token").read_text().strip()
        yield Served(data_dir, host, process.pid, WorkspaceClient(host=host, token=token, auth_type="pat"))
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert jvm_pids(data_dir) == [], "the served workspace's Spark outlived it"


def mounts(served: Served) -> dict[str, str]:
    listed = served.client.api_client.do("GET", "/api/2.0/local/mounts")
    assert isinstance(listed, dict)
    return {m["mountPoint"]: m["local_path"] for m in listed["mounts"]}


def test_the_pipeline_uses_the_served_workspace_and_gives_its_mount_back(served: Served) -> None:
    before = mounts(served)
    result = subprocess.run([*CLI, "pipeline", "run", str(PIPELINE), "--data-dir", str(served.data_dir)],
                            capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    assert (f"using the local workspace already running on {served.data_dir}: {served.host} (pid {served.pid})"
            in result.stdout.splitlines())
    assert "started a local Databricks workspace" not in result.stdout
    assert "[train] accuracy: " in result.stdout
    assert len(jvm_pids(served.data_dir)) == 1  # the served workspace's own Spark, no second one
    assert mounts(served) == before  # the pipeline's datastore mount was lent, then put back
    exported = list((served.data_dir / "datastore" / "azureml").glob("*/output_path/*.parquet"))
    assert exported, "the notebook's parquet landed in the pipeline's datastore"


# --- stopping at random moments ------------------------------------------------------------------


def descendants(pid: int) -> set[tuple[int, str]]:
    """(pid, start time) of every live process below `pid`, whatever session it moved to."""
    parents: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents.setdefault(int(fields[1]), []).append((int(entry.name), fields[19]))
    found: set[tuple[int, str]] = set()
    todo = [pid]
    while todo:
        for child in parents.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child[0])
    return found


def alive(process: tuple[int, str]) -> bool:
    try:
        fields = Path(f"/proc/{process[0]}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[19] == process[1] and fields[0] != "Z"


def still_alive(started: set[tuple[int, str]], settle_s: float = 3.0) -> list[tuple[int, str]]:
    """The started processes still alive `settle_s` after the command ended, with their command lines.
    The settle is for a child that ends by itself but has no parent-death signal: spark-submit's launcher
    JVM, forked by the script whose own process is killed, finishes printing the server's command line."""
    deadline = time.monotonic() + settle_s
    while (left := [p for p in started if alive(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [(pid, _command_line(pid)) for pid, _ in left]


def _command_line(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:200]
    except OSError:
        return "?"


def stop_at(command: list[str], trigger: str | None, delay: float, signum: int
            ) -> tuple[int | None, float, str, set[tuple[int, str]]]:
    """Start `command`; `delay` s after it prints a line containing `trigger` (after its start when
    None), send `signum`: (exit code, seconds from signal to exit, output, processes it had started).
    Exit code None: it did not end within twice the bound (then it was killed)."""
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    assert process.stdout is not None
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(process.stdout or []), daemon=True)
    reader.start()
    seen: set[tuple[int, str]] = set()
    deadline = None if trigger is not None else time.monotonic() + delay
    while process.poll() is None and (deadline is None or time.monotonic() < deadline):
        if deadline is None and any(trigger in line for line in list(output)):
            deadline = time.monotonic() + delay
        seen |= descendants(process.pid)
        time.sleep(0.05)
    seen |= descendants(process.pid)
    signalled = time.monotonic()
    if process.poll() is None:
        process.send_signal(signum)
    try:
        code: int | None = process.wait(timeout=2 * STOP_BOUND_S)
    except subprocess.TimeoutExpired:
        code = None
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    took = time.monotonic() - signalled
    reader.join(5)
    return code, took, "".join(output), seen


# Moments to stop at: (line that starts the clock, seconds after it at most, the phase it hits).
WARM_MOMENTS = [
    (None, 3.0),  # loading the pipeline (azure-ai-ml)
    ("using the local workspace already running", 1.0),  # lending the mount, uploading the notebook
    ("[databricks] started", 3.0),  # the step starting, submitting
    ("[databricks] submitted run", 1.5),  # PENDING, RUNNING
    ("RUNNING", 1.0),  # the notebook running, writing its parquet
    ("[databricks] exit value", 1.0),  # the step writing run.json and MLflow tags
    ("[train] started", 4.0),  # training, writing the model
]
COLD_MOMENTS = [
    ("started a local Databricks workspace", 1.0),  # the workspace and Spark's first start
    ("starting local Spark", 15.0),  # somewhere in Spark's cold start
]


def no_run_left_active(client: WorkspaceClient) -> bool:
    deadline = time.monotonic() + 10  # the cancel was sent; the served workspace ends the run
    while time.monotonic() < deadline:
        if not list(client.jobs.list_runs(active_only=True)):
            return True
        time.sleep(0.2)
    return False


@pytest.mark.slow
def test_twenty_stops_at_random_moments_all_end_in_time_and_leave_nothing(
    served: Served, tmp_path: Path
) -> None:
    seed = int(os.environ.get("STOP_TEST_SEED", random.randrange(1 << 30)))
    draw = random.Random(seed)
    # Most stops against the warm served workspace, at a random moment of a random phase (loading,
    # submitting, running, writing); a few from a cold data dir of their own, where the stop can
    # strike the workspace's and Spark's start.
    plans = [("warm", *draw.choice(WARM_MOMENTS)) for _ in range(17)]
    plans += [("cold", *draw.choice(COLD_MOMENTS)) for _ in range(3)]
    draw.shuffle(plans)
    problems: list[str] = []
    stopped = 0
    for i, (kind, trigger, at_most) in enumerate(plans):
        signum = draw.choice([signal.SIGINT, signal.SIGTERM])
        delay = draw.uniform(0.0, at_most)
        data_dir = served.data_dir if kind == "warm" else tmp_path / f"cold{i}"
        command = [*CLI, "pipeline", "run", str(PIPELINE), "--data-dir", str(data_dir)]
        code, took, out, started = stop_at(command, trigger, delay, signum)
        what = f"#{i} {kind} {signal.Signals(signum).name} {delay:.1f} s after {trigger or 'the start'} (seed {seed})"
        last = [line for line in out.splitlines() if line.strip()][-3:]
        print(f"{what}: exit {code} {took:.1f} s after the signal; ended with {last}")  # shown on failure
        expected = 130 if signum == signal.SIGINT else 143
        if code == 0 and "[train] accuracy" in out:
            continue  # it finished before the signal: not a stop
        stopped += 1
        # Killed by the signal itself (it came after the work, during the exit) is what a shell shows as
        # 128 + signal too: the same to the user as exiting with that code.
        if code not in (expected, -signum):
            problems.append(f"{what}: exit {code}, not {expected}\n{out[-2000:]}")
        if took > STOP_BOUND_S:
            problems.append(f"{what}: took {took:.1f} s to end")
        left = still_alive(started)
        if left:
            problems.append(f"{what}: processes left: {left}")
        if kind == "cold" and jvm_pids(data_dir):
            problems.append(f"{what}: a Spark server left: {jvm_pids(data_dir)}")
        if kind == "warm" and not no_run_left_active(served.client):
            problems.append(f"{what}: a Databricks run is still active: not cancelled")
        if "Traceback" in out:
            problems.append(f"{what}: a traceback\n{out[-2000:]}")
    assert not problems, "\n".join(problems)
    assert stopped >= 15, f"only {stopped} of 20 runs were stopped (seed {seed}): the delays are too long"
    # the served workspace lived through it all: it answers, with at most its one Spark server
    assert [c.cluster_id for c in served.client.clusters.list()] == ["local"]
    assert len(jvm_pids(served.data_dir)) <= 1
