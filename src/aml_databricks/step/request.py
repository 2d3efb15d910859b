"""Settings + Azure ML context → the `runs/submit` request. Pure: no I/O, no clock.

The request is built from databricks-sdk's own dataclasses, so field names are the Jobs API's and
`as_dict()` is exactly what goes on the wire. One task, in the multi-task format:
  demo flags  → tasks[0].new_cluster{spark_version,node_type_id,num_workers,spark_env_vars},
                tasks[0].notebook_task{notebook_path,base_parameters{output_folder}},
                tasks[0].libraries[{pypi{package: azureml-mlflow}}]   (as the demo's job_spec)
  additions   → run_name, idempotency_token, timeout_seconds, task description (submission id),
                base_parameters.output_uri, every other task type, autoscale, pools, serverless.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from databricks.sdk.service import compute, jobs

from aml_databricks.errors import UsageError
from aml_databricks.step.azureml import MLFLOW_TOKEN, AzureMLContext, output_uri, spark_env_vars
from aml_databricks.step.settings import TASK_FIELDS, Settings

TASK_KEY = "main"
ENVIRONMENT_KEY = "default"
MASK = "***"
IDEMPOTENCY_TOKEN_MAX = 64
_SUBMISSION_MARK = "aml-databricks submission "
# Serverless tasks that take an `environment_key`; notebooks bring their own environment and SQL
# runs on a warehouse.
_ENVIRONMENT_TASKS = ("python", "wheel", "dbt")


def idempotency_token(run_id: str) -> str:
    """Stable for one Azure ML run id (so a retried or restarted step reattaches), ≤ 64 chars and
    plain ASCII whatever the run id looks like."""
    digest = hashlib.sha256(f"aml-databricks/v1\0{run_id}".encode()).hexdigest()
    token = f"aml-dbx-{digest[:48]}"
    assert len(token) <= IDEMPOTENCY_TOKEN_MAX
    return token


def submission_description(submission_id: str) -> str:
    return _SUBMISSION_MARK + submission_id


def submission_id_of(description: str | None) -> str | None:
    """The submission id a run was created with, read back from its task description."""
    if description and description.startswith(_SUBMISSION_MARK):
        return description[len(_SUBMISSION_MARK) :]
    return None


@dataclass(frozen=True)
class SubmitRequest:
    run_name: str
    idempotency_token: str
    task: jobs.SubmitTask
    timeout_seconds: int | None = None
    environments: tuple[jobs.JobEnvironment, ...] = ()
    git_source: jobs.GitSource | None = None

    def as_dict(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "run_name": self.run_name,
            "idempotency_token": self.idempotency_token,
            "tasks": [self.task.as_dict()],
        }
        if self.timeout_seconds:
            body["timeout_seconds"] = self.timeout_seconds
        if self.environments:
            body["environments"] = [e.as_dict() for e in self.environments]
        if self.git_source is not None:
            body["git_source"] = self.git_source.as_dict()
        return body

    def submit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `WorkspaceClient.jobs.submit`."""
        return {
            "run_name": self.run_name,
            "idempotency_token": self.idempotency_token,
            "tasks": [self.task],
            "timeout_seconds": self.timeout_seconds or None,
            "environments": list(self.environments) or None,
            "git_source": self.git_source,
        }


def masked(payload: dict[str, Any]) -> dict[str, Any]:
    """A copy of a request body fit for printing: the MLflow token replaced by `***` unless it is a
    secret reference (which is not a secret)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                if key == MLFLOW_TOKEN and isinstance(item, str) and not item.startswith("{{secrets/"):
                    out[key] = MASK
                else:
                    out[key] = walk(item)
            return out
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    result: dict[str, Any] = walk(payload)
    return result


def build_submit_request(settings: Settings, ctx: AzureMLContext, submission_id: str) -> SubmitRequest:
    s = settings
    task = jobs.SubmitTask(task_key=TASK_KEY, description=submission_description(submission_id))
    _set_task_type(task, s, ctx)
    environments: tuple[jobs.JobEnvironment, ...] = ()
    libraries = _libraries(s)
    if s.existing_cluster_id:
        task.existing_cluster_id = s.existing_cluster_id
        task.libraries = libraries or None
    elif s.serverless:
        if s.task_type in _ENVIRONMENT_TASKS:
            task.environment_key = ENVIRONMENT_KEY
            spec = compute.Environment(
                environment_version=s.environment_version,
                dependencies=[*s.pypi, *s.whls] or None,
            )
            environments = (jobs.JobEnvironment(environment_key=ENVIRONMENT_KEY, spec=spec),)
    elif s.uses_new_cluster:
        task.new_cluster = _new_cluster(s, ctx)
        task.libraries = libraries or None
    return SubmitRequest(
        run_name=s.run_name or ctx.run_id,
        idempotency_token=idempotency_token(ctx.run_id),
        task=task,
        timeout_seconds=s.timeout or None,
        environments=environments,
        git_source=_git_source(s),
    )


def submit_task_fields() -> frozenset[str]:
    """The task fields (`notebook_task`, `sql_task`, …) of the installed databricks-sdk's `SubmitTask`."""
    return frozenset(f.name for f in dataclasses.fields(jobs.SubmitTask) if f.name.endswith("_task"))


def _set_task_type(task: jobs.SubmitTask, s: Settings, ctx: AzureMLContext) -> None:
    name = TASK_FIELDS[s.task_type]
    if name not in submit_task_fields():  # setattr would add a field that never reaches the wire
        raise UsageError(f"--task-type {s.task_type}: the installed databricks-sdk has no SubmitTask.{name}")
    setattr(task, name, _TASK_BUILDERS[name](s, ctx))


def _notebook_task(s: Settings, ctx: AzureMLContext) -> jobs.NotebookTask:
    assert s.notebook_path is not None
    return jobs.NotebookTask(notebook_path=s.notebook_path, base_parameters=_base_parameters(s, ctx), source=_source(s))


def _spark_python_task(s: Settings, ctx: AzureMLContext) -> jobs.SparkPythonTask:
    assert s.python_file is not None
    return jobs.SparkPythonTask(python_file=s.python_file, parameters=list(s.args) or None, source=_source(s))


def _python_wheel_task(s: Settings, ctx: AzureMLContext) -> jobs.PythonWheelTask:
    assert s.package_name is not None and s.entry_point is not None
    return jobs.PythonWheelTask(
        package_name=s.package_name,
        entry_point=s.entry_point,
        parameters=list(s.args) or None,
        named_parameters=dict(s.params) or None,
    )


def _spark_jar_task(s: Settings, ctx: AzureMLContext) -> jobs.SparkJarTask:
    assert s.main_class_name is not None
    return jobs.SparkJarTask(main_class_name=s.main_class_name, parameters=list(s.args) or None)


def _sql_task(s: Settings, ctx: AzureMLContext) -> jobs.SqlTask:
    assert s.warehouse_id is not None
    return jobs.SqlTask(
        warehouse_id=s.warehouse_id,
        file=jobs.SqlTaskFile(path=s.sql_file, source=_source(s)) if s.sql_file else None,
        query=jobs.SqlTaskQuery(query_id=s.query_id) if s.query_id else None,
        parameters=dict(s.params) or None,
    )


def _dbt_task(s: Settings, ctx: AzureMLContext) -> jobs.DbtTask:
    return jobs.DbtTask(
        commands=list(s.dbt_commands),
        project_directory=s.project_directory,
        profiles_directory=s.profiles_directory,
        catalog=s.dbt_catalog,
        schema=s.dbt_schema,
        warehouse_id=s.warehouse_id,
        source=_source(s),
    )


def _source(s: Settings) -> jobs.Source | None:
    return jobs.Source(s.source) if s.source else None


# SubmitTask field → its builder; the keys are TASK_FIELDS' values (tests hold them equal).
_TASK_BUILDERS: dict[str, Callable[[Settings, AzureMLContext], Any]] = {
    "notebook_task": _notebook_task,
    "spark_python_task": _spark_python_task,
    "python_wheel_task": _python_wheel_task,
    "spark_jar_task": _spark_jar_task,
    "sql_task": _sql_task,
    "dbt_task": _dbt_task,
}


def _base_parameters(s: Settings, ctx: AzureMLContext) -> dict[str, str]:
    params = {"output_folder": ctx.output_folder}
    uri = output_uri(ctx.output, s.datastores)
    if uri:
        params["output_uri"] = uri
    params.update(s.params)  # explicit --param wins, including over output_folder
    return params


def _libraries(s: Settings) -> list[compute.Library]:
    libraries = [compute.Library(pypi=compute.PythonPyPiLibrary(package=p)) for p in s.pypi]
    libraries += [compute.Library(jar=j) for j in s.jars]
    libraries += [compute.Library(whl=w) for w in s.whls]
    return libraries


def _new_cluster(s: Settings, ctx: AzureMLContext) -> compute.ClusterSpec:
    env = spark_env_vars(ctx, s.mlflow_token_secret)
    env.update(s.spark_env)
    return compute.ClusterSpec(
        spark_version=s.spark_version,
        node_type_id=s.node_type_id,
        num_workers=s.num_workers,
        autoscale=(
            compute.AutoScale(min_workers=s.autoscale.min_workers, max_workers=s.autoscale.max_workers)
            if s.autoscale
            else None
        ),
        instance_pool_id=s.instance_pool_id,
        spark_conf=dict(s.spark_conf) or None,
        spark_env_vars=env,
    )


def _git_source(s: Settings) -> jobs.GitSource | None:
    if not s.git_url:
        return None
    return jobs.GitSource(git_url=s.git_url, git_provider=jobs.GitProvider(s.git_provider), git_branch=s.git_branch)
