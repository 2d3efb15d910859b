"""Turn a runs/submit or jobs/create body into the one shape the scheduler runs.

Pure functions, no I/O. Real clients send three dialects and all must work: the multi-task
form (databricks-sdk), the legacy single-task form on every API version (databricks-cli on 2.0,
Airflow on 2.1/2.2), and Airflow's habit of sending every number as a string.
"""

from __future__ import annotations

import copy
import graphlib
from typing import Any

from aml_databricks.workspace.errors import InvalidParameterValue, NotSupportedLocally
from aml_databricks.workspace.models import MAX_TASK_KEY, RunSettings, parse
from aml_databricks.workspace.paths import is_dbfs_file, is_local_file, normalize_path
from aml_databricks.workspace.storage_paths import normalize as normalize_storage_path

# Task types the local compute runs, and the ones Databricks has that it cannot.
RUNNABLE_TASK_TYPES = ("notebook_task", "spark_python_task")
UNSUPPORTED_TASK_TYPES = (
    "spark_jar_task", "spark_submit_task", "python_wheel_task", "sql_task", "dbt_task", "pipeline_task",
    "run_job_task", "condition_task", "for_each_task", "dashboard_task", "power_bi_task",
    "clean_rooms_notebook_task", "dbt_cloud_task", "dbt_platform_task", "gen_ai_compute_task",
    "alert_task", "ai_function_task", "ai_runtime_task", "python_operator_task",
)
ALL_TASK_TYPES = RUNNABLE_TASK_TYPES + UNSUPPORTED_TASK_TYPES

# Fields that change how a run executes and that the local workspace cannot honour. Fields
# that are only metadata (tags, access control, notification opt-outs) are accepted and kept.
UNSUPPORTED_RUN_FIELDS = ("git_source",)
UNSUPPORTED_NONEMPTY_FIELDS = ("email_notifications", "webhook_notifications")

NUMERIC_FIELDS = frozenset({
    "num_workers", "min_workers", "max_workers", "timeout_seconds", "max_retries",
    "min_retry_interval_millis", "job_id", "run_id", "max_concurrent_runs", "first_on_demand",
    "limit", "offset", "latest_repair_id",
})
BOOLEAN_FIELDS = frozenset({"retry_on_timeout", "disabled", "enabled", "full_refresh", "overwrite",
                            "all_queued_runs", "rerun_all_failed_tasks", "rerun_dependent_tasks"})
TRUE_WORDS = {"true": True, "false": False}
MAX_TASKS = 100


def coerce_scalars(value: Any, key: str | None = None) -> Any:
    """Numbers and booleans sent as strings (Airflow's normalise_json_content) become real ones, and a
    `null` field is an absent one."""
    if isinstance(value, dict):
        return {k: coerce_scalars(v, k) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [coerce_scalars(v, key) for v in value]
    if isinstance(value, str) and key in NUMERIC_FIELDS:
        try:
            return int(value)
        except ValueError:
            try:
                return float(value)
            except ValueError:
                raise InvalidParameterValue(f"Field {key} must be a number, got {value!r}.") from None
    if isinstance(value, str) and key in BOOLEAN_FIELDS and value.lower() in TRUE_WORDS:
        return TRUE_WORDS[value.lower()]
    return value


def normalize_run(body: dict[str, Any], *, default_task_key: str = "main") -> dict[str, Any]:
    """A runs/submit or job settings body → `{run_name, format, tasks, timeout_seconds, ...}`.

    A legacy single-task body's one task is named after its run_name (cut to 100 characters) as
    Databricks names it: Airflow's DatabricksNotebookOperator finds its task by that key."""
    body = coerce_scalars(copy.deepcopy(body))
    parse(RunSettings, body)
    for field in UNSUPPORTED_RUN_FIELDS:
        if body.get(field):
            raise NotSupportedLocally(f"Field {field}")
    for field in UNSUPPORTED_NONEMPTY_FIELDS:
        if any(body.get(field, {}).values()) if isinstance(body.get(field), dict) else body.get(field):
            raise NotSupportedLocally(f"Field {field}")
    token = body.get("idempotency_token")

    if body.get("tasks"):
        tasks, run_format = body["tasks"], "MULTI_TASK"
        legacy = [k for k in (*ALL_TASK_TYPES, "new_cluster", "existing_cluster_id") if k in body]
        if legacy:
            raise InvalidParameterValue(f"Field {legacy[0]} cannot be set together with tasks.")
    else:
        task_key = str(body["run_name"])[:MAX_TASK_KEY] if body.get("run_name") else default_task_key
        tasks, run_format = [_legacy_task(body, task_key)], "SINGLE_TASK"
    if not isinstance(tasks, list) or len(tasks) > MAX_TASKS:
        raise InvalidParameterValue(f"tasks must be a list of at most {MAX_TASKS} tasks.")

    job_clusters = {c.get("job_cluster_key"): c.get("new_cluster", {}) for c in body.get("job_clusters", [])}
    environments = {e.get("environment_key"): e.get("spec", {}) for e in body.get("environments", [])}
    normalized = [_task(t, job_clusters, environments) for t in tasks]
    _check_graph(normalized)

    return {
        "run_name": body.get("run_name") or body.get("name") or "Untitled",
        "format": run_format,
        "tasks": normalized,
        "timeout_seconds": body.get("timeout_seconds") or 0,
        "idempotency_token": token,
        "max_concurrent_runs": body.get("max_concurrent_runs", 1),
        "queue": body.get("queue"),
        "tags": body.get("tags"),
    }


def _legacy_task(body: dict[str, Any], task_key: str) -> dict[str, Any]:
    task = {k: body[k] for k in (*ALL_TASK_TYPES, "new_cluster", "existing_cluster_id", "libraries")
            if k in body}
    if not any(k in task for k in ALL_TASK_TYPES):
        raise InvalidParameterValue(
            "A run needs tasks, or one of notebook_task, spark_python_task (and the other task types)."
        )
    task["task_key"] = task_key
    return task


def _task(task: dict[str, Any], job_clusters: dict[Any, Any], environments: dict[Any, Any]) -> dict[str, Any]:
    key = task["task_key"]
    types = [t for t in ALL_TASK_TYPES if t in task]
    if len(types) != 1:
        raise InvalidParameterValue(f"Task {key} must have exactly one task type, found {len(types)}.")
    if types[0] in UNSUPPORTED_TASK_TYPES:
        raise NotSupportedLocally(f"Task type {types[0]} (task {key})")
    kind = types[0]
    if kind == "notebook_task":
        if not task[kind].get("notebook_path"):
            raise InvalidParameterValue(f"Task {key}: notebook_task.notebook_path is required.")
        normalize_path(task[kind]["notebook_path"])  # refused now, not as an INTERNAL_ERROR at run time
        if task[kind].get("source", "WORKSPACE") != "WORKSPACE":
            raise NotSupportedLocally(f"notebook_task.source {task[kind]['source']} (task {key})")
        params = task[kind].get("base_parameters") or {}
        task[kind]["base_parameters"] = {str(k): _param_text(v) for k, v in params.items()}
    elif not task[kind].get("python_file"):
        raise InvalidParameterValue(f"Task {key}: spark_python_task.python_file is required.")
    elif is_dbfs_file(task[kind]["python_file"]) and task[kind].get("source", "WORKSPACE") == "WORKSPACE":
        normalize_storage_path(task[kind]["python_file"][len("dbfs:"):], "spark_python_task.python_file")
    elif not is_local_file(task[kind]["python_file"]) and task[kind].get("source", "WORKSPACE") == "WORKSPACE":
        normalize_path(task[kind]["python_file"])
    elif task[kind].get("source", "WORKSPACE") != "WORKSPACE":
        raise NotSupportedLocally(f"spark_python_task.source {task[kind]['source']} (task {key})")
    if task.get("max_retries"):
        raise NotSupportedLocally(f"max_retries (task {key})")

    cluster_key = task.pop("job_cluster_key", None)
    if cluster_key is not None:
        if cluster_key not in job_clusters:
            raise InvalidParameterValue(f"Task {key}: job_cluster_key {cluster_key} is not in job_clusters.")
        task["new_cluster"] = job_clusters[cluster_key]
    env_key = task.get("environment_key")
    if env_key is not None:
        if env_key not in environments:
            raise InvalidParameterValue(f"Task {key}: environment_key {env_key} is not in environments.")
        # Serverless: the environment's dependencies are pip requirements on the default cluster.
        deps = environments[env_key].get("dependencies", [])
        task["libraries"] = [*task.get("libraries", []), *({"pypi": {"package": d}} for d in deps)]
    if "new_cluster" in task and "existing_cluster_id" in task:
        raise InvalidParameterValue(f"Task {key}: set only one of new_cluster and existing_cluster_id.")
    for dep in task.get("depends_on", []):
        if not dep["task_key"]:
            raise InvalidParameterValue(f"Task {key}: each depends_on entry needs a task_key.")
    return task


def _param_text(value: Any) -> str:
    # base_parameters are strings on Databricks; clients send numbers and booleans too
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _check_graph(tasks: list[dict[str, Any]]) -> None:
    keys = [t["task_key"] for t in tasks]
    duplicates = {k for k in keys if keys.count(k) > 1}
    if duplicates:
        raise InvalidParameterValue(f"Duplicate task_key: {sorted(duplicates)[0]}.")
    deps = {t["task_key"]: [d["task_key"] for d in t.get("depends_on", [])] for t in tasks}
    for key, upstream in deps.items():
        for name in upstream:
            if name not in deps:
                raise InvalidParameterValue(f"Task {key} depends on {name}, which is not in this run.")
    try:
        tuple(graphlib.TopologicalSorter(deps).static_order())
    except graphlib.CycleError as error:
        raise InvalidParameterValue(f"The task graph has a cycle through {error.args[1][0]}.") from None
