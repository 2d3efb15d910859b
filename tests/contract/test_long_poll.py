"""runs/get?wait_seconds=N, the local workspace's long-poll extension, through databricks-sdk's client."""

from __future__ import annotations

import time
from typing import Any

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue
from databricks.sdk.service.jobs import NotebookTask, SubmitTask

from tests.fixtures_workspace import upload_notebook

TERMINAL = {"TERMINATED", "SKIPPED", "INTERNAL_ERROR"}


def held_get(client: WorkspaceClient, run_id: int, wait_seconds: Any) -> dict[str, Any]:
    body = client.api_client.do(
        "GET", "/api/2.2/jobs/runs/get", query={"run_id": run_id, "wait_seconds": wait_seconds}
    )
    assert isinstance(body, dict)
    return body


def test_held_answers_come_with_each_change_until_the_run_ends(client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/long_poll_sleep", "import time\ntime.sleep(1.5)\n")
    task = SubmitTask(task_key="main", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=path))
    run_id = client.jobs.submit(run_name="held", tasks=[task]).run_id
    answers = [held_get(client, run_id, 30)]
    while (answers[-1].get("state") or {}).get("life_cycle_state") not in TERMINAL:
        answers.append(held_get(client, run_id, 30))
        # Unheld, this loop would ask hundreds of times in the run's 1.5 s; held, once per change.
        assert len(answers) <= 10, "held runs/get calls answered without waiting for a change"
    assert answers[-1]["state"]["result_state"] == "SUCCESS"
    # A terminal run is answered at once, and the same as a plain runs/get.
    assert held_get(client, run_id, 30) == client.api_client.do("GET", "/api/2.2/jobs/runs/get",
                                                                query={"run_id": run_id})


@pytest.mark.parametrize("bad", ["soon", "-1"])
def test_a_bad_wait_seconds_is_a_parameter_error(client: WorkspaceClient, bad: str) -> None:
    path = upload_notebook(client, "/Users/me/long_poll_quick", "x = 1\n")
    task = SubmitTask(task_key="main", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=path))
    run_id = client.jobs.submit(run_name="quick", tasks=[task]).run_id
    with pytest.raises(InvalidParameterValue, match="wait_seconds"):
        held_get(client, run_id, bad)


def test_a_change_the_client_has_not_seen_is_answered_at_once(client: WorkspaceClient) -> None:
    # The run turns RUNNING before the client's held call starts: holding for the *next* change would
    # hide RUNNING until the run ends. With the state it last saw, the client gets RUNNING at once.
    path = upload_notebook(client, "/Users/me/long_poll_unseen", "import time\ntime.sleep(3)\n")
    task = SubmitTask(task_key="main", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=path))
    run_id = client.jobs.submit(run_name="unseen", tasks=[task]).run_id
    while client.jobs.get_run(run_id).state.life_cycle_state.value in ("QUEUED", "PENDING"):  # type: ignore[union-attr]
        time.sleep(0.02)
    body = client.api_client.do("GET", "/api/2.2/jobs/runs/get", query={
        "run_id": run_id, "wait_seconds": 30, "seen_life_cycle_state": "PENDING"})
    assert isinstance(body, dict)
    assert body["state"]["life_cycle_state"] == "RUNNING"
