"""Settings + Azure ML context → the `runs/submit` request. Pure: no I/O, no clock.

The request is the Jobs API's JSON, built here as plain dicts in the shape databricks-sdk's own
dataclasses give (`SubmitTask(...).as_dict()`: an object's fields in name order, unset and empty
ones left out; tests/unit/test_step_request.py holds every payload equal to the SDK's round trip).
Plain dicts because the SDK's `service.jobs` and `service.compute` modules, which define those
dataclasses, were about 40% of the step's start before its submit; the request goes out through
the SDK's ApiClient all the same (gateway.py). One task, in the multi-task format:
  demo flags  → tasks[0].new_cluster{spark_version,node_type_id,num_workers,spark_env_vars},
                tasks[0].notebook_task{notebook_path,base_parameters{output_folder}},
                tasks[0].libraries[{pypi{package: azureml-mlflow}}]   (as the demo's job_spec)
  additions   → run_name, idempotency_token, timeout_seconds, task description (submission id),
                base_parameters.output_uri, every other task type, autoscale, pools, serverless.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aml_databricks.step.azureml import MLFLOW_TOKEN, AzureMLContext, output_uri, spark_env_vars
from aml_databricks.step.settings import TASK_FIELDS, Settings

JsonObject = dict[str, Any]

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


def api_object(**fields: Any) -> JsonObject:
    """One Jobs API object as databricks-sdk's `as_dict()` writes it: fields in name order, those
    unset (None) or empty (a list or map with nothing in it) left out."""
    return {name: value for name, value in sorted(fields.items()) if value is not None and value != [] and value != {}}


@dataclass(frozen=True)
class SubmitRequest:
    run_name: str
    idempotency_token: str
    task: JsonObject
    timeout_seconds: int | None = None
    environments: tuple[JsonObject, ...] = ()
    git_source: JsonObject | None = None

    @property
    def submission_id(self) -> str | None:
        return submission_id_of(self.task.get("description"))

    def as_dict(self) -> JsonObject:
        """The runs/submit body."""
        body: JsonObject = {
            "run_name": self.run_name,
            "idempotency_token": self.idempotency_token,
            "tasks": [self.task],
        }
        if self.timeout_seconds:
            body["timeout_seconds"] = self.timeout_seconds
        if self.environments:
            body["environments"] = list(self.environments)
        if self.git_source is not None:
            body["git_source"] = self.git_source
        return body


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
    compute: JsonObject = {}
    environments: tuple[JsonObject, ...] = ()
    libraries = _libraries(s)
    if s.existing_cluster_id:
        compute = {"existing_cluster_id": s.existing_cluster_id, "libraries": libraries}
    elif s.serverless:
        if s.task_type in _ENVIRONMENT_TASKS:
            compute = {"environment_key": ENVIRONMENT_KEY}
            spec = api_object(environment_version=s.environment_version, dependencies=[*s.pypi, *s.whls])
            environments = (api_object(environment_key=ENVIRONMENT_KEY, spec=spec),)
    elif s.uses_new_cluster:
        compute = {"new_cluster": _new_cluster(s, ctx), "libraries": libraries}
    field = TASK_FIELDS[s.task_type]
    task = api_object(
        task_key=TASK_KEY,
        description=submission_description(submission_id),
        **{field: _TASK_BUILDERS[field](s, ctx)},
        **compute,
    )
    return SubmitRequest(
        run_name=s.run_name or ctx.run_id,
        idempotency_token=idempotency_token(ctx.run_id),
        task=task,
        timeout_seconds=s.timeout or None,
        environments=environments,
        git_source=_git_source(s),
    )


def _notebook_task(s: Settings, ctx: AzureMLContext) -> JsonObject:
    assert s.notebook_path is not None
    return api_object(notebook_path=s.notebook_path, base_parameters=_base_parameters(s, ctx), source=s.source)


def _spark_python_task(s: Settings, ctx: AzureMLContext) -> JsonObject:
    assert s.python_file is not None
    return api_object(python_file=s.python_file, parameters=list(s.args), source=s.source)


def _python_wheel_task(s: Settings, ctx: AzureMLContext) -> JsonObject:
    assert s.package_name is not None and s.entry_point is not None
    return api_object(
        package_name=s.package_name,
        entry_point=s.entry_point,
        parameters=list(s.args),
        named_parameters=dict(s.params),
    )


def _spark_jar_task(s: Settings, ctx: AzureMLContext) -> JsonObject:
    assert s.main_class_name is not None
    return api_object(main_class_name=s.main_class_name, parameters=list(s.args))


def _sql_task(s: Settings, ctx: AzureMLContext) -> JsonObject:
    assert s.warehouse_id is not None
    return api_object(
        warehouse_id=s.warehouse_id,
        file=api_object(path=s.sql_file, source=s.source) if s.sql_file else None,
        query=api_object(query_id=s.query_id) if s.query_id else None,
        parameters=dict(s.params),
    )


def _dbt_task(s: Settings, ctx: AzureMLContext) -> JsonObject:
    return api_object(
        commands=list(s.dbt_commands),
        project_directory=s.project_directory,
        profiles_directory=s.profiles_directory,
        catalog=s.dbt_catalog,
        schema=s.dbt_schema,
        warehouse_id=s.warehouse_id,
        source=s.source,
    )


# The task's field → its builder; the keys are TASK_FIELDS' values (tests hold them equal).
_TASK_BUILDERS: dict[str, Callable[[Settings, AzureMLContext], JsonObject]] = {
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


def _libraries(s: Settings) -> list[JsonObject]:
    libraries: list[JsonObject] = [{"pypi": {"package": p}} for p in s.pypi]
    libraries += [{"jar": j} for j in s.jars]
    libraries += [{"whl": w} for w in s.whls]
    return libraries


def _new_cluster(s: Settings, ctx: AzureMLContext) -> JsonObject:
    env = spark_env_vars(ctx, s.mlflow_token_secret)
    env.update(s.spark_env)
    return api_object(
        spark_version=s.spark_version,
        node_type_id=s.node_type_id,
        num_workers=s.num_workers,
        autoscale=(
            api_object(min_workers=s.autoscale.min_workers, max_workers=s.autoscale.max_workers)
            if s.autoscale
            else None
        ),
        instance_pool_id=s.instance_pool_id,
        spark_conf=dict(s.spark_conf),
        spark_env_vars=env,
    )


def _git_source(s: Settings) -> JsonObject | None:
    if not s.git_url:
        return None
    return api_object(git_url=s.git_url, git_provider=s.git_provider, git_branch=s.git_branch)
