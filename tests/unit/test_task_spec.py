"""The one translation of a Jobs API task into compute's `TaskSpec` (workspace/launch.py)."""

from __future__ import annotations

from typing import Any

from aml_databricks.compute.executor import TaskSpec
from aml_databricks.workspace.launch import task_spec
from aml_databricks.workspace.payload import normalize_run


def spec(task: dict[str, Any], source: str = "", language: str | None = "PYTHON") -> TaskSpec:
    """The task as runs/submit receives it, normalized the way the workspace does first."""
    [settings] = normalize_run({"tasks": [{"task_key": "t", **task}]})["tasks"]
    return task_spec(settings, source, language)


def test_a_notebook_task_carries_its_widgets_as_strings() -> None:
    made = spec({"notebook_task": {"notebook_path": "/Users/me/nb", "base_parameters": {"n": 3, "on": True}}},
                "x = 1", "SQL")
    assert (made.kind, made.path, made.source, made.language) == ("notebook", "/Users/me/nb", "x = 1", "SQL")
    assert made.widgets == {"n": "3", "on": "true"} and made.argv == []


def test_a_python_task_carries_its_argv_as_strings() -> None:
    made = spec({"spark_python_task": {"python_file": "/Workspace/job.py", "parameters": ["a", 2]}})
    assert (made.kind, made.path, made.language, made.argv, made.widgets) == (
        "python", "/Workspace/job.py", "PYTHON", ["a", "2"], {}
    )


def test_the_cluster_the_provider_is_asked_for_and_the_one_children_inherit() -> None:
    notebook = {"notebook_task": {"notebook_path": "/nb"}}
    new = spec({**notebook, "new_cluster": {"num_workers": 2, "spark_version": "15.4.x-scala2.12",
                                            "spark_env_vars": {"COLOR": "blue", "N": 1}}})
    assert new.cluster == {"num_workers": 2, "spark_version": "15.4.x-scala2.12",
                           "spark_env_vars": {"COLOR": "blue", "N": 1}}
    assert new.compute == {"new_cluster": new.new_cluster}
    assert (new.runtime_version, new.spark_env_vars) == ("15.4", {"COLOR": "blue", "N": "1"})
    existing = spec({**notebook, "existing_cluster_id": "abc"})
    assert existing.cluster == existing.compute == {"existing_cluster_id": "abc"}
    default = spec(notebook)
    assert (default.cluster, default.compute, default.runtime_version, default.spark_env_vars) == ({}, {}, None, {})


def test_job_cluster_keys_and_libraries_arrive_resolved() -> None:
    [settings] = normalize_run({
        "job_clusters": [{"job_cluster_key": "jc", "new_cluster": {"num_workers": 1}}],
        "tasks": [{"task_key": "t", "job_cluster_key": "jc", "notebook_task": {"notebook_path": "/nb"},
                   "libraries": [{"pypi": {"package": "tiny"}}], "timeout_seconds": "30"}],
    })["tasks"]
    made = task_spec(settings, "", "PYTHON")
    assert made.new_cluster == {"num_workers": 1}
    assert made.libraries == [{"pypi": {"package": "tiny"}}] and made.timeout_seconds == 30
