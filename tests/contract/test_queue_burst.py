"""Many runs submitted at once to a small workspace: they queue (QUEUED, with queue details), none runs
before a slot is free, a queued run can be cancelled, and every run ends. (The 1,000-run scale and
its latency are benchmarks/queue_burst.py's.)"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.service.jobs import NotebookTask, RunLifeCycleState, RunResultState, SubmitTask

from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_workspace import upload_notebook

pytestmark = pytest.mark.server

BURST = 30
GATE = (
    "import os, time\n"
    "flag = dbutils.widgets.get('flag')\n"
    "deadline = time.time() + 120\n"
    "while not os.path.exists(flag) and time.time() < deadline:\n"
    "    time.sleep(0.05)\n"
)
LOGGED = (
    "n, log = dbutils.widgets.get('n'), dbutils.widgets.get('log')\n"
    "with open(log, 'a') as f:\n"
    "    f.write(f'start {n}\\n')\n"
    "with open(log, 'a') as f:\n"
    "    f.write(f'end {n}\\n')\n"
)


@pytest.fixture
def one_slot(tmp_path: Path) -> Iterator[LocalWorkspace]:
    with LocalWorkspace(tmp_path / "ws", spark=False, max_concurrent_tasks=1) as ws:
        yield ws


def submit(client: WorkspaceClient, path: str, params: dict[str, str]) -> int:
    task = SubmitTask(task_key="t", existing_cluster_id="local",
                      notebook_task=NotebookTask(notebook_path=path, base_parameters=params))
    run_id = client.jobs.submit(run_name="burst", tasks=[task]).run_id
    assert run_id is not None
    return run_id


def state_of(client: WorkspaceClient, run_id: int) -> RunLifeCycleState | None:
    run = client.jobs.get_run(run_id)
    assert run.state is not None
    return run.state.life_cycle_state


def wait_until(check: Callable[[], bool], limit: float = 120) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_a_burst_queues_behind_a_busy_slot_and_every_run_ends(one_slot: LocalWorkspace, tmp_path: Path) -> None:
    client = one_slot.client
    gate = upload_notebook(client, "/Shared/queue/gate", GATE)
    logged = upload_notebook(client, "/Shared/queue/logged", LOGGED)
    flag, log = tmp_path / "open", tmp_path / "executions.txt"
    gate_id = submit(client, gate, {"flag": str(flag)})
    wait_until(lambda: state_of(client, gate_id) == RunLifeCycleState.RUNNING)

    with ThreadPoolExecutor(10) as pool:  # all at once, as a burst of clients would
        ids = list(pool.map(lambda n: submit(client, logged, {"n": str(n), "log": str(log)}), range(BURST)))
    assert len(set(ids)) == BURST
    for run_id in ids:  # the only slot is held: every one of them waits, as Databricks queues them
        run = client.jobs.get_run(run_id)
        assert run.state is not None and run.state.life_cycle_state == RunLifeCycleState.QUEUED
        assert run.status is not None and run.status.queue_details is not None
    assert not log.exists()
    client.jobs.cancel_run(ids[-1])  # a queued run leaves the line without running
    wait_until(lambda: state_of(client, ids[-1]) == RunLifeCycleState.TERMINATED)

    flag.touch()
    for run_id in [gate_id, *ids]:
        wait_until(lambda run_id=run_id: state_of(client, run_id) in (
            RunLifeCycleState.TERMINATED, RunLifeCycleState.INTERNAL_ERROR, RunLifeCycleState.SKIPPED))
    results = [client.jobs.get_run(i).state.result_state for i in ids]
    assert results == [RunResultState.SUCCESS] * (BURST - 1) + [RunResultState.CANCELED]
    lines = log.read_text().splitlines()
    # one slot: each run's start and end are adjacent, never another run between them, each run once
    assert [line.split()[0] for line in lines] == ["start", "end"] * (BURST - 1)
    assert all(a.split()[1] == b.split()[1] for a, b in zip(lines[::2], lines[1::2], strict=True))
    assert sorted(int(line.split()[1]) for line in lines[::2]) == list(range(BURST - 1))
    queued = [client.jobs.get_run(i).tasks[0].queue_duration for i in ids[:-1]]
    assert all(q is not None and q > 0 for q in queued)
