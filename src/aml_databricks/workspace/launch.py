"""The one place a Jobs API task becomes compute's `TaskSpec`; compute never reads Jobs API JSON.

The task settings here are already normalized by payload.py (one task type, `job_cluster_key`
resolved to its `new_cluster`, base_parameters as strings, numbers coerced).
"""

from __future__ import annotations

from typing import Any

from aml_databricks.compute.executor import TaskSpec


def task_spec(settings: dict[str, Any], source: str | None, language: str | None) -> TaskSpec:
    """`settings`: one normalized task; `source`, `language`: its code as the workspace resolved it."""
    common: dict[str, Any] = {
        "task_key": str(settings["task_key"]),
        "source": source,
        "new_cluster": settings.get("new_cluster"),
        "existing_cluster_id": settings.get("existing_cluster_id"),
        "libraries": list(settings.get("libraries") or []),
        "timeout_seconds": int(settings.get("timeout_seconds") or 0),
    }
    if "spark_python_task" in settings:
        python_task = settings["spark_python_task"]
        return TaskSpec(
            kind="python",
            path=str(python_task["python_file"]),
            language="PYTHON",
            argv=[str(p) for p in python_task.get("parameters") or []],
            **common,
        )
    notebook_task = settings.get("notebook_task") or {}
    return TaskSpec(
        kind="notebook",
        path=str(notebook_task.get("notebook_path", "")),
        language=language,
        widgets=dict(notebook_task.get("base_parameters") or {}),  # payload.py made them strings
        **common,
    )
