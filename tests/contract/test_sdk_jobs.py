"""databricks-sdk's WorkspaceClient, unchanged, against the local workspace: runs end to end."""

from __future__ import annotations

import io
import time
from datetime import timedelta
from pathlib import Path

import pytest
from databricks.sdk import WorkspaceClient
from databricks.sdk.errors import InvalidParameterValue, ResourceDoesNotExist
from databricks.sdk.service.compute import ClusterLogConf, ClusterSpec, DbfsStorageInfo
from databricks.sdk.service.jobs import (
    NotebookTask,
    RunIf,
    RunLifeCycleState,
    RunResultState,
    SparkPythonTask,
    SubmitTask,
    TaskDependency,
)

from aml_databricks.workspace import LocalWorkspace
from tests.fixtures_workspace import upload_notebook

WAIT = timedelta(seconds=60)


def notebook_task(key: str, path: str, params: dict[str, str] | None = None, **extra: object) -> SubmitTask:
    return SubmitTask(task_key=key, existing_cluster_id="local",
                      notebook_task=NotebookTask(notebook_path=path, base_parameters=params), **extra)


def test_exit_value_reaches_get_run_output(client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/exit_ok", 'dbutils.notebook.exit("ok")\n')
    run = client.jobs.submit(run_name="ok", tasks=[notebook_task("main", path)]).result(timeout=WAIT)

    assert run.state.life_cycle_state == RunLifeCycleState.TERMINATED
    assert run.state.result_state == RunResultState.SUCCESS
    (task,) = run.tasks
    assert task.run_id != run.run_id
    assert client.jobs.get_run_output(task.run_id).notebook_output.result == "ok"
    assert run.run_page_url and run.run_page_url.startswith(client.config.host)


def test_failing_notebook_reports_error_and_trace(client: WorkspaceClient) -> None:
    source = 'x = 1\n\n# COMMAND ----------\n\ndef load():\n    raise ValueError("no such table: sales")\n\nload()\n'
    path = upload_notebook(client, "/Users/me/raises", source)
    run = client.jobs.submit(run_name="fails", tasks=[notebook_task("main", path)]).result(timeout=WAIT)

    assert run.state.result_state == RunResultState.FAILED
    output = client.jobs.get_run_output(run.tasks[0].run_id)
    assert "ValueError" in output.error and "no such table: sales" in output.error
    assert "load()" in output.error_trace and "cell 2" in output.error_trace


def test_cancel_a_sleeping_notebook_within_two_seconds(client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/sleeps", "import time\ntime.sleep(120)\n")
    waiter = client.jobs.submit(run_name="sleeps", tasks=[notebook_task("main", path)])
    _wait_for(client, waiter.run_id, RunLifeCycleState.RUNNING)

    started = time.monotonic()
    client.jobs.cancel_run(waiter.run_id)
    run = _wait_for(client, waiter.run_id, RunLifeCycleState.TERMINATED)
    assert time.monotonic() - started < 2
    assert run.state.result_state == RunResultState.CANCELED
    assert run.state.user_cancelled_or_timedout


def test_timeout_seconds_times_the_run_out(client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/slow", "import time\ntime.sleep(120)\n")
    run = client.jobs.submit(run_name="slow", timeout_seconds=1,
                             tasks=[notebook_task("main", path)]).result(timeout=WAIT)
    assert run.state.result_state == RunResultState.TIMEDOUT
    assert run.end_time - run.start_time < 10_000


def test_one_idempotency_token_gives_one_run_and_one_execution(client: WorkspaceClient, counter_file: Path) -> None:
    path = upload_notebook(client, "/Users/me/counts",
                           'open(dbutils.widgets.get("counter"), "a").write("ran\\n")\n')
    tasks = [notebook_task("main", path, {"counter": str(counter_file)})]
    first = client.jobs.submit(run_name="once", idempotency_token="aml-run-123", tasks=tasks)
    second = client.jobs.submit(run_name="once", idempotency_token="aml-run-123", tasks=tasks)
    assert first.run_id == second.run_id
    first.result(timeout=WAIT)
    assert counter_file.read_text() == "ran\n"


def test_dependent_tasks_run_in_order_and_skip_on_failure(client: WorkspaceClient) -> None:
    ok = upload_notebook(client, "/Users/me/dag_ok", 'dbutils.notebook.exit("fine")\n')
    bad = upload_notebook(client, "/Users/me/dag_bad", 'raise RuntimeError("upstream broke")\n')
    run = client.jobs.submit(run_name="dag", tasks=[
        notebook_task("a", ok),
        notebook_task("b", bad, depends_on=[TaskDependency(task_key="a")]),
        notebook_task("c", ok, depends_on=[TaskDependency(task_key="b")]),
        notebook_task("cleanup", ok, depends_on=[TaskDependency(task_key="b")], run_if=RunIf.ALL_DONE),
    ]).result(timeout=WAIT)

    states = {t.task_key: t.state for t in run.tasks}
    assert states["a"].result_state == RunResultState.SUCCESS
    assert states["b"].result_state == RunResultState.FAILED
    assert states["c"].result_state == RunResultState.UPSTREAM_FAILED
    assert states["c"].life_cycle_state == RunLifeCycleState.SKIPPED
    assert states["cleanup"].result_state == RunResultState.SUCCESS
    assert run.state.result_state == RunResultState.FAILED
    a, b = (next(t for t in run.tasks if t.task_key == k) for k in "ab")
    assert a.end_time <= b.start_time + b.queue_duration + b.setup_duration + b.execution_duration


def test_python_file_task_gets_parameters_and_logs(client: WorkspaceClient, tmp_path: Path) -> None:
    script = tmp_path / "job.py"
    script.write_text("import sys\nprint('args', sys.argv[1:])\n")
    run = client.jobs.submit(run_name="py", tasks=[SubmitTask(
        task_key="py", existing_cluster_id="local",
        spark_python_task=SparkPythonTask(python_file=str(script), parameters=["--n", "3"]))]).result(timeout=WAIT)
    assert run.state.result_state == RunResultState.SUCCESS
    assert "args ['--n', '3']" in client.jobs.get_run_output(run.tasks[0].run_id).logs


def test_python_file_from_dbfs_on_a_new_cluster_delivers_its_cluster_log(client: WorkspaceClient) -> None:
    client.dbfs.upload("/scripts/hello.py", io.BytesIO(b"import sys\nprint('hello from dbfs', sys.argv[1:])\n"),
                       overwrite=True)
    cluster = ClusterSpec(spark_version="15.4.x-scala2.12", node_type_id="Standard_DS3_v2", num_workers=0,
                          cluster_log_conf=ClusterLogConf(dbfs=DbfsStorageInfo(destination="dbfs:/cluster-logs")))
    run = client.jobs.submit(run_name="from dbfs", tasks=[SubmitTask(
        task_key="py", new_cluster=cluster,
        spark_python_task=SparkPythonTask(python_file="dbfs:/scripts/hello.py", parameters=["x"]),
    )]).result(timeout=WAIT)
    assert run.state.result_state == RunResultState.SUCCESS
    # delivered as Databricks delivers a job cluster's logs: <destination>/<cluster id>/driver/
    [folder] = [entry.path for entry in client.dbfs.list("dbfs:/cluster-logs")]
    stdout = client.dbfs.download(f"{folder}/driver/stdout").read().decode()
    assert "hello from dbfs ['x']" in stdout
    assert "stdout" in client.dbfs.download(f"{folder}/driver/stderr").read().decode()  # says where it all went


def test_missing_dbfs_python_file_fails_the_run_with_a_message(client: WorkspaceClient) -> None:
    waiter = client.jobs.submit(run_name="missing", tasks=[SubmitTask(
        task_key="py", existing_cluster_id="local",
        spark_python_task=SparkPythonTask(python_file="dbfs:/scripts/not_there.py"))])
    run = _wait_terminal(client, waiter.run_id)
    assert run.state.life_cycle_state == RunLifeCycleState.INTERNAL_ERROR
    assert "dbfs:/scripts/not_there.py" in run.state.state_message


def test_missing_notebook_fails_the_run_with_a_message(client: WorkspaceClient) -> None:
    waiter = client.jobs.submit(run_name="missing", tasks=[notebook_task("main", "/Users/me/not_there")])
    run = _wait_terminal(client, waiter.run_id)
    assert run.state.life_cycle_state == RunLifeCycleState.INTERNAL_ERROR
    assert "/Users/me/not_there" in run.state.state_message


def test_parent_run_output_is_refused_like_databricks(client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/exit_ok2", 'dbutils.notebook.exit("ok")\n')
    run = client.jobs.submit(run_name="ok", tasks=[notebook_task("main", path)]).result(timeout=WAIT)
    with pytest.raises(InvalidParameterValue, match="multiple tasks is not supported"):
        client.jobs.get_run_output(run.run_id)
    with pytest.raises(ResourceDoesNotExist):
        client.jobs.get_run(999)


def test_list_and_delete_runs(client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/exit_ok3", 'dbutils.notebook.exit("ok")\n')
    ids = [client.jobs.submit(run_name=f"r{i}", tasks=[notebook_task("main", path)]).result(timeout=WAIT).run_id
           for i in range(3)]
    listed = [r.run_id for r in client.jobs.list_runs(completed_only=True, limit=2)]
    assert set(ids) <= set(listed)
    assert len(listed) == len(set(listed))  # pagination walked every page once
    client.jobs.delete_run(ids[0])
    with pytest.raises(ResourceDoesNotExist):
        client.jobs.get_run(ids[0])


def test_list_runs_filters_by_run_type_and_start_time(client: WorkspaceClient) -> None:
    from databricks.sdk.service.jobs import RunType, Task

    path = upload_notebook(client, "/Users/me/exit_ok4", 'dbutils.notebook.exit("ok")\n')
    job = client.jobs.create(name="filtered", tasks=[Task(task_key="main", existing_cluster_id="local",
                                                          notebook_task=NotebookTask(notebook_path=path))])
    job_run = client.jobs.run_now(job.job_id).result(timeout=WAIT)
    submit_run = client.jobs.submit(run_name="one-time", tasks=[notebook_task("main", path)]).result(timeout=WAIT)
    submitted = {r.run_id for r in client.jobs.list_runs(run_type=RunType.SUBMIT_RUN)}
    assert submit_run.run_id in submitted and job_run.run_id not in submitted
    assert job_run.run_id in {r.run_id for r in client.jobs.list_runs(run_type=RunType.JOB_RUN)}
    later = {r.run_id for r in client.jobs.list_runs(start_time_from=submit_run.start_time)}
    assert submit_run.run_id in later and job_run.run_id not in later
    with pytest.raises(InvalidParameterValue, match="run_type must be one of"):
        client.api_client.do("GET", "/api/2.2/jobs/runs/list", query={"run_type": "NIGHTLY"})
    client.jobs.delete(job.job_id)


def test_jobs_create_run_now_get_list_delete(client: WorkspaceClient) -> None:
    path = upload_notebook(client, "/Users/me/job_nb", 'dbutils.notebook.exit(dbutils.widgets.get("who"))\n')
    from databricks.sdk.service.jobs import Task

    job = client.jobs.create(name="nightly", tasks=[Task(
        task_key="main", existing_cluster_id="local",
        notebook_task=NotebookTask(notebook_path=path, base_parameters={"who": "default"}))])
    assert client.jobs.get(job.job_id).settings.name == "nightly"
    assert job.job_id in [j.job_id for j in client.jobs.list()]
    run = client.jobs.run_now(job.job_id, notebook_params={"who": "override"}).result(timeout=WAIT)
    assert run.job_id == job.job_id
    assert client.jobs.get_run_output(run.tasks[0].run_id).notebook_output.result == "override"
    client.jobs.delete(job.job_id)
    with pytest.raises(ResourceDoesNotExist, match="does not exist"):
        client.jobs.get(job.job_id)


def _wait_for(client: WorkspaceClient, run_id: int, state: RunLifeCycleState, limit: float = 30):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        run = client.jobs.get_run(run_id)
        if run.state.life_cycle_state == state:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached {state}: {run.state}")


def _wait_terminal(client: WorkspaceClient, run_id: int, limit: float = 30):
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        run = client.jobs.get_run(run_id)
        if run.state.life_cycle_state in (RunLifeCycleState.TERMINATED, RunLifeCycleState.SKIPPED,
                                          RunLifeCycleState.INTERNAL_ERROR):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never ended: {run.state}")


def test_run_now_over_max_concurrent_runs_is_skipped(client: WorkspaceClient) -> None:
    from databricks.sdk.service.jobs import Task

    path = upload_notebook(client, "/Users/me/long_job", "import time\ntime.sleep(120)\n")
    job = client.jobs.create(name="one-at-a-time", max_concurrent_runs=1, tasks=[Task(
        task_key="main", existing_cluster_id="local", notebook_task=NotebookTask(notebook_path=path))])
    first = client.jobs.run_now(job.job_id)
    second = client.jobs.run_now(job.job_id).result(timeout=WAIT)
    assert second.state.life_cycle_state == RunLifeCycleState.SKIPPED
    assert "max_concurrent_runs" in second.state.state_message
    client.jobs.cancel_run(first.run_id)
    assert _wait_terminal(client, first.run_id).state.result_state == RunResultState.CANCELED


def test_injected_states_for_client_authors(workspace: LocalWorkspace, client: WorkspaceClient) -> None:
    import requests

    path = upload_notebook(client, "/Users/me/long_inject", "import time\ntime.sleep(120)\n")
    waiter = client.jobs.submit(run_name="inject", tasks=[notebook_task("main", path)])
    _wait_for(client, waiter.run_id, RunLifeCycleState.RUNNING)
    url, auth = workspace.host + "/api/2.0/local/admin/inject", {"Authorization": f"Bearer {workspace.token}"}

    shown = requests.post(url, json={"run_id": waiter.run_id, "life_cycle_state": "WARMING_UP", "seconds": 30},
                          headers=auth)
    assert shown.ok
    raw = requests.get(workspace.host + "/api/2.2/jobs/runs/get", params={"run_id": waiter.run_id}, headers=auth)
    assert raw.json()["state"]["life_cycle_state"] == "WARMING_UP"

    assert requests.post(url, json={"run_id": waiter.run_id, "life_cycle_state": "INTERNAL_ERROR",
                                    "state_message": "driver lost"}, headers=auth).ok
    run = _wait_terminal(client, waiter.run_id)
    assert run.state.life_cycle_state == RunLifeCycleState.INTERNAL_ERROR
    assert run.state.state_message == "driver lost"
