"""runs/submit bodies in every dialect real clients send, to the one shape the scheduler runs."""

from __future__ import annotations

import pytest

from aml_databricks.workspace.errors import InvalidParameterValue, NotSupportedLocally
from aml_databricks.workspace.payload import coerce_scalars, normalize_run

NOTEBOOK = {"notebook_path": "/Users/me/nb"}


def test_legacy_single_task_form_becomes_one_task() -> None:
    spec = normalize_run({"run_name": "r", "existing_cluster_id": "c1", "notebook_task": NOTEBOOK,
                          "libraries": [{"pypi": {"package": "x"}}]})
    assert spec["format"] == "SINGLE_TASK"
    (task,) = spec["tasks"]
    assert task["existing_cluster_id"] == "c1" and task["notebook_task"] == {**NOTEBOOK, "base_parameters": {}}
    assert task["libraries"] == [{"pypi": {"package": "x"}}]


def test_airflow_sends_numbers_and_booleans_as_strings() -> None:
    body = {"timeout_seconds": "3600", "new_cluster": {"num_workers": "2", "spark_version": "15.4.x-scala2.12"},
            "notebook_task": {**NOTEBOOK, "base_parameters": {"n": 5, "flag": True}}}
    spec = normalize_run(body)
    assert spec["timeout_seconds"] == 3600
    assert spec["tasks"][0]["new_cluster"]["num_workers"] == 2
    assert spec["tasks"][0]["notebook_task"]["base_parameters"] == {"n": "5", "flag": "true"}
    assert coerce_scalars({"retry_on_timeout": "True"}) == {"retry_on_timeout": True}


def test_non_numeric_number_is_named() -> None:
    with pytest.raises(InvalidParameterValue, match="timeout_seconds"):
        normalize_run({"timeout_seconds": "soon", "notebook_task": NOTEBOOK})


def test_job_clusters_and_environments_resolve() -> None:
    spec = normalize_run({
        "job_clusters": [{"job_cluster_key": "big", "new_cluster": {"num_workers": 4}}],
        "environments": [{"environment_key": "env", "spec": {"client": "1", "dependencies": ["pandas<3"]}}],
        "tasks": [{"task_key": "a", "job_cluster_key": "big", "notebook_task": NOTEBOOK},
                  {"task_key": "b", "environment_key": "env", "spark_python_task": {"python_file": "/x.py"}}],
    })
    a, b = spec["tasks"]
    assert a["new_cluster"] == {"num_workers": 4}
    assert b["libraries"] == [{"pypi": {"package": "pandas<3"}}]


@pytest.mark.parametrize(("body", "message"), [
    ({"tasks": [{"task_key": "a", "notebook_task": NOTEBOOK}, {"task_key": "a", "notebook_task": NOTEBOOK}]},
     "Duplicate task_key"),
    ({"tasks": [{"task_key": "a", "notebook_task": NOTEBOOK, "depends_on": [{"task_key": "z"}]}]}, "z"),
    ({"tasks": [{"task_key": "a", "notebook_task": NOTEBOOK, "depends_on": [{"task_key": "b"}]},
                {"task_key": "b", "notebook_task": NOTEBOOK, "depends_on": [{"task_key": "a"}]}]}, "cycle"),
    ({"tasks": [{"task_key": "a"}]}, "exactly one task type"),
    ({"tasks": [{"notebook_task": NOTEBOOK}]}, "task_key"),
    ({"run_name": "nothing"}, "needs tasks"),
    ({"idempotency_token": "x" * 65, "notebook_task": NOTEBOOK}, "64"),
    ({"tasks": [{"task_key": "a", "notebook_task": {}}]}, "notebook_path"),
    ({"tasks": [{"task_key": "a", "notebook_task": NOTEBOOK, "job_cluster_key": "nope"}]}, "job_cluster_key"),
])
def test_bad_bodies_get_a_message_that_names_the_problem(body: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidParameterValue, match=message):
        normalize_run(body)


@pytest.mark.parametrize("body", [
    {"tasks": [{"task_key": "a", "sql_task": {}}]},
    {"git_source": {"git_url": "u"}, "notebook_task": NOTEBOOK},
    {"tasks": [{"task_key": "a", "notebook_task": {**NOTEBOOK, "source": "GIT"}}]},
    {"email_notifications": {"on_failure": ["me@x.com"]}, "notebook_task": NOTEBOOK},
    {"tasks": [{"task_key": "a", "notebook_task": NOTEBOOK, "max_retries": 2}]},
])
def test_what_cannot_run_locally_is_refused_not_ignored(body: dict[str, object]) -> None:
    with pytest.raises(NotSupportedLocally, match="not supported by the local workspace"):
        normalize_run(body)


def test_metadata_fields_are_accepted() -> None:
    spec = normalize_run({"tags": {"team": "ml"}, "access_control_list": [], "queue": {"enabled": True},
                          "email_notifications": {}, "notebook_task": NOTEBOOK})
    assert spec["tags"] == {"team": "ml"}
