"""Request bodies as typed models: what each field the workspace reads must look like.

Validated at the edge, before a handler acts, so a malformed request is a 400 in Databricks'
error shape and nothing invalid is ever stored. The models type the fields the workspace reads
and keep every other field as sent (`extra="allow"`): Databricks accepts fields a local
workspace has no use for (tags, access control, notifications), and so must we. pydantic also
gives the JSON Schema of each body for an API description.

Numbers and booleans sent as strings (Airflow) are turned into real ones by payload.coerce_scalars
before these models see them; lax mode then only accepts what Databricks would.
"""

from __future__ import annotations

from typing import Annotated, Any, TypeVar

from databricks.sdk.service.jobs import RunIf
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aml_databricks.workspace.errors import InvalidParameterValue

MAX_INT64 = 2**63 - 1
# timeout_seconds is an int32 in the Jobs API's own schema; a larger value could never be honoured.
MAX_TIMEOUT_SECONDS = 2**31 - 1
MAX_IDEMPOTENCY_TOKEN = 64
MAX_TASK_KEY = 100

Id = Annotated[int, Field(ge=0, le=MAX_INT64)]
Timeout = Annotated[int, Field(ge=0, le=MAX_TIMEOUT_SECONDS)]
Scalar = str | int | float | bool
Params = dict[str, Scalar]


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow")


class NotebookTask(_Model):
    notebook_path: str
    source: str | None = None
    base_parameters: Params | None = None


class SparkPythonTask(_Model):
    python_file: str
    source: str | None = None
    parameters: list[Scalar] | None = None


class Dependency(_Model):
    task_key: str
    outcome: str | None = None


class TaskFields(_Model):
    """What a task and a legacy single-task body have in common."""

    notebook_task: NotebookTask | None = None
    spark_python_task: SparkPythonTask | None = None
    existing_cluster_id: str | None = None
    new_cluster: dict[str, Any] | None = None
    libraries: list[dict[str, Any]] | None = None
    timeout_seconds: Timeout | None = None
    # the task types the local workspace refuses by name: still objects, or the request is malformed
    spark_jar_task: dict[str, Any] | None = None
    spark_submit_task: dict[str, Any] | None = None
    python_wheel_task: dict[str, Any] | None = None
    sql_task: dict[str, Any] | None = None
    dbt_task: dict[str, Any] | None = None
    pipeline_task: dict[str, Any] | None = None
    run_job_task: dict[str, Any] | None = None
    condition_task: dict[str, Any] | None = None
    for_each_task: dict[str, Any] | None = None


class Task(TaskFields):
    task_key: Annotated[str, Field(min_length=1, max_length=MAX_TASK_KEY)]
    depends_on: list[Dependency] | None = None
    run_if: RunIf | None = None
    job_cluster_key: str | None = None
    environment_key: str | None = None
    max_retries: int | None = None


class JobCluster(_Model):
    job_cluster_key: str
    new_cluster: dict[str, Any]


class Environment(_Model):
    environment_key: str
    spec: dict[str, Any] | None = None


class RunSettings(TaskFields):
    """A runs/submit body, or a job's settings (jobs/create): multi-task or legacy single-task."""

    run_name: str | None = None
    name: str | None = None
    tasks: list[Task] | None = None
    job_clusters: list[JobCluster] | None = None
    environments: list[Environment] | None = None
    idempotency_token: Annotated[str, Field(max_length=MAX_IDEMPOTENCY_TOKEN)] | None = None
    max_concurrent_runs: Annotated[int, Field(ge=0, le=1000)] | None = None
    queue: dict[str, Any] | None = None
    tags: dict[str, Any] | None = None
    git_source: dict[str, Any] | None = None
    email_notifications: dict[str, Any] | None = None
    webhook_notifications: dict[str, Any] | None = None


class RunNow(_Model):
    job_id: Id
    idempotency_token: Annotated[str, Field(max_length=MAX_IDEMPOTENCY_TOKEN)] | None = None
    notebook_params: Params | None = None
    python_params: list[Scalar] | None = None
    job_parameters: Params | None = None


class JobReset(_Model):
    """jobs/reset: the job's settings replaced whole."""

    job_id: Id
    new_settings: dict[str, Any]


class JobUpdate(_Model):
    """jobs/update: top-level fields replaced, `tasks`/`job_clusters`/`environments` merged by key,
    `fields_to_remove` (top-level names, or `tasks/<key>`, `job_clusters/<key>`) dropped."""

    job_id: Id
    new_settings: dict[str, Any] | None = None
    fields_to_remove: list[str] | None = None


class CancelAllRuns(_Model):
    job_id: Id | None = None
    all_queued_runs: bool | None = None


class RepairRun(_Model):
    run_id: Id
    rerun_tasks: list[Annotated[str, Field(min_length=1, max_length=MAX_TASK_KEY)]] | None = None
    rerun_all_failed_tasks: bool | None = None
    rerun_dependent_tasks: bool | None = None
    latest_repair_id: Id | None = None
    notebook_params: Params | None = None
    python_params: list[Scalar] | None = None
    job_parameters: Params | None = None


class WorkspaceImport(_Model):
    path: str
    format: str | None = None
    language: str | None = None
    content: str | bytes | None = None
    overwrite: bool | None = None


class SecretPut(_Model):
    scope: str
    key: str
    string_value: str | None = None
    bytes_value: str | None = None


class FaultPlan(_Model):
    faults: str | None = None
    seed: Annotated[int, Field(ge=0, le=MAX_INT64)] | None = None


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], params: dict[str, Any]) -> M:
    """The model of a request's parameters, or InvalidParameterValue naming the first wrong field."""
    try:
        return model.model_validate(params)
    except ValidationError as exc:
        first = exc.errors(include_url=False, include_input=False)[0]
        where = ".".join(str(part) for part in first["loc"]) or "the request"
        raise InvalidParameterValue(f"Invalid {where}: {first['msg']}.") from None
