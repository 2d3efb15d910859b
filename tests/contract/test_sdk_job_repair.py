"""databricks-sdk, unchanged: jobs/reset, jobs/update, runs/cancel-all, runs/repair and repair history."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import DatabricksError, InvalidParameterValue
from databricks.sdk.service.jobs import (
    JobSettings,
    NotebookTask,
    RepairHistoryItemType,
    RunLifeCycleState,
    RunResultState,
    SparkJarTask,
    SubmitTask,
    Task,
    TaskDependency,
)

from tests.fixtures_workspace import upload_notebook

WAIT = timedelta(seconds=60)
# Fails until the file named by its `flag` widget exists: a task a repair can fix.
NEEDS_FLAG = (
    'import os\nflag = dbutils.widgets.get("flag")\n'
    'if not os.path.exists(flag):\n    raise RuntimeError("flag missing")\n'
    'dbutils.notebook.exit("fixed")\n'
)
SLEEPS = "import time\ntime.sleep(120)\n"


@pytest.fixture(scope="module")
def paths(client: WorkspaceClient) -> dict[str, str]:
    return {
        "flag": upload_notebook(client, "/Users/me/repair/needs_flag", NEEDS_FLAG),
        "ok": upload_notebook(client, "/Users/me/repair/ok", 'dbutils.notebook.exit("ok")\n'),
        "sleeps": upload_notebook(client, "/Users/me/repair/sleeps", SLEEPS),
    }


def task(key: str, path: str, *, after: str | None = None, **params: str) -> SubmitTask:
    return SubmitTask(task_key=key, existing_cluster_id="local",
                      notebook_task=NotebookTask(notebook_path=path, base_parameters=params or None),
                      depends_on=[TaskDependency(task_key=after)] if after else None)


def job_task(key: str, path: str) -> Task:
    return Task(task_key=key, existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=path))


def test_repair_reruns_failed_tasks_inside_the_same_run(client: WorkspaceClient, paths: dict[str, str],
                                                        tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    run = client.jobs.submit(run_name="repairable", tasks=[
        task("ok", paths["ok"]),
        task("flaky", paths["flag"], flag=str(flag)),
        task("after", paths["ok"], after="flaky"),
    ]).result(timeout=WAIT)
    assert run.state.result_state == RunResultState.FAILED
    first = {t.task_key: t for t in run.tasks}
    assert first["after"].state.result_state == RunResultState.UPSTREAM_FAILED

    flag.write_text("now it works")
    repaired = client.jobs.repair_run(run.run_id, rerun_all_failed_tasks=True).result(timeout=WAIT)

    assert repaired.run_id == run.run_id
    assert repaired.state.result_state == RunResultState.SUCCESS
    assert len(repaired.tasks) == 5  # every attempt is listed, as on Databricks
    now = {t.task_key: t for t in sorted(repaired.tasks, key=lambda t: t.attempt_number)}
    assert now["ok"].run_id == first["ok"].run_id  # a task that succeeded is left as it was
    for key in ("flaky", "after"):
        assert now[key].run_id != first[key].run_id
        assert now[key].attempt_number == first[key].attempt_number + 1
        assert now[key].state.result_state == RunResultState.SUCCESS
    assert client.jobs.get_run_output(now["flaky"].run_id).notebook_output.result == "fixed"
    assert client.jobs.get_run_output(first["flaky"].run_id).error  # the failed attempt is still there

    history = client.jobs.get_run(run.run_id, include_history=True).repair_history
    assert [h.type for h in history] == [RepairHistoryItemType.ORIGINAL, RepairHistoryItemType.REPAIR]
    assert history[0].state.result_state == RunResultState.FAILED
    assert set(history[0].task_run_ids) == {t.run_id for t in run.tasks}
    assert set(history[1].task_run_ids) == {now["flaky"].run_id, now["after"].run_id}
    assert history[1].state.result_state == RunResultState.SUCCESS
    assert not client.jobs.get_run(run.run_id).repair_history  # only when asked for


def test_repairs_are_sequential_and_can_rerun_dependents(client: WorkspaceClient, paths: dict[str, str],
                                                         tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    flag.write_text("x")
    run = client.jobs.submit(run_name="twice", tasks=[
        task("first", paths["flag"], flag=str(flag)), task("second", paths["ok"], after="first"),
    ]).result(timeout=WAIT)
    assert run.state.result_state == RunResultState.SUCCESS
    with pytest.raises(InvalidParameterValue, match="no failed tasks"):
        client.jobs.repair_run(run.run_id, rerun_all_failed_tasks=True)

    one = client.jobs.repair_run(run.run_id, rerun_tasks=["first"], rerun_dependent_tasks=True)
    repaired = one.result(timeout=WAIT)
    assert {t.task_key: t.attempt_number for t in repaired.tasks} == {"first": 1, "second": 1}
    repair_id = one.response.repair_id
    assert repair_id is not None

    with pytest.raises(InvalidParameterValue, match="latest_repair_id"):
        client.jobs.repair_run(run.run_id, rerun_tasks=["second"])
    again = client.jobs.repair_run(run.run_id, rerun_tasks=["second"], latest_repair_id=repair_id).result(timeout=WAIT)
    assert {t.task_key: t.attempt_number for t in again.tasks} == {"first": 1, "second": 2}
    history = client.jobs.get_run(run.run_id, include_history=True).repair_history
    assert [h.id for h in history][1:] == [repair_id, history[-1].id] and len(history) == 3

    with pytest.raises(InvalidParameterValue, match="not a task of this run"):
        client.jobs.repair_run(run.run_id, rerun_tasks=["nope"], latest_repair_id=history[-1].id)


def test_a_run_in_flight_cannot_be_repaired_and_cancel_all_stops_a_jobs_runs(
        client: WorkspaceClient, paths: dict[str, str]) -> None:
    job_id = client.jobs.create(name="sleepy", tasks=[job_task("sleep", paths["sleeps"])],
                                max_concurrent_runs=3).job_id
    runs = [client.jobs.run_now(job_id).run_id for _ in range(2)]
    other = client.jobs.submit(run_name="not this job", tasks=[task("sleep", paths["sleeps"])]).run_id
    with pytest.raises(DatabricksError, match="still active"):
        client.jobs.repair_run(runs[0], rerun_all_failed_tasks=True)

    client.jobs.cancel_all_runs(job_id=job_id)

    for run_id in runs:
        ended = client.jobs.wait_get_run_job_terminated_or_skipped(run_id, timeout=WAIT)
        assert ended.state.result_state == RunResultState.CANCELED
    assert client.jobs.get_run(other).state.life_cycle_state != RunLifeCycleState.TERMINATED
    client.jobs.cancel_run(other)
    with pytest.raises(InvalidParameterValue, match="job_id"):
        client.jobs.cancel_all_runs()


def test_reset_replaces_and_update_merges_job_settings(client: WorkspaceClient, paths: dict[str, str]) -> None:
    job_id = client.jobs.create(name="v1", tasks=[job_task("a", paths["ok"]), job_task("b", paths["ok"])],
                                tags={"team": "data"}, timeout_seconds=600).job_id

    client.jobs.reset(job_id, JobSettings(name="v2", tasks=[job_task("c", paths["ok"])]))
    settings = client.jobs.get(job_id).settings
    assert settings.name == "v2" and [t.task_key for t in settings.tasks] == ["c"]
    assert settings.tags is None and settings.timeout_seconds is None  # reset replaces everything

    client.jobs.update(job_id, new_settings=JobSettings(
        tasks=[job_task("c", paths["flag"]), job_task("d", paths["ok"])], tags={"team": "ml"}))
    settings = client.jobs.get(job_id).settings
    assert {t.task_key: t.notebook_task.notebook_path for t in settings.tasks} == {
        "c": paths["flag"], "d": paths["ok"]}  # merged by task_key: c replaced, d added
    assert settings.name == "v2" and settings.tags == {"team": "ml"}

    client.jobs.update(job_id, fields_to_remove=["tags", "tasks/c"])
    settings = client.jobs.get(job_id).settings
    assert [t.task_key for t in settings.tasks] == ["d"] and settings.tags is None
    run = client.jobs.run_now(job_id).result(timeout=WAIT)
    assert [t.task_key for t in run.tasks] == ["d"] and run.state.result_state == RunResultState.SUCCESS


def test_reset_and_update_refuse_bad_settings(client: WorkspaceClient, paths: dict[str, str]) -> None:
    job_id = client.jobs.create(name="kept", tasks=[job_task("a", paths["ok"])]).job_id
    with pytest.raises(InvalidParameterValue, match="not supported by the local workspace"):
        jar = Task(task_key="j", spark_jar_task=SparkJarTask(main_class_name="M"))
        client.jobs.reset(job_id, JobSettings(name="x", tasks=[jar]))
    with pytest.raises(InvalidParameterValue, match="not in the job's settings"):
        client.jobs.update(job_id, fields_to_remove=["tasks/zzz"])
    with pytest.raises(DatabricksError, match="does not exist"):
        client.jobs.reset(987654, JobSettings(name="x", tasks=[job_task("a", paths["ok"])]))
    assert client.jobs.get(job_id).settings.name == "kept"


def test_a_repaired_single_task_run_on_api_2_0(client: WorkspaceClient, paths: dict[str, str],
                                               tmp_path: Path) -> None:
    flag = tmp_path / "flag"
    body = {"run_name": "legacy", "existing_cluster_id": "local",
            "notebook_task": {"notebook_path": paths["flag"], "base_parameters": {"flag": str(flag)}}}
    run_id = client.api_client.do("POST", "/api/2.0/jobs/runs/submit", body=body)["run_id"]
    first = client.jobs.wait_get_run_job_terminated_or_skipped(run_id, timeout=WAIT)
    assert first.state.result_state == RunResultState.FAILED
    flag.write_text("x")
    client.jobs.repair_run(run_id, rerun_all_failed_tasks=True).result(timeout=WAIT)

    legacy = client.api_client.do("GET", "/api/2.0/jobs/runs/get", query={"run_id": run_id})
    assert legacy["state"]["result_state"] == "SUCCESS" and legacy["task"]["notebook_task"]
    output = client.api_client.do("GET", "/api/2.0/jobs/runs/get-output", query={"run_id": run_id})
    assert output["notebook_output"]["result"] == "fixed"
